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

Prints one JSON object: {"mode", "size", "batch", "steps", "samples_per_second", "parameters"}.
"""
import argparse
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


def lr_factor(step, total, warmup, start=0.1, floor=1e-3):
    if warmup > 0 and step < warmup:
        return start + (1 - start) * step / warmup
    t = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("published", "prebatched"), required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = (args.steps + args.warmup) * args.batch
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # CIFAR-10-shaped
    labels = rng.integers(0, 10, size=n)

    model = MoE4()
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
                                             batch_size=args.batch, shuffle=True, num_workers=1)
        batches = iter(loader)
    else:
        # contiguous(): NCHW like the other two sides (the permuted view would otherwise carry
        # channels-last strides into every convolution).
        x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float().div(255)
        if args.size != 32:
            x_all = F.interpolate(x_all, size=(args.size, args.size), mode="bilinear",
                                  align_corners=False)
        x_all = (x_all - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        y_all = torch.from_numpy(labels)
        batches = ((x_all[i:i + args.batch], y_all[i:i + args.batch])
                   for i in range(0, n, args.batch))

    start = None
    for step in range(total):
        if step == args.warmup:
            start = time.perf_counter()
        x, y = next(batches)
        for group, b in zip(opt.param_groups, base):
            group["lr"] = b * lr_factor(step, total, warmup_steps)
        lam = float(rng.beta(0.2, 0.2))
        perm = torch.randperm(x.size(0))
        x = lam * x + (1 - lam) * x[perm]
        logits, balance = model(x)
        loss = (lam * F.cross_entropy(logits, y, label_smoothing=0.1)
                + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=0.1)
                + 0.01 * balance)
        if not math.isfinite(loss.item()):
            raise SystemExit("non-finite loss")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(all_params, 1.0)
        opt.step()
        with torch.no_grad():
            model.gate.temperature.clamp_(0.5, 5.0)
    elapsed = time.perf_counter() - start
    print(json.dumps({"mode": args.mode, "size": args.size, "batch": args.batch,
                      "steps": args.steps, "threads": torch.get_num_threads(),
                      "samples_per_second": args.steps * args.batch / elapsed,
                      "parameters": params}))


if __name__ == "__main__":
    main()
