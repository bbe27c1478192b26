"""Batch Norm and Group Norm fused with a residual add and an activation,
y = act(norm(x) + residual), against the same composition in PyTorch
(float64, forward and autograd backward), and against normkit's own unfused
ops; NCHW, NHWC and channels_last memory."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import normkit as nk

RNG = np.random.default_rng(11)

# (name, act, act_param, torch reference)
ACTS = [
    ("none", None, None, lambda z: z),
    ("relu", "relu", None, F.relu),
    ("leaky_relu", "leaky_relu", 0.2, lambda z: F.leaky_relu(z, 0.2)),
    ("elu", "elu", 1.3, lambda z: F.elu(z, 1.3)),
    ("selu", "selu", None, F.selu),
]
LAYOUTS = ["NCHW", "NHWC", "channels_last"]


def rand(*shape, scale=1.0, shift=0.0):
    return (RNG.standard_normal(shape) * scale + shift).astype(np.float32)


def close(a, b, tol=2e-4):
    b = b.detach().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol)


def t64(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


class Layout:
    """An NCHW tensor handed to normkit as NCHW (axis 1), as an NHWC array
    (axis -1), or as NCHW shape over NHWC memory (axis 1, no copy); results
    come back in NCHW."""

    def __init__(self, name):
        self.name = name
        self.axis = -1 if name == "NHWC" else 1

    def to(self, a):
        if self.name == "NHWC":
            return np.moveaxis(a, 1, -1).copy()
        if self.name == "channels_last":
            v = np.moveaxis(np.moveaxis(a, 1, -1).copy(), -1, 1)
            assert not v.flags.c_contiguous
            return v
        return a

    def back(self, a):
        return np.moveaxis(a, -1, 1) if self.name == "NHWC" else a


def act_ids(acts):
    return [a[0] for a in acts]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "no_residual"])
@pytest.mark.parametrize("name,act,param,ref", ACTS, ids=act_ids(ACTS))
def test_bn_act_training_vs_torch(name, act, param, ref, with_residual, layout):
    L = Layout(layout)
    N, C, H, W = 4, 6, 3, 5
    x = rand(N, C, H, W, scale=2.0, shift=0.5)
    r = rand(N, C, H, W) if with_residual else None
    g, b = rand(C, scale=0.5, shift=1.0), rand(C)
    dy = rand(N, C, H, W)
    xt, gt, bt = t64(x, True), t64(g, True), t64(b, True)
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    z = F.batch_norm(xt, rm, rv, gt, bt, training=True, momentum=0.1, eps=1e-5)
    if with_residual:
        rt = t64(r, True)
        z = z + rt
    yt = ref(z)
    yt.backward(t64(dy))

    opts = dict(epsilon=1e-5, momentum=0.1, momentum_convention="torch", moving_variance="unbiased")
    state = nk.BnStateArrays.tf_initial(C)
    xl = L.to(x)
    # the residual and dy in plain NCHW order whatever x's: the binding reorders them
    rl = None if r is None else (r if layout == "channels_last" else L.to(r))
    dyl = dy if layout == "channels_last" else L.to(dy)
    y = nk.bn_act_forward_training(xl, state, g, b, residual=rl, act=act, act_param=param,
                                   axis=L.axis, **opts)
    assert y.shape == xl.shape and y.strides == xl.strides
    close(L.back(y), yt)
    close(state.moving_mean, rm)
    close(state.moving_var, rv)
    assert state.saved_mean.shape == (C,) and state.saved_invstd.shape == (C,)
    dx, dr, dg, db = nk.bn_act_backward(xl, dyl, state, g, b, residual=rl, act=act, act_param=param,
                                        axis=L.axis, **opts)
    close(L.back(dx), xt.grad, 1e-3)
    close(dg, gt.grad, 1e-3)
    close(db, bt.grad, 1e-3)
    if with_residual:
        close(L.back(dr), rt.grad, 1e-5)
    else:
        assert dr is None


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name,act,param,ref", ACTS, ids=act_ids(ACTS))
def test_bn_act_inference_vs_torch(name, act, param, ref, layout):
    L = Layout(layout)
    N, C, H, W = 3, 5, 4, 2
    x, r = rand(N, C, H, W, scale=2.0), rand(N, C, H, W)
    g, b = rand(C, scale=0.5, shift=1.0), rand(C)
    mm = rand(C)
    mv = RNG.uniform(0.5, 2.0, C).astype(np.float32)
    want = ref(F.batch_norm(t64(x), t64(mm), t64(mv), t64(g), t64(b), training=False, eps=1e-3) + t64(r))
    y = nk.bn_act_forward_inference(L.to(x), mm, mv, g, b, residual=L.to(r), act=act, act_param=param,
                                    axis=L.axis)
    close(L.back(y), want)
    # without a residual, and TF's default epsilon from options=
    want = ref(F.batch_norm(t64(x), t64(mm), t64(mv), None, None, training=False, eps=1e-2))
    y = nk.bn_act_forward_inference(L.to(x), mm, mv, act=act, act_param=param, axis=L.axis,
                                    options=nk.bn_options(epsilon=1e-2))
    close(L.back(y), want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "no_residual"])
@pytest.mark.parametrize("name,act,param,ref", ACTS, ids=act_ids(ACTS))
def test_group_norm_act_vs_torch(name, act, param, ref, with_residual, layout):
    L = Layout(layout)
    N, C, H, W, G = 3, 8, 4, 5, 4
    x = rand(N, C, H, W, scale=2.0, shift=3.0)
    r = rand(N, C, H, W) if with_residual else None
    g, b = rand(C, scale=0.5, shift=1.0), rand(C)
    dy = rand(N, C, H, W)
    xt, gt, bt = t64(x, True), t64(g, True), t64(b, True)
    z = F.group_norm(xt, G, gt, bt, eps=1e-5)
    if with_residual:
        rt = t64(r, True)
        z = z + rt
    yt = ref(z)
    yt.backward(t64(dy))

    xl, rl = L.to(x), None if r is None else L.to(r)
    y, sm, si = nk.group_norm_act_forward(xl, g, b, residual=rl, act=act, act_param=param, axis=L.axis,
                                          groups=G)
    assert sm.shape == si.shape == (N * G,)
    close(L.back(y), yt)
    dx, dr, dg, db = nk.group_norm_act_backward(xl, L.to(dy), sm, si, g, b, residual=rl, act=act,
                                                act_param=param, axis=L.axis, groups=G)
    close(L.back(dx), xt.grad, 1e-3)
    close(dg, gt.grad, 1e-3)
    close(db, bt.grad, 1e-3)
    if with_residual:
        close(L.back(dr), rt.grad, 1e-5)
    else:
        assert dr is None


def test_group_norm_act_selu_matches_torch_selu_of_group_norm():
    """F.selu(F.group_norm(x)): no residual, no affine, PyTorch's defaults."""
    x = rand(2, 32, 6, scale=3.0, shift=-1.0)
    xt = t64(x, True)
    yt = F.selu(F.group_norm(xt, 32, eps=1e-5))
    dy = rand(*x.shape)
    yt.backward(t64(dy))
    y, sm, si = nk.group_norm_act_forward(x, act="selu", groups=32)
    close(y, yt)
    dx, dr, dg, db = nk.group_norm_act_backward(x, dy, sm, si, act="selu", groups=32, trainable=False)
    close(dx, xt.grad, 1e-3)
    assert dr is None and dg is None and db is None


