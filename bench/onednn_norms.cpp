// nk_bench_onednn_norms: oneDNN on the cases of nk_bench_norms that it has
// a primitive for, with the same names (prefix onednn_), byte counts and
// threads. oneDNN 2.6 has layer_normalization (forward training and
// backward) but neither group nor RMS normalization.
//
//   onednn_ln_fwd/rows/8192x768/threads:2       layer_normalization over the last dim,
//                                               use_scale | use_shift ([D] each)
//   onednn_in_fwd_bwd/nchw/32x64x56x56/threads:1  Instance Norm as batch_normalization on
//                                               the [1, N*C, H, W] view (NCHW only): gamma
//                                               and beta tiled to N*C; backward's
//                                               diff_scale/diff_shift summed over N
//   onednn_bn_fwd/nchw/32x256x56x56/threads:2   batch_normalization training (nchw, nhwc),
//                                               beside nk_bench_norms' bn cases
//
// _fwd is forward training (statistics computed); _fwd_bwd is forward
// training then backward (prop_kind::backward: diff_src and the parameter
// gradients) in one timed iteration. bytes_per_second counts the minimal
// bytes as nk_bench_norms does: 2S and 5S.
//
// Flags besides Google Benchmark's: --nk_threads=1,2 (NK_BENCH_THREADS).
// oneDNN runs on OpenMP; the thread count is set with omp_set_num_threads
// before each case builds its primitives.
#include <dnnl.hpp>

#include "bench_common.hpp"

namespace {

using nkbench::Shape;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using nf = dnnl::normalization_flags;

constexpr float kEps = 1e-5f;

enum class Kind { LN, IN, BN };

int64_t minimal_bytes(bool backward, const Shape& s) {
  const int64_t bytes = s.elems() * int64_t{sizeof(float)};
  return backward ? 5 * bytes : 2 * bytes;
}

template <class Body>
void timed(benchmark::State& st, bool backward, const Shape& s, const Body& body) {
  body();  // untimed warm-up
  for (auto _ : st) body();
  st.SetBytesProcessed(st.iterations() * minimal_bytes(backward, s));
}

// Layer Norm over the rows of an R x D matrix (Shape{R, D, 1, 1}).
void ln_case(benchmark::State& st, const Shape& s, bool backward, dnnl::engine& eng, dnnl::stream& strm) {
  nkbench::ShapeData& d = nkbench::shape_data(s);
  const int64_t R = s.n, D = s.c;
  const dnnl::memory::desc md({R, D}, dt::f32, tag::ab);
  const dnnl::memory::desc pmd({D}, dt::f32, tag::x);
  const nf affine = nf::use_scale | nf::use_shift;
  dnnl::layer_normalization_forward::primitive_desc fpd(
      {dnnl::prop_kind::forward_training, md, kEps, affine}, eng);
  nkbench::Buffer mbuf(R), vbuf(R);
  dnnl::memory x(md, eng, d.x.get()), y(md, eng, d.y.get());
  dnnl::memory dy(md, eng, d.dy.get()), dx(md, eng, d.dx.get());
  dnnl::memory scale(pmd, eng, d.gamma.get()), shift(pmd, eng, d.beta.get());
  dnnl::memory dscale(pmd, eng, d.dgamma.get()), dshift(pmd, eng, d.dbeta.get());
  dnnl::memory mean(fpd.mean_desc(), eng, mbuf.get()), var(fpd.variance_desc(), eng, vbuf.get());
  dnnl::layer_normalization_forward fwd(fpd);
  const std::unordered_map<int, dnnl::memory> fargs = {
      {DNNL_ARG_SRC, x},     {DNNL_ARG_DST, y},       {DNNL_ARG_SCALE, scale},
      {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}};
  dnnl::layer_normalization_backward bwd;
  std::unordered_map<int, dnnl::memory> bargs;
  if (backward) {
    dnnl::layer_normalization_backward::primitive_desc bpd(
        {dnnl::prop_kind::backward, md, md, kEps, affine}, eng, fpd);
    bwd = dnnl::layer_normalization_backward(bpd);
    bargs = {{DNNL_ARG_SRC, x},          {DNNL_ARG_DIFF_DST, dy},        {DNNL_ARG_MEAN, mean},
             {DNNL_ARG_VARIANCE, var},   {DNNL_ARG_SCALE, scale},        {DNNL_ARG_SHIFT, shift},
             {DNNL_ARG_DIFF_SRC, dx},    {DNNL_ARG_DIFF_SCALE, dscale},  {DNNL_ARG_DIFF_SHIFT, dshift}};
  }
  timed(st, backward, s, [&] {
    fwd.execute(strm, fargs);
    if (backward) bwd.execute(strm, bargs);
    strm.wait();
  });
}

// Batch Norm training on [n, c, h, w] in layout t, with per-channel arrays
// of c floats. Instance Norm calls it on [1, N*C, H, W] with tiled
// parameters.
struct BnRun {
  dnnl::batch_normalization_forward fwd;
  dnnl::batch_normalization_backward bwd;
  std::unordered_map<int, dnnl::memory> fargs, bargs;
  nkbench::Buffer mean, var;

