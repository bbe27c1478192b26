// The per-call arrays of the capi layer (per channel, group or row:
// coefficients, partial statistics, sums): their data starts on a cache
// line, and their blocks are kept for the next call.
//
// Alignment: the kernels load per-channel parameters as whole vectors along
// a row (channels last, rows of Layer Norm); from malloc's 16-byte alignment
// every 64-byte load of AVX-512 spans two lines, which made the apply pass of
// wide channels-last rows 1.3-1.7x slower.
//
// Reuse: the arrays of one call often pass malloc's trim threshold together,
// and freeing them shrank the heap after every call (a TLB shootdown that
// stops every thread of the process, then page faults and zeroing to grow it
// again: 10% of a two-axis Batch Norm's time at 2 threads; blocks past
// malloc's mmap threshold were page faults in every call, 1.3-1.45x the
// time of a Layer Norm backward). A few blocks per thread, of power-of-two
// sizes up to kMaxCached, go back to a small cache instead: at most
// kMaxKept bytes a thread are kept (larger blocks, such as the gathered
// copies of big tensors, go back to malloc, where the call's own work
// dwarfs the heap's).
#pragma once

#include <omp.h>

#include <cstddef>
#include <new>
#include <vector>

namespace nk {

class BlockCache {
 public:
  static constexpr std::align_val_t kAlign{64};
  static constexpr std::size_t kMinBlock = 256;
  static constexpr std::size_t kMaxCached = std::size_t{16} << 20;
  static constexpr std::size_t kMaxKept = std::size_t{64} << 20;

  // The bytes a request of `bytes` gets: a power of two where it may be
  // cached, else exactly what was asked.
  static std::size_t block_bytes(std::size_t bytes) {
    if (bytes > kMaxCached) return bytes;
    std::size_t b = kMinBlock;
    while (b < bytes) b *= 2;
    return b;
  }
  void* take(std::size_t bytes) {
    for (Slot& s : slots_)
      if (s.p && s.bytes == bytes) {
        void* p = s.p;
        s.p = nullptr;
        kept_ -= bytes;
        return p;
      }
    return ::operator new(bytes, kAlign);
  }
  void give(void* p, std::size_t bytes) {
    if (bytes <= kMaxCached && kept_ + bytes <= kMaxKept)
      for (Slot& s : slots_)
        if (!s.p) {
          s = {p, bytes};
          kept_ += bytes;
          return;
        }
    ::operator delete(p, kAlign);
  }
  ~BlockCache() {
    for (Slot& s : slots_)
      if (s.p) ::operator delete(s.p, kAlign);
  }
  static BlockCache& local() {
    thread_local BlockCache cache;
    return cache;
  }

 private:
  struct Slot {
    void* p = nullptr;
    std::size_t bytes = 0;
  };
  Slot slots_[32];
  std::size_t kept_ = 0;
};

template <class T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(BlockCache::local().take(BlockCache::block_bytes(n * sizeof(T))));
  }
  void deallocate(T* p, std::size_t n) { BlockCache::local().give(p, BlockCache::block_bytes(n * sizeof(T))); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const LineAllocator<U>&) const { return false; }
};

// One uninitialized block of `floats` floats per thread of the parallel
// region the calling thread opens next (at most `threads`), or for the
// calling thread itself where it runs the work alone. All are taken from
// and given back to the calling thread's cache, so that a worker thread's
// block is not a fresh allocation (page faults) in every call. The caller
// may itself be a thread of the application's own OpenMP team: a block is
// found by the thread's number in the region one level below the caller's.
class ThreadScratch {
 public:
  ThreadScratch(std::size_t floats, int threads)
      : bytes_(BlockCache::block_bytes(floats * sizeof(float))), level_(omp_get_level()) {
    if (floats > 0)
      for (int t = 0; t < threads; ++t) blocks_.push_back(static_cast<float*>(BlockCache::local().take(bytes_)));
  }
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  ~ThreadScratch() {
    for (float* p : blocks_) BlockCache::local().give(p, bytes_);
  }
  float* get() const {
    const int t = omp_get_level() > level_ ? omp_get_ancestor_thread_num(level_ + 1) : 0;
    return blocks_.at(static_cast<std::size_t>(t));
  }

 private:
  std::size_t bytes_;
  int level_;
  std::vector<float*> blocks_;
};

using FloatVec = std::vector<float, LineAllocator<float>>;
using DoubleVec = std::vector<double, LineAllocator<double>>;

}  // namespace nk