def test_defaults_of_act_param():
    """leaky_relu's slope 0.01 and elu's alpha 1.0 when act_param is omitted, as PyTorch's."""
    x, r = rand(4, 3, 7, scale=2.0), rand(4, 3, 7)
    for act, ref in (("leaky_relu", F.leaky_relu), ("elu", F.elu)):
        want = ref(F.group_norm(t64(x), 3, eps=1e-5) + t64(r))
        y, _, _ = nk.group_norm_act_forward(x, residual=r, act=act, groups=3)
        close(y, want)


def test_fused_equals_unfused_with_ghost_batches_and_int_act():
    """bn_forward_training_ex + add + relu_forward, and their backward, over
    virtual batches (G = 3 saved statistics per channel); the activation
    given as its NK_ACT_* value."""
    N, C, L = 6, 4, 5
    x, r = rand(N, C, L, scale=2.0, shift=1.0), rand(N, C, L)
    g, b = rand(C, scale=0.5, shift=1.0), rand(C)
    dy = rand(N, C, L)
    opts = dict(virtual_batch_size=2, virtual_grouping="contiguous")
    s1 = nk.BnStateArrays.tf_initial(C)
    z = nk.bn_forward_training_ex(x, s1, g, b, **opts) + r
    y_ref = nk.relu_forward(z)
    dz = nk.relu_backward(z, dy)
    dx_ref, dg_ref, db_ref = nk.bn_backward_ex(x, dz, s1, g, **opts)

    s2 = nk.BnStateArrays.tf_initial(C)
    y = nk.bn_act_forward_training(x, s2, g, b, residual=r, act=nk._lib.ACT_RELU, **opts)
    assert s2.saved_mean.shape == (3 * C,)
    close(y, y_ref, 1e-5)
    close(s2.saved_mean, s1.saved_mean, 1e-6)
    close(s2.moving_mean, s1.moving_mean, 1e-6)
    close(s2.moving_var, s1.moving_var, 1e-6)
    dx, dr, dg, db = nk.bn_act_backward(x, dy, s2, g, b, residual=r, act="relu", **opts)
    close(dr, dz, 1e-6)
    close(dx, dx_ref, 1e-4)
    close(dg, dg_ref, 1e-4)
    close(db, db_ref, 1e-4)


def test_errors():
    x = rand(2, 4, 3)
    s = nk.BnStateArrays.tf_initial(4)
    # An activation C does not know: the library's error, as NormkitError.
    with pytest.raises(nk.NormkitError) as e:
        nk.bn_act_forward_training(x, s, act=99)
    assert e.value.status == 4 and e.value.status_name == "NK_ERR_BAD_ARGUMENT"
    assert "act" in e.value.message
    with pytest.raises(nk.NormkitError) as e:
        nk.bn_act_forward_inference(x, np.zeros(4, np.float32), np.ones(4, np.float32), act=-1)
    assert e.value.status == 4 and "act" in e.value.message
    with pytest.raises(nk.NormkitError) as e:
        nk.group_norm_act_forward(x, act=5, groups=2)
    assert e.value.status == 4 and "act" in e.value.message
    with pytest.raises(nk.NormkitError) as e:
        nk.group_norm_act_forward(x, act="elu", act_param=float("nan"), groups=2)
    assert e.value.status == 4 and "act_param" in e.value.message
    # backward needs the state a training forward filled
    with pytest.raises(nk.NormkitError) as e:
        nk.bn_act_backward(x, x, nk.BnStateArrays(), act="relu")
    assert e.value.status == 1 and e.value.message
    # an unknown name, a wrong residual: caught before C
    with pytest.raises(ValueError):
        nk.bn_act_forward_training(x, s, act="gelu")
    with pytest.raises(TypeError):
        nk.group_norm_act_forward(x, act=1.5, groups=2)
    with pytest.raises(ValueError):
        nk.group_norm_act_forward(x, residual=rand(2, 4, 4), act="relu", groups=2)
