// nk_bench_tf: Batch Norm with TensorFlow's options — renorm, virtual batches
// (2 and 4, both groupings), adjustment, two feature axes — beside plain BN
// on the same shapes, training forward and backward, NCHW and NHWC.
//
// Names: bn_tf/<variant>/<fwd|bwd>/<nchw|nhwc>/<shape>/threads:<t>, and
// bn_tf_paired/<variant>/... for each variant but plain: the variant and
// plain BN alternated in one loop, with counters plain_ms, variant_ms and
// ratio (the medians of each call's time and their quotient).
// bytes_per_second counts the minimal bytes (forward 2S, backward 3S).
// bench/tf_options_table.py prints the paired ratios.
#include <algorithm>
#include <chrono>
#include <vector>

#include "bench_common.hpp"
#include "normkit.h"

namespace {

struct Variant {
  const char* name;
  int virtual_batch;
  int grouping;
  bool renorm, adjustment, two_axes;
};

const Variant kVariants[] = {
    {"plain", 0, NK_GHOST_STRIDED, false, false, false},
    {"renorm", 0, NK_GHOST_STRIDED, true, false, false},
    {"ghost2_strided", 16, NK_GHOST_STRIDED, false, false, false},
    {"ghost2_contiguous", 16, NK_GHOST_CONTIGUOUS, false, false, false},
    {"ghost4_strided", 8, NK_GHOST_STRIDED, false, false, false},
    {"ghost4_contiguous", 8, NK_GHOST_CONTIGUOUS, false, false, false},
    {"ghost2_renorm", 16, NK_GHOST_STRIDED, true, false, false},
    {"adjustment", 0, NK_GHOST_STRIDED, false, true, false},
    {"renorm_adjustment", 0, NK_GHOST_STRIDED, true, true, false},
    {"two_axes", 0, NK_GHOST_STRIDED, false, false, true},
};

// One variant's call on one case: its descriptor, options, state and
// parameters (its own); x, y, dy and dx are the shape's shared buffers.
struct TfCall {
  nkbench::ShapeData& d;
  nk_tensor_desc desc{};
  nk_bn_options opt;
  nk_bn_state state;
  int64_t C, G;
  nkbench::Buffer gamma, beta, mm, mv, msd, rm, rsd, a, b, sm, si, r, dd, dg, db;

