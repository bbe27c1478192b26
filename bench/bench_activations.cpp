// nk_bench_act: normkit's element-wise activations (selu, elu, leaky_relu,
// relu; forward and backward) on 16M floats, per thread count and per ISA.
//
// Names: selu_fwd/16777216/isa:avx512/threads:2
// bytes_per_second counts the minimal bytes: forward reads x and writes y
// (2S), backward reads x and dy and writes dx (3S), S = 4 bytes * n.
//
// Our flags (also as environment variables), besides Google Benchmark's:
//   --nk_isa=active|all|avx512,avx2,...  NK_BENCH_ISAS   (default: active)
//   --nk_threads=1,2                     NK_BENCH_THREADS
//   --nk_elems=N                         NK_BENCH_ELEMS  (default 16777216)
// The default --benchmark_min_time is 0.3 s; pass your own to change it.
#include "bench_common.hpp"
#include "normkit.h"

namespace {

enum class Act { Selu, Elu, LeakyRelu, Relu };
const char* act_name(Act a) {
  switch (a) {
    case Act::Selu: return "selu";
    case Act::Elu: return "elu";
    case Act::LeakyRelu: return "leaky_relu";
    case Act::Relu: return "relu";
  }
  return "?";
}

struct Data {
  int64_t n = 0;
  nkbench::Buffer x, y, dy, dx;
};
Data& data(int64_t n) {
  static Data d;
  if (d.n != n) {
    d = Data{};
    d.n = n;
    d.x = nkbench::Buffer(n);
    d.y = nkbench::Buffer(n);
    d.dy = nkbench::Buffer(n);
    d.dx = nkbench::Buffer(n);
    nkbench::fill_random(d.x.get(), n, 1);
    nkbench::fill_random(d.dy.get(), n, 2);
    nkbench::fill_value(d.y.get(), n, 0.0f);
    nkbench::fill_value(d.dx.get(), n, 0.0f);
  }
  return d;
}

nk_status run(Act a, bool backward, Data& d) {
  const int64_t n = d.n;
  const float* x = d.x.get();
  switch (a) {
    case Act::Selu: return backward ? nk_selu_backward(n, x, d.dy.get(), d.dx.get()) : nk_selu_forward(n, x, d.y.get());
    case Act::Elu:
      return backward ? nk_elu_backward(n, 1.0f, x, d.dy.get(), d.dx.get()) : nk_elu_forward(n, 1.0f, x, d.y.get());
    case Act::LeakyRelu:
      return backward ? nk_leaky_relu_backward(n, 0.01f, x, d.dy.get(), d.dx.get())
                      : nk_leaky_relu_forward(n, 0.01f, x, d.y.get());
    case Act::Relu: return backward ? nk_relu_backward(n, x, d.dy.get(), d.dx.get()) : nk_relu_forward(n, x, d.y.get());
  }
  return NK_ERR_INTERNAL;
}

void act_case(benchmark::State& st, Act a, bool backward, int64_t n, std::string isa, int threads) {
  if (nk_set_max_isa(isa.c_str()) != NK_OK || isa != nk_active_isa()) {
    st.SkipWithError(("ISA " + isa + " not active: " + nk_last_error()).c_str());
    return;
  }
  nk_set_num_threads(threads);
  Data& d = data(n);
  nk_status rc = run(a, backward, d);  // untimed warm-up of the thread pool
  for (auto _ : st) {
    rc |= run(a, backward, d);
    benchmark::ClobberMemory();
  }
  if (rc != NK_OK) st.SkipWithError(nk_last_error());
  st.SetBytesProcessed(st.iterations() * (backward ? 3 : 2) * n * static_cast<int64_t>(sizeof(float)));
}

std::vector<std::string> select_isas(const std::string& spec) {
  static const char* const kAll[] = {"avx512", "avx2", "sse2", "neon", "scalar"};
  std::vector<std::string> out;
  if (spec == "active") {
    out.push_back(nk_active_isa());
  } else if (spec == "all") {
    for (const char* name : kAll)
      if (nk_isa_available(name)) out.push_back(name);
  } else {
    out = nkbench::split_list(spec);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  nkbench::Args args(argc, argv, "0.3");
  args.check_known({"nk_isa", "nk_threads", "nk_elems"});
  const std::vector<std::string> isas = select_isas(args.get("nk_isa", "NK_BENCH_ISAS", "active"));
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));
  const int64_t n = std::atoll(args.get("nk_elems", "NK_BENCH_ELEMS", "16777216").c_str());
  if (n < 1) {
    std::fprintf(stderr, "bad element count\n");
    return 2;
  }
  for (Act a : {Act::Selu, Act::Elu, Act::LeakyRelu, Act::Relu})
    for (bool backward : {false, true})
      for (const auto& isa : isas)
        for (int t : threads) {
          const std::string name = std::string(act_name(a)) + (backward ? "_bwd/" : "_fwd/") + std::to_string(n) +
                                   "/isa:" + isa + "/threads:" + std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), act_case, a, backward, n, isa, t)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }
  benchmark::AddCustomContext("nk_version", nk_version_string());
  benchmark::AddCustomContext("nk_default_isa", nk_active_isa());
  if (!args.run_benchmarks()) return 1;
  return 0;
}
