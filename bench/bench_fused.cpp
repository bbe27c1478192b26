// nk_bench_fused: normalization fused with a residual add and an activation,
// beside the same computation as separate normkit ops, on one shape in both
// layouts, per thread count.
//
// Names: bn_add_relu/nhwc/32x256x56x56/fused/bwd/threads:2
//   op       bn_relu, bn_add_relu, bn_selu (Batch Norm, training), gn_selu
//            (Group Norm, 32 groups)
//   variant  fused: nk_bn_act_* / nk_groupnorm_act_*, one call
//            unfused: the norm's call, then (bn_add_relu) an add loop, then
//            the activation's call; backward: the activation's backward,
//            then the norm's (its dz is also dresidual)
// bytes_per_second counts the minimal bytes of the fused op, for both
// variants: forward reads x (and the residual) and writes y; backward reads
// x and dy (and the residual) and writes dx (and dresidual).
//
// Our flags (also as environment variables), besides Google Benchmark's:
//   --nk_threads=1,2             NK_BENCH_THREADS
//   --nk_shape=32x256x56x56      NK_BENCH_SHAPE   (logical N x C x H x W)
// The default --benchmark_min_time is 0.3 s.
#include "bench_common.hpp"
#include "normkit.h"

namespace {

enum class Op { BnRelu, BnAddRelu, BnSelu, GnSelu };
const char* op_name(Op op) {
  switch (op) {
    case Op::BnRelu: return "bn_relu";
    case Op::BnAddRelu: return "bn_add_relu";
    case Op::BnSelu: return "bn_selu";
    case Op::GnSelu: return "gn_selu";
  }
  return "?";
}
bool has_residual(Op op) { return op == Op::BnAddRelu; }
int32_t act_of(Op op) { return op == Op::BnRelu || op == Op::BnAddRelu ? NK_ACT_RELU : NK_ACT_SELU; }
constexpr int32_t kGroups = 32;

struct Data {
  nkbench::Shape s{};
  nkbench::Buffer x, res, y, z, dy, dx, dres, dz;
  nkbench::Buffer gamma, beta, sm, si, dg, db, gsm, gsi;
};
Data& data(const nkbench::Shape& s) {
  static Data d;
  if (d.s.elems() != s.elems() || d.s.c != s.c) {
    d = Data{};
    d.s = s;
    const int64_t n = s.elems(), c = s.c;
    for (auto* b : {&d.x, &d.res, &d.y, &d.z, &d.dy, &d.dx, &d.dres, &d.dz}) *b = nkbench::Buffer(n);
    for (auto* b : {&d.gamma, &d.beta, &d.sm, &d.si, &d.dg, &d.db}) *b = nkbench::Buffer(c);
    for (auto* b : {&d.gsm, &d.gsi}) *b = nkbench::Buffer(s.n * kGroups);
    nkbench::fill_random(d.x.get(), n, 1);
    nkbench::fill_random(d.res.get(), n, 2);
    nkbench::fill_random(d.dy.get(), n, 3);
    for (auto* b : {&d.y, &d.z, &d.dx, &d.dres, &d.dz}) nkbench::fill_value(b->get(), n, 0.0f);
    nkbench::fill_random(d.gamma.get(), c, 4, 0.5f, 1.0f);
    nkbench::fill_random(d.beta.get(), c, 5, 0.1f, 0.5f);
  }
  return d;
}

nk_tensor_desc desc_of(const nkbench::Shape& s, bool nhwc) {
  nk_tensor_desc d{};
  d.dtype = NK_DTYPE_F32;
  d.ndim = 4;
  const int64_t dims[2][4] = {{s.n, s.c, s.h, s.w}, {s.n, s.h, s.w, s.c}};
  for (int i = 0; i < 4; ++i) d.dims[i] = dims[nhwc][i];
  d.num_axes = 1;
  d.axes[0] = nhwc ? -1 : 1;
  return d;
}

// z += r, spread over the threads as normkit spreads its own work.
void add_inplace(float* z, const float* r, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) z[i] += r[i];
}

nk_status act_forward(int32_t act, int64_t n, const float* z, float* y) {
  return act == NK_ACT_RELU ? nk_relu_forward(n, z, y) : nk_selu_forward(n, z, y);
}
nk_status act_backward(int32_t act, int64_t n, const float* z, const float* dy, float* dz) {
  return act == NK_ACT_RELU ? nk_relu_backward(n, z, dy, dz) : nk_selu_backward(n, z, dy, dz);
}

struct Case {
  Op op;
  bool nhwc, fused, backward;
  int threads;
};

