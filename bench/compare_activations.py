#!/usr/bin/python3
"""Activations side by side: normkit (build/bench/nk_bench_act) and PyTorch
(Debian's python3-torch) on selu, elu, leaky_relu, relu forward and backward,
16M floats, at 1 and 2 threads; prints one markdown table of GB/s counted on
the minimal bytes (forward 2S, backward 3S, S = bytes of x), and normkit's
rate as a share of the ordinary-store copy bandwidth that build/bench/nk_bench
measures in the same run (membw_copy on buffers twice the L3, bytes read +
written: the same accounting as the forward pass).

PyTorch runs its out= variants (no allocation in the timed loop): forward
clamp_min / leaky_relu / elu (selu = elu with SELU's alpha and scale),
backward threshold_backward / leaky_relu_backward / elu_backward.

  /usr/bin/python3 bench/compare_activations.py [--build build] [--elems N] [--threads 1,2] [--reps 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS = ["selu", "elu", "leaky_relu", "relu"]
ALPHA = 1.6732632423543772848170429916717
LAMBDA = 1.0507009873554804934193349852946

TORCH_CHILD = r"""
import json, statistics, sys, time, torch
n, t, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
A, L = %r, %r
torch.set_num_threads(t)
x = torch.randn(n); dy = torch.randn(n); y = torch.empty(n); dx = torch.empty(n)
fwd = {
    "selu": lambda: torch._C._nn.elu(x, A, L, 1, out=y),
    "elu": lambda: torch._C._nn.elu(x, 1.0, 1, 1, out=y),
    "leaky_relu": lambda: torch._C._nn.leaky_relu(x, 0.01, out=y),
    "relu": lambda: torch.clamp_min(x, 0, out=y),
}
bwd = {
    "selu": lambda: torch.ops.aten.elu_backward.grad_input(dy, A, L, 1, False, x, grad_input=dx),
    "elu": lambda: torch.ops.aten.elu_backward.grad_input(dy, 1.0, 1, 1, False, x, grad_input=dx),
    "leaky_relu": lambda: torch.ops.aten.leaky_relu_backward.grad_input(dy, x, 0.01, False, grad_input=dx),
    "relu": lambda: torch.ops.aten.threshold_backward.grad_input(dy, x, 0, grad_input=dx),
}
out = {}
for name, table, mult in (("fwd", fwd, 2), ("bwd", bwd, 3)):
    for op, f in table.items():
        f()
        times = []
        for _ in range(reps):
            k, t0 = 0, time.perf_counter()
            while True:
                f(); k += 1
                el = time.perf_counter() - t0
                if el > 0.2: break
            times.append(el / k)
        out[op + "_" + name] = mult * 4 * n / statistics.median(times) / 1e9
print(json.dumps(out))
""" % (ALPHA, LAMBDA)


def gbench_medians(exe, args, reps):
    """[(run_name split at '/', bytes_per_second)] of the medians of a Google Benchmark run."""
    cmd = [exe] + args + ["--benchmark_format=json", "--benchmark_repetitions=%d" % reps,
                          "--benchmark_report_aggregates_only=true"]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    # With one repetition Google Benchmark reports no aggregates.
    return [(b["run_name"].split("/"), b["bytes_per_second"]) for b in res["benchmarks"]
            if b.get("aggregate_name", "median" if reps == 1 else None) == "median"]


def normkit(build, elems, threads, reps):
    exe = os.path.join(ROOT, build, "bench", "nk_bench_act")
    args = ["--nk_elems=%d" % elems, "--nk_threads=" + ",".join(map(str, threads))]
    # selu_fwd/N/isa:X/threads:T/real_time
    return {(parts[0], int(parts[3].split(":")[1])): bps / 1e9
            for parts, bps in gbench_medians(exe, args, reps)}


def copy_bandwidth(build, threads, reps):
    """{threads: GB/s} of nk_bench's membw_copy (bytes read + written)."""
    exe = os.path.join(ROOT, build, "bench", "nk_bench")
    args = ["--benchmark_filter=^membw_copy/", "--nk_threads=" + ",".join(map(str, threads))]
    # membw_copy/960MiB/threads:T/real_time
    return {int(parts[2].split(":")[1]): bps / 1e9 for parts, bps in gbench_medians(exe, args, reps)}


def torch_rates(elems, t, reps):
    r = subprocess.run([sys.executable, "-c", TORCH_CHILD, str(elems), str(t), str(reps)],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--elems", type=int, default=1 << 24)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    bw = copy_bandwidth(a.build, threads, a.reps)
    nk = normkit(a.build, a.elems, threads, a.reps)
    th = {t: torch_rates(a.elems, t, a.reps) for t in threads}
    print("Copy bandwidth (ordinary stores, buffers twice the L3): " +
          ", ".join("%.1f GB/s at %d thread%s" % (bw[t], t, "s" if t > 1 else "") for t in threads if t in bw))
    print()
    print("| op | threads | normkit GB/s | PyTorch GB/s | normkit / PyTorch | normkit % copy BW |")
    print("|---|---|---|---|---|---|")
    for op in OPS:
        for d in ("fwd", "bwd"):
            for t in threads:
                k = op + "_" + d
                n, p = nk.get((k, t)), th[t].get(k)
                ratio = "%.2f" % (n / p) if n and p else "-"
                share = "%.0f%%" % (100 * n / bw[t]) if n and bw.get(t) else "-"
                print("| %s | %d | %s | %s | %s | %s |" %
                      (k, t, "%.1f" % n if n else "-", "%.1f" % p if p else "-", ratio, share))


if __name__ == "__main__":
    main()
