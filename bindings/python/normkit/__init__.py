"""normkit: SIMD CPU kernels for normalization layers, from numpy.

Arrays are float32 numpy arrays. A tensor may be C-contiguous or any
permutation of a dense layout (e.g. a PyTorch channels_last tensor seen as
numpy: NCHW shape, NHWC memory); normkit is given the memory order and the
feature axis is mapped accordingly. Outputs have the input's memory layout.
Every failure raises NormkitError with the C status and detail message.
"""
import ctypes

import numpy as np

from . import _lib
from ._lib import (ACT_ELU, ACT_LEAKY_RELU, ACT_NONE, ACT_RELU, ACT_SELU, DTYPE_F32,
                   GHOST_CONTIGUOUS, GHOST_STRIDED, MOMENTUM_TF, MOMENTUM_TORCH, VARIANCE_BIASED,
                   VARIANCE_UNBIASED, BnOptions, BnState, GnOptions, InOptions, LnOptions, SnOptions,
                   TensorDesc)

__all__ = [
    "NormkitError", "version", "version_string", "library_path", "has_function",
    "set_max_isa", "active_isa", "isa_available", "set_num_threads", "get_num_threads",
    "set_stream_threshold", "get_stream_threshold", "bn_options",
    "bn_forward_training", "bn_forward_inference", "bn_backward",
    "BnStateArrays", "bn_forward_training_ex", "bn_backward_ex",
    "bn_partial_stats", "bn_merge_stats", "bn_finalize_stats", "bn_apply",
    "bn_backward_reduce", "bn_backward_apply", "BatchNorm",
]

_L = _lib.lib
__version__ = _L.nk_version_string().decode()
_PF = ctypes.POINTER(ctypes.c_float)
_PD = ctypes.POINTER(ctypes.c_double)
_PI64 = ctypes.POINTER(ctypes.c_int64)


class NormkitError(RuntimeError):
    """A normkit call failed: .status (int), .status_name, .message (detail)."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = _lib.STATUS_NAMES.get(self.status, "NK_ERR_%d" % self.status)
        self.message = message
        desc = _L.nk_status_string(self.status).decode()
        super().__init__("%s (%s): %s" % (self.status_name, desc, message))


def _check(status):
    if status != 0:
        raise NormkitError(status, _L.nk_last_error().decode())


# ---- settings and versions ----------------------------------------------
def version():
    return (_L.nk_version_major(), _L.nk_version_minor(), _L.nk_version_patch())


def version_string():
    return _L.nk_version_string().decode()


def library_path():
    return _L.path


def has_function(name):
    """Whether the loaded library exports the C function `name`."""
    return _L.has(name)


def set_max_isa(name):
    _check(_L.nk_set_max_isa(None if name is None else name.encode()))


def active_isa():
    return _L.nk_active_isa().decode()


def isa_available(name):
    return bool(_L.nk_isa_available(name.encode()))


def set_num_threads(n):
    _check(_L.nk_set_num_threads(int(n)))


def get_num_threads():
    return _L.nk_get_num_threads()


def set_stream_threshold(nbytes):
    _check(_L.nk_set_stream_threshold(int(nbytes)))


def get_stream_threshold():
    return _L.nk_get_stream_threshold()


# ---- options --------------------------------------------------------------
_ENUMS = {
    "momentum_convention": {"tf": MOMENTUM_TF, "torch": MOMENTUM_TORCH},
    "moving_variance": {"biased": VARIANCE_BIASED, "unbiased": VARIANCE_UNBIASED},
    "virtual_grouping": {"strided": GHOST_STRIDED, "contiguous": GHOST_CONTIGUOUS},
}


def bn_options(**kw):
    """An nk_bn_options with TF's defaults, then the given fields, e.g.
    bn_options(epsilon=1e-5, momentum=0.1, momentum_convention="torch",
    moving_variance="unbiased", virtual_batch_size=4, renorm=True, rmax=3)."""
    o = BnOptions()
    _L.nk_bn_options_init(ctypes.byref(o))
    names = {f[0] for f in BnOptions._fields_} - {"struct_size"}
    for k, v in kw.items():
        if k not in names:
            raise TypeError("unknown Batch Norm option %r" % k)
        if k in _ENUMS and isinstance(v, str):
            if v not in _ENUMS[k]:
                raise ValueError("%s must be one of %s" % (k, sorted(_ENUMS[k])))
            v = _ENUMS[k][v]
        setattr(o, k, v)
    return o


def _groups(x, o):
    """G, the number of virtual batches (1 without them, or when V does not
    divide N: the library then fails, and no buffer is ever too small)."""
    V, N = o.virtual_batch_size, x.shape[0] if x.ndim else 1
    return N // V if V > 0 and N % V == 0 else 1


def _own_options(opts, maker):
    """The options of a call: maker(**opts), or a copy of options= with this
    binding's struct_size (the library reads struct_size bytes of it)."""
    o = opts.pop("options", None)
    if o is None:
        return maker(**opts)
    cls = type(maker())
    if not isinstance(o, cls):
        raise TypeError("options must be a %s, not %s" % (cls.__name__, type(o).__name__))
    if opts:
        raise TypeError("pass options= or option keywords (%s), not both" % ", ".join(sorted(opts)))
    c = cls.from_buffer_copy(o)
    c.struct_size = ctypes.sizeof(cls)
    return c


def _opts(opts):
    return _own_options(opts, bn_options)


# ---- tensors --------------------------------------------------------------
def _memory_order(x):
    """x's axes from outermost to innermost in memory. A size-1 axis has no
    stride of its own (numpy gives it any, e.g. 0 in a[None]): it keeps its
    logical place, before the next larger axis."""
    big = sorted((i for i in range(x.ndim) if x.shape[i] > 1), key=lambda i: -x.strides[i])
    ones = [i for i in range(x.ndim) if x.shape[i] == 1]
    perm = []
    for i in big:
        while ones and ones[0] < i:
            perm.append(ones.pop(0))
        perm.append(i)
    return perm + ones


def _same_buffer(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides and a.shape == b.shape)


