#!/usr/bin/python3
"""Group, Instance, Layer, RMS and Switchable Norm side by side: normkit,
PyTorch and oneDNN, against the memory bandwidth measured in the same run.

Runs build/bench/nk_bench_norms (normkit), build/bench/nk_bench_onednn_norms
(oneDNN: layer_normalization; Instance Norm as batch_normalization on the
[1, N*C, H, W] view; Batch Norm) and nk_bench's bandwidth probe with Google
Benchmark's JSON output, times PyTorch in a child process per thread count,
and prints one markdown table (after the probe's), then the targets.

  /usr/bin/python3 bench/compare_norms.py --build build-bench          # everything (~4 min on 2 cores)
  /usr/bin/python3 bench/compare_norms.py --build build-bench --quick  # the smaller shapes
  /usr/bin/python3 bench/compare_norms.py --only 'ln_|rms_'            # some cases (regex on the name)
  /usr/bin/python3 bench/compare_norms.py --from bench/results/norms-<time>   # print a saved run again

Cases (logical N, C, H, W; NHWC = torch.channels_last; rows = R x D,
normalized over the last dim):
  gn   group_norm, 32 groups, affine: 32x256x56x56, 8x512x28x28; nchw, nhwc
  sn   Switchable Norm (IN, LN, BN; training): 32x256x56x56; nchw, nhwc
  bn   batch_norm training, beside sn: 32x256x56x56; nchw, nhwc
  in   instance_norm, affine: 32x64x56x56; nchw, nhwc
  ln   layer_norm, per-element gamma and beta: 8192x768, 8192x4096
  rms  RMSNorm, per-element gamma: 8192x4096
each as a forward (PyTorch under torch.no_grad) and as forward+backward
in one timed iteration (PyTorch: inputs and parameters with requires_grad,
then torch.autograd.grad of x and the parameters for a given dy).

PyTorch: torch.nn.functional.group_norm, instance_norm, layer_norm,
batch_norm; RMSNorm is torch.nn.functional.rms_norm where this torch has
it, else x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w;
Switchable Norm is the authors' SwitchNorm2d.forward (training, moving
average on) written with PyTorch ops. oneDNN 2.6 has no group or RMS norm.

Times are medians of --reps repetitions. GB/s count the minimal bytes:
forward 2S (read x, write y), forward+backward 5S (plus backward's read of
x and dy and write of dx), S = bytes of x. "% BW" is that rate over the
ordinary-store copy bandwidth (membw_copy, bytes read + written) of the
probe's largest buffer at the same thread count.

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
sys.path.insert(0, HERE)
import compare as bn  # noqa: E402  (the Google Benchmark and bandwidth helpers)

EPS = 1e-5
GROUPS = 32
SN_MOMENTUM = 0.997

# (op, layout, shape), in nk_bench_norms' order.
CASES = [
    ("gn", "nchw", (32, 256, 56, 56)), ("gn", "nhwc", (32, 256, 56, 56)),
    ("sn", "nchw", (32, 256, 56, 56)), ("sn", "nhwc", (32, 256, 56, 56)),
    ("bn", "nchw", (32, 256, 56, 56)), ("bn", "nhwc", (32, 256, 56, 56)),
    ("gn", "nchw", (8, 512, 28, 28)), ("gn", "nhwc", (8, 512, 28, 28)),
    ("in", "nchw", (32, 64, 56, 56)), ("in", "nhwc", (32, 64, 56, 56)),
    ("ln", "rows", (8192, 768)), ("ln", "rows", (8192, 4096)),
    ("rms", "rows", (8192, 4096)),
]
QUICK_SHAPES = {(8, 512, 28, 28), (32, 64, 56, 56), (8192, 768)}
PASSES = ["fwd", "fwd_bwd"]
OP_NAMES = {"gn": "group_norm", "in": "instance_norm", "ln": "layer_norm", "rms": "rms_norm",
            "sn": "switch_norm", "bn": "batch_norm"}
PASS_NAMES = {"fwd": "fwd", "fwd_bwd": "fwd+bwd"}


def shape_name(s):
    return "x".join(str(d) for d in s)


def elems(s):
    n = 1
    for d in s:
        n *= d
    return n


def minimal_bytes(pass_, s):
    return (5 if pass_ == "fwd_bwd" else 2) * 4 * elems(s)


def case_name(op, pass_, layout, s):
    return "%s_%s/%s/%s" % (op, pass_, layout, shape_name(s))


log = bn.log

# (phase, seconds, cores that other processes kept busy on average): the
# figures are only as good as the machine was quiet, and the load average
# cannot tell, as it counts the benchmark's own threads.
PHASES = []


def busy_seconds():
    """CPU seconds all processes have run (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --retry-busy: a phase during which other processes kept more cores busy
# than this on average runs again, up to RETRIES more times.
RETRY_BUSY = None
RETRIES = 3


def phase(name, fn, *a, **kw):
    for attempt in range(RETRIES + 1):
        b0, o0, t0 = busy_seconds(), own_seconds(), time.time()
        out = fn(*a, **kw)
        b1, o1, t1 = busy_seconds(), own_seconds(), time.time()
        others = (max(0.0, (b1 - b0) - (o1 - o0)) / max(t1 - t0, 1e-9)
                  if b0 is not None and b1 is not None else None)
        if others is not None and others > 0.1:
            log("warning: other processes kept %.2f cores busy during %s" % (others, name))
        if RETRY_BUSY is None or others is None or others <= RETRY_BUSY or attempt == RETRIES:
            break
        log("running %s again (%d of %d)" % (name, attempt + 1, RETRIES))
    PHASES.append([name, t1 - t0, others])
    return out


# ------------------------------------------------------------------------ PyTorch

def torch_worker(spec):
    """Child process at one thread count: times the PyTorch cases, prints JSON."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    t = spec["threads"]
    torch.set_num_threads(t)
    reps, min_time = spec["reps"], spec["min_time"]
    has_rms = hasattr(F, "rms_norm")
    out = {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
           "rms_impl": "F.rms_norm" if has_rms else "x * rsqrt(mean(x^2) + eps) * w", "times": []}

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

    def rms_norm(x, w):
        if has_rms:
            return F.rms_norm(x, (x.shape[-1],), w, EPS)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    def switch_norm(x, w, b, mw, vw, rmean, rvar):
        # SwitchNorm2d.forward of the authors' reference code (training,
        # using_moving_average=True, using_bn=True).
        N, C, H, W = x.size()
        x = x.view(N, C, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)
        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in ** 2
        var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2
        mean_bn = mean_in.mean(0, keepdim=True)
        var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
        rmean.mul_(SN_MOMENTUM)
        rmean.add_((1 - SN_MOMENTUM) * mean_bn.data)
        rvar.mul_(SN_MOMENTUM)
        rvar.add_((1 - SN_MOMENTUM) * var_bn.data)
        mean_weight = torch.softmax(mw, 0)
        var_weight = torch.softmax(vw, 0)
        mean = mean_weight[0] * mean_in + mean_weight[1] * mean_ln + mean_weight[2] * mean_bn
        var = var_weight[0] * var_in + var_weight[1] * var_ln + var_weight[2] * var_bn
        x = (x - mean) / (var + EPS).sqrt()
        x = x.view(N, C, H, W)
        return x * w + b

    for op, layout, s, passes in spec["cases"]:
        s = tuple(s)
        fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        x = (torch.rand(*s) + 0.25).contiguous(memory_format=fmt)
        dy = (torch.rand(*s) - 0.5).contiguous(memory_format=fmt)
        C = s[1] if layout != "rows" else s[-1]
        pshape = (1, C, 1, 1) if op == "sn" else (C,)
        weight = torch.rand(*pshape) + 0.5
        bias = torch.rand(*pshape)
        extra = []
        if op == "sn":
            extra = [torch.ones(3), torch.ones(3)]  # mean_weight, var_weight
            rstats = [torch.zeros(1, C, 1), torch.zeros(1, C, 1)]
        elif op == "bn":
            rstats = [torch.zeros(C), torch.ones(C)]
        else:
            rstats = []

        def f(x, w, b, *e):
            if op == "gn":
                return F.group_norm(x, GROUPS, w, b, EPS)
            if op == "in":
                return F.instance_norm(x, weight=w, bias=b, eps=EPS)
            if op == "ln":
                return F.layer_norm(x, (x.shape[-1],), w, b, EPS)
            if op == "rms":
                return rms_norm(x, w)
            if op == "sn":
                return switch_norm(x, w, b, e[0], e[1], rstats[0], rstats[1])
            return F.batch_norm(x, rstats[0], rstats[1], w, b, True, 0.1, EPS)

        for pass_ in passes:
            if pass_ == "fwd":
                def fn():
                    with torch.no_grad():
                        return f(x, weight, bias, *extra)
                with torch.no_grad():
                    y = f(x, weight, bias, *extra)
            else:
                xg = x.detach().requires_grad_(True)
                params = [p.detach().requires_grad_(True) for p in [weight] + ([bias] if op != "rms" else [])]
                eg = [p.detach().requires_grad_(True) for p in extra]
                args = params + ([] if op != "rms" else [None]) + eg
                inputs = [xg] + params + eg

                def fn(xg=xg, args=args, inputs=inputs):
                    y = f(xg, *args)
                    return torch.autograd.grad(y, inputs, dy)
                y = f(xg, *args)
            if layout == "nhwc" and not y.is_contiguous(memory_format=torch.channels_last):
                log("torch %s: output is not channels_last" % case_name(op, pass_, layout, s))
            del y
            ms = timeit(fn)
            out["times"].append({"op": op, "pass": pass_, "layout": layout, "shape": shape_name(s),
                                 "threads": t, "ms": ms})
            log("torch %s/threads:%d  %.3f ms" % (case_name(op, pass_, layout, s), t, ms))
        del x, dy
    json.dump(out, sys.stdout)


def run_torch(cases, threads, reps, min_time, reuse_memory):
    """One child per thread count. Returns (version, rms_impl, {(op, pass, layout, shape, threads): ms})."""
    env = dict(os.environ)
    if reuse_memory:
        # glibc otherwise mmaps and unmaps every tensor over 32 MiB, so each
        # call pays page faults on fresh output memory.
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
    version, rms_impl, res = None, None, {}
    for t in threads:
        spec = {"cases": cases, "threads": t, "reps": reps, "min_time": min_time}
        cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", json.dumps(spec)]
        log("$ torch worker (threads %d, reps %d, min_time %g%s)" %
            (t, reps, min_time, ", malloc reuse" if reuse_memory else ""))
        r = phase("PyTorch %d thr" % t, subprocess.run, cmd, stdout=subprocess.PIPE, env=env)
        if r.returncode != 0:
            sys.exit("PyTorch worker failed with status %d" % r.returncode)
        doc = json.loads(r.stdout)
        if doc["threads"] != t:
            log("warning: torch runs %d threads, asked for %d" % (doc["threads"], t))
        version, rms_impl = doc["torch_version"], doc["rms_impl"]
        for x in doc["times"]:
            res[(x["op"], x["pass"], x["layout"], x["shape"], x["threads"])] = x["ms"]
    return version, rms_impl, res


# ------------------------------------------------------------------------- tables

def fmt_ratio(num, den):
    if num is None or den is None:
        return "—"
    return "%.2f×" % (num / den)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="meson build directory (default build/; a release build-bench/ is recommended)")
    ap.add_argument("--quick", action="store_true",
                    help="the smaller shapes only (8x512x28x28, 32x64x56x56, 8192x768)")
    ap.add_argument("--only", default=None,
                    help="regex on case names such as gn_fwd_bwd/nhwc/32x256x56x56")
    ap.add_argument("--isa", default="active",
                    help="normkit ISAs: active, all, or a list (avx512,avx2,sse2,scalar); the table uses "
                         "the active one where it ran, else the first")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per repetition")
    ap.add_argument("--probe-mib", default="auto,64",
                    help="bandwidth probe buffer sizes in MiB (auto: 2x L3, >= 256); %% BW uses the "
                         "largest, the others are shown for reference (default auto,64)")
    ap.add_argument("--cache-mib", type=float, default=64,
                    help="a case counts as bigger than cache when S (bytes of x) is at least this "
                         "(default 64); only for the bandwidth target")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-onednn", action="store_true")
    ap.add_argument("--torch-malloc", choices=["reuse", "default"], default="reuse",
                    help="reuse (default): glibc keeps freed tensors for reuse, so PyTorch's per-call "
                         "outputs cost no page faults; default: glibc as shipped (see compare.py)")
    ap.add_argument("--retry-busy", type=float, default=None, metavar="CORES",
                    help="run a phase (normkit, probe, oneDNN, PyTorch per thread count) again, up to "
                         "--retries times, when other processes kept more than CORES cores busy during it "
                         "on average (e.g. 0.1 on a shared machine)")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for the raw JSON (default bench/results/norms-<time>)")
    ap.add_argument("--from", dest="from_dir", default=None,
                    help="print the table again from a results folder instead of running")
    ap.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker is not None:
        torch_worker(json.loads(args.torch_worker))
        return

    global RETRY_BUSY, RETRIES
    RETRY_BUSY, RETRIES = args.retry_busy, max(0, args.retries)
    replay = args.from_dir is not None
    out_dir = args.from_dir or args.out or os.path.join(
        HERE, "results", "norms-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    meta_file = os.path.join(out_dir, "meta.json")
    torch_file = os.path.join(out_dir, "torch.json")
    nk_exe = os.path.join(args.build, "bench", "nk_bench_norms")
    dnnl_exe = os.path.join(args.build, "bench", "nk_bench_onednn_norms")
    probe_exe = os.path.join(args.build, "bench", "nk_bench")

    if replay:
        if not os.path.exists(meta_file):
            sys.exit("no results in " + out_dir)
        with open(meta_file) as f:
            meta = json.load(f)
        threads = meta["threads"]
        names = set(meta["cases"])
    else:
        threads = [int(t) for t in args.threads.split(",") if t]
        names = set()
        for op, layout, s in CASES:
            if args.quick and tuple(s) not in QUICK_SHAPES:
                continue
            for p in PASSES:
                n = case_name(op, p, layout, s)
                if args.only is None or re.search(args.only, n):
                    names.add(n)
        if not names:
            sys.exit("no case matches --only " + args.only)
        for exe in (nk_exe, probe_exe):
            if not os.path.exists(exe):
                sys.exit("%s not found: meson setup build && ninja -C build" % exe)
        os.makedirs(out_dir, exist_ok=True)
        meta = {"load_before": os.getloadavg()[0], "start": time.time(), "reps": args.reps,
                "min_time": args.min_time, "threads": threads, "cases": sorted(names),
                "cache_mib": args.cache_mib}
        if meta["load_before"] > 0.5:
            log("warning: load average %.2f before the run — other work on this machine skews the numbers"
                % meta["load_before"])
    cases = [(op, layout, s) for op, layout, s in CASES
             if any(case_name(op, p, layout, s) in names for p in PASSES)]
    cache_mib = meta.get("cache_mib", args.cache_mib)

    # Google Benchmark filter: the selected names, any ISA and thread count.
    filt = "^(%s)/" % "|".join(re.escape(n) for n in sorted(names))
    nk_doc = phase("normkit", bn.run_gbench, nk_exe, filt,
                   ["--nk_isa=" + args.isa, "--nk_threads=" + ",".join(map(str, threads))],
                   args.reps, args.min_time, os.path.join(out_dir, "nk_bench_norms.json"), replay)
    if nk_doc is None:
        sys.exit("no nk_bench_norms.json in " + out_dir)
    ctx = nk_doc["context"]
    nk = bn.medians_ms(nk_doc)
    probe_extra = ["--nk_threads=" + ",".join(map(str, threads))]
    if args.probe_mib:
        probe_extra.append("--nk_probe_mib=" + args.probe_mib)
    probe_doc = phase("probe", bn.run_gbench, probe_exe, "^membw_", probe_extra, args.reps, args.min_time,
                      os.path.join(out_dir, "membw.json"), replay)
    bw = bn.bandwidth(bn.medians_ms(probe_doc)) if probe_doc else {}
    copy_bw = bn.reference_bw(bw)[0]
    order = ["avx512", "avx2", "sse2", "neon", "scalar"]
    isas = sorted({dict(f).get("isa") for (h, f) in nk} - {None},
                  key=lambda i: order.index(i) if i in order else len(order))

    dnnl, dnnl_ctx = {}, {}
    if not args.no_onednn:
        if replay or os.path.exists(dnnl_exe):
            dnames = [n for n in names if n.split("_")[0] in ("ln", "in", "bn") and
                      not (n.startswith("in_") and "/nhwc/" in n)]
            if dnames:
                dfilt = "^onednn_(%s)/" % "|".join(re.escape(n) for n in sorted(dnames))
                ddoc = phase("oneDNN", bn.run_gbench, dnnl_exe, dfilt,
                             ["--nk_threads=" + ",".join(map(str, threads))], args.reps, args.min_time,
                             os.path.join(out_dir, "nk_bench_onednn_norms.json"), replay)
                if ddoc:
                    dnnl = bn.medians_ms(ddoc)
                    dnnl_ctx = ddoc["context"]
        else:
            log("%s not built (oneDNN not found): no oneDNN column" % dnnl_exe)

    torch_version, torch_malloc, rms_impl, torch_res = None, None, None, {}
    if replay:
        if os.path.exists(torch_file):
            with open(torch_file) as f:
                doc = json.load(f)
            torch_version, torch_malloc, rms_impl = doc["torch_version"], doc.get("malloc"), doc.get("rms_impl")
            torch_res = {(x["op"], x["pass"], x["layout"], x["shape"], x["threads"]): x["ms"] for x in doc["times"]}
    elif not args.no_torch:
        torch_malloc = args.torch_malloc
        tcases = [[op, layout, list(s), [p for p in PASSES if case_name(op, p, layout, s) in names]]
                  for op, layout, s in cases]
        torch_version, rms_impl, torch_res = run_torch(tcases, threads, args.reps, args.min_time,
                                                       torch_malloc == "reuse")
        with open(torch_file, "w") as f:
            json.dump({"torch_version": torch_version, "malloc": torch_malloc, "rms_impl": rms_impl,
                       "times": [dict(zip(("op", "pass", "layout", "shape", "threads"), k), ms=v)
                                 for k, v in torch_res.items()]}, f, indent=1)
    if not replay:
        meta["load_after"] = os.getloadavg()[0]
        meta["phases"] = PHASES
        meta["seconds"] = time.time() - meta["start"]
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)

    # ---------------------------------------------------------------- print
    # The table uses the active ISA where it ran, else the first measured.
    isa = ctx.get("nk_default_isa", "?")
    if isa not in isas and isas:
        isa = isas[0]
    print("## Group, Instance, Layer, RMS and Switchable Norm on %s — %s" %
          (ctx.get("host_name", "?"), ctx.get("date", "?")[:16].replace("T", " ")))
    print()
    caches = ", ".join("L%d %s %d KiB" % (c["level"], c["type"][0], c["size"] // 1024) for c in ctx.get("caches", []))
    lines = ["CPU: %d cpus @ %d MHz; %s" % (ctx.get("num_cpus", 0), ctx.get("mhz_per_cpu", 0), caches),
             "normkit %s, ISA %s; min_time %gs, median of %d repetitions" %
             (ctx.get("nk_version", "?"), isa, meta["min_time"], meta["reps"])]
    if torch_version:
        lines.append("PyTorch %s: F.group_norm, F.instance_norm, F.layer_norm, F.batch_norm (training); "
                     "RMSNorm = %s; switch_norm = the authors' SwitchNorm2d.forward in PyTorch ops; "
                     "forward under no_grad, fwd+bwd = forward then torch.autograd.grad; NHWC = channels_last; "
                     "%s" % (torch_version, rms_impl,
                             "freed memory reused (--torch-malloc=reuse)" if torch_malloc == "reuse"
                             else "glibc malloc as shipped"))
    if dnnl_ctx:
        lines.append("oneDNN %s (%s runtime, ISA %s): layer_normalization; instance_norm = batch_normalization "
                     "on the [1, N·C, H, W] view (NCHW only); batch_normalization training" %
                     (dnnl_ctx.get("onednn_version", "?"), dnnl_ctx.get("onednn_cpu_runtime", "?"),
                      dnnl_ctx.get("onednn_isa", "?")))
    lines.append("×PyTorch = PyTorch ms / normkit ms, ×oneDNN = oneDNN ms / normkit ms (above 1: normkit is faster)")
    lines.append("GB/s and % BW count the minimal bytes (fwd 2S, fwd+bwd 5S); % BW = over the ordinary-store "
                 "copy bandwidth of the probe's largest buffer at the same thread count")
    lines.append("load average before/after: %.2f / %.2f; took %.0f s; raw JSON: %s" %
                 (meta["load_before"], meta.get("load_after", 0), meta.get("seconds", 0),
                  os.path.relpath(out_dir, ROOT)))
    if meta.get("phases"):
        lines.append("cores kept busy by other processes, average per phase: " +
                     ", ".join("%s %s (%.0f s)" % (p[0], "%.2f" % p[2] if p[2] is not None else "?", p[1])
                               for p in meta["phases"]))
    for line in lines:
        print("- " + line)
    print()
    if bw:
        bn.print_bandwidth(bw, sorted(threads))

    def nk_ms(op, p, layout, s, t):
        return bn.lookup(nk, "%s_%s" % (op, p), layout=layout, shape=shape_name(s), isa=isa, threads=t)

    def dnnl_ms(op, p, layout, s, t):
        return bn.lookup(dnnl, "onednn_%s_%s" % (op, p), layout=layout, shape=shape_name(s), threads=t)

    rows = []
    print("| case | pass | shape | layout | threads | normkit ms | PyTorch ms | oneDNN ms | ×PyTorch | ×oneDNN "
          "| normkit GB/s | normkit % BW |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in sorted(threads, reverse=True):
        for op, layout, s in cases:
            for p in PASSES:
                if case_name(op, p, layout, s) not in names:
                    continue
                b = minimal_bytes(p, s)
                ms = nk_ms(op, p, layout, s, t)
                tms = torch_res.get((op, p, layout, shape_name(s), t))
                dms = dnnl_ms(op, p, layout, s, t)
                copy = copy_bw.get(t)
                pct = 100.0 * b / (ms * 1e-3) / copy if ms and copy else None
                rows.append((op, p, layout, s, t, ms, tms, dms, pct))
                print("| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" %
                      (OP_NAMES[op], PASS_NAMES[p], shape_name(s), layout, t, bn.fmt_ms(ms), bn.fmt_ms(tms),
                       bn.fmt_ms(dms), fmt_ratio(tms, ms), fmt_ratio(dms, ms),
                       "%.1f" % bn.gbs(b, ms) if ms else "—", "%.0f%%" % pct if pct is not None else "—"))
    print()

    # ---------------------------------------------------------------- targets
    tmax = max(threads)
    print("Targets at %d thread%s:" % (tmax, "" if tmax == 1 else "s"))
    print()

    def label(op, p, layout, s):
        return "%s %s %s %s" % (OP_NAMES[op], PASS_NAMES[p], layout, shape_name(s))

    def report(title, checks):
        checks = [c for c in checks if c[1] is not None]
        if not checks:
            print("- %s: not measured" % title)
            return
        missed = [c for c in checks if not c[2]]
        worst = min(checks, key=lambda c: c[3])
        print("- %s: %s (%d of %d cases met; worst %s on %s)%s" %
              (title, "met" if not missed else "missed", len(checks) - len(missed), len(checks),
               worst[1], worst[0],
               "" if not missed else "; missed on " + ", ".join("%s (%s)" % (c[0], c[1]) for c in missed)))

    at = [r for r in rows if r[4] == tmax and r[5]]
    report("≥ 2× PyTorch", [(label(*r[:4]), "%.2f×" % (r[6] / r[5]) if r[6] else None,
                             r[6] is not None and r[6] / r[5] >= 2.0, r[6] / r[5] if r[6] else 0) for r in at])
    report("≥ oneDNN where it has the op", [(label(*r[:4]), "%.2f×" % (r[7] / r[5]) if r[7] else None,
                                             r[7] is not None and r[7] >= r[5], r[7] / r[5] if r[7] else 0)
                                            for r in at])
    big = [r for r in at if 4 * elems(r[3]) >= cache_mib * 2**20 and r[8] is not None]
    report("≥ 80%% of copy bandwidth, S ≥ %g MiB" % cache_mib,
           [(label(*r[:4]), "%.0f%%" % r[8], r[8] >= 80.0, r[8]) for r in big])
    sn_checks = []
    for r in at:
        if r[0] != "sn":
            continue
        bms = nk_ms("bn", r[1], r[2], r[3], tmax)
        if bms:
            sn_checks.append((label(*r[:4]) + " vs batch_norm", "%.2f× BN" % (r[5] / bms), r[5] <= 1.5 * bms,
                              1.5 * bms / r[5]))
    report("switch_norm ≤ 1.5× batch_norm time", sn_checks)


if __name__ == "__main__":
    main()
