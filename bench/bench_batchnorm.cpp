// nk_bench: normkit's Batch Norm (training forward, inference forward,
// backward) over NCHW and NHWC, per thread count and per ISA, next to a
// memory-bandwidth probe of the same machine in the same run.
//
// Names (parsed by bench/compare.py):
//   bn_fwd_train/nchw/32x256x56x56/isa:avx512/threads:2
//   membw_copy/1024MiB/threads:2        (membw_read, membw_copy, membw_copy_nt)
// bytes_per_second counts the minimal bytes: forward 2S, backward 3S
// (S = bytes of x); the probe counts bytes read plus bytes written.
//
// Our flags (also as environment variables), besides Google Benchmark's:
//   --nk_isa=active|all|avx512,avx2,...  NK_BENCH_ISAS   (default: active)
//   --nk_threads=1,2                     NK_BENCH_THREADS
//   --nk_probe_mib=auto|N[,N...]         NK_BENCH_PROBE_MIB (default auto: see
//                                        default_probe_mib(); a list probes each size)
// The default --benchmark_min_time is 0.3 s; pass your own to change it.
#include <immintrin.h>
#include <unistd.h>

#include "bench_common.hpp"
#include "normkit.h"

namespace {

using nkbench::Op;
using nkbench::Shape;

struct ProbeData;
ProbeData& probe_data(int64_t n, bool release = false);

// ---------------------------------------------------------------- BN cases

enum class Layout { NCHW, NHWC };
const char* layout_name(Layout l) { return l == Layout::NCHW ? "nchw" : "nhwc"; }

void bn_case(benchmark::State& st, Op op, Layout layout, Shape s, std::string isa, int threads) {
  if (nk_set_max_isa(isa.c_str()) != NK_OK || isa != nk_active_isa()) {
    st.SkipWithError(("ISA " + isa + " not active: " + nk_last_error()).c_str());
    return;
  }
  nk_set_num_threads(threads);
  probe_data(0, true);  // the probe's buffers are not needed any more
  nkbench::ShapeData& d = nkbench::shape_data(s);

  nk_tensor_desc desc;
  const int64_t nchw[4] = {s.n, s.c, s.h, s.w};
  const int64_t nhwc[4] = {s.n, s.h, s.w, s.c};
  if (layout == Layout::NCHW) nk_tensor_desc_init(&desc, 4, nchw, 1);
  else nk_tensor_desc_init(&desc, 4, nhwc, -1);
  nk_bn_options opt;
  nk_bn_options_init(&opt);

  auto train = [&] {
    return nk_bn_forward_training(&desc, &opt, d.x.get(), d.y.get(), d.gamma.get(), d.beta.get(),
                                  d.saved_mean.get(), d.saved_invstd.get(), d.mean.get(),
                                  d.var.get());
  };
  auto call = [&]() -> nk_status {
    switch (op) {
      case Op::FwdTrain: return train();
      case Op::FwdInfer:
        return nk_bn_forward_inference(&desc, &opt, d.x.get(), d.y.get(), d.gamma.get(),
                                       d.beta.get(), d.mean.get(), d.var.get());
      case Op::Bwd:
        return nk_bn_backward(&desc, &opt, d.x.get(), d.dy.get(), d.gamma.get(),
                              d.saved_mean.get(), d.saved_invstd.get(), d.dx.get(),
                              d.dgamma.get(), d.dbeta.get());
    }
    return NK_ERR_INTERNAL;
  };
  // Untimed: the statistics backward needs, and a first call that checks
  // the arguments and warms scratch memory and the thread pool.
  nk_status rc = train();
  if (rc == NK_OK) rc = call();
  if (rc != NK_OK) {
    st.SkipWithError(nk_last_error());
    return;
  }
  for (auto _ : st) {
    rc |= call();
    benchmark::ClobberMemory();
  }
  if (rc != NK_OK) st.SkipWithError(nk_last_error());
  st.SetBytesProcessed(st.iterations() * nkbench::minimal_bytes(op, s));
}

// ---------------------------------------------------------- bandwidth probe

// Per-thread pieces of n floats, split at 64-byte boundaries.
inline void piece(int64_t n, int t, int nt, int64_t& b, int64_t& e) {
  const int64_t lines = n / 16;
  b = lines * t / nt * 16;
  e = t + 1 == nt ? n : lines * (t + 1) / nt * 16;
}

__attribute__((target("avx2"))) float read_avx2(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  alignas(32) float v[8];
  _mm256_store_ps(v, a);
  float s = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
  for (; i < n; ++i) s += p[i];
  return s;
}
float read_sse2(const float* p, int64_t n) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm_add_ps(a0, _mm_load_ps(p + i));
    a1 = _mm_add_ps(a1, _mm_load_ps(p + i + 4));
    a2 = _mm_add_ps(a2, _mm_load_ps(p + i + 8));
    a3 = _mm_add_ps(a3, _mm_load_ps(p + i + 12));
  }
  alignas(16) float v[4];
  _mm_store_ps(v, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
  float s = v[0] + v[1] + v[2] + v[3];
  for (; i < n; ++i) s += p[i];
  return s;
}
__attribute__((target("avx2"))) void copy_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 v0 = _mm256_load_ps(src + i), v1 = _mm256_load_ps(src + i + 8);
    const __m256 v2 = _mm256_load_ps(src + i + 16), v3 = _mm256_load_ps(src + i + 24);
    _mm256_store_ps(dst + i, v0);
    _mm256_store_ps(dst + i + 8, v1);
    _mm256_store_ps(dst + i + 16, v2);
    _mm256_store_ps(dst + i + 24, v3);
  }
  for (; i < n; ++i) dst[i] = src[i];
}
__attribute__((target("avx2"))) void copy_nt_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 v0 = _mm256_load_ps(src + i), v1 = _mm256_load_ps(src + i + 8);
    const __m256 v2 = _mm256_load_ps(src + i + 16), v3 = _mm256_load_ps(src + i + 24);
    _mm256_stream_ps(dst + i, v0);
    _mm256_stream_ps(dst + i + 8, v1);
    _mm256_stream_ps(dst + i + 16, v2);
    _mm256_stream_ps(dst + i + 24, v3);
  }
  for (; i < n; ++i) dst[i] = src[i];
  _mm_sfence();
}
void copy_sse2(const float* src, float* dst, int64_t n, bool nt) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128 v0 = _mm_load_ps(src + i), v1 = _mm_load_ps(src + i + 4);
    const __m128 v2 = _mm_load_ps(src + i + 8), v3 = _mm_load_ps(src + i + 12);
    if (nt) {
      _mm_stream_ps(dst + i, v0);
      _mm_stream_ps(dst + i + 4, v1);
      _mm_stream_ps(dst + i + 8, v2);
      _mm_stream_ps(dst + i + 12, v3);
    } else {
      _mm_store_ps(dst + i, v0);
      _mm_store_ps(dst + i + 4, v1);
      _mm_store_ps(dst + i + 8, v2);
      _mm_store_ps(dst + i + 12, v3);
    }
  }
  for (; i < n; ++i) dst[i] = src[i];
  _mm_sfence();
}

