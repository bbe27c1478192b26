"""Group/Instance/Layer/RMS/Switchable Norm, the activations, AlphaDropout and
LeCun init against torch.nn.functional (forward and backward via autograd)
or float64 references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import normkit as nk

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0, shift=0.0):
    return (RNG.standard_normal(shape) * scale + shift).astype(np.float32)


def close(a, b, tol=2e-4):
    b = b.detach().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol)


def autograd(fn, x, *params):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ps = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    y = fn(xt, *ps)
    dy = rand(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y, dy, xt.grad, [p.grad for p in ps]


@pytest.mark.parametrize("shape,groups", [((4, 8, 5, 3), 4), ((3, 6, 7), 2), ((2, 32, 4, 4), 32)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm_vs_torch(shape, groups, channels_last):
    x = rand(*shape, scale=2.0, shift=3.0)
    C = shape[1]
    g, b = rand(C), rand(C)
    y_ref, dy, dx_ref, (dg_ref, db_ref) = autograd(
        lambda x, g, b: F.group_norm(x, groups, g, b, eps=1e-5), x, g, b)
    if channels_last:
        xl = np.moveaxis(x, 1, -1).copy()
        y, sm, si = nk.group_norm_forward(xl, g, b, axis=-1, groups=groups)
        dx, dg, db = nk.group_norm_backward(xl, np.moveaxis(dy, 1, -1), sm, si, g, axis=-1,
                                            groups=groups)
        y, dx = np.moveaxis(y, -1, 1), np.moveaxis(dx, -1, 1)
    else:
        y, sm, si = nk.group_norm_forward(x, g, b, groups=groups)
        dx, dg, db = nk.group_norm_backward(x, dy, sm, si, g, groups=groups)
    assert sm.shape == (shape[0] * groups,)
    close(y, y_ref)
    close(dx, dx_ref, 1e-3)
    close(dg, dg_ref, 1e-3)
    close(db, db_ref, 1e-3)


def test_group_norm_bad_groups():
    with pytest.raises(ValueError):
        nk.group_norm_forward(rand(2, 6, 3), groups=4)
    with pytest.raises(nk.NormkitError) as e:
        nk.group_norm_forward(rand(2, 6, 3), groups=2, epsilon=-1.0)
    assert e.value.status == 4 and e.value.message


@pytest.mark.parametrize("axis", [-1, (-2, -1)])
def test_layer_norm_vs_torch(axis):
    x = rand(3, 5, 16, scale=3.0, shift=-2.0)
    nshape = x.shape[-1:] if axis == -1 else x.shape[-2:]
    g, b = rand(*nshape), rand(*nshape)
    y_ref, dy, dx_ref, (dg_ref, db_ref) = autograd(
        lambda x, g, b: F.layer_norm(x, nshape, g, b, eps=1e-5), x, g, b)
    y, sm, si = nk.layer_norm_forward(x, g, b, axis=axis)
    dx, dg, db = nk.layer_norm_backward(x, dy, sm, si, g, axis=axis)
    close(y, y_ref)
    close(dx, dx_ref, 1e-3)
    assert dg.shape == nshape and db.shape == nshape  # as gamma's
    close(dg, dg_ref, 1e-3)
    close(db, db_ref, 1e-3)


def test_layer_norm_saved_statistics_in_row_order():
    # Rows permuted in memory (sequence-first data viewed batch-first): the
    # saved statistics still follow the array's logical rows.
    x = rand(3, 4, 7)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    dy = rand(3, 4, 7)
    y, sm, si = nk.layer_norm_forward(x)
    yt, smt, sit = nk.layer_norm_forward(xt)
    np.testing.assert_array_equal(yt, y)
    np.testing.assert_array_equal(smt, sm)
    np.testing.assert_array_equal(sit, si)
    np.testing.assert_array_equal(nk.layer_norm_backward(x, dy, smt, sit)[0],
                                  nk.layer_norm_backward(xt, dy, sm, si)[0])
    _, rs = nk.rms_norm_forward(x)
    _, rst = nk.rms_norm_forward(xt)
    np.testing.assert_array_equal(rst, rs)


def test_layer_norm_axis_must_be_trailing():
    with pytest.raises(ValueError):
        nk.layer_norm_forward(rand(3, 4, 5), axis=1)


@pytest.mark.parametrize("shape", [(4, 6, 5, 5), (3, 4, 9)])
def test_instance_norm_vs_torch(shape):
    x = rand(*shape, scale=2.0, shift=1.0)
    C = shape[1]
    g, b = rand(C), rand(C)
    rm_ref, rv_ref = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    y_ref, dy, dx_ref, (dg_ref, db_ref) = autograd(
        lambda x, g, b: F.instance_norm(x, rm_ref, rv_ref, g, b, use_input_stats=True,
                                        momentum=0.1, eps=1e-5), x, g, b)
    mm, mv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y, sm, si = nk.instance_norm_forward_training(x, g, b, mm, mv)
    dx, dg, db = nk.instance_norm_backward(x, dy, sm, si, g)
    close(y, y_ref)
    close(dx, dx_ref, 1e-3)
    close(dg, dg_ref, 1e-3)
    close(db, db_ref, 1e-3)
    close(mm, rm_ref)
    close(mv, rv_ref)
    yi = nk.instance_norm_forward_inference(x, mm, mv, g, b)
    ref = F.instance_norm(torch.tensor(x, dtype=torch.float64), rm_ref, rv_ref,
                          torch.tensor(g, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                          use_input_stats=False, eps=1e-5)
    close(yi, ref)


def test_rms_norm_vs_float64():
    x = rand(5, 3, 24, scale=2.0, shift=0.5)
    g = rand(24)
    eps = 1e-5
    xd, gd = x.astype(np.float64), g.astype(np.float64)
    rstd = 1.0 / np.sqrt((xd ** 2).mean(-1, keepdims=True) + eps)
    y_ref = xd * rstd * gd
    dy = rand(*x.shape).astype(np.float64)
    # dx = rstd * (g*dy - x * rstd^2 * mean(g*dy*x))
    gdy = gd * dy
    dx_ref = rstd * (gdy - xd * rstd ** 2 * (gdy * xd).mean(-1, keepdims=True))
    dg_ref = (dy * xd * rstd).reshape(-1, 24).sum(0)
    y, rs = nk.rms_norm_forward(x, g)
    close(rs, rstd.reshape(-1))
    close(y, y_ref)
    dx, dg = nk.rms_norm_backward(x, dy.astype(np.float32), rs, g)
    close(dx, dx_ref, 1e-3)
    close(dg, dg_ref, 1e-3)
    # torch autograd agrees with the closed form
    xt = torch.tensor(xd, requires_grad=True)
    yt = xt * torch.rsqrt((xt ** 2).mean(-1, keepdim=True) + eps) * torch.tensor(gd)
    yt.backward(torch.tensor(dy))
    close(dx, xt.grad, 1e-3)


ACTS = [
    ("relu", lambda x: F.relu(x), nk.relu_forward, nk.relu_backward, ()),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2), nk.leaky_relu_forward, nk.leaky_relu_backward,
     (0.2,)),
    ("elu", lambda x: F.elu(x, 1.3), nk.elu_forward, nk.elu_backward, (1.3,)),
    ("selu", lambda x: F.selu(x), nk.selu_forward, nk.selu_backward, ()),
]


@pytest.mark.parametrize("name,ref,fwd,bwd,params", ACTS, ids=[a[0] for a in ACTS])
def test_activation_vs_torch(name, ref, fwd, bwd, params):
    x = rand(3, 7, 11, scale=3.0)
    x[0, 0, :3] = [0.0, -1e-30, 40.0]
    y_ref, dy, dx_ref, _ = autograd(ref, x)
    y = fwd(x, *params)
    dx = bwd(x, dy, *params)
    close(y, y_ref, 1e-5)
    # at x = 0 normkit takes the x > 0 side (dx = dy); torch differs for some
    nz = x != 0
    close(dx[nz], dx_ref.numpy()[nz], 1e-5)
    at0 = {"relu": 0.0, "selu": nk.selu_lambda()}.get(name, 1.0)  # header: relu x > 0 ? dy : 0
    close(dx[~nz], dy[~nz] * at0, 1e-6)
    y2 = x.copy()
    fwd(y2, *params, out=y2)  # in place
    np.testing.assert_array_equal(y2, y)


def test_selu_constants():
    assert abs(nk.selu_alpha() - 1.6732632423543772848170429916717) < 1e-15
    assert abs(nk.selu_lambda() - 1.0507009873554804934193349852946) < 1e-15


@pytest.mark.parametrize("per_channel", [True, False])
def test_prelu_vs_torch(per_channel):
    x = rand(4, 5, 3, 3)
    w = (rand(5) * 0.3) if per_channel else np.array([0.25], np.float32)
    y_ref, dy, dx_ref, (dw_ref,) = autograd(lambda x, w: F.prelu(x, w), x, w)
    y = nk.prelu_forward(x, w)
    dx, dw = nk.prelu_backward(x, dy, w)
    close(y, y_ref, 1e-5)
    close(dx, dx_ref, 1e-5)
    close(dw, dw_ref, 1e-3)


def test_crelu_vs_reference():
    x = rand(2, 3, 4)
    y_ref, dy, dx_ref, _ = autograd(lambda x: torch.cat([F.relu(x), F.relu(-x)], 1), x)
    y = nk.crelu_forward(x)
    assert y.shape == (2, 6, 4)
    close(y, y_ref, 1e-6)
    close(nk.crelu_backward(x, dy), dx_ref, 1e-6)


def test_alpha_dropout_statistics_and_backward():
    z = nk.selu_forward(rand(1 << 20))
    y = nk.alpha_dropout_forward(z, 0.2, seed=42, offset=3)
    assert abs(float(y.mean())) < 0.01 and abs(float(y.var()) - 1.0) < 0.02
    np.testing.assert_array_equal(y, nk.alpha_dropout_forward(z, 0.2, seed=42, offset=3))
    assert not np.array_equal(y, nk.alpha_dropout_forward(z, 0.2, seed=42, offset=4))
    # backward: a * m * dy with the same mask
    q = 0.8
    ap = -nk.selu_lambda() * nk.selu_alpha()
    a = (q + ap * ap * q * (1 - q)) ** -0.5
    dx = nk.alpha_dropout_backward(np.ones_like(z), 0.2, seed=42, offset=3)
    kept = dx != 0
    np.testing.assert_allclose(dx[kept], a, rtol=1e-6)
    assert abs(kept.mean() - q) < 0.005
    b = -a * ap * (1 - q)
    np.testing.assert_allclose(y[~kept], a * ap + b, rtol=1e-5, atol=1e-6)
    with pytest.raises(nk.NormkitError):
        nk.alpha_dropout_forward(z[:10], 1.0, seed=1)


@pytest.mark.parametrize("truncated", [False, True])
def test_lecun_normal_variance(truncated):
    fan_in = 50
    w = nk.lecun_normal_init((400, 1000), fan_in, truncated=truncated, seed=5)
    assert abs(float(w.mean())) < 0.002
    assert abs(float(w.var()) * fan_in - 1.0) < 0.02
    if truncated:
        assert np.abs(w).max() <= 2 * np.sqrt(1.0 / fan_in) / 0.87962566103423978 * 1.0001
    np.testing.assert_array_equal(w, nk.lecun_normal_init((400, 1000), fan_in, truncated, seed=5))


def _softmax(w):
    e = np.exp(np.asarray(w, np.float64) - np.max(w))
    return e / e.sum()


def switch_norm_ref(x, mw, vw, g, b, eps, use_bn=True, moving=None):
    """DESIGN.md / the authors' reference: NC... layout, unbiased instance variance."""
    N, C = x.shape[:2]
    xd = x.astype(np.float64).reshape(N, C, -1)
    L = xd.shape[2]
    mean_in = xd.mean(2)
    var_in = xd.var(2, ddof=1)
    temp = var_in + mean_in ** 2
    mean_ln = mean_in.mean(1, keepdims=True)
    var_ln = temp.mean(1, keepdims=True) - mean_ln ** 2
    means, vars_ = [mean_in, mean_ln], [var_in, var_ln]
    if use_bn:
        if moving is None:
            mean_bn = mean_in.mean(0, keepdims=True)
            var_bn = temp.mean(0, keepdims=True) - mean_bn ** 2
        else:
            mean_bn, var_bn = moving[0][None].astype(np.float64), moving[1][None].astype(np.float64)
        means.append(mean_bn)
        vars_.append(var_bn)
    sm, sv = _softmax(mw), _softmax(vw)
    mean = sum(w * m for w, m in zip(sm, means))
    var = sum(w * v for w, v in zip(sv, vars_))
    y = (xd - mean[..., None]) / np.sqrt(var[..., None] + eps)
    y = y * g.astype(np.float64)[None, :, None] + b.astype(np.float64)[None, :, None]
    return y.reshape(x.shape), means, vars_