class _Tensor:
    """A float32 array in a dense memory order, and its nk_tensor_desc."""

    def __init__(self, x, axis, name="x", batch_first=False):
        if not isinstance(x, np.ndarray):
            raise TypeError("%s must be a numpy.ndarray, not %s" % (name, type(x).__name__))
        if x.dtype != np.float32:
            raise TypeError("%s must be float32, not %s" % (name, x.dtype))
        if not 1 <= x.ndim <= _lib.MAX_DIMS:
            raise ValueError("%s must have 1 to %d dimensions, has %d" % (name, _lib.MAX_DIMS, x.ndim))
        axes = (axis,) if np.isscalar(axis) else tuple(axis)
        norm = []
        for a in axes:
            a = int(a)
            if not -x.ndim <= a < x.ndim:
                raise ValueError("axis %d out of range for %d dimensions" % (a, x.ndim))
            norm.append(a % x.ndim)
        if len(set(norm)) != len(norm) or not norm:
            raise ValueError("feature axes %r repeated or empty" % (axes,))
        self.axes = sorted(norm)
        perm = _memory_order(x)
        mem_axes = [perm.index(a) for a in self.axes]
        # batch_first: axis 0 must stay the outermost in memory (virtual
        # batches are taken along the first dimension the library is given).
        if (not np.transpose(x, perm).flags.c_contiguous or mem_axes != sorted(mem_axes)
                or (batch_first and perm[0] != 0)):
            perm = list(range(x.ndim))
            x = np.ascontiguousarray(x)
            mem_axes = list(self.axes)
        self.perm = perm
        self.inv = list(np.argsort(perm))
        self.array = x
        self.shape = x.shape
        self.channels = int(np.prod([x.shape[a] for a in self.axes]))
        d = TensorDesc()
        d.dtype = DTYPE_F32
        d.ndim = x.ndim
        for i, p in enumerate(perm):
            d.dims[i] = x.shape[p]
        d.num_axes = len(mem_axes)
        for i, a in enumerate(mem_axes):
            d.axes[i] = a
        self.desc = d

    def empty(self):
        """A new array of the same shape and memory order."""
        mem = np.empty([self.shape[p] for p in self.perm], np.float32)
        return np.transpose(mem, self.inv)

    def like(self, a, name):
        """`a` (same shape) in this tensor's memory order: itself, or a copy."""
        if not isinstance(a, np.ndarray) or a.shape != self.shape:
            raise ValueError("%s must have shape %s, has %s" % (name, self.shape, getattr(a, "shape", None)))
        if a.dtype != np.float32:
            raise TypeError("%s must be float32, not %s" % (name, a.dtype))
        if np.transpose(a, self.perm).flags.c_contiguous:
            return a
        b = self.empty()
        b[...] = a
        return b

    def out(self, out, name="out"):
        if out is None:
            return self.empty()
        if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != self.shape
                or not np.transpose(out, self.perm).flags.c_contiguous or not out.flags.writeable):
            raise ValueError("%s must be a writable float32 array of shape %s in x's memory order"
                             % (name, self.shape))
        if np.may_share_memory(out, self.array) and not _same_buffer(out, self.array):
            raise ValueError("%s overlaps x without being x itself" % name)
        return out


def _vec_in(a, n, name, dtype=np.float32):
    """A read-only parameter vector of n elements (None stays None)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.size != n:
        raise ValueError("%s must have %d elements, has %d" % (name, n, a.size))
    return a


def _vec_inout(a, n, name, dtype=np.float32):
    """A vector updated in place: must already be a contiguous array of n elements."""
    if a is None:
        return None
    if (not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous
            or not a.flags.writeable):
        raise TypeError("%s must be a writable C-contiguous %s numpy array"
                        % (name, np.dtype(dtype).name))
    if a.size != n:
        raise ValueError("%s must have %d elements, has %d" % (name, n, a.size))
    return a


def _pf(a):
    return None if a is None else a.ctypes.data_as(_PF)


def _pd(a):
    return None if a is None else a.ctypes.data_as(_PD)


def _pv(a):
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


def _integer(v, name, lo, hi):
    """An integer argument in [lo, hi]: no silent truncation of a float, no
    wrap of a value the C type cannot hold."""
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(()).item() if v.dtype.kind in "iu" else v  # an MPI buffer of one count
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError("%s must be an integer, not %s" % (name, type(v).__name__))
    v = int(v)
    if not lo <= v <= hi:
        raise ValueError("%s = %d is out of range [%d, %d]" % (name, v, lo, hi))
    return v


def _count(v, name):
    return _integer(v, name, -(1 << 63), (1 << 63) - 1)


def _u64(v, name):
    return _integer(v, name, 0, (1 << 64) - 1)


def _both_or_neither(a, b, what):
    if (a is None) != (b is None):
        raise ValueError("%s: give both or neither" % what)


# ---- Batch Norm -------------------------------------------------------------
def bn_forward_training(x, gamma=None, beta=None, moving_mean=None, moving_var=None, axis=1,
                        out=None, **opts):
    """Training forward. Returns (y, saved_mean, saved_invstd); moving_mean and
    moving_var (float32 arrays) are updated in place. opts: see bn_options."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    C = t.channels
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    _both_or_neither(moving_mean, moving_var, "moving_mean, moving_var")
    mm, mv = _vec_inout(moving_mean, C, "moving_mean"), _vec_inout(moving_var, C, "moving_var")
    G = _groups(x, o)
    y = t.out(out)
    sm = np.empty(G * C, np.float32)
    si = np.empty(G * C, np.float32)
    _check(_L.nk_bn_forward_training(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                     _pf(gamma), _pf(beta), _pf(sm), _pf(si), _pf(mm), _pf(mv)))
    return y, sm, si


def bn_forward_inference(x, moving_mean, moving_var, gamma=None, beta=None, axis=1, out=None,
                         **opts):
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    C = t.channels
    y = t.out(out)
    args = [_vec_in(a, C, n) for a, n in ((gamma, "gamma"), (beta, "beta"),
                                          (moving_mean, "moving_mean"), (moving_var, "moving_var"))]
    _check(_L.nk_bn_forward_inference(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                      *[_pf(a) for a in args]))
    return y


