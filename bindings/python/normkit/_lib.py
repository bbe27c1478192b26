"""The C ABI of libnormkit through ctypes: types, argtypes/restype of every
function in include/normkit.h, library loading and the version check.

To bind a new C function, add one line to FUNCTIONS; a new struct, one
ctypes.Structure below (tests/test_layout.py checks it against C).
"""
import ctypes
import ctypes.util
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_uint64, c_void_p

# The library major version this binding is written for.
BINDING_MAJOR = 0
MAX_DIMS = 8

# Status codes (values fixed forever by normkit.h).
STATUS_NAMES = {
    0: "NK_OK", 1: "NK_ERR_NULL_POINTER", 2: "NK_ERR_BAD_SHAPE", 3: "NK_ERR_BAD_AXIS",
    4: "NK_ERR_BAD_ARGUMENT", 5: "NK_ERR_OVERFLOW", 6: "NK_ERR_BAD_STRUCT_SIZE",
    7: "NK_ERR_UNSUPPORTED", 8: "NK_ERR_OUT_OF_MEMORY", 9: "NK_ERR_BAD_ISA", 10: "NK_ERR_INTERNAL",
}
DTYPE_F32, DTYPE_BF16 = 0, 1
MOMENTUM_TF, MOMENTUM_TORCH = 0, 1
VARIANCE_BIASED, VARIANCE_UNBIASED = 0, 1
GHOST_STRIDED, GHOST_CONTIGUOUS = 0, 1
ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SELU = 0, 1, 2, 3, 4


class TensorDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("dims", c_int64 * MAX_DIMS),
        ("num_axes", c_int32),
        ("axes", c_int32 * MAX_DIMS),
    ]


class BnOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint64),
        ("epsilon", c_float),
        ("momentum", c_float),
        ("momentum_convention", c_int32),
        ("moving_variance", c_int32),
        ("virtual_batch_size", c_int32),
        ("virtual_grouping", c_int32),
        ("renorm", c_int32),
        ("renorm_momentum", c_float),
        ("rmax", c_float),
        ("rmin", c_float),
        ("dmax", c_float),
    ]


PF = POINTER(c_float)


class BnState(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint64),
        ("moving_mean", PF),
        ("moving_var", PF),
        ("moving_stddev", PF),
        ("renorm_mean", PF),
        ("renorm_stddev", PF),
        ("adjustment_scale", PF),
        ("adjustment_bias", PF),
        ("saved_mean", PF),
        ("saved_invstd", PF),
        ("saved_r", PF),
        ("saved_d", PF),
    ]


class GnOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_uint64), ("epsilon", c_float), ("groups", c_int32)]


class InOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint64),
        ("epsilon", c_float),
        ("momentum", c_float),
        ("momentum_convention", c_int32),
        ("moving_variance", c_int32),
    ]


class LnOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_uint64), ("epsilon", c_float)]


class SnOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint64),
        ("epsilon", c_float),
        ("momentum", c_float),
        ("use_bn", c_int32),
    ]


STRUCTS = {"nk_tensor_desc": TensorDesc, "nk_bn_options": BnOptions, "nk_bn_state": BnState,
           "nk_gn_options": GnOptions, "nk_in_options": InOptions, "nk_ln_options": LnOptions,
           "nk_sn_options": SnOptions}
LECUN_NORMAL, LECUN_TRUNCATED = 0, 1

_st = c_int32  # nk_status
_desc = POINTER(TensorDesc)
_opt = POINTER(BnOptions)
_state = POINTER(BnState)
_gn = POINTER(GnOptions)
_in = POINTER(InOptions)
_ln = POINTER(LnOptions)
_sn = POINTER(SnOptions)
_pd = POINTER(c_double)
_pi64 = POINTER(c_int64)
_v = c_void_p

