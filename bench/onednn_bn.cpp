// nk_bench_onednn: oneDNN's batch_normalization on nk_bench's cases, with
// the same names (prefix onednn_), byte counts and threads.
//
//   onednn_bn_fwd_train/nchw/32x256x56x56/threads:2      (nchw, nhwc, nChw16c)
//
// Forward training computes mean and variance and normalizes (scale and
// shift on); oneDNN does not keep moving statistics, the caller does.
// Inference uses global statistics; backward gives diff_src, diff_scale
// and diff_shift (prop_kind::backward), as nk_bn_backward does.
//
// Flags besides Google Benchmark's: --nk_threads=1,2 (NK_BENCH_THREADS),
// --nk_layouts=nchw,nhwc,nChw16c (NK_BENCH_LAYOUTS). oneDNN runs on
// OpenMP; the thread count is set with omp_set_num_threads before each
// case builds its primitive.
#include <dnnl.hpp>

#include "bench_common.hpp"

namespace {

using nkbench::Op;
using nkbench::Shape;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Layout {
  const char* name;
  tag t;
};
const Layout kLayouts[] = {{"nchw", tag::nchw}, {"nhwc", tag::nhwc}, {"nChw16c", tag::nChw16c}};

void onednn_case(benchmark::State& st, Op op, Layout layout, Shape s, int threads) {
  omp_set_num_threads(threads);
  nkbench::ShapeData& d = nkbench::shape_data(s);
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream strm(eng);
    const dnnl::memory::desc md({s.n, s.c, s.h, s.w}, dt::f32, layout.t);
    if (md.get_size() != static_cast<size_t>(s.elems()) * sizeof(float)) {
      st.SkipWithError("padded layout: sizes differ");
      return;
    }
    const dnnl::memory::desc cmd({s.c}, dt::f32, tag::x);
    const float eps = 1e-3f;
    using nf = dnnl::normalization_flags;
    const nf affine = nf::use_scale | nf::use_shift;

    // The same buffers as nk_bench, seen in this layout (the data is i.i.d.).
    dnnl::memory x(md, eng, d.x.get()), y(md, eng, d.y.get());
    dnnl::memory dy(md, eng, d.dy.get()), dx(md, eng, d.dx.get());
    dnnl::memory scale(cmd, eng, d.gamma.get()), shift(cmd, eng, d.beta.get());
    dnnl::memory mean(cmd, eng, d.saved_mean.get()), var(cmd, eng, d.var.get());
    dnnl::memory dscale(cmd, eng, d.dgamma.get()), dshift(cmd, eng, d.dbeta.get());
    // Batch statistics go to separate arrays so the inference case keeps
    // its positive variance.
    nkbench::Buffer bvar(s.c);
    nkbench::fill_value(bvar.get(), s.c, 1.0f);
    dnnl::memory batch_var(cmd, eng, bvar.get());

    dnnl::batch_normalization_forward::primitive_desc train_pd(
        {dnnl::prop_kind::forward_training, md, eps, affine}, eng);
    dnnl::batch_normalization_forward train(train_pd);
    std::unordered_map<int, dnnl::memory> train_args = {
        {DNNL_ARG_SRC, x},     {DNNL_ARG_DST, y},          {DNNL_ARG_SCALE, scale},
        {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, batch_var}};

    dnnl::primitive prim;
    std::unordered_map<int, dnnl::memory> args;
    switch (op) {
      case Op::FwdTrain:
        prim = train;
        args = train_args;
        break;
      case Op::FwdInfer: {
        dnnl::batch_normalization_forward::primitive_desc pd(
            {dnnl::prop_kind::forward_inference, md, eps, affine | nf::use_global_stats}, eng);
        prim = dnnl::batch_normalization_forward(pd);
        args = {{DNNL_ARG_SRC, x},     {DNNL_ARG_DST, y},          {DNNL_ARG_SCALE, scale},
                {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}};
        break;
      }
      case Op::Bwd: {
        dnnl::batch_normalization_backward::primitive_desc pd(
            {dnnl::prop_kind::backward, md, md, eps, affine}, eng, train_pd);
        prim = dnnl::batch_normalization_backward(pd);
        // oneDNN 2.6 refers to SHIFT in backward too (it fails to execute
        // without it), though the gradients do not depend on it.
        args = {{DNNL_ARG_SRC, x},          {DNNL_ARG_DIFF_DST, dy},
                {DNNL_ARG_MEAN, mean},      {DNNL_ARG_VARIANCE, batch_var},
                {DNNL_ARG_SCALE, scale},    {DNNL_ARG_SHIFT, shift},
                {DNNL_ARG_DIFF_SRC, dx},    {DNNL_ARG_DIFF_SCALE, dscale},
                {DNNL_ARG_DIFF_SHIFT, dshift}};
        break;
      }
    }
    // Untimed: the statistics backward needs, and a warm-up call.
    train.execute(strm, train_args);
    prim.execute(strm, args);
    strm.wait();
    for (auto _ : st) {
      prim.execute(strm, args);
      strm.wait();
    }
    st.SetBytesProcessed(st.iterations() * nkbench::minimal_bytes(op, s));
  } catch (const dnnl::error& e) {
    st.SkipWithError((std::string("oneDNN: ") + e.what() + " (status " +
                      std::to_string(static_cast<int>(e.status)) + ")").c_str());
  }
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
  args.check_known({"nk_threads", "nk_layouts"});
  const std::vector<int> threads =
      nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));
  std::vector<Layout> layouts;
  for (const auto& name : nkbench::split_list(args.get("nk_layouts", "NK_BENCH_LAYOUTS", "nchw,nhwc,nChw16c"))) {
    bool found = false;
    for (const Layout& l : kLayouts)
      if (name == l.name) {
        layouts.push_back(l);
        found = true;
      }
    if (!found) {
      std::fprintf(stderr, "unknown layout '%s' (nchw, nhwc, nChw16c)\n", name.c_str());
      return 2;
    }
  }

  for (const Shape& s : nkbench::shapes())
    for (const Layout& l : layouts)
      for (Op op : nkbench::kOps)
        for (int t : threads) {
          const std::string name = std::string("onednn_") + nkbench::op_name(op) + "/" + l.name +
                                   "/" + s.name() + "/threads:" + std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), onednn_case, op, l, s, t)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }

  const dnnl::version_t* v = dnnl::version();
  benchmark::AddCustomContext("onednn_version", std::to_string(v->major) + "." +
                                                    std::to_string(v->minor) + "." +
                                                    std::to_string(v->patch));
  benchmark::AddCustomContext("onednn_cpu_runtime", v->cpu_runtime == DNNL_RUNTIME_OMP ? "omp" : "other");
  benchmark::AddCustomContext("onednn_isa", isa_name(dnnl::get_effective_cpu_isa()));

  if (!args.run_benchmarks()) return 1;
  nkbench::release_shape_data();
  return 0;
}