def bn_backward(x, dy, saved_mean, saved_invstd, gamma=None, axis=1, trainable=True, out=None,
                **opts):
    """Training backward. Returns (dx, dgamma, dbeta); dgamma, dbeta are None
    when trainable is False."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    C = t.channels
    G = _groups(x, o)
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, C, "gamma")
    sm, si = _vec_in(saved_mean, G * C, "saved_mean"), _vec_in(saved_invstd, G * C, "saved_invstd")
    dx = t.out(out)
    dg = np.empty(C, np.float32) if trainable else None
    db = np.empty(C, np.float32) if trainable else None
    _check(_L.nk_bn_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy), _pf(gamma),
                             _pf(sm), _pf(si), _pv(dx), _pf(dg), _pf(db)))
    return dx, dg, db


class BnStateArrays:
    """The arrays of nk_bn_state as numpy float32 vectors (None where unused).
    moving_*, renorm_* are updated in place; saved_* are filled by
    bn_forward_training_ex (allocated there when None) and read by bn_backward_ex."""

    FIELDS = ("moving_mean", "moving_var", "moving_stddev", "renorm_mean", "renorm_stddev",
              "adjustment_scale", "adjustment_bias", "saved_mean", "saved_invstd", "saved_r",
              "saved_d")

    def __init__(self, **arrays):
        for f in self.FIELDS:
            setattr(self, f, arrays.pop(f, None))
        if arrays:
            raise TypeError("unknown state arrays %s" % sorted(arrays))

    @classmethod
    def tf_initial(cls, channels, renorm=False):
        """TF's initial values: moving_mean 0, moving_var 1; with renorm also
        moving_stddev 1 (TF initializes it to sqrt of the moving variance's
        initializer, sqrt(1) = 1, not sqrt(1 + epsilon): left None, the library
        would derive sqrt(moving_var + epsilon)), renorm_mean 0, renorm_stddev 1."""
        s = cls(moving_mean=np.zeros(channels, np.float32), moving_var=np.ones(channels, np.float32))
        if renorm:
            s.moving_stddev = np.ones(channels, np.float32)
            s.renorm_mean = np.zeros(channels, np.float32)
            s.renorm_stddev = np.ones(channels, np.float32)
        return s

    def _c(self, C, G, allocate):
        if allocate:
            if self.saved_mean is None:
                self.saved_mean = np.empty(G * C, np.float32)
            if self.saved_invstd is None:
                self.saved_invstd = np.empty(G * C, np.float32)
        st = BnState()
        _L.nk_bn_state_init(ctypes.byref(st))
        for f in self.FIELDS:
            n = G * C if f in ("saved_mean", "saved_invstd") else C
            a = getattr(self, f)
            a = _vec_in(a, n, f) if f.startswith("adjustment") else _vec_inout(a, n, f)
            setattr(self, f, a)
            setattr(st, f, _pf(a))
        return st


def _training_state(state, t, x, o):
    """The nk_bn_state of a training forward: saved_mean and saved_invstd
    (and saved_r, saved_d under renorm) allocated where None."""
    if o.renorm:
        for f in ("saved_r", "saved_d"):
            if getattr(state, f) is None:
                setattr(state, f, np.empty(t.channels, np.float32))
    return state._c(t.channels, _groups(x, o), allocate=True)


def bn_forward_training_ex(x, state, gamma=None, beta=None, axis=1, out=None, **opts):
    """Training forward with every option (renorm, virtual batches, adjustment).
    state: BnStateArrays, updated. Returns y."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    st = _training_state(state, t, x, o)
    gamma, beta = _vec_in(gamma, t.channels, "gamma"), _vec_in(beta, t.channels, "beta")
    y = t.out(out)
    _check(_L.nk_bn_forward_training_ex(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                        _pf(gamma), _pf(beta), ctypes.byref(st)))
    return y


def bn_backward_ex(x, dy, state, gamma=None, axis=1, trainable=True, out=None, **opts):
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    C = t.channels
    G = _groups(x, o)
    st = state._c(C, G, allocate=False)
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, C, "gamma")
    dx = t.out(out)
    dg = np.empty(C, np.float32) if trainable else None
    db = np.empty(C, np.float32) if trainable else None
    _check(_L.nk_bn_backward_ex(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                _pf(gamma), ctypes.byref(st), _pv(dx), _pf(dg), _pf(db)))
    return dx, dg, db


# ---- split statistics (Sync Batch Norm) -------------------------------------
def bn_partial_stats(x, axis=1):
    """Returns (count, mean, m2) of this part: an int and two float64 arrays."""
    t = _Tensor(x, axis)
    count = ctypes.c_int64()
    mean = np.empty(t.channels, np.float64)
    m2 = np.empty(t.channels, np.float64)
    _check(_L.nk_bn_partial_stats(ctypes.byref(t.desc), _pv(t.array), ctypes.byref(count), _pd(mean),
                                  _pd(m2)))
    return count.value, mean, m2


def bn_merge_stats(counts, means, m2s):
    """Merges P partials: counts (P,), means and m2s (P, C). Returns (count, mean, m2)."""
    counts = np.array([_count(c, "counts[%d]" % i) for i, c in enumerate(np.asarray(counts, dtype=object).reshape(-1))],
                      dtype=np.int64)
    P = counts.size
    means = np.ascontiguousarray(means, dtype=np.float64)
    m2s = np.ascontiguousarray(m2s, dtype=np.float64)
    if P == 1 and means.ndim == 1 and m2s.ndim == 1:  # one part's (C,) arrays
        means, m2s = means[None], m2s[None]
    if P == 0 or means.ndim != 2 or means.shape[0] != P or means.shape != m2s.shape:
        raise ValueError("means and m2s must both be (%d, C), are %s and %s" % (P, means.shape, m2s.shape))
    C = means.shape[1]
    count = ctypes.c_int64()
    mean = np.empty(C, np.float64)
    m2 = np.empty(C, np.float64)
    _check(_L.nk_bn_merge_stats(C, P, counts.ctypes.data_as(_PI64), _pd(means), _pd(m2s),
                                ctypes.byref(count), _pd(mean), _pd(m2)))
    return count.value, mean, m2