# name: (restype, [argtypes]) -- every function of normkit.h.
FUNCTIONS = {
    "nk_status_string": (c_char_p, [_st]),
    "nk_last_error": (c_char_p, []),
    "nk_version": (c_int32, []),
    "nk_version_major": (c_int32, []),
    "nk_version_minor": (c_int32, []),
    "nk_version_patch": (c_int32, []),
    "nk_version_string": (c_char_p, []),
    "nk_set_max_isa": (_st, [c_char_p]),
    "nk_active_isa": (c_char_p, []),
    "nk_isa_available": (c_int32, [c_char_p]),
    "nk_set_num_threads": (_st, [c_int32]),
    "nk_get_num_threads": (c_int32, []),
    "nk_set_stream_threshold": (_st, [c_int64]),
    "nk_get_stream_threshold": (c_int64, []),
    "nk_tensor_desc_init": (_st, [_desc, c_int32, _pi64, c_int32]),
    "nk_bn_options_init": (None, [_opt]),
    "nk_bn_forward_training": (_st, [_desc, _opt, _v, _v, PF, PF, PF, PF, PF, PF]),
    "nk_bn_forward_inference": (_st, [_desc, _opt, _v, _v, PF, PF, PF, PF]),
    "nk_bn_backward": (_st, [_desc, _opt, _v, _v, PF, PF, PF, _v, PF, PF]),
    "nk_bn_state_init": (None, [_state]),
    "nk_bn_forward_training_ex": (_st, [_desc, _opt, _v, _v, PF, PF, _state]),
    "nk_bn_backward_ex": (_st, [_desc, _opt, _v, _v, PF, _state, _v, PF, PF]),
    "nk_bn_partial_stats": (_st, [_desc, _v, _pi64, _pd, _pd]),
    "nk_bn_merge_stats": (_st, [c_int64, c_int64, _pi64, _pd, _pd, _pi64, _pd, _pd]),
    "nk_bn_finalize_stats": (_st, [c_int64, _opt, c_int64, _pd, _pd, PF, PF, PF, PF]),
    "nk_bn_apply": (_st, [_desc, _v, _v, PF, PF, PF, PF]),
    "nk_bn_apply_mean64": (_st, [_desc, _v, _v, PF, PF, _pd, PF]),
    "nk_bn_backward_reduce": (_st, [_desc, _v, _v, PF, PF, _pd, _pd]),
    "nk_bn_backward_reduce_mean64": (_st, [_desc, _v, _v, _pd, PF, _pd, _pd]),
    "nk_bn_backward_apply": (_st, [_desc, c_int64, _v, _v, PF, PF, PF, _pd, _pd, _v]),
    "nk_bn_backward_apply_mean64": (_st, [_desc, c_int64, _v, _v, PF, _pd, PF, _pd, _pd, _v]),
    # activations
    "nk_relu_forward": (_st, [c_int64, PF, PF]),
    "nk_relu_backward": (_st, [c_int64, PF, PF, PF]),
    "nk_leaky_relu_forward": (_st, [c_int64, c_float, PF, PF]),
    "nk_leaky_relu_backward": (_st, [c_int64, c_float, PF, PF, PF]),
    "nk_elu_forward": (_st, [c_int64, c_float, PF, PF]),
    "nk_elu_backward": (_st, [c_int64, c_float, PF, PF, PF]),
    "nk_selu_forward": (_st, [c_int64, PF, PF]),
    "nk_selu_backward": (_st, [c_int64, PF, PF, PF]),
    "nk_selu_alpha": (c_double, []),
    "nk_selu_lambda": (c_double, []),
    "nk_prelu_forward": (_st, [_desc, _v, _v, PF, c_int64]),
    "nk_prelu_backward": (_st, [_desc, _v, _v, PF, c_int64, _v, PF]),
    "nk_crelu_forward": (_st, [_desc, _v, _v]),
    "nk_crelu_backward": (_st, [_desc, _v, _v, _v]),
    # random
    "nk_alpha_dropout_forward": (_st, [c_int64, c_float, c_uint64, c_uint64, PF, PF]),
    "nk_alpha_dropout_backward": (_st, [c_int64, c_float, c_uint64, c_uint64, PF, PF]),
    "nk_lecun_normal_init": (_st, [c_int64, c_int64, c_int32, c_uint64, c_uint64, PF]),
    # Group, Instance, Layer, RMS Norm
    "nk_gn_options_init": (None, [_gn]),
    "nk_groupnorm_forward": (_st, [_desc, _gn, _v, _v, PF, PF, PF, PF]),
    "nk_groupnorm_backward": (_st, [_desc, _gn, _v, _v, PF, PF, PF, _v, PF, PF]),
    "nk_in_options_init": (None, [_in]),
    "nk_instancenorm_forward_training": (_st, [_desc, _in, _v, _v, PF, PF, PF, PF, PF, PF]),
    "nk_instancenorm_forward_inference": (_st, [_desc, _in, _v, _v, PF, PF, PF, PF]),
    "nk_instancenorm_backward": (_st, [_desc, _in, _v, _v, PF, PF, PF, _v, PF, PF]),
    "nk_ln_options_init": (None, [_ln]),
    "nk_layernorm_forward": (_st, [_desc, _ln, _v, _v, PF, PF, PF, PF]),
    "nk_layernorm_backward": (_st, [_desc, _ln, _v, _v, PF, PF, PF, _v, PF, PF]),
    "nk_rmsnorm_forward": (_st, [_desc, _ln, _v, _v, PF, PF]),
    "nk_rmsnorm_backward": (_st, [_desc, _ln, _v, _v, PF, PF, _v, PF]),
    # Switchable Norm
    "nk_sn_options_init": (None, [_sn]),
    "nk_switchnorm_forward_training": (_st, [_desc, _sn, _v, _v, PF, PF, PF, PF, PF, PF]),
    "nk_switchnorm_forward_inference": (_st, [_desc, _sn, _v, _v, PF, PF, PF, PF, PF, PF]),
    "nk_switchnorm_backward": (_st, [_desc, _sn, _v, _v, PF, PF, PF, _v, PF, PF, PF, PF]),
    # normalization fused with a residual add and an activation
    "nk_bn_act_forward_training": (_st, [_desc, _opt, c_int32, c_float, _v, _v, _v, PF, PF, _state]),
    "nk_bn_act_forward_inference": (_st, [_desc, _opt, c_int32, c_float, _v, _v, _v, PF, PF, PF, PF]),
    "nk_bn_act_backward": (_st, [_desc, _opt, c_int32, c_float, _v, _v, _v, PF, PF, _state, _v, _v,
                                 PF, PF]),
    "nk_groupnorm_act_forward": (_st, [_desc, _gn, c_int32, c_float, _v, _v, _v, PF, PF, PF, PF]),
    "nk_groupnorm_act_backward": (_st, [_desc, _gn, c_int32, c_float, _v, _v, _v, PF, PF, PF, PF,
                                        _v, _v, PF, PF]),
}


