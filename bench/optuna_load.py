#!/usr/bin/python3
"""Optuna 3.1's RDB storage under the load of bench/coordinator_load.cc, for side-by-side ratios.

At each concurrency, that many threads share one study on PostgreSQL (RDBStorage, a SQLAlchemy
pool of one connection per thread up to --max_connections, plus 8 for Optuna's nested sessions) and run ask -> 4 suggest_categorical over the 29
family names -> tell(value) cycles for --seconds, with no objective work; a thread finishes the
trial it holds at the deadline, and TRIALS/S is every told trial over the level's wall time. A fresh study per level.
RandomSampler by default, so the storage is measured and not TPE's model (--sampler=tpe for the
default sampler). Prints a table and writes `workers trials_per_second` lines to --out, which
coordinator_load --optuna_results reads.

  optuna_load.py --url=postgresql://USER@127.0.0.1:PORT/DB [--workers=1,8,32,128,256]
                 [--seconds=10] [--out=FILE] [--postgres_pid=PID]
"""
import argparse
import os
import sys
import threading
import time

import optuna

# The default pool of the family catalog (common/catalog.cc): 29 families.
N_FAMILIES = 29
FAMILIES = [f"family_{i:02d}" for i in range(N_FAMILIES)]


def process_ticks(pid):
    """utime + stime of a process and its parent pid, or (0, 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0, 0
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12]), int(fields[1])


def postgres_ticks(postmaster):
    if postmaster <= 0:
        return 0
    total = process_ticks(postmaster)[0]
    for name in os.listdir("/proc"):
        if name.isdigit():
            ticks, parent = process_ticks(int(name))
            if parent == postmaster:
                total += ticks
    return total


def run_level(url, workers, seconds, max_connections, sampler_name, postgres_pid):
    pool = min(workers, max_connections)
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"pool_size": pool, "max_overflow": 8, "pool_pre_ping": False})
    sampler = (optuna.samplers.RandomSampler(seed=1) if sampler_name == "random"
               else optuna.samplers.TPESampler(seed=1))
    study = optuna.create_study(storage=storage, sampler=sampler, direction="maximize",
                                study_name=f"load-{workers}-{time.time_ns()}")
    counts = [0] * workers
    errors = []
    start = time.monotonic()
    deadline = start + seconds

    def worker(i):
        try:
            while time.monotonic() < deadline:
                trial = study.ask()
                score = 0.0
                for j in range(4):
                    score += FAMILIES.index(trial.suggest_categorical(f"expert_{j}", FAMILIES))
                study.tell(trial, score / (4 * N_FAMILIES))
                counts[i] += 1
        except Exception as e:  # reported once, after the level
            errors.append(repr(e))

    tick = os.sysconf("SC_CLK_TCK")
    pg0, me0, t0 = postgres_ticks(postgres_pid), process_ticks(os.getpid())[0], time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pg1, me1, t1 = postgres_ticks(postgres_pid), process_ticks(os.getpid())[0], time.monotonic()
    storage.engine.dispose()
    if errors:
        print(f"optuna_load: {workers} workers: {len(errors)} threads failed: {errors[0]}",
              file=sys.stderr)
    wall = t1 - t0
    return (sum(counts) / wall, (pg1 - pg0) / tick / wall, (me1 - me0) / tick / wall,
            len(errors))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--workers", default="1,8,32,128,256")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--max_connections", type=int, default=150,
                   help="SQLAlchemy pool cap (the cluster allows 200 connections)")
    p.add_argument("--sampler", choices=["random", "tpe"], default="random")
    p.add_argument("--postgres_pid", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    failed = 0
    print(f"Optuna {optuna.__version__} RDBStorage, {args.sampler} sampler, "
          f"{args.seconds:g} s a level")
    print("| WORKERS | TRIALS/S | CPU PG | CPU PYTHON |")
    print("|---|---|---|---|")
    for w in [int(x) for x in args.workers.split(",")]:
        rate, pg, py, errors = run_level(args.url, w, args.seconds, args.max_connections,
                                         args.sampler, args.postgres_pid)
        failed += errors
        rows.append((w, rate))
        print(f"| {w} | {rate:.0f} | {pg:.2f} | {py:.2f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            for w, rate in rows:
                f.write(f"{w} {rate:.3f}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
