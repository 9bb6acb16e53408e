# An outside client of the wire format: Python grpcio stubs generated from proto/ drive a real
# coordinator through a campaign with a categorical and a continuous axis (submit, a refused bad
# axis, lease and complete as a worker, GetCandidate, coverage and yield per axis).
#   axes_client.py STUB_DIR HOST:PORT
import sys, grpc
sys.path.insert(0, sys.argv[1])
from quartet.v1 import campaign_pb2 as c, campaign_pb2_grpc as cg, spec_pb2 as s, worker_pb2 as w, worker_pb2_grpc as wg
ch = grpc.insecure_channel(sys.argv[2]); cs = cg.CampaignServiceStub(ch); ws = wg.WorkerServiceStub(ch)
cfg = c.CampaignConfig(name="py-axes", pool=["ResNet"], k=1, budget=4, seed=3,
    data=s.DataSpec(dataset=s.DATASET_SYNTHETIC),
    axes=[c.ParameterAxis(path="recipe.router", values=["dense", "top-p"]),
          c.ParameterAxis(path="recipe.learning_rate", range=c.ContinuousRange(lo=1e-4, hi=1e-2, log=True, strata=2))])
camp = cs.SubmitCampaign(c.SubmitCampaignRequest(config=cfg)).campaign
assert camp.space_size == 4, camp.space_size
try:
    bad = c.CampaignConfig(); bad.CopyFrom(cfg); bad.axes[0].values.append("bogus")
    cs.SubmitCampaign(c.SubmitCampaignRequest(config=bad)); sys.exit("bogus accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "axes[0] (recipe.router)" in e.details(), e.details()
reg = ws.RegisterWorker(w.RegisterWorkerRequest(host="py"))
seen = set()
for i in range(4):
    l = ws.LeaseCandidate(w.LeaseCandidateRequest(worker_id=reg.worker_id, session_secret=reg.session_secret))
    assert l.HasField("lease"), l
    sp = l.spec
    assert [a.path for a in sp.axis_levels] == ["recipe.router", "recipe.learning_rate"]
    assert s.Router.Name(sp.recipe.router) == sp.axis_levels[0].value
    seen.add((sp.axis_levels[0].level, sp.axis_levels[1].level))
    ws.CompleteCandidate(w.CompleteCandidateRequest(worker_id=reg.worker_id, session_secret=reg.session_secret,
        candidate_id=l.lease.candidate_id, lease_token=l.lease.lease_token, result=s.Result(test_accuracy=0.3 + 0.1 * i)))
assert len(seen) == 4, seen
got = cs.GetCandidate(c.GetCandidateRequest(candidate_id=l.lease.candidate_id)).candidate
assert len(got.axis_levels) == 2 and got.result.test_accuracy > 0.5
cov = cs.GetCoverageReport(c.GetCoverageReportRequest(campaign_id=camp.id)).report
assert [lv.total for lv in cov.axes[0].levels] == [2, 2] and cov.axes[1].continuous
y = cs.GetYieldReport(c.GetYieldReportRequest(campaign_id=camp.id, min_samples=1)).report
assert len(y.axes) == 2 and sum(e.succeeded for e in y.axes[0].levels) == 4
print("python client: OK", [(lv.label, lv.total) for lv in cov.axes[1].levels])
