#!/usr/bin/python3
"""Batch Norm with TensorFlow's options against plain BN on the same shape:
runs build/bench/nk_bench_tf's paired benchmarks (bn_tf_paired/...), where
each variant's calls alternate with plain BN's in one loop, each call timed
alone, and prints the medians of both and their ratio (1.00 = as fast as
plain BN). Whatever else the machine runs meanwhile falls on both alike.
The figure per case is the median over --reps repetitions, which run in a
random interleaved order.

  /usr/bin/python3 bench/tf_options_table.py [--build build] [--reps 3] [--filter REGEX]

--filter narrows the cases (a regex over the names without the
bn_tf_paired/ prefix, e.g. 'two_axes/fwd/nchw').
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--filter", default="")
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "nk_bench_tf")
    cmd = [exe, "--benchmark_format=json", f"--benchmark_repetitions={a.reps}",
           "--benchmark_enable_random_interleaving=true",
           f"--benchmark_filter=^bn_tf_paired/.*{a.filter}" if a.filter else "--benchmark_filter=^bn_tf_paired/"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    runs = {}
    isa = "?"
    for b in out["benchmarks"]:
        if b.get("run_type") != "iteration" or "error_occurred" in b and b["error_occurred"]:
            continue
        name = b["run_name"].replace("/manual_time", "")
        runs.setdefault(name, []).append((b["ratio"], b["plain_ms"], b["variant_ms"]))
        isa = b.get("label", isa)

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    rows = []
    for name, reps in runs.items():
        _, variant, op, layout, shape, threads = name.split("/")
        rows.append((shape, op, layout, threads, variant, median([r[1] for r in reps]),
                     median([r[2] for r in reps]), median([r[0] for r in reps])))
    if not rows:
        print("no benchmark matched", file=sys.stderr)
        return 1
    print(f"ISA {isa}; each case: the variant's calls alternated with plain BN's in one loop; "
          f"medians of the calls, then the median of {a.reps} repetitions (interleaved at random)\n")
    print("| shape | op | layout | threads | variant | plain ms | variant ms | × plain |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3], r[4])):
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3].split(':')[1]} | {r[4]} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.2f} |")
    within = sum(1 for r in rows if r[7] <= 1.15)
    print(f"\nwithin 1.15× plain: {within} of {len(rows)}")
    for r in sorted((r for r in rows if r[7] > 1.15), key=lambda r: -r[7]):
        print(f"above: {r[4]} {r[1]} {r[2]} {r[0]} threads {r[3].split(':')[1]}: {r[7]:.2f}× plain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
