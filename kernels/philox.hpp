// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11), the counter-based generator behind AlphaDropout and the
// LeCun-normal fill. Plain integer code, one block at a time: the same bits
// on every ISA and for any partition of the work.
//
// Streams: key = seed (low word, high word); counter = (block index low,
// block index high, offset low, offset high). Each block gives 4 words.
#pragma once

#include <cmath>
#include <cstdint>

namespace nk::kernels {
namespace {

struct Philox4 {
  uint32_t v[4];
};

inline Philox4 philox4x32_10(uint64_t seed, uint64_t block, uint64_t offset) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// keep[j] = 1 or 0 for elements i0 + j, j < n: element i keeps when the top
// 24 bits of word i % 4 of block i / 4 are below keep24 (q * 2^24).
inline void dropout_keep_mask(float* keep, int64_t i0, int64_t n, uint64_t seed, uint64_t offset,
                              uint32_t keep24) {
  int64_t j = 0;
  while (j < n) {
    const int64_t i = i0 + j;
    const Philox4 w = philox4x32_10(seed, static_cast<uint64_t>(i) / 4, offset);
    for (int64_t l = i % 4; l < 4 && j < n; ++l, ++j) keep[j] = (w.v[l] >> 8) < keep24 ? 1.0f : 0.0f;
  }
}

// Standard normal number `index` of stream (seed, offset): Box-Muller in
// double on the words of block (index, attempt-th key); with truncate, the
// first of the candidates with |z| <= 2 (each attempt gives two).
inline double philox_normal(uint64_t seed, uint64_t offset, uint64_t index, bool truncate) {
  constexpr double k2pi = 6.283185307179586476925286766559;
  constexpr double k2m32 = 1.0 / 4294967296.0;
  for (uint64_t attempt = 0; attempt < 64; ++attempt) {
    const Philox4 w = philox4x32_10(seed + attempt * 0x9E3779B97F4A7C15ull, index, offset);
    for (int h = 0; h < 2; ++h) {
      const double u1 = (static_cast<double>(w.v[2 * h]) + 1.0) * k2m32;  // (0, 1]
      const double u2 = static_cast<double>(w.v[2 * h + 1]) * k2m32;     // [0, 1)
      const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(k2pi * u2);
      if (!truncate || std::fabs(z) <= 2.0) return z;
    }
  }
  return 0.0;  // 128 candidates beyond 2 std: probability 1e-172
}

}  // namespace
}  // namespace nk::kernels