  BnRun(const dnnl::memory::desc& md, int64_t c, bool backward, dnnl::engine& eng, const nkbench::ShapeData& d,
        float* scale_p, float* shift_p, float* dscale_p, float* dshift_p)
      : mean(c), var(c) {
    const dnnl::memory::desc cmd({c}, dt::f32, tag::x);
    const nf affine = nf::use_scale | nf::use_shift;
    dnnl::batch_normalization_forward::primitive_desc fpd(
        {dnnl::prop_kind::forward_training, md, kEps, affine}, eng);
    fwd = dnnl::batch_normalization_forward(fpd);
    dnnl::memory x(md, eng, d.x.get()), y(md, eng, d.y.get());
    dnnl::memory dy(md, eng, d.dy.get()), dx(md, eng, d.dx.get());
    dnnl::memory scale(cmd, eng, scale_p), shift(cmd, eng, shift_p);
    dnnl::memory dscale(cmd, eng, dscale_p), dshift(cmd, eng, dshift_p);
    dnnl::memory m(cmd, eng, mean.get()), v(cmd, eng, var.get());
    fargs = {{DNNL_ARG_SRC, x},       {DNNL_ARG_DST, y},  {DNNL_ARG_SCALE, scale},
             {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_MEAN, m}, {DNNL_ARG_VARIANCE, v}};
    if (backward) {
      dnnl::batch_normalization_backward::primitive_desc bpd({dnnl::prop_kind::backward, md, md, kEps, affine},
                                                             eng, fpd);
      bwd = dnnl::batch_normalization_backward(bpd);
      // oneDNN 2.6 refers to SHIFT in backward too (it fails to execute
      // without it), though the gradients do not depend on it.
      bargs = {{DNNL_ARG_SRC, x},        {DNNL_ARG_DIFF_DST, dy},       {DNNL_ARG_MEAN, m},
               {DNNL_ARG_VARIANCE, v},   {DNNL_ARG_SCALE, scale},       {DNNL_ARG_SHIFT, shift},
               {DNNL_ARG_DIFF_SRC, dx},  {DNNL_ARG_DIFF_SCALE, dscale}, {DNNL_ARG_DIFF_SHIFT, dshift}};
    }
  }
};

void bn_case(benchmark::State& st, const Shape& s, tag t, bool backward, dnnl::engine& eng, dnnl::stream& strm) {
  nkbench::ShapeData& d = nkbench::shape_data(s);
  const dnnl::memory::desc md({s.n, s.c, s.h, s.w}, dt::f32, t);
  BnRun r(md, s.c, backward, eng, d, d.gamma.get(), d.beta.get(), d.dgamma.get(), d.dbeta.get());
  timed(st, backward, s, [&] {
    r.fwd.execute(strm, r.fargs);
    if (backward) r.bwd.execute(strm, r.bargs);
    strm.wait();
  });
}

void in_case(benchmark::State& st, const Shape& s, bool backward, dnnl::engine& eng, dnnl::stream& strm) {
  nkbench::ShapeData& d = nkbench::shape_data(s);
  const int64_t N = s.n, C = s.c, NC = N * C;
  nkbench::Buffer scale(NC), shift(NC), dscale(NC), dshift(NC);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      scale.get()[n * C + c] = d.gamma.get()[c];
      shift.get()[n * C + c] = d.beta.get()[c];
    }
  const dnnl::memory::desc md({1, NC, s.h, s.w}, dt::f32, tag::nchw);
  BnRun r(md, NC, backward, eng, d, scale.get(), shift.get(), dscale.get(), dshift.get());
  float* dg = d.dgamma.get();
  float* db = d.dbeta.get();
  timed(st, backward, s, [&] {
    r.fwd.execute(strm, r.fargs);
    if (backward) r.bwd.execute(strm, r.bargs);
    strm.wait();
    if (backward) {
      // dgamma[c], dbeta[c]: the per-instance gradients summed over N.
      for (int64_t c = 0; c < C; ++c) dg[c] = db[c] = 0.0f;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
          dg[c] += dscale.get()[n * C + c];
          db[c] += dshift.get()[n * C + c];
        }
    }
  });
}

