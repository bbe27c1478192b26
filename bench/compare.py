#!/usr/bin/python3
"""Batch Norm side by side: normkit, PyTorch and oneDNN, against the
memory bandwidth measured in the same run.

Runs build/bench/nk_bench (normkit + bandwidth probe) and
build/bench/nk_bench_onednn with Google Benchmark's JSON output, times
PyTorch's torch.nn.functional.batch_norm in a child process on the same
shapes and thread counts, and prints one markdown table.

  /usr/bin/python3 bench/compare.py                 # full comparison (~5-8 min on 2 cores)
  /usr/bin/python3 bench/compare.py --quick         # two shapes
  /usr/bin/python3 bench/compare.py --normkit-only  # normkit vs bandwidth only
  /usr/bin/python3 bench/compare.py --normkit-only --isa all   # every ISA
  /usr/bin/python3 bench/compare.py --from bench/results/<time> # print a saved run again

--build picks the meson build folder (default build/; a separate release
build such as build-bench/ keeps others' rebuilds out of the run).

Times are medians of --reps repetitions (Google Benchmark aggregates; the
PyTorch timer repeats the same way). GB/s count the minimal bytes: forward
2S (read x, write y), backward 3S (read x and dy, write dx), S = bytes of x.
"% BW" is that rate over the ordinary-store copy bandwidth of the probe
(membw_copy, bytes read + written) at the same thread count: the same
accounting, so 100% means "as fast as a plain copy of the same bytes".

Use /usr/bin/python3 (Debian's python3-torch).
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SHAPES = [(32, 64, 56, 56), (32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7)]
QUICK_SHAPES = [(32, 256, 56, 56), (32, 2048, 7, 7)]
OPS = ["bn_fwd_train", "bn_fwd_infer", "bn_bwd"]
LAYOUTS = ["nchw", "nhwc"]
EPS = 1e-3


def shape_name(s):
    return "x".join(str(d) for d in s)


def minimal_bytes(op, s):
    n = 1
    for d in s:
        n *= d
    return (3 if op == "bn_bwd" else 2) * 4 * n


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------- Google Benchmark

def run_gbench(exe, filt, extra, reps, min_time, out_json, replay=False):
    """Runs one benchmark binary; console output goes to our stderr, JSON to out_json.
    replay: read out_json from an earlier run instead (None when it is missing)."""
    if replay:
        if not os.path.exists(out_json):
            return None
        with open(out_json) as f:
            return json.load(f)
    if not os.path.exists(exe):
        sys.exit(exe + " not found")
    cmd = [exe, "--benchmark_filter=" + filt,
           "--benchmark_repetitions=%d" % reps,
           "--benchmark_min_time=%g" % min_time,
           "--benchmark_out_format=json", "--benchmark_out=" + out_json] + extra
    if reps > 1:
        cmd.append("--benchmark_report_aggregates_only=true")
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=sys.stderr)
    if r.returncode != 0:
        sys.exit("%s failed with status %d" % (exe, r.returncode))
    try:
        with open(out_json) as f:
            return json.load(f)
    except (OSError, ValueError):
        sys.exit("%s wrote no results (filter %s matched nothing?)" % (exe, filt))


def parse_name(name):
    """'bn_fwd_train/nchw/32x64x56x56/isa:avx512/threads:2/real_time' ->
    ('bn_fwd_train', {'layout': 'nchw', 'shape': '32x64x56x56', 'isa': 'avx512', 'threads': '2'})"""
    parts = name.split("/")
    head, fields, pos = parts[0], {}, []
    for p in parts[1:]:
        if p == "real_time" or p.startswith("min_time:") or p.startswith("repeats:"):
            continue
        if ":" in p:
            k, v = p.split(":", 1)
            fields[k] = v
        else:
            pos.append(p)
    if head.startswith("membw_"):
        fields["size"] = pos[0] if pos else ""
    else:
        if len(pos) >= 2:
            fields["layout"], fields["shape"] = pos[0], pos[1]
    return head, fields


def medians_ms(doc):
    """{(head, frozenset(fields)): (median ms, bytes_per_second)} from a JSON document.
    Uses the 'median' aggregate when present, else the median of the runs."""
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
    runs, aggs, errors = {}, {}, []
    for b in doc.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            errors.append("%s: %s" % (name, b.get("error_message", "")))
            continue
        ms = b["real_time"] * scale[b.get("time_unit", "ns")]
        key = parse_name(name)
        key = (key[0], tuple(sorted(key[1].items())))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                aggs[key] = ms
        else:
            runs.setdefault(key, []).append(ms)
    out = {}
    for key in set(runs) | set(aggs):
        out[key] = aggs[key] if key in aggs else statistics.median(runs[key])
    for e in sorted(set(errors)):
        log("skipped: " + e)
    return out


def lookup(res, head, **fields):
    want = tuple(sorted((k, str(v)) for k, v in fields.items()))
    return res.get((head, want))


# ------------------------------------------------------------------------ PyTorch

def torch_worker(spec):
    """Child process: times torch batch_norm, prints JSON {key: ms}."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    reps, min_time = spec["reps"], spec["min_time"]
    out = {"torch_version": torch.__version__, "times": []}

    def timeit(fn):
        fn()
        fn()
        per_rep = []
        for _ in range(reps):
            n, t0 = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                el = time.perf_counter() - t0
                if el >= min_time and n >= 2:
                    break
            per_rep.append(el / n * 1e3)
        return statistics.median(per_rep)

    for s in spec["shapes"]:
        n, c, h, w = s
        for layout in spec["layouts"]:
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            x = (torch.rand(n, c, h, w) + 0.25).contiguous(memory_format=fmt)
            dy = (torch.rand(n, c, h, w) - 0.5).contiguous(memory_format=fmt)
            weight = torch.rand(c) + 0.5
            bias = torch.rand(c)
            rmean = torch.zeros(c)
            rvar = torch.ones(c)
            for t in spec["threads"]:
                torch.set_num_threads(t)
                for op in spec["ops"]:
                    if op == "bn_fwd_train":
                        def fn():
                            with torch.no_grad():
                                return F.batch_norm(x, rmean, rvar, weight, bias, True, 0.1, EPS)
                    elif op == "bn_fwd_infer":
                        def fn():
                            with torch.no_grad():
                                return F.batch_norm(x, rmean, rvar, weight, bias, False, 0.1, EPS)
                    else:
                        # Backward alone: the forward graph is kept and the
                        # gradients (dx, dgamma, dbeta) recomputed from it.
                        xg = x.detach().requires_grad_(True)
                        wg = weight.detach().requires_grad_(True)
                        bg = bias.detach().requires_grad_(True)
                        y = F.batch_norm(xg, rmean, rvar, wg, bg, True, 0.1, EPS)
                        assert y.is_contiguous(memory_format=fmt)

                        def fn(y=y, xg=xg, wg=wg, bg=bg):
                            return torch.autograd.grad(y, (xg, wg, bg), dy, retain_graph=True)
                    ms = timeit(fn)
                    out["times"].append({"op": op, "layout": layout, "shape": shape_name(s),
                                         "threads": t, "ms": ms})
                    log("torch %s/%s/%s/threads:%d  %.3f ms" % (op, layout, shape_name(s), t, ms))
            del x, dy
    json.dump(out, sys.stdout)


