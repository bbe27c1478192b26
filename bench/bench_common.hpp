// What nk_bench and nk_bench_onednn share: the shapes, the benchmark names,
// the minimal byte count, data buffers kept across the cases of one shape,
// and the handling of the `--nk_*` flags (stripped before Google Benchmark
// sees argv).
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace nkbench {

// Logical N, C, H, W; NHWC cases store the same tensor as [N, H, W, C].
struct Shape {
  int64_t n, c, h, w;
  int64_t elems() const { return n * c * h * w; }
  std::string name() const {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
           std::to_string(w);
  }
};

inline const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {32, 64, 56, 56}, {32, 256, 56, 56}, {32, 512, 28, 28}, {32, 1024, 14, 14}, {32, 2048, 7, 7},
  };
  return s;
}

enum class Op { FwdTrain, FwdInfer, Bwd };
inline const Op kOps[] = {Op::FwdTrain, Op::FwdInfer, Op::Bwd};
inline const char* op_name(Op op) {
  switch (op) {
    case Op::FwdTrain: return "bn_fwd_train";
    case Op::FwdInfer: return "bn_fwd_infer";
    case Op::Bwd: return "bn_bwd";
  }
  return "?";
}
// The minimal bytes one call moves: every input read once, every output
// written once; the per-channel arrays are left out. Forward reads x and
// writes y; backward reads x and dy and writes dx.
inline int64_t minimal_bytes(Op op, const Shape& s) {
  const int64_t bytes = s.elems() * int64_t{sizeof(float)};
  return op == Op::Bwd ? 3 * bytes : 2 * bytes;
}

// 64-byte aligned float storage, its pages touched when made.
struct Buffer {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p;
  int64_t n = 0;
  Buffer() = default;
  explicit Buffer(int64_t count) : n(count) {
    const size_t bytes = (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
    p.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!p) {
      std::fprintf(stderr, "out of memory allocating %zu bytes\n", bytes);
      std::exit(2);
    }
  }
  float* get() const { return p.get(); }
};

// Random non-zero values in +-[lo, lo + span), from a counter hash (the same
// data for any thread count); parallel so that large tensors fill quickly.
inline void fill_random(float* p, int64_t n, uint64_t seed, float lo = 0.25f, float span = 1.0f) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    const float mag = lo + span * u;
    p[i] = (z & 1) ? mag : -mag;
  }
}
inline void fill_value(float* p, int64_t n, float v) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

// The tensors of one shape: x, y, dy, dx (S bytes each) and per-channel
// arrays. The same random data serves NCHW and NHWC (it is i.i.d.), so the
// cache holds one shape at a time and the cases of a shape run together.
struct ShapeData {
  Shape shape{};
  Buffer x, y, dy, dx;
  Buffer gamma, beta, mean, var, saved_mean, saved_invstd, dgamma, dbeta;
};

inline ShapeData& shape_data(const Shape& s) {
  static std::unique_ptr<ShapeData> cur;
  if (cur && cur->shape.n == s.n && cur->shape.c == s.c && cur->shape.h == s.h &&
      cur->shape.w == s.w)
    return *cur;
  cur.reset();  // free the previous shape first
  auto d = std::make_unique<ShapeData>();
  d->shape = s;
  const int64_t n = s.elems(), c = s.c;
  d->x = Buffer(n);
  d->y = Buffer(n);
  d->dy = Buffer(n);
  d->dx = Buffer(n);
  fill_random(d->x.get(), n, 1);
  fill_random(d->dy.get(), n, 2);
  fill_value(d->y.get(), n, 0.0f);  // outputs touched before any timing
  fill_value(d->dx.get(), n, 0.0f);
  for (Buffer* b : {&d->gamma, &d->beta, &d->mean, &d->var, &d->saved_mean, &d->saved_invstd,
                    &d->dgamma, &d->dbeta})
    *b = Buffer(c);
  fill_random(d->gamma.get(), c, 3, 0.5f, 1.0f);
  fill_random(d->beta.get(), c, 4, 0.1f, 0.5f);
  fill_random(d->mean.get(), c, 5, 0.0f, 0.1f);
  fill_random(d->var.get(), c, 6, 0.0f, 0.1f);
  for (int64_t i = 0; i < c; ++i) d->var.get()[i] = 1.0f + std::abs(d->var.get()[i]);
  fill_value(d->saved_mean.get(), c, 0.0f);
  fill_value(d->saved_invstd.get(), c, 1.0f);
  fill_value(d->dgamma.get(), c, 0.0f);
  fill_value(d->dbeta.get(), c, 0.0f);
  cur = std::move(d);
  return *cur;
}
inline void release_shape_data() { (void)shape_data(Shape{1, 1, 1, 1}); }

// "1,2" -> {1, 2}; "a,b" -> {"a", "b"}.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}
inline std::vector<int> parse_threads(const std::string& s) {
  std::vector<int> out;
  for (const auto& item : split_list(s)) {
    const int t = std::atoi(item.c_str());
    if (t < 1) {
      std::fprintf(stderr, "bad thread count '%s'\n", item.c_str());
      std::exit(2);
    }
    out.push_back(t);
  }
  return out;
}

// Splits argv into our `--nk_name=value` flags and the rest, and puts
// --benchmark_min_time=<default> first so a user's own flag still wins.
struct Args {
  std::vector<std::pair<std::string, std::string>> ours;
  std::vector<char*> rest;
  std::string min_time_flag;

  Args(int argc, char** argv, const char* default_min_time) {
    min_time_flag = std::string("--benchmark_min_time=") + default_min_time;
    rest.push_back(argv[0]);
    rest.push_back(&min_time_flag[0]);
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--nk_", 0) == 0) {
        const size_t eq = a.find('=');
        ours.emplace_back(a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2),
                          eq == std::string::npos ? "1" : a.substr(eq + 1));
      } else {
        rest.push_back(argv[i]);
      }
    }
  }
  // Flag value, else the environment variable, else the default.
  std::string get(const std::string& name, const char* env, const std::string& def) const {
    for (auto it = ours.rbegin(); it != ours.rend(); ++it)
      if (it->first == name) return it->second;
    const char* e = env ? std::getenv(env) : nullptr;
    return (e && *e) ? std::string(e) : def;
  }
  // Runs Google Benchmark on the rest of argv; false where it found flags
  // it does not know.
  bool run_benchmarks() {
    int bargc = static_cast<int>(rest.size());
    rest.push_back(nullptr);
    benchmark::Initialize(&bargc, rest.data());
    if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return false;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return true;
  }
  void check_known(const std::vector<std::string>& known) const {
    for (const auto& f : ours) {
      bool ok = false;
      for (const auto& k : known) ok = ok || f.first == k;
      if (!ok) {
        std::fprintf(stderr, "unknown flag --%s\n", f.first.c_str());
        std::exit(2);
      }
    }
  }
};

}  // namespace nkbench