nk_status run(const Case& c, Data& d) {
  const nk_tensor_desc desc = desc_of(d.s, c.nhwc);
  const int64_t n = d.s.elems();
  const int32_t act = act_of(c.op);
  const float* res = has_residual(c.op) ? d.res.get() : nullptr;
  nk_bn_options bo;
  nk_bn_options_init(&bo);
  nk_gn_options go;
  nk_gn_options_init(&go);
  go.groups = kGroups;
  nk_bn_state st;
  nk_bn_state_init(&st);
  st.saved_mean = d.sm.get();
  st.saved_invstd = d.si.get();
  const bool gn = c.op == Op::GnSelu;
  float* sm = gn ? d.gsm.get() : d.sm.get();
  float* si = gn ? d.gsi.get() : d.si.get();
  if (c.fused && !c.backward)
    return gn ? nk_groupnorm_act_forward(&desc, &go, act, 0.0f, d.x.get(), res, d.y.get(), d.gamma.get(),
                                         d.beta.get(), sm, si)
              : nk_bn_act_forward_training(&desc, &bo, act, 0.0f, d.x.get(), res, d.y.get(), d.gamma.get(),
                                           d.beta.get(), &st);
  if (c.fused)
    return gn ? nk_groupnorm_act_backward(&desc, &go, act, 0.0f, d.x.get(), res, d.dy.get(), d.gamma.get(),
                                          d.beta.get(), sm, si, d.dx.get(), nullptr, d.dg.get(), d.db.get())
              : nk_bn_act_backward(&desc, &bo, act, 0.0f, d.x.get(), res, d.dy.get(), d.gamma.get(), d.beta.get(),
                                   &st, d.dx.get(), res ? d.dres.get() : nullptr, d.dg.get(), d.db.get());
  nk_status rc = NK_OK;
  if (!c.backward) {
    rc |= gn ? nk_groupnorm_forward(&desc, &go, d.x.get(), d.z.get(), d.gamma.get(), d.beta.get(), sm, si)
             : nk_bn_forward_training(&desc, &bo, d.x.get(), d.z.get(), d.gamma.get(), d.beta.get(), sm, si,
                                      nullptr, nullptr);
    if (res) add_inplace(d.z.get(), res, n, c.threads);
    return rc | act_forward(act, n, d.z.get(), d.y.get());
  }
  rc |= act_backward(act, n, d.z.get(), d.dy.get(), d.dz.get());
  return rc | (gn ? nk_groupnorm_backward(&desc, &go, d.x.get(), d.dz.get(), d.gamma.get(), sm, si, d.dx.get(),
                                          d.dg.get(), d.db.get())
                  : nk_bn_backward(&desc, &bo, d.x.get(), d.dz.get(), d.gamma.get(), sm, si, d.dx.get(),
                                   d.dg.get(), d.db.get()));
}

void fused_case(benchmark::State& st, Case c, nkbench::Shape s) {
  nk_set_num_threads(c.threads);
  Data& d = data(s);
  // Untimed: the forward (unfused: z, the pre-activation backward reads;
  // both: the saved statistics), and a warm-up of the thread pool.
  nk_status rc = run({c.op, c.nhwc, false, false, c.threads}, d);
  rc |= run(c, d);
  for (auto _ : st) {
    rc |= run(c, d);
    benchmark::ClobberMemory();
  }
  if (rc != NK_OK) st.SkipWithError(nk_last_error());
  const int64_t streams = c.backward ? (has_residual(c.op) ? 5 : 3) : (has_residual(c.op) ? 3 : 2);
  st.SetBytesProcessed(st.iterations() * streams * s.elems() * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  nkbench::Args args(argc, argv, "0.3");
  args.check_known({"nk_threads", "nk_shape"});
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));
  const std::string shape = args.get("nk_shape", "NK_BENCH_SHAPE", "32x256x56x56");
  nkbench::Shape s{};
  if (std::sscanf(shape.c_str(), "%ldx%ldx%ldx%ld", &s.n, &s.c, &s.h, &s.w) != 4 || s.elems() < 1 ||
      s.c % kGroups != 0) {
    std::fprintf(stderr, "bad --nk_shape %s (N x C x H x W, C a multiple of %d)\n", shape.c_str(), kGroups);
    return 2;
  }
  for (Op op : {Op::BnRelu, Op::BnAddRelu, Op::BnSelu, Op::GnSelu})
    for (bool nhwc : {false, true})
      for (bool backward : {false, true})
        for (int t : threads)
          for (bool fused : {true, false}) {
            const std::string name = std::string(op_name(op)) + (nhwc ? "/nhwc/" : "/nchw/") + s.name() +
                                     (fused ? "/fused/" : "/unfused/") + (backward ? "bwd" : "fwd") +
                                     "/threads:" + std::to_string(t);
            benchmark::RegisterBenchmark(name.c_str(), fused_case, Case{op, nhwc, fused, backward, t}, s)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
          }
  benchmark::AddCustomContext("nk_version", nk_version_string());
  benchmark::AddCustomContext("nk_isa", nk_active_isa());
  if (!args.run_benchmarks()) return 1;
  return 0;
}