def _find_library():
    env = os.environ.get("NORMKIT_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    for cand in (os.path.join(repo, "build", "libnormkit.so"),
                 os.path.join(repo, "build", "libnormkit.so.%d" % BINDING_MAJOR)):
        if os.path.exists(cand):
            return cand
    found = ctypes.util.find_library("normkit")
    if found:
        return found
    raise OSError("libnormkit not found: set NORMKIT_LIB to the path of libnormkit.so")


class _Missing:
    """Stands for a function the loaded library does not export (yet)."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise NotImplementedError("%s is not exported by the loaded libnormkit" % self.name)


class Library:
    def __init__(self, path=None):
        self.path = path or _find_library()
        self.cdll = ctypes.CDLL(self.path)
        self.missing = set()
        for name, (restype, argtypes) in FUNCTIONS.items():
            try:
                f = getattr(self.cdll, name)
            except AttributeError:
                self.missing.add(name)
                setattr(self, name, _Missing(name))
                continue
            f.restype = restype
            f.argtypes = argtypes
            setattr(self, name, f)
        for required in ("nk_version_major", "nk_status_string", "nk_last_error"):
            if required in self.missing:
                raise OSError("%s: not a libnormkit (no %s)" % (self.path, required))
        major = self.nk_version_major()
        if major != BINDING_MAJOR:
            raise ImportError("libnormkit at %s has major version %d; this binding needs %d"
                              % (self.path, major, BINDING_MAJOR))

    def has(self, name):
        return name not in self.missing


lib = Library()