def run_torch(shapes, threads, reps, min_time, reuse_memory):
    spec = {"shapes": shapes, "layouts": LAYOUTS, "threads": threads, "ops": OPS,
            "reps": reps, "min_time": min_time}
    env = dict(os.environ)
    if reuse_memory:
        # glibc otherwise mmaps and unmaps every tensor over 32 MiB, so each
        # call pays page faults on fresh output memory.
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", json.dumps(spec)]
    log("$ torch worker (threads %s, reps %d, min_time %g%s)" %
        (threads, reps, min_time, ", malloc reuse" if reuse_memory else ""))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, env=env)
    if r.returncode != 0:
        sys.exit("PyTorch worker failed with status %d" % r.returncode)
    doc = json.loads(r.stdout)
    res = {}
    for t in doc["times"]:
        res[(t["op"], t["layout"], t["shape"], t["threads"])] = t["ms"]
    return doc["torch_version"], res


# ------------------------------------------------------------------------- tables

def fmt_ms(v):
    if v is None:
        return "—"
    return "%.3f" % v if v < 10 else "%.2f" % v


def fmt_pct(bytes_, ms, bw):
    if ms is None or not bw:
        return "—"
    return "%.0f%%" % (100.0 * bytes_ / (ms * 1e-3) / bw)