def bn_finalize_stats(count, mean, m2, moving_mean=None, moving_var=None, **opts):
    """Returns (mean, invstd) as float32; updates moving_mean, moving_var in place."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    C = mean.size
    m2 = _vec_in(m2, C, "m2", np.float64)
    o = _opts(opts)
    _both_or_neither(moving_mean, moving_var, "moving_mean, moving_var")
    mm, mv = _vec_inout(moving_mean, C, "moving_mean"), _vec_inout(moving_var, C, "moving_var")
    mo = np.empty(C, np.float32)
    io = np.empty(C, np.float32)
    _check(_L.nk_bn_finalize_stats(C, ctypes.byref(o), _count(count, "count"), _pd(mean), _pd(m2), _pf(mo), _pf(io),
                                   _pf(mm), _pf(mv)))
    return mo, io


def _mean_in(mean, n):
    """(mean, is64): a float64 array (bn_merge_stats' mean) goes to the *_mean64
    forms as it is, since a float32 mean moves xhat by up to half its ulp over
    the standard deviation; anything else is read as float32."""
    if isinstance(mean, np.ndarray) and mean.dtype == np.float64:
        return _vec_in(mean, n, "mean", np.float64), True
    return _vec_in(mean, n, "mean"), False


def bn_apply(x, mean, invstd, gamma=None, beta=None, axis=1, out=None):
    """mean: float64 (exact on data with a large mean) or float32."""
    t = _Tensor(x, axis)
    C = t.channels
    gamma, beta, invstd = (_vec_in(a, C, n) for a, n in ((gamma, "gamma"), (beta, "beta"),
                                                         (invstd, "invstd")))
    mean, m64 = _mean_in(mean, C)
    f, pm = (_L.nk_bn_apply_mean64, _pd(mean)) if m64 else (_L.nk_bn_apply, _pf(mean))
    y = t.out(out)
    _check(f(ctypes.byref(t.desc), _pv(t.array), _pv(y), _pf(gamma), _pf(beta), pm, _pf(invstd)))
    return y


def bn_backward_reduce(x, dy, mean, invstd, axis=1):
    """Returns (sum_dy, sum_dy_xhat) of this part, float64: all-reduce them.
    mean: float64 or float32, as in bn_apply."""
    t = _Tensor(x, axis)
    C = t.channels
    dy = t.like(dy, "dy")
    invstd = _vec_in(invstd, C, "invstd")
    mean, m64 = _mean_in(mean, C)
    f, pm = (_L.nk_bn_backward_reduce_mean64, _pd(mean)) if m64 else (_L.nk_bn_backward_reduce, _pf(mean))
    s1 = np.empty(C, np.float64)
    s2 = np.empty(C, np.float64)
    _check(f(ctypes.byref(t.desc), _pv(t.array), _pv(dy), pm, _pf(invstd), _pd(s1), _pd(s2)))
    return s1, s2


def bn_backward_apply(x, dy, count, mean, invstd, sum_dy, sum_dy_xhat, gamma=None, axis=1,
                      out=None):
    """dx of this part from the all-reduced sums (count: elements per feature
    over all parts). dgamma = sum_dy_xhat and dbeta = sum_dy. mean: as in bn_apply."""
    t = _Tensor(x, axis)
    C = t.channels
    dy = t.like(dy, "dy")
    gamma, invstd = _vec_in(gamma, C, "gamma"), _vec_in(invstd, C, "invstd")
    mean, m64 = _mean_in(mean, C)
    f, pm = (_L.nk_bn_backward_apply_mean64, _pd(mean)) if m64 else (_L.nk_bn_backward_apply, _pf(mean))
    s1, s2 = _vec_in(sum_dy, C, "sum_dy", np.float64), _vec_in(sum_dy_xhat, C, "sum_dy_xhat", np.float64)
    dx = t.out(out)
    _check(f(ctypes.byref(t.desc), _count(count, "count"), _pv(t.array), _pv(dy), _pf(gamma), pm, _pf(invstd),
             _pd(s1), _pd(s2), _pv(dx)))
    return dx


# ---- layer -------------------------------------------------------------------
def _bn_inference_backward(x, dy, moving_mean, moving_var, gamma, axis, epsilon, trainable):
    """The gradient of the inference forward y = gamma * (x - moving_mean) *
    invstd + beta, invstd = 1/sqrt(moving_var + epsilon): the moving statistics
    are constants, so dx = gamma * invstd * dy, with no batch-statistics term.
    Through the library: bn_backward_apply with mean = moving_mean, that invstd
    and zero sums (which leaves exactly gamma * invstd * dy whatever the count;
    the count given is this batch's own, the least the library accepts), and,
    when trainable, bn_backward_reduce with the same mean and invstd for
    dbeta = sum(dy) and dgamma = sum(dy * (x - moving_mean) * invstd).
    Returns (dx, dgamma, dbeta); dgamma, dbeta None when not trainable."""
    C = moving_mean.size
    mv = np.asarray(moving_var, np.float32).astype(np.float64)
    invstd = (1.0 / np.sqrt(mv + float(np.float32(epsilon)))).astype(np.float32)
    mm = np.ascontiguousarray(moving_mean, np.float32)
    zeros = np.zeros(C, np.float64)
    dx = bn_backward_apply(x, dy, x.size // C, mm, invstd, zeros, zeros, gamma, axis=axis)
    if not trainable:
        return dx, None, None
    sum_dy, sum_dy_xhat = bn_backward_reduce(x, dy, mm, invstd, axis=axis)
    return dx, sum_dy_xhat.astype(np.float32), sum_dy.astype(np.float32)


class BatchNorm:
    """A Batch Norm layer holding its variables like tf.keras: gamma = 1, beta = 0,
    moving_mean = 0, moving_var = 1.

    layer(x, training=True) normalizes with the batch statistics and updates the
    moving ones; layer(x) (training=False) normalizes with the moving statistics.
    TF2 rule: a layer with trainable=False (frozen) always runs in inference mode,
    even when called with training=True — it uses, and leaves unchanged, the
    moving statistics.

    layer.backward(dy) returns dx for the x of the last call and sets
    layer.dgamma, layer.dbeta; it follows the mode of that call:
      - training mode: Batch Norm's training gradient (through the batch statistics);
      - inference mode (training=False, or a frozen layer): the moving statistics
        are constants, dx = dy * gamma / sqrt(moving_var + epsilon) per feature;
        dbeta = sum(dy), dgamma = sum(dy * (x - moving_mean) / sqrt(moving_var +
        epsilon)) for a trainable layer.
    A frozen layer (trainable False at backward) gets dgamma = dbeta = None.
    backward reads gamma and the moving statistics as they are when it runs,
    and needs a call first (RuntimeError otherwise)."""

    def __init__(self, num_features, axis=1, center=True, scale=True, trainable=True, **opts):
        self.axis = axis
        self.options = bn_options(**opts)
        self.gamma = np.ones(num_features, np.float32) if scale else None
        self.beta = np.zeros(num_features, np.float32) if center else None
        self.moving_mean = np.zeros(num_features, np.float32)
        self.moving_var = np.ones(num_features, np.float32)
        self.trainable = trainable
        self.dgamma = self.dbeta = None
        self._saved = None  # (x, saved_mean, saved_invstd); the saved pair None in inference mode

    def __call__(self, x, training=False):
        if training and self.trainable:
            y, sm, si = bn_forward_training(x, self.gamma, self.beta, self.moving_mean, self.moving_var,
                                            axis=self.axis, options=self.options)
            self._saved = (x, sm, si)
            return y
        y = bn_forward_inference(x, self.moving_mean, self.moving_var, self.gamma, self.beta,
                                 axis=self.axis, options=self.options)
        self._saved = (x, None, None)
        return y

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("backward needs a forward call (layer(x, ...)) first")
        x, sm, si = self._saved
        trainable = bool(self.trainable)
        if sm is None:  # inference mode
            dx, self.dgamma, self.dbeta = _bn_inference_backward(
                x, dy, self.moving_mean, self.moving_var, self.gamma, self.axis,
                self.options.epsilon, trainable)
        else:
            dx, self.dgamma, self.dbeta = bn_backward(x, dy, sm, si, self.gamma, axis=self.axis,
                                                      trainable=trainable, options=self.options)
        return dx


# ---- option structs of the other layers -----------------------------------------
def _make_options(cls, init, kw, what):
    o = cls()
    init(ctypes.byref(o))
    names = {f[0] for f in cls._fields_} - {"struct_size"}
    for k, v in kw.items():
        if k not in names:
            raise TypeError("unknown %s option %r" % (what, k))
        if k in _ENUMS and isinstance(v, str):
            if v not in _ENUMS[k]:
                raise ValueError("%s must be one of %s" % (k, sorted(_ENUMS[k])))
            v = _ENUMS[k][v]
        setattr(o, k, v)
    return o


def gn_options(**kw):
    """nk_gn_options: epsilon (1e-5), groups (32)."""
    return _make_options(GnOptions, _L.nk_gn_options_init, kw, "Group Norm")


def in_options(**kw):
    """nk_in_options: epsilon (1e-5), momentum (0.1), momentum_convention
    ("torch"), moving_variance ("unbiased")."""
    return _make_options(InOptions, _L.nk_in_options_init, kw, "Instance Norm")


def ln_options(**kw):
    """nk_ln_options: epsilon (1e-5)."""
    return _make_options(LnOptions, _L.nk_ln_options_init, kw, "Layer/RMS Norm")


def sn_options(**kw):
    """nk_sn_options: epsilon (1e-5), momentum (0.997), use_bn (1)."""
    return _make_options(SnOptions, _L.nk_sn_options_init, kw, "Switchable Norm")


def _o(opts, maker):
    return _own_options(opts, maker)


def _batch_tensor(x, axis):
    """A tensor whose memory axis 0 is the batch (Group/Instance/Switchable Norm, PReLU)."""
    t = _Tensor(x, axis)
    if len(t.axes) != 1 or t.axes[0] == 0:
        raise ValueError("the channel axis must be one axis other than 0 (the batch)")
    if t.perm[0] != 0:
        t = _Tensor(np.ascontiguousarray(x), axis)
    return t


def _row_tensor(x, axis):
    """A tensor in C order (Layer Norm, RMSNorm): the feature axes trailing, and
    the rows in their logical order, which the saved statistics follow."""
    t = _Tensor(x, axis)
    k = len(t.axes)
    if t.axes != list(range(x.ndim - k, x.ndim)):
        raise ValueError("Layer Norm / RMSNorm axes must be the trailing axes, got %r" % (axis,))
    if list(t.perm) != list(range(x.ndim)):
        t = _Tensor(np.ascontiguousarray(x), axis)
    return t


def _outs(n, cond=True):
    return np.empty(n, np.float32) if cond else None


def _param_grads(x, t, *grads):
    """Layer Norm / RMSNorm parameter gradients shaped as the normalized
    (trailing) axes, as gamma is (PyTorch's normalized_shape); None stays None."""
    shape = x.shape[x.ndim - len(t.axes):]
    return tuple(None if g is None else g.reshape(shape) for g in grads)


# ---- Group Norm --------------------------------------------------------------------
def group_norm_forward(x, gamma=None, beta=None, axis=1, out=None, **opts):
    """Returns (y, saved_mean, saved_invstd) (the saved arrays [N*G]).
    opts: groups, epsilon (see gn_options) or options=."""
    t = _batch_tensor(x, axis)
    o = _o(opts, gn_options)
    C, N = t.channels, x.shape[0]
    if o.groups < 1 or C % o.groups:
        raise ValueError("groups (%d) must divide the channels (%d)" % (o.groups, C))
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    y = t.out(out)
    sm, si = _outs(N * o.groups), _outs(N * o.groups)
    _check(_L.nk_groupnorm_forward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                   _pf(gamma), _pf(beta), _pf(sm), _pf(si)))
    return y, sm, si


def group_norm_backward(x, dy, saved_mean, saved_invstd, gamma=None, axis=1, trainable=True,
                        out=None, **opts):
    """Returns (dx, dgamma, dbeta); dgamma, dbeta None when not trainable."""
    t = _batch_tensor(x, axis)
    o = _o(opts, gn_options)
    C, N = t.channels, x.shape[0]
    if o.groups < 1 or C % o.groups:
        raise ValueError("groups (%d) must divide the channels (%d)" % (o.groups, C))
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, C, "gamma")
    sm = _vec_in(saved_mean, N * o.groups, "saved_mean")
    si = _vec_in(saved_invstd, N * o.groups, "saved_invstd")
    dx = t.out(out)
    dg, db = _outs(C, trainable), _outs(C, trainable)
    _check(_L.nk_groupnorm_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                    _pf(gamma), _pf(sm), _pf(si), _pv(dx), _pf(dg), _pf(db)))
    return dx, dg, db


