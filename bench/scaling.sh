#!/usr/bin/env bash
# Multi-core scaling of the BN benchmarks: 1, 2, 4, 8, 16 threads on two
# shapes, with the bandwidth probe at the same thread counts.
#   bench/scaling.sh [path/to/nk_bench] > table.md      (JSON in $OUT or /tmp)
# REPS=n: medians of n repetitions (default 1).
set -euo pipefail
exe=${1:-build/bench/nk_bench}
out=${OUT:-/tmp}/scaling.json
reps=${REPS:-1}
"$exe" --nk_threads=1,2,4,8,16 --nk_probe_mib=2048 --benchmark_min_time=0.1 \
  --benchmark_repetitions="$reps" --benchmark_report_aggregates_only="$([ "$reps" -gt 1 ] && echo true || echo false)" \
  --benchmark_filter='membw|bn_.*/(32x256x56x56|32x64x56x56)/' \
  --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
/usr/bin/env python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
probe, rows, threads = {}, {}, [1, 2, 4, 8, 16]
for b in d["benchmarks"]:
    if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
        continue
    p = b["run_name"].replace("/real_time", "").split("/")
    t = int(p[-1].split(":")[1])
    if p[0].startswith("membw"):
        probe.setdefault(p[0], {})[t] = b["bytes_per_second"] / 1e9
    else:
        rows.setdefault((p[0], p[1], p[2]), {})[t] = (b["real_time"], b["bytes_per_second"] / 1e9)
print("| probe | " + " | ".join(f"{t} thr GB/s" for t in threads) + " |")
print("|---|" + "---:|" * len(threads))
for k, v in probe.items():
    print(f"| {k} | " + " | ".join(f"{v[t]:.1f}" for t in threads) + " |")
print()
print("| op | layout | shape | " + " | ".join(f"{t} thr ms (GB/s)" for t in threads) + " |")
print("|---|---|---|" + "---:|" * len(threads))
for k, v in rows.items():
    print("| " + " | ".join(k) + " | " + " | ".join(f"{v[t][0]:.2f} ({v[t][1]:.0f})" for t in threads) + " |")
PY