struct Case {
  const char* op;
  Kind kind;
  const char* layout;
  tag t;
  Shape shape;
};

std::string case_shape_name(const Case& c) {
  if (c.kind == Kind::LN) return std::to_string(c.shape.n) + "x" + std::to_string(c.shape.c);
  return c.shape.name();
}

void onednn_case(benchmark::State& st, Case c, bool backward, int threads) {
  omp_set_num_threads(threads);
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream strm(eng);
    switch (c.kind) {
      case Kind::LN: ln_case(st, c.shape, backward, eng, strm); break;
      case Kind::IN: in_case(st, c.shape, backward, eng, strm); break;
      case Kind::BN: bn_case(st, c.shape, c.t, backward, eng, strm); break;
    }
  } catch (const dnnl::error& e) {
    st.SkipWithError((std::string("oneDNN: ") + e.what() + " (status " +
                      std::to_string(static_cast<int>(e.status)) + ")").c_str());
  }
}

// In nk_bench_norms' order, grouped by shape.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"bn", Kind::BN, "nchw", tag::nchw, {32, 256, 56, 56}},
      {"bn", Kind::BN, "nhwc", tag::nhwc, {32, 256, 56, 56}},
      {"in", Kind::IN, "nchw", tag::nchw, {32, 64, 56, 56}},
      {"ln", Kind::LN, "rows", tag::ab, {8192, 768, 1, 1}},
      {"ln", Kind::LN, "rows", tag::ab, {8192, 4096, 1, 1}},
  };
  return c;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::all: return "all";
    default: return "other";
  }
}

}  // namespace

int main(int argc, char** argv) {
  nkbench::Args args(argc, argv, "0.3");
  args.check_known({"nk_threads"});
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));

  for (const Case& c : cases())
    for (bool backward : {false, true})
      for (int t : threads) {
        const std::string name = std::string("onednn_") + c.op + (backward ? "_fwd_bwd/" : "_fwd/") + c.layout +
                                 "/" + case_shape_name(c) + "/threads:" + std::to_string(t);
        benchmark::RegisterBenchmark(name.c_str(), onednn_case, c, backward, t)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }

  const dnnl::version_t* v = dnnl::version();
  benchmark::AddCustomContext("onednn_version", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                                                    std::to_string(v->patch));
  benchmark::AddCustomContext("onednn_cpu_runtime", v->cpu_runtime == DNNL_RUNTIME_OMP ? "omp" : "other");
  benchmark::AddCustomContext("onednn_isa", isa_name(dnnl::get_effective_cpu_isa()));

  if (!args.run_benchmarks()) return 1;
  nkbench::release_shape_data();
  return 0;
}
