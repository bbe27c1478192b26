#!/usr/bin/python3
"""Normalization + activation side by side: normkit fused, normkit unfused
(the separate ops in sequence) and PyTorch, on one shape in both layouts, at
1 and 2 threads; prints one markdown table.

  /usr/bin/python3 bench/compare_fused.py [--build build] [--threads 1,2] [--reps 5] [--no-torch]

normkit: build/bench/nk_bench_fused (see its header). PyTorch (Debian's
python3-torch), training mode:
  bn_relu      relu(batch_norm(x))                 bn_add_relu  relu(batch_norm(x) + r)
  bn_selu      selu(batch_norm(x))                 gn_selu      selu(group_norm(x, 32))
forward under no_grad; backward = torch.autograd.grad of the graph built
once (retain_graph), giving dx, dgamma, dbeta (and dr). NHWC is
torch.channels_last. Times are medians; "fused gain" = unfused / fused time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS = ["bn_relu", "bn_add_relu", "bn_selu", "gn_selu"]

TORCH_CHILD = r"""
import json, statistics, sys, time, torch
import torch.nn.functional as F
N, C, H, W = (int(v) for v in sys.argv[1].split("x"))
t, reps = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(t)
def timeit(f):
    f()
    times = []
    for _ in range(reps):
        k, t0 = 0, time.perf_counter()
        while True:
            f(); k += 1
            el = time.perf_counter() - t0
            if el > 0.3: break
        times.append(el / k)
    return statistics.median(times) * 1e3
out = {}
for layout in ("nchw", "nhwc"):
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x = torch.randn(N, C, H, W).contiguous(memory_format=fmt)
    r = torch.randn(N, C, H, W).contiguous(memory_format=fmt)
    dy = torch.randn(N, C, H, W).contiguous(memory_format=fmt)
    w, b = torch.rand(C) + 0.5, torch.rand(C)
    rm, rv = torch.zeros(C), torch.ones(C)
    ops = {
        "bn_relu": lambda x, r, w, b: F.relu(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-3)),
        "bn_add_relu": lambda x, r, w, b: F.relu(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-3) + r),
        "bn_selu": lambda x, r, w, b: F.selu(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-3)),
        "gn_selu": lambda x, r, w, b: F.selu(F.group_norm(x, 32, w, b, 1e-5)),
    }
    for name, f in ops.items():
        with torch.no_grad():
            out[(name, layout, "fwd")] = timeit(lambda: f(x, r, w, b))
        xg, rg, wg, bg = (v.detach().requires_grad_() for v in (x, r, w, b))
        y = f(xg, rg, wg, bg)
        inputs = [xg, wg, bg] + ([rg] if name == "bn_add_relu" else [])
        out[(name, layout, "bwd")] = timeit(lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True))
        del y
print(json.dumps({"/".join(k): v for k, v in out.items()}))
"""


def normkit(build, threads, reps):
    exe = os.path.join(ROOT, build, "bench", "nk_bench_fused")
    cmd = [exe, "--nk_threads=" + ",".join(map(str, threads)), "--benchmark_format=json",
           "--benchmark_repetitions=%d" % reps, "--benchmark_report_aggregates_only=true"]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    out, shape = {}, None
    for b in res["benchmarks"]:
        if b.get("aggregate_name", "median" if reps == 1 else None) != "median":
            continue
        # bn_relu/nchw/32x256x56x56/fused/fwd/threads:2/real_time
        op, layout, shape, variant, d, th = b["run_name"].split("/")[:6]
        t = int(th.split(":")[1])
        out[(op, layout, d, variant, t)] = (b["real_time"], b["bytes_per_second"] / 1e9)
    return out, shape


def torch_times(shape, t, reps):
    r = subprocess.run([sys.executable, "-c", TORCH_CHILD, shape, str(t), str(reps)],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    nk, shape = normkit(a.build, threads, a.reps)
    th = {} if a.no_torch else {t: torch_times(shape, t, a.reps) for t in threads}
    print("Shape %s (N x C x H x W), times in ms (medians of %d)." % (shape, a.reps))
    print()
    print("| op | layout | pass | threads | fused | unfused | fused gain | fused GB/s | PyTorch | PyTorch / fused |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for op in OPS:
        for layout in ("nchw", "nhwc"):
            for d in ("fwd", "bwd"):
                for t in threads:
                    f = nk.get((op, layout, d, "fused", t))
                    u = nk.get((op, layout, d, "unfused", t))
                    p = th.get(t, {}).get("/".join((op, layout, d)))
                    if not f:
                        continue
                    print("| %s | %s | %s | %d | %.1f | %s | %s | %.1f | %s | %s |" % (
                        op, layout, d, t, f[0], "%.1f" % u[0] if u else "-",
                        "%.2f" % (u[0] / f[0]) if u else "-", f[1],
                        "%.1f" % p if p else "-", "%.2f" % (p / f[0]) if p else "-"))


if __name__ == "__main__":
    main()
