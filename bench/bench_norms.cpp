// nk_bench_norms: normkit's per-sample norms (Group, Instance, Layer, RMS,
// Switchable) and, beside Switchable Norm, Batch Norm training on the same
// shape; forward, and forward then backward in one timed iteration (as
// PyTorch's forward+backward is timed); per thread count and per ISA.
//
// Names (parsed by bench/compare_norms.py):
//   gn_fwd/nchw/32x256x56x56/isa:avx512/threads:2
//   ln_fwd_bwd/rows/8192x768/isa:avx512/threads:1
// ops: gn (32 groups), in (affine), ln (per-element gamma, beta), rms
// (per-element gamma), sn (IN, LN and BN parts; moving statistics updated),
// bn (training forward; moving statistics updated); passes: _fwd, _fwd_bwd.
// Layouts: nchw (channel axis 1), nhwc (axis -1), rows (R x D, normalized
// over the last dim D).
//
// bytes_per_second counts the minimal bytes: forward 2S (read x, write y),
// forward+backward 5S (the forward's 2S, then backward reads x and dy and
// writes dx), S = bytes of x; per-channel and per-row arrays are left out.
//
// Our flags (also as environment variables), besides Google Benchmark's:
//   --nk_isa=active|all|avx512,avx2,...  NK_BENCH_ISAS   (default: active)
//   --nk_threads=1,2                     NK_BENCH_THREADS
// The default --benchmark_min_time is 0.3 s; pass your own to change it.
#include <algorithm>

#include "bench_common.hpp"
#include "normkit.h"

namespace {

using nkbench::Shape;

enum class Norm { GN, IN, LN, RMS, SN, BN };
const char* norm_name(Norm n) {
  switch (n) {
    case Norm::GN: return "gn";
    case Norm::IN: return "in";
    case Norm::LN: return "ln";
    case Norm::RMS: return "rms";
    case Norm::SN: return "sn";
    case Norm::BN: return "bn";
  }
  return "?";
}

enum class Layout { NCHW, NHWC, Rows };
const char* layout_name(Layout l) {
  switch (l) {
    case Layout::NCHW: return "nchw";
    case Layout::NHWC: return "nhwc";
    case Layout::Rows: return "rows";
  }
  return "?";
}

constexpr int kGroups = 32;
constexpr float kEps = 1e-5f;

// Rows cases keep R x D as Shape{R, D, 1, 1}: the shape data's per-channel
// arrays then hold D floats (gamma, beta, dgamma, dbeta along the row).
std::string case_shape_name(Layout l, const Shape& s) {
  if (l == Layout::Rows) return std::to_string(s.n) + "x" + std::to_string(s.c);
  return s.name();
}

int64_t minimal_bytes(bool backward, const Shape& s) {
  const int64_t bytes = s.elems() * int64_t{sizeof(float)};
  return backward ? 5 * bytes : 2 * bytes;
}

void norm_case(benchmark::State& st, Norm norm, Layout layout, Shape s, bool backward, std::string isa,
               int threads) {
  if (nk_set_max_isa(isa.c_str()) != NK_OK || isa != nk_active_isa()) {
    st.SkipWithError(("ISA " + isa + " not active: " + nk_last_error()).c_str());
    return;
  }
  nk_set_num_threads(threads);
  nkbench::ShapeData& d = nkbench::shape_data(s);

  nk_tensor_desc desc;
  const int64_t nchw[4] = {s.n, s.c, s.h, s.w};
  const int64_t nhwc[4] = {s.n, s.h, s.w, s.c};
  const int64_t rows[2] = {s.n, s.c};
  switch (layout) {
    case Layout::NCHW: nk_tensor_desc_init(&desc, 4, nchw, 1); break;
    case Layout::NHWC: nk_tensor_desc_init(&desc, 4, nhwc, -1); break;
    case Layout::Rows: nk_tensor_desc_init(&desc, 2, rows, -1); break;
  }
  // Saved statistics: N*G (GN), N*C (IN), C (BN), R (LN, RMS).
  const int64_t nstat = layout == Layout::Rows ? s.n : s.n * s.c;
  nkbench::Buffer smean(nstat), sinv(nstat);
  nkbench::fill_value(smean.get(), nstat, 0.0f);
  nkbench::fill_value(sinv.get(), nstat, 1.0f);
  // Switchable Norm's raw mixing weights (IN, LN, BN) and their gradients.
  float mw[3] = {0.5f, -0.25f, 0.1f}, vw[3] = {-0.2f, 0.3f, 0.05f}, dmw[3] = {}, dvw[3] = {};

  nk_gn_options gn;
  nk_gn_options_init(&gn);
  gn.epsilon = kEps;
  gn.groups = kGroups;
  nk_in_options in;
  nk_in_options_init(&in);
  in.epsilon = kEps;
  nk_ln_options ln;
  nk_ln_options_init(&ln);
  ln.epsilon = kEps;
  nk_sn_options sn;
  nk_sn_options_init(&sn);
  sn.epsilon = kEps;
  nk_bn_options bn;
  nk_bn_options_init(&bn);
  bn.epsilon = kEps;
  bn.momentum = 0.1f;
  bn.momentum_convention = NK_MOMENTUM_TORCH;
  bn.moving_variance = NK_VARIANCE_UNBIASED;

  const float* x = d.x.get();
  float* y = d.y.get();
  const float* dy = d.dy.get();
  float* dx = d.dx.get();
  const float* gamma = d.gamma.get();
  const float* beta = d.beta.get();
  auto fwd = [&]() -> nk_status {
    switch (norm) {
      case Norm::GN: return nk_groupnorm_forward(&desc, &gn, x, y, gamma, beta, smean.get(), sinv.get());
      case Norm::IN:
        return nk_instancenorm_forward_training(&desc, &in, x, y, gamma, beta, smean.get(), sinv.get(), nullptr,
                                                nullptr);
      case Norm::LN: return nk_layernorm_forward(&desc, &ln, x, y, gamma, beta, smean.get(), sinv.get());
      case Norm::RMS: return nk_rmsnorm_forward(&desc, &ln, x, y, gamma, sinv.get());
      case Norm::SN:
        return nk_switchnorm_forward_training(&desc, &sn, x, y, gamma, beta, mw, vw, d.mean.get(), d.var.get());
      case Norm::BN:
        return nk_bn_forward_training(&desc, &bn, x, y, gamma, beta, smean.get(), sinv.get(), d.mean.get(),
                                      d.var.get());
    }
    return NK_ERR_INTERNAL;
  };
  auto bwd = [&]() -> nk_status {
    float* dg = d.dgamma.get();
    float* db = d.dbeta.get();
    switch (norm) {
      case Norm::GN: return nk_groupnorm_backward(&desc, &gn, x, dy, gamma, smean.get(), sinv.get(), dx, dg, db);
      case Norm::IN:
        return nk_instancenorm_backward(&desc, &in, x, dy, gamma, smean.get(), sinv.get(), dx, dg, db);
      case Norm::LN: return nk_layernorm_backward(&desc, &ln, x, dy, gamma, smean.get(), sinv.get(), dx, dg, db);
      case Norm::RMS: return nk_rmsnorm_backward(&desc, &ln, x, dy, gamma, sinv.get(), dx, dg);
      case Norm::SN: return nk_switchnorm_backward(&desc, &sn, x, dy, gamma, mw, vw, dx, dg, db, dmw, dvw);
      case Norm::BN: return nk_bn_backward(&desc, &bn, x, dy, gamma, smean.get(), sinv.get(), dx, dg, db);
    }
    return NK_ERR_INTERNAL;
  };
  auto call = [&]() -> nk_status {
    nk_status rc = fwd();
    if (backward && rc == NK_OK) rc = bwd();
    return rc;
  };
  // Untimed: a first call that checks the arguments and warms scratch
  // memory and the thread pool.
  nk_status rc = call();
  if (rc != NK_OK) {
    st.SkipWithError(nk_last_error());
    return;
  }
  for (auto _ : st) {
    rc |= call();
    benchmark::ClobberMemory();
  }
  if (rc != NK_OK) st.SkipWithError(nk_last_error());
  st.SetBytesProcessed(st.iterations() * minimal_bytes(backward, s));
}

struct Case {
  Norm norm;
  Layout layout;
  Shape shape;
};

// Grouped by shape, so one shape's buffers serve all its cases.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {Norm::GN, Layout::NCHW, {32, 256, 56, 56}}, {Norm::GN, Layout::NHWC, {32, 256, 56, 56}},
      {Norm::SN, Layout::NCHW, {32, 256, 56, 56}}, {Norm::SN, Layout::NHWC, {32, 256, 56, 56}},
      {Norm::BN, Layout::NCHW, {32, 256, 56, 56}}, {Norm::BN, Layout::NHWC, {32, 256, 56, 56}},
      {Norm::GN, Layout::NCHW, {8, 512, 28, 28}},  {Norm::GN, Layout::NHWC, {8, 512, 28, 28}},
      {Norm::IN, Layout::NCHW, {32, 64, 56, 56}},  {Norm::IN, Layout::NHWC, {32, 64, 56, 56}},
      {Norm::LN, Layout::Rows, {8192, 768, 1, 1}}, {Norm::LN, Layout::Rows, {8192, 4096, 1, 1}},
      {Norm::RMS, Layout::Rows, {8192, 4096, 1, 1}},
  };
  return c;
}

