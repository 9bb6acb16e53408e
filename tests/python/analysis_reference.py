#!/usr/bin/env python3
"""The Hessian analyses in PyTorch on the same weights as the C++ ones.

Runs `quartet_torch_tests --gtest_filter=AnalysisReference.Dump`, which writes a tiny soft-MoE
head (2 experts, 4 features, 3 classes, float64), its data, a vector v, and the C++ results: the
loss, Hv, the top-3 eigenvalues by power iteration and Hutchinson's samples with their Rademacher
probes. Rebuilds the model in PyTorch from the dumped parameters and checks: the loss, Hv by
double backward (batches of 8 weighted by size), the eigenvalues against the explicit Hessian's
eigen-decomposition (torch.autograd.functional.hessian + eigvalsh), and v'Hv of each probe.

Usage: analysis_reference.py PATH/TO/quartet_torch_tests. Exit 77 (skipped) without torch.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("analysis_reference: no torch in this python3; skipped")
    sys.exit(77)


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dump.json")
        env = dict(os.environ, QUARTET_ANALYSIS_DUMP=path)
        subprocess.run([binary, "--gtest_filter=AnalysisReference.Dump"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        with open(path) as f:
            d = json.load(f)

    torch.set_default_dtype(torch.float64)
    names = [p["name"] for p in d["params"]]
    shapes = [p["shape"] for p in d["params"]]
    values = [torch.tensor(p["values"]).reshape(p["shape"]) for p in d["params"]]
    x = torch.tensor(d["x"]).reshape(d["x_shape"])
    y = torch.tensor(d["y"]).long()
    experts = sorted({n.split(".")[1] for n in names if n.startswith("experts.")})

    def logits(params, xb):
        p = dict(zip(names, params))
        h = xb.mean(dim=(2, 3))  # the head pools the (B, D, 1, 1) map
        gate = torch.softmax(F.linear(h, p["gate.weight"], p["gate.bias"]) / 1.0, dim=1)
        outs = []
        for e in experts:
            z = F.relu(F.linear(h, p[f"experts.{e}.fc1.weight"], p[f"experts.{e}.fc1.bias"]))
            outs.append(F.linear(z, p[f"experts.{e}.fc2.weight"], p[f"experts.{e}.fc2.bias"]))
        return (gate.unsqueeze(2) * torch.stack(outs, 1)).sum(1)

    bs = d["batch_size"]
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)]

    def flat(ts):
        return torch.cat([t.reshape(-1) for t in ts])

    def unflat(v):
        out, i = [], 0
        for s in shapes:
            n = int(torch.tensor(s).prod().item()) if s else 1
            out.append(v[i:i + n].reshape(s))
            i += n
        return out

    def hvp(v):
        params = [t.clone().requires_grad_(True) for t in values]
        total = torch.zeros(sum(t.numel() for t in values))
        for xb, yb in batches:
            loss = F.cross_entropy(logits(params, xb), yb)
            g = torch.autograd.grad(loss, params, create_graph=True)
            hv = torch.autograd.grad(g, params, grad_outputs=unflat(v), allow_unused=True)
            hv = [torch.zeros_like(params[i]) if h is None else h for i, h in enumerate(hv)]
            total += flat(hv) * len(yb) / len(y)
        return total

    failures = []

    def check(what, got, want, tol):
        err = float((torch.as_tensor(got) - torch.as_tensor(want)).abs().max())
        scale = max(1.0, float(torch.as_tensor(want).abs().max()))
        ok = err <= tol * scale
        print(f"{what}: max |C++ - PyTorch| = {err:.3g} ({'ok' if ok else 'FAIL'}, tol {tol:g})")
        if not ok:
            failures.append(what)

    with torch.no_grad():
        loss = sum(F.cross_entropy(logits(values, xb), yb, reduction="sum") for xb, yb in batches)
    check("loss", d["loss"], loss / len(y), 1e-12)
    check("Hv", torch.tensor(d["hv"]), hvp(torch.tensor(d["v"])), 1e-10)

    full_loss = lambda v: F.cross_entropy(logits(unflat(v), x), y)
    hessian = torch.autograd.functional.hessian(full_loss, flat(values))
    evals = torch.linalg.eigvalsh(hessian)
    top = evals[evals.abs().argsort(descending=True)][:len(d["eigenvalues"])]
    check("top eigenvalues (C++ power iteration vs PyTorch eigvalsh)", torch.tensor(d["eigenvalues"]),
          top, 1e-5)
    samples = [float(p @ hvp(p)) for p in (torch.tensor(q, dtype=torch.float64) for q in d["probes"])]
    check("Hutchinson samples v'Hv", torch.tensor(d["trace_samples"]), torch.tensor(samples), 1e-10)
    print(f"trace: explicit {float(hessian.trace()):.6g}, C++ Hutchinson (10 probes) "
          f"{sum(d['trace_samples']) / len(d['trace_samples']):.6g}")
    if failures:
        print("analysis_reference: FAILED:", ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