@pytest.mark.parametrize("use_bn", [True, False])
def test_switch_norm_forward_vs_float64(use_bn):
    x = rand(4, 6, 5, 3, scale=2.0, shift=1.0)
    k = 3 if use_bn else 2
    mw, vw = rand(k), rand(k)
    g, b = rand(6), rand(6)
    y_ref, means, vars_ = switch_norm_ref(x, mw, vw, g, b, 1e-5, use_bn)
    mm, mv = np.zeros(6, np.float32), np.ones(6, np.float32)
    y = nk.switch_norm_forward_training(x, mw, vw, g, b, mm, mv, use_bn=int(use_bn))
    close(y, y_ref, 5e-4)
    if use_bn:
        close(mm, 0.003 * means[2].reshape(-1), 1e-4)
        close(mv, 0.997 + 0.003 * vars_[2].reshape(-1), 1e-4)
        yi = nk.switch_norm_forward_inference(x, mw, vw, mm, mv, g, b)
        yi_ref, _, _ = switch_norm_ref(x, mw, vw, g, b, 1e-5, True, moving=(mm, mv))
        close(yi, yi_ref, 5e-4)
    # backward against autograd through the same float64 reference in torch
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (mw, vw, g, b)]
    N, C = x.shape[:2]
    xr = xt.reshape(N, C, -1)
    mi, vi = xr.mean(2), xr.var(2, unbiased=True)
    tmp = vi + mi ** 2
    ml = mi.mean(1, keepdim=True)
    vl = tmp.mean(1, keepdim=True) - ml ** 2
    ms, vs = [mi, ml], [vi, vl]
    if use_bn:
        mb = mi.mean(0, keepdim=True)
        ms.append(mb)
        vs.append(tmp.mean(0, keepdim=True) - mb ** 2)
    swm, swv = torch.softmax(ts[0], 0), torch.softmax(ts[1], 0)
    mean = sum(swm[i] * ms[i] for i in range(k))
    var = sum(swv[i] * vs[i] for i in range(k))
    yt = (xr - mean[..., None]) / torch.sqrt(var[..., None] + 1e-5) * ts[2][None, :, None] \
        + ts[3][None, :, None]
    dy = rand(*x.shape)
    yt.reshape(x.shape).backward(torch.tensor(dy, dtype=torch.float64))
    dx, dg, db, dmw, dvw = nk.switch_norm_backward(x, dy, mw, vw, g, use_bn=int(use_bn))
    close(dx, xt.grad, 2e-3)
    close(dg, ts[2].grad, 2e-3)
    close(db, ts[3].grad, 2e-3)
    close(dmw, ts[0].grad, 2e-3)
    close(dvw, ts[1].grad, 2e-3)


def test_shape_errors():
    x = rand(2, 3, 4)
    with pytest.raises(ValueError):
        nk.relu_backward(x, rand(2, 3, 5))
    with pytest.raises(TypeError):
        nk.selu_forward(x.astype(np.float64))
    with pytest.raises(ValueError):
        nk.layer_norm_forward(x, gamma=rand(5))
    with pytest.raises(ValueError):
        nk.prelu_forward(x, rand(2))
    with pytest.raises(ValueError):
        nk.switch_norm_forward_training(x, rand(3), rand(2))