def fmt_x(a, b):
    """How many times faster a is than b (b / a)."""
    if a is None or b is None:
        return "—"
    return "%.2f×" % (b / a)


def gbs(bytes_, ms):
    return bytes_ / (ms * 1e-3) / 1e9


def bandwidth(nk):
    """{(probe, size MiB, threads): bytes/s}; read counts size, copies 2 * size."""
    out = {}
    for (head, fields), ms in nk.items():
        if head.startswith("membw_"):
            f = dict(fields)
            mib = int(f["size"].replace("MiB", ""))
            bytes_ = mib * 2**20 * (1 if head == "membw_read" else 2)
            out[(head, mib, int(f["threads"]))] = bytes_ / (ms * 1e-3)
    return out


def reference_bw(bw):
    """The ordinary-store copy at the largest probed size, per thread count."""
    if not bw:
        return {}, 0
    mib = max(m for (_, m, _) in bw)
    return {t: v for (h, m, t), v in bw.items() if h == "membw_copy" and m == mib}, mib


def print_bandwidth(bw, threads):
    ref_mib = reference_bw(bw)[1]
    print("Memory bandwidth probe (GB/s = (bytes read + written) / time, median; %% BW below = "
          "ordinary-store copy at %d MiB per buffer):" % ref_mib)
    print()
    print("| buffer | threads | read GB/s | copy GB/s (ordinary stores) | copy GB/s (non-temporal stores) |")
    print("|---:|---:|---:|---:|---:|")
    for mib in sorted({m for (_, m, _) in bw}, reverse=True):
        for t in threads:
            cells = []
            for h in ("membw_read", "membw_copy", "membw_copy_nt"):
                v = bw.get((h, mib, t))
                cells.append("%.1f" % (v / 1e9) if v else "—")
            print("| %d MiB | %d | %s |" % (mib, t, " | ".join(cells)))
    print()


