#!/usr/bin/env python3
"""Helpers of bench/gpu/run.sh (any python3; the standard library only).

  summarize  merges the steps' outputs into results.json and RESULTS.md;
  check      fails unless results.json holds every step and every figure, with sane values.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

# The protocol's sides (train_throughput --sides) and their names in the report.
PROTOCOL_SIDES = (("quartet", "Quartet (C++ trainer)"),
                  ("prebatched", "PyTorch eager, pre-batched tensors"),
                  ("published", "PyTorch eager, the published pipeline (PIL, DataLoader)"))


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------

def run_quiet(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cmake_cache(build_dir):
    values = {}
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"^([A-Za-z_0-9]+):[A-Z]+=(.*)$", line.strip())
                if m:
                    values[m.group(1)] = m.group(2)
    except OSError:
        pass
    return values


def machine_and_versions(args):
    """The device (nvidia-smi, else PyTorch's view), the host, and every version that matters."""
    torch_info = read_json(os.path.join(args.out, "torch.json"), {})
    smi = run_quiet(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                     "--format=csv,noheader,nounits"]).splitlines()
    gpu = [x.strip() for x in smi[0].split(",")] if smi else []
    cache = cmake_cache(args.build_dir)
    compiler = cache.get("CMAKE_CXX_COMPILER", "")
    machine = {
        "device": args.device,
        "device_name": gpu[0] if gpu else torch_info.get("device_name", "cpu"),
        "driver": gpu[1] if len(gpu) > 1 else None,
        "gpu_memory_mib": int(gpu[2]) if len(gpu) > 2 and gpu[2].isdigit() else None,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    versions = {
        "torch": torch_info.get("torch"),
        "torch_cuda": torch_info.get("cuda"),
        "cudnn": torch_info.get("cudnn"),
        "python": torch_info.get("python"),
        "libtorch_dir": cache.get("Torch_DIR"),
        "cmake": (run_quiet(["cmake", "--version"]).splitlines() or [""])[0],
        "compiler": (run_quiet([compiler, "--version"]).splitlines() or [""])[0] if compiler
        else None,
        "cxx_standard": cache.get("QUARTET_CXX_STANDARD"),
        "git_commit": run_quiet(["git", "-C", args.root, "rev-parse", "--short", "HEAD"]),
    }
    return machine, versions


def protocol_figures(out):
    """The sides' figures (protocol/<side>.json, one train_throughput run each) side by side."""
    rates, fig = {}, None
    for side, _ in PROTOCOL_SIDES:
        j = read_json(os.path.join(out, "protocol", f"{side}.json"))
        if not j or not j.get("sizes"):
            continue
        size = j["sizes"][0]
        rate = size.get("samples_per_second", {}).get(side, {}).get("median")
        if rate is None:
            continue
        rates[side] = rate
        if fig is None:
            fig = {"size": size["size"], "images": (size["steps"] + size["warmup"]) * j["batch"],
                   "timed_images": size["steps"] * j["batch"], "batch": j["batch"], "epochs": 1,
                   "families": j.get("families"), "parameters": {}}
        params = size.get("parameters", {})
        key = "quartet" if side == "quartet" else "pytorch"
        fig["parameters"][key] = params.get(key)
    if fig is None:
        return None
    fig["samples_per_second"] = rates
    fig["epoch_seconds"] = {s: fig["images"] / r for s, r in rates.items() if r}
    if rates.get("quartet"):
        fig["quartet_over"] = {s: rates["quartet"] / r for s, r in rates.items()
                               if s != "quartet" and r}
    return fig


def slots_figures(out, counts):
    """One row per slot count from bench/slots_scaling's JSON (slots/<n>.json)."""
    rows = []
    for n in counts:
        j = read_json(os.path.join(out, "slots", f"{n}.json"))
        if j and j.get("levels"):
            rows.append(j["levels"][0])
    base = rows[0]["candidates_per_hour"] if rows and rows[0]["slots"] == 1 else None
    for r in rows:
        r["speedup_over_one"] = r["candidates_per_hour"] / base if base else None
    return rows


def trainer_figures(out):
    j = read_json(os.path.join(out, "trainer.json"))
    if not j:
        return None
    keep = ("test_accuracy", "wall_seconds", "parameter_count", "device", "gpu_name",
            "peak_memory_bytes")
    return {k: j[k] for k in keep if k in j} or {"fields": sorted(j)[:20]}


def cmd_summarize(args):
    found = []
    for name in os.listdir(os.path.join(args.out, "steps")):
        if name.endswith(".json"):
            s = read_json(os.path.join(args.out, "steps", name))
            if s:
                found.append(s)
    steps = {s["name"]: s for s in sorted(found, key=lambda s: s["start_s"])}
    machine, versions = machine_and_versions(args)
    counts = [int(n) for n in args.slots.split(",")]
    results = {
        "schema": 1,
        "mode": args.mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": args.command,
        "total_seconds": args.total_seconds,
        "machine": machine,
        "versions": versions,
        "steps": steps,
        "protocol": protocol_figures(args.out),
        "slots_scaling": {"method": "in-process slots", "counts": counts,
                          "rows": slots_figures(args.out, counts)},
        "zoo": read_json(os.path.join(args.out, "zoo.json")),
        "trainer": trainer_figures(args.out),
    }
    write_json(os.path.join(args.out, "results.json"), results)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(markdown(results))
    return 0


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def markdown_protocol(p):
    lines = [f"**Published protocol**: {p['images']:,} CIFAR-10-shaped images at {p['size']} px, "
             f"1 epoch, batch {p['batch']}, the benchmark MoE4 ({' + '.join(p['families'] or [])}"
             f"); steady-state samples/s after the warm-up steps.", "",
             "| side | samples/s | epoch seconds | Quartet / side |", "|---|---|---|---|"]
    for side, label in PROTOCOL_SIDES:
        rate = p["samples_per_second"].get(side)
        if rate is None:
            continue
        lines.append(f"| {label} | {fmt(rate)} | {fmt(p.get('epoch_seconds', {}).get(side))} | "
                     f"{fmt(p.get('quartet_over', {}).get(side), '.2f')} |")
    return lines + [""]


def markdown_slots(rows):
    lines = ["**Slots scaling** (N whole candidates trained at once in one process, as "
             "quartet-worker --slots=N runs them: benchmark MoE4, one epoch, batch 32; wall time "
             "until every slot finished):", "",
             "| slots | wall time s | candidates per hour | training samples/s (all slots) | "
             "speed-up over 1 |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['slots']} | {fmt(r['wall_seconds'])} | "
                     f"{fmt(r['candidates_per_hour'], '.0f')} | "
                     f"{fmt(r['samples_per_second'])} | "
                     f"{fmt(r['speedup_over_one'], '.2f')} |")
    return lines + [""]


def markdown_zoo(z):
    lines = [f"**Zoo** (train-mode forward + backward per batch of {z['batch']}, "
             f"{z['iterations']} timed passes, {z['device']}):", "",
             "| family | model | input | parameters | ms (median) | ms (min) |",
             "|---|---|---|---|---|---|"]
    for m in z["models"]:
        lines.append(f"| {m['family']} | {m['model']} | {m['size']} | {m['parameters']:,} | "
                     f"{fmt(m['ms_median'])} | {fmt(m['ms_min'])} |")
    return lines + [""]


def markdown(r):
    m, v = r["machine"], r["versions"]
    lines = [f"## GPU route: {m['device_name']} ({r['mode']}, {r['date'][:10]})", "",
             f"Machine: {m['device_name']} ({m['device']}), driver {m['driver'] or '-'}, "
             f"{m['cores']} cores. PyTorch {v['torch']} (CUDA {v['torch_cuda'] or '-'}), "
             f"LibTorch from {v['libtorch_dir']}, C++{v['cxx_standard'] or '17'}, "
             f"{v['compiler'] or '-'}, commit {v['git_commit'] or '-'}. "
             f"Whole run {r['total_seconds']:.0f} s.", "",
             f"Command: `{r['command']}`", ""]
    if r["protocol"]:
        lines += markdown_protocol(r["protocol"])
    if r["slots_scaling"]["rows"]:
        lines += markdown_slots(r["slots_scaling"]["rows"])
    if r["zoo"] and r["zoo"].get("models"):
        lines += markdown_zoo(r["zoo"])
    lines += ["| step | status | seconds |", "|---|---|---|"]
    for name, s in r["steps"].items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------

def positive(x):
    return isinstance(x, (int, float)) and x > 0


def check_results(r, expect_build):
    """Problems with results.json, one string each; empty when it is complete and sane."""
    problems = []
    for key in ("mode", "date", "machine", "versions", "steps", "protocol", "slots_scaling",
                "zoo", "trainer", "total_seconds"):
        if r.get(key) is None:
            problems.append(f"missing {key}")
    steps = r.get("steps") or {}
    counts = (r.get("slots_scaling") or {}).get("counts", [])
    wanted = (["build"] + [f"protocol_{side}" for side, _ in PROTOCOL_SIDES]
              + [f"slots_scaling_{n}" for n in counts] + ["zoo", "trainer"])
    for name in wanted:
        status = (steps.get(name) or {}).get("status")
        ok = ("ok", "skipped") if name == "build" and not expect_build else ("ok",)
        if status not in ok:
            problems.append(f"step {name}: {status or 'missing'}")
    if not (r.get("versions") or {}).get("torch"):
        problems.append("no torch version")
    if not (r.get("machine") or {}).get("device_name"):
        problems.append("no device name")
    p = r.get("protocol") or {}
    for side, _ in PROTOCOL_SIDES:
        if not positive((p.get("samples_per_second") or {}).get(side)):
            problems.append(f"protocol: no samples/s for {side}")
    if p and p.get("parameters", {}).get("quartet") != p.get("parameters", {}).get("pytorch"):
        problems.append(f"protocol: parameter counts differ: {p.get('parameters')}")
    rows = (r.get("slots_scaling") or {}).get("rows") or []
    if [x["slots"] for x in rows] != (r.get("slots_scaling") or {}).get("counts"):
        problems.append("slots_scaling: a slot count has no figures")
    problems += [f"slots_scaling {x['slots']}: no candidates per hour" for x in rows
                 if not positive(x.get("candidates_per_hour"))]
    models = (r.get("zoo") or {}).get("models") or []
    if not models or not all(positive(m.get("ms_median")) for m in models):
        problems.append("zoo: no models or a non-positive time")
    return problems


def cmd_check(args):
    r = read_json(args.results)
    if r is None:
        print(f"check: cannot read {args.results}", file=sys.stderr)
        return 1
    problems = check_results(r, args.expect_build)
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    print(f"check: {args.results}: {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("summarize")
    for flag in ("--out", "--root", "--build-dir", "--mode", "--device", "--slots", "--command"):
        m.add_argument(flag, required=True)
    m.add_argument("--total-seconds", type=float, required=True)
    c = sub.add_parser("check")
    c.add_argument("results")
    c.add_argument("--expect-build", action="store_true")
    args = ap.parse_args()
    return cmd_summarize(args) if args.cmd == "summarize" else cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