# ---- Instance Norm --------------------------------------------------------------------
def instance_norm_forward_training(x, gamma=None, beta=None, moving_mean=None, moving_var=None,
                                   axis=1, out=None, **opts):
    """Returns (y, saved_mean, saved_invstd) (saved [N*C]); moving_* updated in place."""
    t = _batch_tensor(x, axis)
    o = _o(opts, in_options)
    C, N = t.channels, x.shape[0]
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    _both_or_neither(moving_mean, moving_var, "moving_mean, moving_var")
    mm, mv = _vec_inout(moving_mean, C, "moving_mean"), _vec_inout(moving_var, C, "moving_var")
    y = t.out(out)
    sm, si = _outs(N * C), _outs(N * C)
    _check(_L.nk_instancenorm_forward_training(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array),
                                               _pv(y), _pf(gamma), _pf(beta), _pf(sm), _pf(si),
                                               _pf(mm), _pf(mv)))
    return y, sm, si


def instance_norm_forward_inference(x, moving_mean, moving_var, gamma=None, beta=None, axis=1,
                                    out=None, **opts):
    t = _batch_tensor(x, axis)
    o = _o(opts, in_options)
    C = t.channels
    args = [_vec_in(a, C, n) for a, n in ((gamma, "gamma"), (beta, "beta"),
                                          (moving_mean, "moving_mean"), (moving_var, "moving_var"))]
    y = t.out(out)
    _check(_L.nk_instancenorm_forward_inference(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array),
                                                _pv(y), *[_pf(a) for a in args]))
    return y


def instance_norm_backward(x, dy, saved_mean, saved_invstd, gamma=None, axis=1, trainable=True,
                           out=None, **opts):
    t = _batch_tensor(x, axis)
    o = _o(opts, in_options)
    C, N = t.channels, x.shape[0]
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, C, "gamma")
    sm, si = _vec_in(saved_mean, N * C, "saved_mean"), _vec_in(saved_invstd, N * C, "saved_invstd")
    dx = t.out(out)
    dg, db = _outs(C, trainable), _outs(C, trainable)
    _check(_L.nk_instancenorm_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                       _pf(gamma), _pf(sm), _pf(si), _pv(dx), _pf(dg), _pf(db)))
    return dx, dg, db