def header(ctx, args, isas, extra_lines):
    print("## Batch Norm on %s — %s" % (ctx.get("host_name", "?"), ctx.get("date", "?")[:16].replace("T", " ")))
    print()
    caches = ", ".join("L%d %s %d KiB" % (c["level"], c["type"][0], c["size"] // 1024) for c in ctx.get("caches", []))
    print("- CPU: %d cpus @ %d MHz; %s" % (ctx.get("num_cpus", 0), ctx.get("mhz_per_cpu", 0), caches))
    print("- normkit %s, ISA %s; min_time %gs, median of %d repetitions" %
          (ctx.get("nk_version", "?"), ",".join(isas), args.min_time, args.reps))
    for line in extra_lines:
        print("- " + line)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build directory")
    ap.add_argument("--quick", action="store_true", help="two shapes (32x256x56x56, 32x2048x7x7)")
    ap.add_argument("--normkit-only", action="store_true", help="normkit against bandwidth only")
    ap.add_argument("--isa", default="active",
                    help="normkit ISAs: active, all, or a list (avx512,avx2,sse2,scalar); "
                         "the comparison uses the first")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=None, help="e.g. 32x256x56x56,32x2048x7x7")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per repetition")
    ap.add_argument("--probe-mib", default="auto,64",
                    help="bandwidth probe buffer sizes in MiB (auto: 2x L3, >= 256); %% BW uses the "
                         "largest, the others are shown for reference (default auto,64)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-onednn", action="store_true")
    ap.add_argument("--torch-malloc", choices=["reuse", "default"], default="reuse",
                    help="reuse (default): glibc keeps freed tensors for reuse, so PyTorch's "
                         "per-call outputs cost no page faults (a kernel-to-kernel comparison; "
                         "normkit and oneDNN write into given buffers); default: glibc as shipped, "
                         "which mmaps and unmaps every tensor over 32 MiB, as a plain PyTorch "
                         "program runs")
    ap.add_argument("--out", default=None, help="folder for the raw JSON (default bench/results/<time>)")
    ap.add_argument("--from", dest="from_dir", default=None,
                    help="print the table again from a results folder instead of running")
    ap.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker is not None:
        torch_worker(json.loads(args.torch_worker))
        return

    threads = [int(t) for t in args.threads.split(",") if t]
    if args.shapes:
        shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
    else:
        shapes = QUICK_SHAPES if args.quick else SHAPES
    replay = args.from_dir is not None
    out_dir = args.from_dir or args.out or os.path.join(HERE, "results",
                                                        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    nk_exe = os.path.join(args.build, "bench", "nk_bench")
    dnnl_exe = os.path.join(args.build, "bench", "nk_bench_onednn")
    meta_file = os.path.join(out_dir, "meta.json")
    torch_file = os.path.join(out_dir, "torch.json")
    if replay:
        if not os.path.exists(meta_file):
            sys.exit("no results in " + out_dir)
        with open(meta_file) as f:
            meta = json.load(f)
    else:
        if not os.path.exists(nk_exe):
            sys.exit("%s not found: meson setup build && ninja -C build" % nk_exe)
        os.makedirs(out_dir, exist_ok=True)
        meta = {"load_before": os.getloadavg()[0], "start": time.time(), "reps": args.reps,
                "min_time": args.min_time, "threads": threads, "shapes": [shape_name(s) for s in shapes]}
        if meta["load_before"] > 0.5:
            log("warning: load average %.2f before the run — other work on this machine skews the numbers"
                % meta["load_before"])
    if replay:
        threads = meta["threads"]
        shapes = [tuple(int(d) for d in n.split("x")) for n in meta["shapes"]]

    shape_re = "(" + "|".join(shape_name(s) for s in shapes) + ")"
    nk_extra = ["--nk_isa=" + args.isa, "--nk_threads=" + ",".join(map(str, threads))]
    if args.probe_mib:
        nk_extra.append("--nk_probe_mib=" + args.probe_mib)
    nk_doc = run_gbench(nk_exe, "^(membw_|bn_.*/%s/)" % shape_re, nk_extra, args.reps, args.min_time,
                        os.path.join(out_dir, "nk_bench.json"), replay)
    if nk_doc is None:
        sys.exit("no nk_bench.json in " + out_dir)
    ctx = nk_doc["context"]
    nk = medians_ms(nk_doc)
    bw = bandwidth(nk)
    copy_bw = reference_bw(bw)[0]
    order = ["avx512", "avx2", "sse2", "neon", "scalar"]
    isas = sorted({dict(f).get("isa") for (h, f) in nk if h.startswith("bn_")} - {None},
                  key=lambda i: order.index(i) if i in order else len(order))

    dnnl, dnnl_ctx = {}, {}
    torch_version, torch_malloc, torch_res = None, None, {}
    if not args.normkit_only:
        if not args.no_onednn:
            if replay or os.path.exists(dnnl_exe):
                ddoc = run_gbench(dnnl_exe, "^onednn_bn_.*/%s/" % shape_re,
                                  ["--nk_threads=" + ",".join(map(str, threads))], args.reps, args.min_time,
                                  os.path.join(out_dir, "nk_bench_onednn.json"), replay)
                if ddoc:
                    dnnl = medians_ms(ddoc)
                    dnnl_ctx = ddoc["context"]
            else:
                log("%s not built (oneDNN not found): no oneDNN column" % dnnl_exe)
        if replay:
            if os.path.exists(torch_file):
                with open(torch_file) as f:
                    doc = json.load(f)
                torch_version, torch_malloc = doc["torch_version"], doc.get("malloc")
                torch_res = {(t["op"], t["layout"], t["shape"], t["threads"]): t["ms"] for t in doc["times"]}
        elif not args.no_torch:
            torch_malloc = args.torch_malloc
            torch_version, torch_res = run_torch([list(s) for s in shapes], threads, args.reps,
                                                 args.min_time, torch_malloc == "reuse")
            with open(torch_file, "w") as f:
                json.dump({"torch_version": torch_version, "malloc": torch_malloc,
                           "times": [dict(zip(("op", "layout", "shape", "threads"), k), ms=v)
                                     for k, v in torch_res.items()]}, f, indent=1)
    if not replay:
        meta["load_after"] = os.getloadavg()[0]
        meta["seconds"] = time.time() - meta["start"]
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
    run_line = "load average before/after: %.2f / %.2f; took %.0f s; raw JSON: %s" % (
        meta["load_before"], meta.get("load_after", 0), meta.get("seconds", 0), out_dir)
    args.reps, args.min_time = meta["reps"], meta["min_time"]

    def nk_ms(op, layout, s, t, isa):
        return lookup(nk, op, layout=layout, shape=shape_name(s), isa=isa, threads=t)

    pct_line = ("% BW = minimal bytes (forward 2S, backward 3S) / time, over the ordinary-store copy "
                "bandwidth of the probe's largest buffer at the same thread count")
    if args.normkit_only:
        header(ctx, args, isas, [pct_line, run_line])
        print_bandwidth(bw, threads)
        print("| case | shape | layout | threads | ISA | ms | GB/s | % BW |")
        print("|---|---|---|---:|---|---:|---:|---:|")
        for op in OPS:
            for s in shapes:
                for layout in LAYOUTS:
                    for t in threads:
                        for isa in isas:
                            ms = nk_ms(op, layout, s, t, isa)
                            b = minimal_bytes(op, s)
                            print("| %s | %s | %s | %d | %s | %s | %s | %s |" %
                                  (op, shape_name(s), layout, t, isa, fmt_ms(ms),
                                   "%.1f" % gbs(b, ms) if ms else "—",
                                   fmt_pct(b, ms, copy_bw.get(t))))
        return

    isa = isas[0] if isas else "?"
    extra = []
    if torch_version:
        extra.append("PyTorch %s (torch.nn.functional.batch_norm; backward = torch.autograd.grad of "
                     "dx, dγ, dβ on a kept graph; NHWC = channels_last; outputs allocated per call, %s)" %
                     (torch_version, "freed memory reused (--torch-malloc=reuse)"
                      if torch_malloc == "reuse" else
                      "glibc as shipped: fresh pages for tensors over 32 MiB (--torch-malloc=default)"))
    if dnnl_ctx:
        extra.append("oneDNN %s (%s runtime, ISA %s); its column is the faster of the row's layout and "
                     "nChw16c, named" % (dnnl_ctx.get("onednn_version", "?"),
                                         dnnl_ctx.get("onednn_cpu_runtime", "?"),
                                         dnnl_ctx.get("onednn_isa", "?")))
    extra.append("×X = X's time / normkit's time (above 1: normkit is faster)")
    extra.append(pct_line)
    extra.append(run_line)
    header(ctx, args, [isa], extra)
    print_bandwidth(bw, threads)
    print("| case | shape | layout | threads | normkit ms | PyTorch ms | oneDNN ms (layout) "
          "| ×PyTorch | ×oneDNN | normkit GB/s | normkit % BW | PyTorch % BW | oneDNN % BW |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in OPS:
        for s in shapes:
            for layout in LAYOUTS:
                for t in threads:
                    b = minimal_bytes(op, s)
                    copy = copy_bw.get(t)
                    ms = nk_ms(op, layout, s, t, isa)
                    tms = torch_res.get((op, layout, shape_name(s), t))
                    best, best_layout = None, ""
                    for dl in (layout, "nChw16c"):
                        v = lookup(dnnl, "onednn_" + op, layout=dl, shape=shape_name(s), threads=t)
                        if v is not None and (best is None or v < best):
                            best, best_layout = v, dl
                    dcell = "%s (%s)" % (fmt_ms(best), best_layout) if best is not None else "—"
                    print("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" %
                          (op, shape_name(s), layout, t, fmt_ms(ms), fmt_ms(tms), dcell,
                           fmt_x(ms, tms), fmt_x(ms, best),
                           "%.1f" % gbs(b, ms) if ms else "—",
                           fmt_pct(b, ms, copy), fmt_pct(b, tms, copy), fmt_pct(b, best, copy)))


if __name__ == "__main__":
    main()
