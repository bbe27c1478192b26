// Vectors whose data starts on a cache line. The kernels load per-channel
// parameters as whole vectors along a row (channels last, rows of Layer
// Norm); from malloc's 16-byte alignment every 64-byte load of AVX-512 spans
// two lines, which made the apply pass of wide channels-last rows 1.3-1.7x
// slower than that of the same bytes with aligned parameters.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace nk {

template <class T>
struct LineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlign); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const LineAllocator<U>&) const { return false; }
};

using FloatVec = std::vector<float, LineAllocator<float>>;

}  // namespace nk
