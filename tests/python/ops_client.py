# Fills a campaign for the export test: Python grpcio stubs generated from proto/ submit a campaign
# with a router axis, lease and complete some candidates as a worker, fail others with messages
# that need CSV quoting (comma, quotes, newline), and leave the rest open. Prints a JSON summary
# (campaign id, worker id, every candidate's state and error message) for check_export.py.
#   ops_client.py STUB_DIR HOST:PORT
import json, sys, grpc
sys.path.insert(0, sys.argv[1])
from quartet.v1 import campaign_pb2 as c, campaign_pb2_grpc as cg, spec_pb2 as s, worker_pb2 as w, worker_pb2_grpc as wg
ch = grpc.insecure_channel(sys.argv[2]); cs = cg.CampaignServiceStub(ch); ws = wg.WorkerServiceStub(ch)
BUDGET, COMPLETE, FAIL = 11, 6, 2
cfg = c.CampaignConfig(name="ops, \"export\"", pool=["AirNet", "BagNet", "ResNet", "VGG"], k=2,
    budget=BUDGET, seed=5, data=s.DataSpec(dataset=s.DATASET_SYNTHETIC),
    axes=[c.ParameterAxis(path="recipe.router", values=["dense", "top-k"])])
camp = cs.SubmitCampaign(c.SubmitCampaignRequest(config=cfg)).campaign
reg = ws.RegisterWorker(w.RegisterWorkerRequest(host="py-ops", device="cpu"))
who = dict(worker_id=reg.worker_id, session_secret=reg.session_secret)
for i in range(COMPLETE + FAIL):
    l = ws.LeaseCandidate(w.LeaseCandidateRequest(**who))
    assert l.HasField("lease"), l
    ref = dict(candidate_id=l.lease.candidate_id, lease_token=l.lease.lease_token, **who)
    if i < COMPLETE:
        ws.CompleteCandidate(w.CompleteCandidateRequest(result=s.Result(test_accuracy=0.25 + 0.05 * i, wall_seconds=1.5 + i), **ref))
    else:
        ws.FailCandidate(w.FailCandidateRequest(error_class=s.ERROR_CLASS_NUMERIC, retryable=False,
            message=f'loss is nan, "step {i}"\nat epoch 1', **ref))
# Every candidate, paged the way quartetctl pages, as the expected rows.
rows, after = [], 0
while True:
    page = cs.ListResults(c.ListResultsRequest(campaign_id=camp.id, states=[1, 2, 3, 4, 5],
        by_accuracy=False, limit=4, after_candidate_id=after)).candidates
    rows += [{"candidate_id": x.candidate_id, "state": c.CandidateState.Name(x.state)[len("CANDIDATE_STATE_"):],
              "error_message": x.error_message, "test_accuracy": x.result.test_accuracy} for x in page]
    if len(page) < 4: break
    after = page[-1].candidate_id
assert sum(r["state"] == "SUCCEEDED" for r in rows) == COMPLETE, rows
assert sum(r["state"] == "FAILED" for r in rows) == FAIL, rows
print(json.dumps({"campaign_id": camp.id, "worker_id": reg.worker_id, "rows": rows}))