const char* const kAllIsas[] = {"avx512", "avx2", "sse2", "neon", "scalar"};

std::vector<std::string> select_isas(const std::string& spec) {
  std::vector<std::string> out;
  if (spec == "active") {
    out.push_back(nk_active_isa());
  } else if (spec == "all") {
    for (const char* name : kAllIsas)
      if (nk_isa_available(name)) out.push_back(name);
  } else {
    out = nkbench::split_list(spec);
    for (const auto& name : out) {
      bool known = false;
      for (const char* k : kAllIsas) known = known || name == k;
      if (!known) {
        std::fprintf(stderr, "unknown ISA '%s' (one of avx512, avx2, sse2, neon, scalar)\n", name.c_str());
        std::exit(2);
      }
    }
  }
  if (out.empty() || out[0] == "none") {
    std::fprintf(stderr, "no ISA to benchmark (NK_MAX_ISA invalid?): %s\n", nk_last_error());
    std::exit(2);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  nkbench::Args args(argc, argv, "0.3");
  args.check_known({"nk_isa", "nk_threads"});
  const std::vector<std::string> isas = select_isas(args.get("nk_isa", "NK_BENCH_ISAS", "active"));
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));

  for (const Case& c : cases())
    for (bool backward : {false, true})
      for (const auto& isa : isas)
        for (int t : threads) {
          const std::string name = std::string(norm_name(c.norm)) + (backward ? "_fwd_bwd/" : "_fwd/") +
                                   layout_name(c.layout) + "/" + case_shape_name(c.layout, c.shape) +
                                   "/isa:" + isa + "/threads:" + std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), norm_case, c.norm, c.layout, c.shape, backward, isa, t)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }

  benchmark::AddCustomContext("nk_version", nk_version_string());
  benchmark::AddCustomContext("nk_default_isa", nk_active_isa());

  if (!args.run_benchmarks()) return 1;
  nkbench::release_shape_data();
  return 0;
}
