// Run-time ISA choice: the best ISA this CPU supports, capped by NK_MAX_ISA
// (read once at load) or nk_set_max_isa(). An unknown name is an error that
// every call reports, never a silent fallback.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "error.hpp"
#include "runtime.hpp"

namespace nk {
namespace {

struct IsaEntry {
  const char* name;
  const kernels::KernelTable* (*table)();
  bool (*supported)();
};

#if defined(__x86_64__) || defined(_M_X64)
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool always() { return true; }
// Best first.
const IsaEntry kIsas[] = {
    {"avx512", &kernels::table_avx512, &has_avx512},
    {"avx2", &kernels::table_avx2, &has_avx2},
    {"sse2", &kernels::table_sse2, &always},
    {"scalar", &kernels::table_scalar, &always},
};
#elif defined(__aarch64__)
bool always() { return true; }
const IsaEntry kIsas[] = {
    {"neon", &kernels::table_neon, &always},
    {"scalar", &kernels::table_scalar, &always},
};
#else
bool always() { return true; }
const IsaEntry kIsas[] = {
    {"scalar", &kernels::table_scalar, &always},
};
#endif
constexpr int kNumIsas = sizeof(kIsas) / sizeof(kIsas[0]);

std::string isa_names() {
  std::string s;
  for (int i = 0; i < kNumIsas; ++i) s += (i ? ", " : "") + std::string(kIsas[i].name);
  return s;
}

int find_isa(const char* name) {
  for (int i = 0; i < kNumIsas; ++i)
    if (std::strcmp(kIsas[i].name, name) == 0) return i;
  return -1;
}

// The best supported ISA at or below index cap.
const kernels::KernelTable* best_from(int cap) {
  for (int i = cap; i < kNumIsas; ++i)
    if (kIsas[i].supported()) return kIsas[i].table();
  return kIsas[kNumIsas - 1].table();
}

std::atomic<const kernels::KernelTable*> g_active{nullptr};
std::string g_env_error;  // written once at load, before any call
std::mutex g_set_mutex;

struct LoadTimeChoice {
  LoadTimeChoice() {
    const char* env = std::getenv("NK_MAX_ISA");
    if (env == nullptr || *env == '\0') {
      g_active.store(best_from(0));
      return;
    }
    const int cap = find_isa(env);
    if (cap < 0) {
      g_env_error = "NK_MAX_ISA='" + std::string(env) + "' is not one of " + isa_names() +
                    " (call nk_set_max_isa to choose one)";
      return;
    }
    g_active.store(best_from(cap));
  }
};
const LoadTimeChoice g_load_time_choice;

}  // namespace

const kernels::KernelTable& kernels_for_call() {
  const kernels::KernelTable* t = g_active.load(std::memory_order_acquire);
  if (t == nullptr) fail(NK_ERR_BAD_ISA, "%s", g_env_error.c_str());
  return *t;
}

}  // namespace nk

extern "C" {

NK_API nk_status nk_set_max_isa(const char* name) {
  return nk::guarded("nk_set_max_isa", [&] {
    int cap = 0;
    if (name != nullptr) {
      cap = nk::find_isa(name);
      if (cap < 0) nk::fail(NK_ERR_BAD_ISA, "'%s' is not one of %s", name, nk::isa_names().c_str());
    }
    std::lock_guard<std::mutex> lock(nk::g_set_mutex);
    nk::g_active.store(nk::best_from(cap), std::memory_order_release);
  });
}

NK_API const char* nk_active_isa(void) {
  const auto* t = nk::g_active.load(std::memory_order_acquire);
  return t ? t->isa : "none";
}

NK_API int32_t nk_isa_available(const char* name) {
  if (name == nullptr) return 0;
  const int i = nk::find_isa(name);
  return i >= 0 && nk::kIsas[i].supported() ? 1 : 0;
}
}