# ---- Layer Norm and RMSNorm -----------------------------------------------------------
def layer_norm_forward(x, gamma=None, beta=None, axis=-1, out=None, **opts):
    """axis: the trailing axis or axes normalized (D their product).
    Returns (y, saved_mean, saved_invstd) (saved [R], R = x.size / D)."""
    t = _row_tensor(x, axis)
    o = _o(opts, ln_options)
    D = t.channels
    R = x.size // D
    gamma, beta = _vec_in(gamma, D, "gamma"), _vec_in(beta, D, "beta")
    y = t.out(out)
    sm, si = _outs(R), _outs(R)
    _check(_L.nk_layernorm_forward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                   _pf(gamma), _pf(beta), _pf(sm), _pf(si)))
    return y, sm, si


def layer_norm_backward(x, dy, saved_mean, saved_invstd, gamma=None, axis=-1, trainable=True,
                        out=None, **opts):
    """Returns (dx, dgamma, dbeta); dgamma, dbeta shaped as the normalized axes,
    None when not trainable."""
    t = _row_tensor(x, axis)
    o = _o(opts, ln_options)
    D = t.channels
    R = x.size // D
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, D, "gamma")
    sm, si = _vec_in(saved_mean, R, "saved_mean"), _vec_in(saved_invstd, R, "saved_invstd")
    dx = t.out(out)
    dg, db = _outs(D, trainable), _outs(D, trainable)
    _check(_L.nk_layernorm_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                    _pf(gamma), _pf(sm), _pf(si), _pv(dx), _pf(dg), _pf(db)))
    return (dx,) + _param_grads(x, t, dg, db)


def rms_norm_forward(x, gamma=None, axis=-1, out=None, **opts):
    """Returns (y, saved_rstd) (saved [R])."""
    t = _row_tensor(x, axis)
    o = _o(opts, ln_options)
    D = t.channels
    gamma = _vec_in(gamma, D, "gamma")
    y = t.out(out)
    rs = _outs(x.size // D)
    _check(_L.nk_rmsnorm_forward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(y),
                                 _pf(gamma), _pf(rs)))
    return y, rs


def rms_norm_backward(x, dy, saved_rstd, gamma=None, axis=-1, trainable=True, out=None, **opts):
    """Returns (dx, dgamma); dgamma shaped as the normalized axes, None when
    not trainable."""
    t = _row_tensor(x, axis)
    o = _o(opts, ln_options)
    D = t.channels
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, D, "gamma")
    rs = _vec_in(saved_rstd, x.size // D, "saved_rstd")
    dx = t.out(out)
    dg = _outs(D, trainable)
    _check(_L.nk_rmsnorm_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                  _pf(gamma), _pf(rs), _pv(dx), _pf(dg)))
    return (dx,) + _param_grads(x, t, dg)


# ---- Switchable Norm ---------------------------------------------------------------------
def _sn_weights(o, mean_weight, var_weight):
    k = 3 if o.use_bn else 2
    return _vec_in(mean_weight, k, "mean_weight"), _vec_in(var_weight, k, "var_weight"), k


def switch_norm_forward_training(x, mean_weight, var_weight, gamma=None, beta=None,
                                 moving_mean=None, moving_var=None, axis=1, out=None, **opts):
    """mean_weight, var_weight: the raw weights ([3], or [2] with use_bn=0).
    Returns y; moving_* updated in place."""
    t = _batch_tensor(x, axis)
    o = _o(opts, sn_options)
    C = t.channels
    mw, vw, _ = _sn_weights(o, mean_weight, var_weight)
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    _both_or_neither(moving_mean, moving_var, "moving_mean, moving_var")
    mm, mv = _vec_inout(moving_mean, C, "moving_mean"), _vec_inout(moving_var, C, "moving_var")
    y = t.out(out)
    _check(_L.nk_switchnorm_forward_training(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array),
                                             _pv(y), _pf(gamma), _pf(beta), _pf(mw), _pf(vw),
                                             _pf(mm), _pf(mv)))
    return y


def switch_norm_forward_inference(x, mean_weight, var_weight, moving_mean=None, moving_var=None,
                                  gamma=None, beta=None, axis=1, out=None, **opts):
    t = _batch_tensor(x, axis)
    o = _o(opts, sn_options)
    C = t.channels
    mw, vw, _ = _sn_weights(o, mean_weight, var_weight)
    args = [_vec_in(a, C, n) for a, n in ((gamma, "gamma"), (beta, "beta"),
                                          (moving_mean, "moving_mean"), (moving_var, "moving_var"))]
    y = t.out(out)
    _check(_L.nk_switchnorm_forward_inference(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array),
                                              _pv(y), _pf(args[0]), _pf(args[1]), _pf(mw), _pf(vw),
                                              _pf(args[2]), _pf(args[3])))
    return y


def switch_norm_backward(x, dy, mean_weight, var_weight, gamma=None, axis=1, trainable=True,
                         out=None, **opts):
    """Returns (dx, dgamma, dbeta, dmean_weight, dvar_weight) (None when not trainable)."""
    t = _batch_tensor(x, axis)
    o = _o(opts, sn_options)
    C = t.channels
    mw, vw, k = _sn_weights(o, mean_weight, var_weight)
    dy = t.like(dy, "dy")
    gamma = _vec_in(gamma, C, "gamma")
    dx = t.out(out)
    dg, db, dmw, dvw = _outs(C, trainable), _outs(C, trainable), _outs(k, trainable), _outs(k, trainable)
    _check(_L.nk_switchnorm_backward(ctypes.byref(t.desc), ctypes.byref(o), _pv(t.array), _pv(dy),
                                     _pf(gamma), _pf(mw), _pf(vw), _pv(dx), _pf(dg), _pf(db),
                                     _pf(dmw), _pf(dvw)))
    return dx, dg, db, dmw, dvw


# ---- normalization fused with a residual add and an activation ----------------------------
# y = act(norm(x) + residual). act: None (identity), "relu", "leaky_relu" (act_param: the
# slope, default 0.01), "elu" (act_param: alpha, default 1.0) or "selu"; an int is passed to
# C as an NK_ACT_* value. residual: optional, x's shape. Backward takes the forward's x,
# residual, gamma, beta, act and saved statistics, and returns (dx, dresidual, dgamma, dbeta):
# dresidual = act'(z) * dy, None without a residual; dgamma, dbeta None when not trainable.
ACTIVATIONS = {None: ACT_NONE, "none": ACT_NONE, "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU,
               "elu": ACT_ELU, "selu": ACT_SELU}
