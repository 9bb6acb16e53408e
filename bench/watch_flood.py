#!/usr/bin/python3
"""Watch flood: GetCampaign latency while 1,000 WatchCampaign streams are attempted.

Starts a coordinator (in-memory store) on a free loopback port, submits a small campaign with
quartetctl, measures GetCampaign latency alone, then opens WATCHES watch streams at once and
measures it again while they are held. Prints a table; --record appends it to bench/RESULTS.md.

  /usr/bin/python3 bench/watch_flood.py build/coordinator/quartet-coordinator build/cli/quartetctl
      [--database-url=postgresql://...] [--watches 1000] [--calls 300] [--record]

Messages are encoded by hand (two varint fields), so no generated stubs are needed.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):  # a varint field
    return varint(num << 3) + varint(value)


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def latencies(get, request, calls):
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        get(request, timeout=10)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("coordinator")
    ap.add_argument("quartetctl")
    ap.add_argument("--watches", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--database-url", default="",
                    help="PostgreSQL URL (a fresh schema is used); default: the in-memory store")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="quartet-watch-flood.")
    port_file = os.path.join(work, "port")
    store = ["--memory_store"]
    if args.database_url:
        store = ["--database_url=" + args.database_url,
                 "--database_schema=watch_flood_%d" % int(time.time())]
    coord = subprocess.Popen(
        [args.coordinator, "--listen=127.0.0.1:0", "--port_file=" + port_file,
         "--log_file=" + os.path.join(work, "coordinator.log")] + store)
    try:
        for _ in range(100):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        addr = "127.0.0.1:" + open(port_file).read().strip()
        out = subprocess.run(
            [args.quartetctl, "--coordinator=" + addr, "campaign", "submit", "--name=flood",
             "--dataset=synthetic", "--budget=3", "-k", "2", "--families=AirNet,BagNet,ResNet"],
            check=True, capture_output=True, text=True).stdout
        campaign = int(out.split("submitted campaign ")[1].split()[0])

        channel = grpc.insecure_channel(addr, options=[("grpc.max_concurrent_streams", 100000)])
        get = channel.unary_unary("/quartet.v1.CampaignService/GetCampaign")
        watch = channel.unary_stream("/quartet.v1.CampaignService/WatchCampaign")
        request = field(1, campaign)
        latencies(get, request, 20)  # warm-up
        alone = latencies(get, request, args.calls)

        # The flood: every stream is started at once; each reads its first snapshot or its refusal.
        streams = [watch(field(1, campaign) + field(2, 1000), timeout=600)
                   for _ in range(args.watches)]
        accepted = refused = other = 0
        held = []
        for s in streams:
            try:
                next(s)
                accepted += 1
                held.append(s)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused += 1
                else:
                    other += 1
        flooded = latencies(get, request, args.calls)
        for s in held:
            s.cancel()
        channel.close()
    finally:
        coord.terminate()
        coord.wait(timeout=20)

    rows = [("alone", alone), ("during the flood", flooded)]
    lines = ["| GetCampaign | calls | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, v in rows:
        lines.append("| %s | %d | %.2f | %.2f | %.2f |" % (
            name, len(v), statistics.median(v), percentile(v, 99), max(v)))
    summary = ("Store: %s. Watch streams attempted: %d; accepted %d, refused with "
               "RESOURCE_EXHAUSTED %d, other errors %d (cap: --max_watch_streams, default 256)."
               % ("PostgreSQL" if args.database_url else "in memory", args.watches, accepted,
                  refused, other))
    print("\n".join(lines))
    print(summary)
    if args.record:
        cpu = "unknown CPU"
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(results, "a") as f:
            f.write("\n## Watch flood: GetCampaign latency with %d watch streams attempted\n\n"
                    % args.watches)
            f.write("- Machine: %s, %d cores, %s\n" % (cpu, os.cpu_count(), platform.platform()))
            f.write("- Date: %s\n" % datetime.date.today().isoformat())
            f.write("- Command: `/usr/bin/python3 bench/watch_flood.py "
                    "build/coordinator/quartet-coordinator build/cli/quartetctl%s --record`\n\n"
                    % (" --database-url=URL" if args.database_url else ""))
            f.write("\n".join(lines) + "\n\n" + summary + "\n")
    return 0 if other == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
