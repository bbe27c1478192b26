#include "shape.hpp"

#include "error.hpp"

namespace nk {

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(NK_ERR_OVERFLOW, "%s overflows int64", what);
  return r;
}

Shape canonicalize(const nk_tensor_desc* d) {
  if (d == nullptr) fail(NK_ERR_NULL_POINTER, "desc is NULL");
  if (d->dtype == NK_DTYPE_BF16) fail(NK_ERR_UNSUPPORTED, "dtype bf16 is not supported yet");
  if (d->dtype != NK_DTYPE_F32) fail(NK_ERR_BAD_ARGUMENT, "dtype = %d is not a known dtype", d->dtype);
  if (d->ndim < 1 || d->ndim > NK_MAX_DIMS)
    fail(NK_ERR_BAD_SHAPE, "ndim = %d: must be in 1..%d", d->ndim, NK_MAX_DIMS);
  const int nd = d->ndim;
  int64_t total = 1;
  for (int i = 0; i < nd; ++i) {
    if (d->dims[i] < 1)
      fail(NK_ERR_BAD_SHAPE, "dims[%d] = %lld: every dimension must be >= 1", i,
           static_cast<long long>(d->dims[i]));
    total = checked_mul(total, d->dims[i], "number of elements");
  }
  // Bytes must fit too.
  checked_mul(total, static_cast<int64_t>(sizeof(float)) * 4, "tensor size in bytes");
  if (d->num_axes < 1 || d->num_axes > nd)
    fail(NK_ERR_BAD_AXIS, "num_axes = %d: must be in 1..ndim (%d)", d->num_axes, nd);
  bool feature[NK_MAX_DIMS] = {};
  for (int k = 0; k < d->num_axes; ++k) {
    const int a = d->axes[k];
    if (a < -nd || a >= nd) fail(NK_ERR_BAD_AXIS, "axes[%d] = %d is out of range for ndim %d", k, a, nd);
    const int ax = a < 0 ? a + nd : a;
    if (feature[ax]) fail(NK_ERR_BAD_AXIS, "axes[%d] = %d repeats axis %d", k, a, ax);
    feature[ax] = true;
  }

  Shape s;
  s.total = total;
  s.batch = d->dims[0];
  s.batch_is_feature = feature[0];
  s.channels = 1;
  for (int i = 0; i < nd; ++i)
    if (feature[i]) s.channels *= d->dims[i];
  s.count = total / s.channels;

  // Blocks of neighbouring dims of one role (size-1 dims belong to none).
  int64_t block[NK_MAX_DIMS];
  bool role[NK_MAX_DIMS];
  int nb = 0;
  for (int i = 0; i < nd; ++i) {
    if (d->dims[i] == 1) continue;
    if (nb > 0 && role[nb - 1] == feature[i]) {
      block[nb - 1] *= d->dims[i];
    } else {
      block[nb] = d->dims[i];
      role[nb] = feature[i];
      ++nb;
    }
  }
  int nfeature_blocks = 0;
  for (int b = 0; b < nb; ++b) nfeature_blocks += role[b];
  if (nfeature_blocks <= 1) {
    int64_t outer = 1, inner = 1;
    bool seen = false;
    for (int b = 0; b < nb; ++b) {
      if (role[b]) seen = true;
      else if (seen) inner *= block[b];
      else outer *= block[b];
    }
    s.view = {outer, s.channels, inner};
    return s;
  }
  // General path: gathered copy is (count, channels, 1), row-major over the
  // reduced dims for the row and over the feature dims for the channel.
  s.general = true;
  s.view = {s.count, s.channels, 1};
  int64_t rstride = s.channels, fstride = 1;
  for (int i = nd - 1; i >= 0; --i) {
    if (d->dims[i] == 1) continue;
    s.dims[s.rank] = d->dims[i];
    if (feature[i]) {
      s.gstride[s.rank] = fstride;
      fstride *= d->dims[i];
    } else {
      s.gstride[s.rank] = rstride;
      rstride *= d->dims[i];
    }
    ++s.rank;
  }
  // dims/gstride are innermost first.
  return s;
}

namespace {
// Visits the tensor in memory order with the matching offset in the copy.
template <class F>
void walk(const Shape& s, const F& f) {
  int64_t idx[NK_MAX_DIMS] = {};
  int64_t off = 0;
  const int64_t n0 = s.dims[0], g0 = s.gstride[0];
  for (int64_t t = 0; t < s.total; t += n0) {
    f(t, off, n0, g0);
    for (int k = 1; k < s.rank; ++k) {
      off += s.gstride[k];
      if (++idx[k] < s.dims[k]) break;
      off -= s.gstride[k] * s.dims[k];
      idx[k] = 0;
    }
  }
}
}  // namespace

void gather(const Shape& s, const float* src, float* dst) {
  walk(s, [&](int64_t t, int64_t off, int64_t n, int64_t g) {
    for (int64_t i = 0; i < n; ++i) dst[off + i * g] = src[t + i];
  });
}

void scatter(const Shape& s, const float* src, float* dst) {
  walk(s, [&](int64_t t, int64_t off, int64_t n, int64_t g) {
    for (int64_t i = 0; i < n; ++i) dst[t + i] = src[off + i * g];
  });
}

}  // namespace nk