_ACT_DEFAULT_PARAM = {ACT_LEAKY_RELU: 0.01, ACT_ELU: 1.0}


def _activation(act, act_param):
    """(NK_ACT_* value, act_param) for C."""
    if isinstance(act, (int, np.integer)) and not isinstance(act, bool):
        code = int(act)
    elif act is None or isinstance(act, str):
        if act not in ACTIVATIONS:
            raise ValueError("act must be None or one of %s, not %r"
                             % (sorted(k for k in ACTIVATIONS if k is not None), act))
        code = ACTIVATIONS[act]
    else:
        raise TypeError("act must be a name, None or an NK_ACT_* int, not %s" % type(act).__name__)
    if act_param is None:
        act_param = _ACT_DEFAULT_PARAM.get(code, 0.0)
    return code, float(act_param)


def _residual(t, residual):
    return None if residual is None else t.like(residual, "residual")


def bn_act_forward_training(x, state, gamma=None, beta=None, residual=None, act=None, act_param=None,
                            axis=1, out=None, **opts):
    """y = act(BN(x) + residual) with the batch statistics: bn_forward_training_ex
    (every option) with the add and the activation fused in. state: BnStateArrays,
    updated (saved_mean, saved_invstd allocated when None). Returns y."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    code, p = _activation(act, act_param)
    st = _training_state(state, t, x, o)
    gamma, beta = _vec_in(gamma, t.channels, "gamma"), _vec_in(beta, t.channels, "beta")
    res = _residual(t, residual)
    y = t.out(out)
    _check(_L.nk_bn_act_forward_training(ctypes.byref(t.desc), ctypes.byref(o), code, p, _pv(t.array),
                                         _pv(res), _pv(y), _pf(gamma), _pf(beta), ctypes.byref(st)))
    return y


def bn_act_forward_inference(x, moving_mean, moving_var, gamma=None, beta=None, residual=None, act=None,
                             act_param=None, axis=1, out=None, **opts):
    """y = act(BN(x) + residual) with the moving statistics. Returns y."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    C = t.channels
    code, p = _activation(act, act_param)
    args = [_vec_in(a, C, n) for a, n in ((gamma, "gamma"), (beta, "beta"),
                                          (moving_mean, "moving_mean"), (moving_var, "moving_var"))]
    res = _residual(t, residual)
    y = t.out(out)
    _check(_L.nk_bn_act_forward_inference(ctypes.byref(t.desc), ctypes.byref(o), code, p, _pv(t.array),
                                          _pv(res), _pv(y), *[_pf(a) for a in args]))
    return y


def bn_act_backward(x, dy, state, gamma=None, beta=None, residual=None, act=None, act_param=None, axis=1,
                    trainable=True, out=None, **opts):
    """Backward of bn_act_forward_training from the state it filled. Returns
    (dx, dresidual, dgamma, dbeta)."""
    o = _opts(opts)
    t = _Tensor(x, axis, batch_first=o.virtual_batch_size > 0)
    code, p = _activation(act, act_param)
    C = t.channels
    st = state._c(C, _groups(x, o), allocate=False)
    dy = t.like(dy, "dy")
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    res = _residual(t, residual)
    dx = t.out(out)
    dres = None if res is None else t.empty()
    dg, db = _outs(C, trainable), _outs(C, trainable)
    _check(_L.nk_bn_act_backward(ctypes.byref(t.desc), ctypes.byref(o), code, p, _pv(t.array), _pv(res),
                                 _pv(dy), _pf(gamma), _pf(beta), ctypes.byref(st), _pv(dx), _pv(dres),
                                 _pf(dg), _pf(db)))
    return dx, dres, dg, db


def group_norm_act_forward(x, gamma=None, beta=None, residual=None, act=None, act_param=None, axis=1,
                           out=None, **opts):
    """y = act(GroupNorm(x) + residual). Returns (y, saved_mean, saved_invstd)
    (the saved arrays [N*G]). opts: groups, epsilon (see gn_options) or options=."""
    t = _batch_tensor(x, axis)
    o = _o(opts, gn_options)
    code, p = _activation(act, act_param)
    C, N = t.channels, x.shape[0]
    if o.groups < 1 or C % o.groups:
        raise ValueError("groups (%d) must divide the channels (%d)" % (o.groups, C))
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    res = _residual(t, residual)
    y = t.out(out)
    sm, si = _outs(N * o.groups), _outs(N * o.groups)
    _check(_L.nk_groupnorm_act_forward(ctypes.byref(t.desc), ctypes.byref(o), code, p, _pv(t.array),
                                       _pv(res), _pv(y), _pf(gamma), _pf(beta), _pf(sm), _pf(si)))
    return y, sm, si


def group_norm_act_backward(x, dy, saved_mean, saved_invstd, gamma=None, beta=None, residual=None,
                            act=None, act_param=None, axis=1, trainable=True, out=None, **opts):
    """Backward of group_norm_act_forward. Returns (dx, dresidual, dgamma, dbeta)."""
    t = _batch_tensor(x, axis)
    o = _o(opts, gn_options)
    code, p = _activation(act, act_param)
    C, N = t.channels, x.shape[0]
    if o.groups < 1 or C % o.groups:
        raise ValueError("groups (%d) must divide the channels (%d)" % (o.groups, C))
    dy = t.like(dy, "dy")
    gamma, beta = _vec_in(gamma, C, "gamma"), _vec_in(beta, C, "beta")
    sm = _vec_in(saved_mean, N * o.groups, "saved_mean")
    si = _vec_in(saved_invstd, N * o.groups, "saved_invstd")
    res = _residual(t, residual)
    dx = t.out(out)
    dres = None if res is None else t.empty()
    dg, db = _outs(C, trainable), _outs(C, trainable)
    _check(_L.nk_groupnorm_act_backward(ctypes.byref(t.desc), ctypes.byref(o), code, p, _pv(t.array),
                                        _pv(res), _pv(dy), _pf(gamma), _pf(beta), _pf(sm), _pf(si),
                                        _pv(dx), _pv(dres), _pf(dg), _pf(db)))
    return dx, dres, dg, db


# ---- activations (element-wise) -----------------------------------------------------------
def _ew_in(a, name, shape=None):
    if not isinstance(a, np.ndarray):
        raise TypeError("%s must be a numpy.ndarray, not %s" % (name, type(a).__name__))
    if a.dtype != np.float32:
        raise TypeError("%s must be float32, not %s" % (name, a.dtype))
    if shape is not None and a.shape != shape:
        raise ValueError("%s must have shape %s, has %s" % (name, shape, a.shape))
    return np.ascontiguousarray(a).reshape(a.shape)  # keeps a 0-d array 0-d