  TfCall(const Variant& v, bool nhwc, const nkbench::Shape& s)
      : d(nkbench::shape_data(s)),
        C(v.two_axes ? (nhwc ? s.w * s.c : s.c * s.h) : s.c),
        G(v.virtual_batch ? s.n / v.virtual_batch : 1),
        gamma(C), beta(C), mm(C), mv(C), msd(C), rm(C), rsd(C), a(C), b(C), sm(G * C), si(G * C), r(C), dd(C),
        dg(C), db(C) {
    desc.dtype = NK_DTYPE_F32;
    desc.ndim = 4;
    const int64_t nchw[4] = {s.n, s.c, s.h, s.w}, nhwcd[4] = {s.n, s.h, s.w, s.c};
    for (int i = 0; i < 4; ++i) desc.dims[i] = nhwc ? nhwcd[i] : nchw[i];
    // Two axes that merge into one block: (C, H) in NCHW, (W, C) in NHWC.
    desc.num_axes = v.two_axes ? 2 : 1;
    desc.axes[0] = nhwc ? 3 : 1;
    desc.axes[1] = 2;
    nk_bn_options_init(&opt);
    opt.virtual_batch_size = v.virtual_batch;
    opt.virtual_grouping = v.grouping;
    opt.renorm = v.renorm;
    opt.rmax = 3.0f;
    opt.dmax = 5.0f;
    nkbench::fill_random(gamma.get(), C, 3, 0.5f, 1.0f);
    nkbench::fill_random(beta.get(), C, 4, 0.0f, 0.5f);
    nkbench::fill_value(mm.get(), C, 0.0f);
    nkbench::fill_value(mv.get(), C, 1.0f);
    nkbench::fill_value(msd.get(), C, 1.0f);
    nkbench::fill_value(rm.get(), C, 0.0f);
    nkbench::fill_value(rsd.get(), C, 1.0f);
    nkbench::fill_random(a.get(), C, 5, 0.95f, 0.1f);
    nkbench::fill_random(b.get(), C, 6, -0.05f, 0.1f);
    nk_bn_state_init(&state);
    state.moving_mean = mm.get();
    state.moving_var = mv.get();
    state.moving_stddev = msd.get();
    state.renorm_mean = rm.get();
    state.renorm_stddev = rsd.get();
    if (v.adjustment) {
      state.adjustment_scale = a.get();
      state.adjustment_bias = b.get();
    }
    state.saved_mean = sm.get();
    state.saved_invstd = si.get();
    state.saved_r = r.get();
    state.saved_d = dd.get();
  }
  nk_status fwd() {
    return nk_bn_forward_training_ex(&desc, &opt, d.x.get(), d.y.get(), gamma.get(), beta.get(), &state);
  }
  nk_status bwd() {
    return nk_bn_backward_ex(&desc, &opt, d.x.get(), d.dy.get(), gamma.get(), &state, d.dx.get(), dg.get(),
                             db.get());
  }
  // The forward once (backward needs its saved statistics), then the op.
  nk_status prepare(bool backward) {
    nk_status rc = fwd();
    return rc == NK_OK && backward ? bwd() : rc;
  }
  nk_status call(bool backward) { return backward ? bwd() : fwd(); }
};

void tf_case(benchmark::State& st, Variant v, bool nhwc, nkbench::Shape s, bool backward, int threads) {
  nk_set_num_threads(threads);
  TfCall t(v, nhwc, s);
  nk_status rc = t.prepare(backward);
  if (rc != NK_OK) {
    st.SkipWithError(nk_last_error());
    return;
  }
  for (auto _ : st) {
    rc |= t.call(backward);
    benchmark::ClobberMemory();
  }
  if (rc != NK_OK) st.SkipWithError(nk_last_error());
  st.SetBytesProcessed(st.iterations() *
                       nkbench::minimal_bytes(backward ? nkbench::Op::Bwd : nkbench::Op::FwdTrain, s));
  st.SetLabel(nk_active_isa());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A variant and plain BN on the same case in one loop, their calls
// alternated (which goes first alternates too), each timed alone: the
// machine's drift, and whatever else runs on it, falls on both alike. The
// iteration time is the variant's call; the counters are the medians of
// both and their ratio, the figure the table prints.
void tf_paired(benchmark::State& st, Variant v, bool nhwc, nkbench::Shape s, bool backward, int threads) {
  nk_set_num_threads(threads);
  TfCall plain(kVariants[0], nhwc, s), var(v, nhwc, s);
  nk_status rc = plain.prepare(backward);
  if (rc == NK_OK) rc = var.prepare(backward);
  if (rc != NK_OK) {
    st.SkipWithError(nk_last_error());
    return;
  }
  std::vector<double> tp, tv;
  auto timed = [&](TfCall& c) {
    const auto t0 = std::chrono::steady_clock::now();
    rc |= c.call(backward);
    benchmark::ClobberMemory();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (auto _ : st) {
    double a, b;
    if (tp.size() % 2 == 0) {
      a = timed(plain);
      b = timed(var);
    } else {
      b = timed(var);
      a = timed(plain);
    }
    tp.push_back(a);
    tv.push_back(b);
    st.SetIterationTime(b);
  }
  if (rc != NK_OK) {
    st.SkipWithError(nk_last_error());
    return;
  }
  const double mp = median(tp), mv = median(tv);
  st.counters["plain_ms"] = mp * 1e3;
  st.counters["variant_ms"] = mv * 1e3;
  st.counters["ratio"] = mv / mp;
  st.SetBytesProcessed(st.iterations() *
                       nkbench::minimal_bytes(backward ? nkbench::Op::Bwd : nkbench::Op::FwdTrain, s));
  st.SetLabel(nk_active_isa());
}

}  // namespace

int main(int argc, char** argv) {
  nkbench::Args args(argc, argv, "0.2");
  args.check_known({"nk_threads"});
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));
  const nkbench::Shape shapes[] = {{32, 64, 56, 56}, {32, 512, 28, 28}};
  for (const auto& s : shapes)
    for (bool nhwc : {false, true})
      for (bool backward : {false, true})
        for (int t : threads)
          for (const Variant& v : kVariants) {
            const std::string rest = std::string(v.name) + "/" + (backward ? "bwd" : "fwd") + "/" +
                                     (nhwc ? "nhwc" : "nchw") + "/" + s.name() + "/threads:" + std::to_string(t);
            benchmark::RegisterBenchmark(("bn_tf/" + rest).c_str(), tf_case, v, nhwc, s, backward, t)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
            if (&v != &kVariants[0])
              benchmark::RegisterBenchmark(("bn_tf_paired/" + rest).c_str(), tf_paired, v, nhwc, s, backward, t)
                  ->UseManualTime()
                  ->Unit(benchmark::kMillisecond);
          }
  if (!args.run_benchmarks()) return 1;
  nkbench::release_shape_data();
  return 0;
}