bool have_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

enum class Probe { Read, Copy, CopyNT };
const char* probe_name(Probe p) {
  switch (p) {
    case Probe::Read: return "membw_read";
    case Probe::Copy: return "membw_copy";
    case Probe::CopyNT: return "membw_copy_nt";
  }
  return "?";
}

// Two buffers of the probe's size, kept across the probe cases; first
// touched with the same static split over threads that the cases use.
struct ProbeData {
  int64_t n = 0;
  nkbench::Buffer a, b;
};
ProbeData& probe_data(int64_t n, bool release) {
  static std::unique_ptr<ProbeData> cur;
  if (release) {
    cur.reset();
    static ProbeData none;
    return none;
  }
  if (cur && cur->n == n) return *cur;
  cur.reset();
  nkbench::release_shape_data();
  cur = std::make_unique<ProbeData>();
  cur->n = n;
  cur->a = nkbench::Buffer(n);
  cur->b = nkbench::Buffer(n);
  nkbench::fill_random(cur->a.get(), n, 7);
  nkbench::fill_value(cur->b.get(), n, 0.0f);
  return *cur;
}

void probe_case(benchmark::State& st, Probe probe, int64_t bytes, int threads) {
  const int64_t n = bytes / int64_t{sizeof(float)};
  ProbeData& d = probe_data(n);
  const bool avx2 = have_avx2();
  float sink = 0;
  auto run = [&] {
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      int64_t b, e;
      piece(n, omp_get_thread_num(), omp_get_num_threads(), b, e);
      const float* src = d.a.get() + b;
      float* dst = d.b.get() + b;
      switch (probe) {
        case Probe::Read: sink += avx2 ? read_avx2(src, e - b) : read_sse2(src, e - b); break;
        case Probe::Copy: avx2 ? copy_avx2(src, dst, e - b) : copy_sse2(src, dst, e - b, false); break;
        case Probe::CopyNT: avx2 ? copy_nt_avx2(src, dst, e - b) : copy_sse2(src, dst, e - b, true); break;
      }
    }
  };
  run();  // untimed: threads started, pages warm
  for (auto _ : st) {
    run();
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(sink);
  st.SetBytesProcessed(st.iterations() * (probe == Probe::Read ? bytes : 2 * bytes));
  st.SetLabel(avx2 ? "avx2" : "sse2");
}