def _ew_out(out, shape, name="out", srcs=()):
    """The output array; it may be one of srcs itself, but not overlap them otherwise."""
    if out is None:
        return np.empty(shape, np.float32)
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError("%s must be a writable C-contiguous float32 array of shape %s" % (name, shape))
    for a in srcs:
        if np.may_share_memory(out, a) and not _same_buffer(out, a):
            raise ValueError("%s overlaps an input without being that input itself" % name)
    return out


def _ew_fwd(fn, x, out, *params):
    x = _ew_in(x, "x")
    y = _ew_out(out, x.shape, srcs=(x,))
    _check(fn(x.size, *params, _pf(x), _pf(y)))
    return y


def _ew_bwd(fn, x, dy, out, *params):
    x = _ew_in(x, "x")
    dy = _ew_in(dy, "dy", x.shape)
    dx = _ew_out(out, x.shape, srcs=(x, dy))
    _check(fn(x.size, *params, _pf(x), _pf(dy), _pf(dx)))
    return dx


def relu_forward(x, out=None):
    return _ew_fwd(_L.nk_relu_forward, x, out)


def relu_backward(x, dy, out=None):
    return _ew_bwd(_L.nk_relu_backward, x, dy, out)


def leaky_relu_forward(x, slope=0.01, out=None):
    return _ew_fwd(_L.nk_leaky_relu_forward, x, out, float(slope))


def leaky_relu_backward(x, dy, slope=0.01, out=None):
    return _ew_bwd(_L.nk_leaky_relu_backward, x, dy, out, float(slope))


def elu_forward(x, alpha=1.0, out=None):
    return _ew_fwd(_L.nk_elu_forward, x, out, float(alpha))


def elu_backward(x, dy, alpha=1.0, out=None):
    return _ew_bwd(_L.nk_elu_backward, x, dy, out, float(alpha))


def selu_forward(x, out=None):
    return _ew_fwd(_L.nk_selu_forward, x, out)


def selu_backward(x, dy, out=None):
    return _ew_bwd(_L.nk_selu_backward, x, dy, out)


def selu_alpha():
    return _L.nk_selu_alpha()


def selu_lambda():
    return _L.nk_selu_lambda()


def prelu_forward(x, slope, axis=1, out=None):
    """slope: C values (one per feature of `axis`) or 1 (shared)."""
    t = _Tensor(x, axis)
    s = np.ascontiguousarray(slope, dtype=np.float32).reshape(-1)
    if s.size not in (1, t.channels):
        raise ValueError("slope must have 1 or %d elements, has %d" % (t.channels, s.size))
    y = t.out(out)
    _check(_L.nk_prelu_forward(ctypes.byref(t.desc), _pv(t.array), _pv(y), _pf(s), s.size))
    return y


def prelu_backward(x, dy, slope, axis=1, trainable=True, out=None):
    """Returns (dx, dslope); dslope None when not trainable."""
    t = _Tensor(x, axis)
    s = np.ascontiguousarray(slope, dtype=np.float32).reshape(-1)
    if s.size not in (1, t.channels):
        raise ValueError("slope must have 1 or %d elements, has %d" % (t.channels, s.size))
    dy = t.like(dy, "dy")
    dx = t.out(out)
    ds = _outs(s.size, trainable)
    _check(_L.nk_prelu_backward(ctypes.byref(t.desc), _pv(t.array), _pv(dy), _pf(s), s.size, _pv(dx),
                                _pf(ds)))
    return dx, ds


def _crelu_tensor(x, axis):
    if not np.isscalar(axis):
        raise ValueError("CReLU takes one axis")
    x = _ew_in(x, "x")
    t = _Tensor(x, axis)
    yshape = list(x.shape)
    yshape[t.axes[0]] *= 2
    return t, tuple(yshape)


def crelu_forward(x, axis=1):
    """concat(relu(x), relu(-x)) along axis: the result has that axis doubled."""
    t, yshape = _crelu_tensor(x, axis)
    y = np.empty(yshape, np.float32)
    _check(_L.nk_crelu_forward(ctypes.byref(t.desc), _pv(t.array), _pv(y)))
    return y


def crelu_backward(x, dy, axis=1):
    t, yshape = _crelu_tensor(x, axis)
    dy = _ew_in(dy, "dy", yshape)
    dx = np.empty(x.shape, np.float32)
    _check(_L.nk_crelu_backward(ctypes.byref(t.desc), _pv(t.array), _pv(dy), _pv(dx)))
    return dx


# ---- AlphaDropout and LeCun-normal init -----------------------------------------------------
def alpha_dropout_forward(x, rate, seed, offset=0, out=None):
    """Same (seed, offset) gives the same mask; pass them again to the backward."""
    x = _ew_in(x, "x")
    y = _ew_out(out, x.shape, srcs=(x,))
    _check(_L.nk_alpha_dropout_forward(x.size, float(rate), _u64(seed, "seed"), _u64(offset, "offset"), _pf(x),
                                       _pf(y)))
    return y


def alpha_dropout_backward(dy, rate, seed, offset=0, out=None):
    dy = _ew_in(dy, "dy")
    dx = _ew_out(out, dy.shape, srcs=(dy,))
    _check(_L.nk_alpha_dropout_backward(dy.size, float(rate), _u64(seed, "seed"), _u64(offset, "offset"),
                                        _pf(dy), _pf(dx)))
    return dx


def lecun_normal_init(shape, fan_in, truncated=False, seed=0, offset=0):
    """A new float32 array of `shape` drawn from LeCun normal (N(0, 1/fan_in)),
    or Keras' truncated variant."""
    w = np.empty(shape, np.float32)
    _check(_L.nk_lecun_normal_init(w.size, _count(fan_in, "fan_in"), 1 if truncated else 0, _u64(seed, "seed"),
                                   _u64(offset, "offset"), _pf(w)))
    return w


__all__ += [
    "gn_options", "in_options", "ln_options", "sn_options",
    "group_norm_forward", "group_norm_backward",
    "instance_norm_forward_training", "instance_norm_forward_inference", "instance_norm_backward",
    "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
    "switch_norm_forward_training", "switch_norm_forward_inference", "switch_norm_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward", "selu_forward", "selu_backward", "selu_alpha", "selu_lambda",
    "prelu_forward", "prelu_backward", "crelu_forward", "crelu_backward",
    "alpha_dropout_forward", "alpha_dropout_backward", "lecun_normal_init",
    "ACTIVATIONS", "bn_act_forward_training", "bn_act_forward_inference", "bn_act_backward",
    "group_norm_act_forward", "group_norm_act_backward",
]
