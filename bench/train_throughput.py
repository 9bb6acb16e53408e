#!/usr/bin/python3
"""PyTorch-eager reference for bench/train_throughput (run with Debian's /usr/bin/python3).

The same MoE4 as the C++ bench -- AirNet + ResNet + ShuffleNet + MobileNetV3 experts (LEMUR's
layouts: AirNet written out here, the others from torchvision 0.14 with LEMUR's settings), the
MoE4 gate (conv 64, conv 128, GAP, MLP 128-64-4, learnable temperature clamped to [0.5, 5], logit
noise 0.1), dense softmax mixture -- and the same recipe: AdamW with the gate at 2x lr and half the
weight decay, per-step linear warm-up then cosine, label smoothing 0.1, mixup alpha 0.2, balance
loss 0.01 * CV^2 of the live gate importance, gradient clipping at 1.0.

Fed two ways:
  published   the published pipeline's way: PIL images through torchvision per-sample transforms
              (Resize, CenterCrop, RandomHorizontalFlip, ToTensor, Normalize) in a DataLoader
              with one worker process, batch 32, shuffled;
  prebatched  normalised float tensors at the input size prepared in memory up front; a step
              slices its batch.

On CUDA (--device=cuda:N) both ways train as Quartet's trainer does there: cuDNN autotuning,
channels-last batches, autocast to bfloat16 (float16 with loss scaling before compute capability 8).
The pre-batched tensors are then built on the device, and the published way's batches are copied
there from pinned memory.

Prints one JSON object: {"mode", "size", "batch", "steps", "device", "amp", "samples_per_second",
"parameters"}.
"""
import argparse
import contextlib
import functools
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.models import mobilenetv3

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class AirUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = self.down(x) if self.down is not None else x
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + identity)


class AirNet(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.init_conv = nn.Conv2d(channels, 64, 3, 2, 1)
        self.init_bn = nn.BatchNorm2d(64)
        units, cin = [], 64
        for i, w in enumerate((64, 128, 256, 512)):
            units.append(AirUnit(cin, w, 1 if i == 0 else 2))
            cin = w
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.init_bn(self.init_conv(x)))
        x = self.units(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def mobilenet_v3(classes):
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", reduced_tail=True,
                                                   dilated=True)
    norm = functools.partial(nn.BatchNorm2d, eps=1e-5, momentum=0.1)
    return mobilenetv3.MobileNetV3(setting, last, num_classes=classes, norm_layer=norm,
                                   dropout=0.2)


class Gate(nn.Module):
    def __init__(self, channels, experts):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 128, 3, 2, 1)
        self.bn2 = nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128, 64)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(64, experts)
        self.temperature = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        z = self.fc2(self.drop(F.relu(self.fc1(x)))) / self.temperature.clamp(0.5, 5.0)
        if self.training:
            z = z + torch.randn_like(z) * 0.1
        return z


class MoE4(nn.Module):
    def __init__(self, channels=3, classes=10):
        super().__init__()
        self.experts = nn.ModuleList([
            AirNet(channels, classes),
            torchvision.models.resnet18(num_classes=classes),
            torchvision.models.shufflenet_v2_x1_0(num_classes=classes),
            mobilenet_v3(classes),
        ])
        self.gate = Gate(channels, len(self.experts))

    def forward(self, x):
        p = F.softmax(self.gate(x), dim=1)
        outs = torch.stack([e(x) for e in self.experts], dim=1)
        logits = (p.unsqueeze(2) * outs).sum(1)
        importance = p.sum(0)
        balance = importance.var(unbiased=False) / (importance.mean() ** 2 + 1e-10)
        return logits, balance


class PilDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, size):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([
            transforms.Resize(size), transforms.CenterCrop(size),
            transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


# Images converted to float and resized per chunk when pre-batching (bounds the transient memory).
PREBATCH_CHUNK = 1024


def prebatched(images, labels, size, batch, device):
    """Normalised float batches at `size`, prepared up front on `device`."""
    src = torch.from_numpy(images).to(device)
    x_all = torch.empty((len(images), 3, size, size), device=device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    for i in range(0, len(images), PREBATCH_CHUNK):
        # contiguous(): NCHW like the other two sides (the permuted view would otherwise carry
        # channels-last strides into every convolution).
        x = src[i:i + PREBATCH_CHUNK].permute(0, 3, 1, 2).contiguous().float().div(255)
        if size != 32:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x_all[i:i + PREBATCH_CHUNK] = (x - mean) / std
    y_all = torch.from_numpy(labels).to(device)
    return ((x_all[i:i + batch], y_all[i:i + batch]) for i in range(0, len(images), batch))


class Accelerator:
    """How a step uses the device: the memory format, autocast and loss scaling on CUDA."""

    def __init__(self, device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.dtype = None
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            major, _ = torch.cuda.get_device_capability(device)
            self.dtype = torch.bfloat16 if major >= 8 else torch.float16
        # torch.amp.GradScaler from PyTorch 2.3 on; torch.cuda.amp's before.
        scaler = getattr(torch.amp, "GradScaler", None)
        enabled = self.dtype == torch.float16
        self.scaler = (scaler("cuda", enabled=enabled) if scaler
                       else torch.cuda.amp.GradScaler(enabled=enabled))

    def batch(self, x, y):
        x = x.to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)


def lr_factor(step, total, warmup, start=0.1, floor=1e-3):
    if warmup > 0 and step < warmup:
        return start + (1 - start) * step / warmup
    t = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("published", "prebatched"), required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda:N")
    return ap.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = (args.steps + args.warmup) * args.batch
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # CIFAR-10-shaped
    labels = rng.integers(0, 10, size=n)
    acc = Accelerator(torch.device(args.device))

    model = MoE4().to(acc.device)
    params = sum(p.numel() for p in model.parameters())
    lr, wd = 1e-3, 5e-4
    expert_params = [p for e in model.experts for p in e.parameters()]
    opt = torch.optim.AdamW([
        {"params": expert_params, "lr": lr, "weight_decay": wd},
        {"params": list(model.gate.parameters()), "lr": 2 * lr, "weight_decay": wd / 2}])
    base = [lr, 2 * lr]
    total = args.steps + args.warmup
    warmup_steps = round(0.05 * total)
    all_params = list(model.parameters())
    model.train()

    if args.mode == "published":
        loader = torch.utils.data.DataLoader(PilDataset(images, labels, args.size),
                                             batch_size=args.batch, shuffle=True, num_workers=1,
                                             pin_memory=acc.cuda)
        batches = iter(loader)
    else:
        batches = prebatched(images, labels, args.size, args.batch, acc.device)

    start = None
    for step in range(total):
        if step == args.warmup:
            acc.synchronize()
            start = time.perf_counter()
        x, y = acc.batch(*next(batches))
        for group, b in zip(opt.param_groups, base):
            group["lr"] = b * lr_factor(step, total, warmup_steps)
        lam = float(rng.beta(0.2, 0.2))
        perm = torch.randperm(x.size(0), device=acc.device)
        x = lam * x + (1 - lam) * x[perm]
        with acc.autocast():
            logits, balance = model(x)
            loss = (lam * F.cross_entropy(logits, y, label_smoothing=0.1)
                    + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=0.1)
                    + 0.01 * balance)
        if not math.isfinite(loss.item()):
            raise SystemExit("non-finite loss")
        opt.zero_grad()
        acc.scaler.scale(loss).backward()
        acc.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(all_params, 1.0)
        acc.scaler.step(opt)
        acc.scaler.update()
        with torch.no_grad():
            model.gate.temperature.clamp_(0.5, 5.0)
    acc.synchronize()
    elapsed = time.perf_counter() - start
    print(json.dumps({"mode": args.mode, "size": args.size, "batch": args.batch,
                      "steps": args.steps, "threads": torch.get_num_threads(),
                      "device": args.device, "amp": str(acc.dtype).replace("torch.", "") if
                      acc.dtype else "off",
                      "samples_per_second": args.steps * args.batch / elapsed,
                      "parameters": params}))


if __name__ == "__main__":
    main()
