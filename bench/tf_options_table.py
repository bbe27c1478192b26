#!/usr/bin/python3
"""Batch Norm with TensorFlow's options against plain BN on the same shape:
runs build/bench/nk_bench_tf and prints each variant's median time and its
ratio to plain BN's (1.00 = as fast as plain BN). The repetitions of all
cases run in a random interleaved order, so that the machine's drift over
the minutes of the run falls on plain BN and the variants alike.

  /usr/bin/python3 bench/tf_options_table.py [--build build] [--reps 9]
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
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--filter", default="")
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "nk_bench_tf")
    cmd = [exe, "--benchmark_format=json", f"--benchmark_repetitions={a.reps}",
           "--benchmark_report_aggregates_only=true", "--benchmark_enable_random_interleaving=true"]
    if a.filter:
        cmd.append(f"--benchmark_filter={a.filter}")
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    med = {}
    isa = "?"
    for b in out["benchmarks"]:
        wanted = "median" if a.reps > 1 else None
        if b.get("aggregate_name") != wanted:
            continue
        name = b["run_name"].replace("/real_time", "")
        med[name] = b["real_time"]
        isa = b.get("label", isa)
    rows = []
    for name, ms in med.items():
        _, variant, op, layout, shape, threads = name.split("/")
        plain = med.get("/".join(["bn_tf", "plain", op, layout, shape, threads]))
        rows.append((shape, op, layout, threads, variant, ms, ms / plain if plain else float("nan")))
    print(f"ISA {isa}; median of {a.reps}, repetitions interleaved at random; ratio = variant time / plain BN time on the same case\n")
    print("| shape | op | layout | threads | variant | ms | × plain |")
    print("|---|---|---|---:|---|---:|---:|")
    for r in sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3])):
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3].split(':')[1]} | {r[4]} | {r[5]:.3f} | {r[6]:.2f} |")
    worst = max((r for r in rows if r[4] != "plain"), key=lambda r: r[6])
    print(f"\nworst: {worst[4]} {worst[1]} {worst[2]} {worst[0]} threads {worst[3].split(':')[1]}: {worst[6]:.2f}× plain")


if __name__ == "__main__":
    sys.exit(main())
