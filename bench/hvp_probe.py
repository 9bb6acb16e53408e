#!/usr/bin/python3
# The PyTorch side of the HVP cost figure in bench/RESULTS.md: torchvision ResNet-18 (1 input
# channel) at 28 px, batch 128, one thread: a training step, a Hessian-vector product recomputing
# the gradient graph, and one on a kept graph (the two ways worker/train/analysis.h offers).
#   /usr/bin/python3 bench/hvp_probe.py
import time, torch, torchvision
torch.set_num_threads(1)
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10)
m.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
m.eval()
x = torch.randn(128, 1, 28, 28); y = torch.randint(0, 10, (128,))
params = [p for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, 1e-3)
def step():
    m.train(); opt.zero_grad(); l = torch.nn.functional.cross_entropy(m(x), y); l.backward(); opt.step(); m.eval()
def full_hvp(v):
    l = torch.nn.functional.cross_entropy(m(x), y)
    g = torch.autograd.grad(l, params, create_graph=True)
    return torch.autograd.grad(g, params, v)
v = [torch.randn_like(p) for p in params]
for f, name in [(step, "step"), (lambda: full_hvp(v), "full hvp")]:
    f(); t = time.time(); [f() for _ in range(3)]; print(name, (time.time() - t) / 3)
l = torch.nn.functional.cross_entropy(m(x), y)
g = torch.autograd.grad(l, params, create_graph=True)
def cached(): return torch.autograd.grad(g, params, v, retain_graph=True)
cached(); t = time.time(); [cached() for _ in range(3)]; print("cached hvp", (time.time() - t) / 3)
