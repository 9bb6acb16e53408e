#!/usr/bin/env python3
"""The TorchScript export in PyTorch: same predictions as the worker, from raw images.

Trains small candidates on Fashion-MNIST with `quartet-train --artifacts=... --predictions_out=...`
(one epoch on a subset; one per architecture and router kind), loads each exported .pt with
torch.jit.load, applies the preprocessing recorded in its quartet.json to the raw uint8 test images
(read from the IDX files here, not by Quartet) and checks that the argmax of its logits equals the
worker's own eval prediction on every one of the first 256 test images.

Without /usr/share/datasets/fashion-mnist, IDX files of seeded random images are generated and
passed with --data_dir (same path through the loader and the preprocessing).

Usage: torchscript_export.py PATH/TO/quartet-train [CASE...]. Exit 77 (skipped) without torch.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torchscript_export: no torch in this python3; skipped")
    sys.exit(77)

FASHION = "/usr/share/datasets/fashion-mnist"
IMAGES = 256
COMMON = ["--dataset=fashion-mnist", "--train_limit=512", f"--test_limit={IMAGES}", "--epochs=1",
          "--batch_size=32", "--seed=3", "--threads=2", "--log_level=warn"]
CASES = {
    "moe4-dense": ["--families=ICNet,DPN107"],
    # Resized 28 -> 32 px: the recorded bilinear resize too.
    "moe4-top-k": ["--families=ICNet,DPN107,Diffuser", "--router=top-k", "--top_k=1",
                   "--input_size=32"],
    "heads-sparse-moe": ["--architecture=heads", "--families=DPN107", "--head=sparse-moe"],
    "dynamoe-dynamic": ["--architecture=dynamoe", "--router=dynamic", "--layers=3"],
}


def read_idx_images(path, count):
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, f"{path}: magic {magic}"
        count = min(count, n)
        data = f.read(count * rows * cols)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(count, 1, rows, cols)


def write_idx(directory, prefix, images, labels):
    with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, images.shape[0], 28, 28))
        f.write(images.numpy().tobytes())
    with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, labels.shape[0]))
        f.write(labels.numpy().tobytes())


def dataset_dir(tmp):
    """Fashion-MNIST where installed, else generated IDX files of the same shape."""
    if os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
        return FASHION, []
    directory = os.path.join(tmp, "fashion-mnist")
    os.makedirs(directory)
    g = torch.Generator().manual_seed(5)
    for prefix, n in (("train", 512), ("t10k", IMAGES)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        labels = (images.float().mean((1, 2)) // 25.6).clamp(0, 9).to(torch.uint8)
        write_idx(directory, prefix, images, labels)
    return directory, [f"--data_dir={directory}"]


def preprocess(raw, info):
    """What quartet.json says: /255, (x - mean) * (1 / std) in float32, bilinear resize."""
    p = info["preprocessing"]
    mean = torch.tensor(p["mean"], dtype=torch.float32).reshape(1, -1, 1, 1)
    inv_std = torch.tensor([1.0 / s for s in p["std"]], dtype=torch.float32).reshape(1, -1, 1, 1)
    x = raw.to(torch.float32).div(255.0).sub(mean).mul(inv_std)
    side = info["input_size"]
    if x.shape[2] != side or x.shape[3] != side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x


def check_case(binary, name, flags, data_dir, data_flags, tmp):
    out = os.path.join(tmp, name)
    predictions = os.path.join(out, "predictions.txt")
    os.makedirs(out)
    cmd = [binary, *COMMON, *data_flags, *flags, f"--artifacts={out}/artifacts",
           f"--predictions_out={predictions}", f"--output={out}/result.json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(f"{out}/result.json") as f:
        result = json.load(f)
    assert "exported_model" in result, f"{name}: no export: {result.get('checkpoint_error')}"
    uri = result["exported_model"]["uri"]
    assert uri.startswith("file://"), uri
    extra = {"quartet.json": ""}
    module = torch.jit.load(uri[len("file://"):], map_location="cpu", _extra_files=extra)
    info = json.loads(extra["quartet.json"])
    with open(predictions) as f:
        worker = torch.tensor([int(line) for line in f if line.strip()])
    assert worker.numel() == IMAGES, f"{name}: {worker.numel()} worker predictions"
    raw = read_idx_images(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"), IMAGES)
    assert info["channels"] == raw.shape[1], info
    with torch.no_grad():
        logits = module(preprocess(raw, info))
    ours = logits.argmax(1)
    mismatches = int((ours != worker).sum())
    print(f"{name}: {info['architecture']} at {info['input_size']} px, "
          f"{IMAGES - mismatches}/{IMAGES} predictions agree")
    assert mismatches == 0, f"{name}: {mismatches} predictions differ from the worker's"
    assert len(info["classes"]) == logits.shape[1] == 10, info["classes"]


def main():
    binary = sys.argv[1]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, data_flags = dataset_dir(tmp)
        names = sys.argv[2:] or list(CASES)
        for name in names:
            flags = CASES[name]
            check_case(binary, name, flags, data_dir, data_flags, tmp)


if __name__ == "__main__":
    main()