// Well beyond the last-level cache, so the probe sees memory: at least
// 256 MiB per buffer and twice the L3 the OS reports (capped at 4 GiB).
int64_t default_probe_mib() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  int64_t mib = 256;
  if (l3 > 0) mib = std::max<int64_t>(mib, 2 * (static_cast<int64_t>(l3) >> 20));
  return std::min<int64_t>(mib, 4096);
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
        std::fprintf(stderr, "unknown ISA '%s' (one of avx512, avx2, sse2, neon, scalar)\n",
                     name.c_str());
        std::exit(2);
      }
      // Kept even when this CPU lacks it: the case reports the skip.
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
  args.check_known({"nk_isa", "nk_threads", "nk_probe_mib"});
  const std::vector<std::string> isas = select_isas(args.get("nk_isa", "NK_BENCH_ISAS", "active"));
  const std::vector<int> threads = nkbench::parse_threads(args.get("nk_threads", "NK_BENCH_THREADS", "1,2"));
  std::vector<int64_t> probe_mibs;
  for (const auto& item : nkbench::split_list(args.get("nk_probe_mib", "NK_BENCH_PROBE_MIB", "auto"))) {
    const int64_t mib = item == "auto" ? default_probe_mib() : std::atoll(item.c_str());
    if (mib < 1) {
      std::fprintf(stderr, "bad probe size '%s' (MiB, or auto)\n", item.c_str());
      return 2;
    }
    probe_mibs.push_back(mib);
  }

  for (int64_t mib : probe_mibs)
    for (Probe p : {Probe::Read, Probe::Copy, Probe::CopyNT})
      for (int t : threads) {
        const std::string name = std::string(probe_name(p)) + "/" + std::to_string(mib) +
                                 "MiB/threads:" + std::to_string(t);
        benchmark::RegisterBenchmark(name.c_str(), probe_case, p, mib << 20, t)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
  // Shape outermost, so one shape's buffers serve all its cases.
  for (const Shape& s : nkbench::shapes())
    for (Layout l : {Layout::NCHW, Layout::NHWC})
      for (Op op : nkbench::kOps)
        for (const auto& isa : isas)
          for (int t : threads) {
            const std::string name = std::string(nkbench::op_name(op)) + "/" + layout_name(l) + "/" +
                                     s.name() + "/isa:" + isa + "/threads:" + std::to_string(t);
            benchmark::RegisterBenchmark(name.c_str(), bn_case, op, l, s, isa, t)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
          }

  benchmark::AddCustomContext("nk_version", nk_version_string());
  benchmark::AddCustomContext("nk_default_isa", nk_active_isa());
  benchmark::AddCustomContext("nk_probe_default_mib", std::to_string(default_probe_mib()));
  benchmark::AddCustomContext("l3_bytes", std::to_string(sysconf(_SC_LEVEL3_CACHE_SIZE)));

  if (!args.run_benchmarks()) return 1;
  probe_data(0, true);
  nkbench::release_shape_data();
  return 0;
}
