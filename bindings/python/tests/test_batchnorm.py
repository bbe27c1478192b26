"""normkit's Python binding against torch.nn.functional.batch_norm (forward and
autograd backward) and float64 references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import normkit as nk

torch.set_num_threads(1)
RTOL = 2e-5  # float32 rounding on O(1) values, relative to max(|want|, 1)
MO = float(np.float32(0.99))  # TF's default momentum as the library is given it


def close(got, want, tol=RTOL):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)) if want.size else 0.0
    assert err <= tol, "max relative error %g > %g" % (err, tol)


def rng(seed):
    return np.random.default_rng(seed)


def torch_input(shape, seed, channels_last, mean=0.0, std=1.0):
    x = torch.from_numpy((rng(seed).standard_normal(shape) * std + mean).astype(np.float32))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


SHAPES = [(2, 3, 4, 5), (5, 17, 3, 7), (1, 2, 1, 3), (3, 16, 1, 33)]


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_training_forward_backward_matches_torch(shape, channels_last):
    N, C = shape[:2]
    xt = torch_input(shape, 1, channels_last, mean=0.5, std=2.0).requires_grad_(True)
    g = torch.from_numpy(rng(2).standard_normal(C).astype(np.float32)).requires_grad_(True)
    b = torch.from_numpy(rng(3).standard_normal(C).astype(np.float32)).requires_grad_(True)
    rm = torch.full((C,), 0.25)
    rv = torch.full((C,), 1.5)
    yt = F.batch_norm(xt, rm, rv, g, b, training=True, momentum=0.1, eps=1e-5)
    dyt = torch_input(shape, 4, channels_last)
    yt.backward(dyt)

    x = xt.detach().numpy()
    if channels_last:
        assert not x.flags.c_contiguous  # NCHW shape, NHWC memory: mapped, not copied
    mm = np.full(C, 0.25, np.float32)
    mv = np.full(C, 1.5, np.float32)
    opts = dict(epsilon=1e-5, momentum=0.1, momentum_convention="torch", moving_variance="unbiased")
    y, sm, si = nk.bn_forward_training(x, g.detach().numpy(), b.detach().numpy(), mm, mv, **opts)
    assert y.strides == x.strides
    close(y, yt.detach().numpy())
    if N * shape[2] * shape[3] > 1:  # torch's unbiased variance needs m > 1
        close(mm, rm.numpy())
        close(mv, rv.numpy())
    dx, dg, db = nk.bn_backward(x, dyt.numpy(), sm, si, g.detach().numpy(), **opts)
    close(dx, xt.grad.numpy(), 1e-4)
    close(dg, g.grad.numpy(), 1e-4)
    close(db, b.grad.numpy(), 1e-4)


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
def test_inference_matches_torch(channels_last):
    C = 6
    xt = torch_input((3, C, 5, 4), 5, channels_last)
    rm = torch.from_numpy(rng(6).standard_normal(C).astype(np.float32))
    rv = torch.from_numpy(rng(7).uniform(0.5, 2.0, C).astype(np.float32))
    g = torch.from_numpy(rng(8).standard_normal(C).astype(np.float32))
    b = torch.from_numpy(rng(9).standard_normal(C).astype(np.float32))
    yt = F.batch_norm(xt, rm, rv, g, b, training=False, eps=1e-3)
    y = nk.bn_forward_inference(xt.numpy(), rm.numpy(), rv.numpy(), g.numpy(), b.numpy())
    close(y, yt.numpy())


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
def test_split_statistics_equal_single_process(channels_last):
    parts = [2, 3, 6]  # unequal shares of the batch
    N, C, H, W = sum(parts), 7, 3, 5
    xt = torch_input((N, C, H, W), 11, channels_last, mean=1e3, std=0.5)
    dyt = torch_input((N, C, H, W), 12, channels_last)
    x, dy = xt.numpy(), dyt.numpy()
    g = rng(13).standard_normal(C).astype(np.float32)
    b = rng(14).standard_normal(C).astype(np.float32)
    opts = dict(epsilon=1e-5, momentum=0.1, momentum_convention="torch", moving_variance="unbiased")
    mm, mv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y, sm, si = nk.bn_forward_training(x, g, b, mm, mv, **opts)
    dx, dg, db = nk.bn_backward(x, dy, sm, si, g, **opts)

    bounds = np.cumsum([0] + parts)
    xs = [x[bounds[p]:bounds[p + 1]] for p in range(len(parts))]
    dys = [dy[bounds[p]:bounds[p + 1]] for p in range(len(parts))]
    stats = [nk.bn_partial_stats(xp) for xp in xs]
    assert [s[0] for s in stats] == [n * H * W for n in parts]
    count, mean, m2 = nk.bn_merge_stats([s[0] for s in stats], np.stack([s[1] for s in stats]),
                                        np.stack([s[2] for s in stats]))
    assert count == N * H * W
    gmm, gmv = np.zeros(C, np.float32), np.ones(C, np.float32)
    gm, gi = nk.bn_finalize_stats(count, mean, m2, gmm, gmv, **opts)
    close(gm, sm, 1e-6)
    close(gi, si, 1e-6)
    close(gmm, mm, 1e-6)
    close(gmv, mv, 1e-6)
    ys = [nk.bn_apply(xp, gm, gi, g, b) for xp in xs]
    # apply and the fused forward round differently around a mean of 1e3:
    # 1e3 * invstd(2) * 2^-24 relative to y = O(1).
    close(np.concatenate(ys), y, 3e-4)
    red = [nk.bn_backward_reduce(xp, dyp, gm, gi) for xp, dyp in zip(xs, dys)]
    s1, s2 = sum(r[0] for r in red), sum(r[1] for r in red)
    close(s1, db, 1e-5)
    close(s2, dg, 2e-4)  # xhat of x near 1e3 carries ~1e-4 of float32 rounding
    dxs = [nk.bn_backward_apply(xp, dyp, count, gm, gi, s1, s2, g) for xp, dyp in zip(xs, dys)]
    close(np.concatenate(dxs), dx, 1e-4)


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
def test_split_statistics_double_mean_large_offset(channels_last):
    # bn_merge_stats' float64 mean goes to the *_mean64 forms: exact on mean 1e4,
    # std 0.1, where a float32 mean (ulp 1e-3) would move xhat by up to 5e-3.
    parts = [2, 3, 6]
    N, C, H, W = sum(parts), 5, 3, 7
    x = torch_input((N, C, H, W), 21, channels_last, mean=1e4, std=0.1).numpy()
    dy = torch_input((N, C, H, W), 22, channels_last).numpy()
    g = rng(23).standard_normal(C).astype(np.float32)
    b = rng(24).standard_normal(C).astype(np.float32)
    y, sm, si = nk.bn_forward_training(x, g, b)
    dx, dg, db = nk.bn_backward(x, dy, sm, si, g)

    bounds = np.cumsum([0] + parts)
    xs = [x[bounds[p]:bounds[p + 1]] for p in range(len(parts))]
    dys = [dy[bounds[p]:bounds[p + 1]] for p in range(len(parts))]
    stats = [nk.bn_partial_stats(xp) for xp in xs]
    count, mean, m2 = nk.bn_merge_stats([s[0] for s in stats], np.stack([s[1] for s in stats]),
                                        np.stack([s[2] for s in stats]))
    assert mean.dtype == np.float64
    _, gi = nk.bn_finalize_stats(count, mean, m2)
    ys = [nk.bn_apply(xp, mean, gi, g, b) for xp in xs]
    close(np.concatenate(ys), y, 5e-5)
    red = [nk.bn_backward_reduce(xp, dyp, mean, gi) for xp, dyp in zip(xs, dys)]
    s1, s2 = sum(r[0] for r in red), sum(r[1] for r in red)
    close(s1, db, 5e-5)
    close(s2, dg, 5e-5)
    dxs = [nk.bn_backward_apply(xp, dyp, count, mean, gi, s1, s2, g) for xp, dyp in zip(xs, dys)]
    close(np.concatenate(dxs), dx, 5e-5)
    # The same mean as float32 takes the float forms, which miss by far more.
    with pytest.raises(AssertionError):
        close(np.concatenate([nk.bn_apply(xp, mean.astype(np.float32), gi, g, b) for xp in xs]), y, 5e-5)


# ---- float64 references ----------------------------------------------------
def ref_bn(x, axes, gamma, beta, eps):
    x = x.astype(np.float64)
    red = tuple(i for i in range(x.ndim) if i not in axes)
    mean = x.mean(axis=red, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=red, keepdims=True)
    shp = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    g = np.ones(shp) if gamma is None else gamma.astype(np.float64).reshape(shp)
    bb = np.zeros(shp) if beta is None else beta.astype(np.float64).reshape(shp)
    xhat = (x - mean) / np.sqrt(var + eps)
    return g * xhat + bb, mean.reshape(-1), var.reshape(-1), xhat, red, g


def ref_bn_backward(x, dy, axes, gamma, eps):
    _, _, var, xhat, red, g = ref_bn(x, axes, gamma, None, eps)
    dy = dy.astype(np.float64)
    m = np.prod([x.shape[i] for i in red])
    shp = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    invstd = 1 / np.sqrt(var + eps).reshape(shp)
    sdy = dy.sum(axis=red, keepdims=True)
    sdyx = (dy * xhat).sum(axis=red, keepdims=True)
    dx = g * invstd * (dy - sdy / m - xhat * sdyx / m)
    return dx, sdyx.reshape(-1), sdy.reshape(-1)


@pytest.mark.parametrize("shape,axis", [((8, 5), 1), ((2, 3, 4, 6), -1), ((2, 3, 4, 5, 2), 1),
                                        ((3, 4, 5, 6), (1, 3)), ((7,), 0), ((2, 9, 3), (0, 2))],
                         ids=["NC", "NHWC", "NCDHW", "axes13", "1d", "axes02"])
def test_training_tf_convention_vs_float64(shape, axis):
    x = (rng(20).standard_normal(shape) * 3 + 1e4).astype(np.float32)  # large offset
    axes = (axis % len(shape),) if np.isscalar(axis) else tuple(a % len(shape) for a in axis)
    C = int(np.prod([shape[a] for a in axes]))
    g = rng(21).standard_normal(C).astype(np.float32)
    b = rng(22).standard_normal(C).astype(np.float32)
    mm, mv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y, sm, si = nk.bn_forward_training(x, g, b, mm, mv, axis=axis)  # TF defaults
    want, mean, var, _, _, _ = ref_bn(x, axes, g, b, 1e-3)
    close(y, want, 2e-3)  # float32 x itself carries 1e4 * 6e-8 of rounding
    close(sm, mean, 1e-6)
    close(si, 1 / np.sqrt(var + 1e-3), 1e-4)
    close(mm, (1 - MO) * mean, 1e-6)
    close(mv, MO + (1 - MO) * var, 1e-5)
    dy = rng(23).standard_normal(shape).astype(np.float32)
    dx, dg, db = nk.bn_backward(x, dy, sm, si, g, axis=axis)
    wdx, wdg, wdb = ref_bn_backward(x, dy, axes, g, 1e-3)
    close(dx, wdx, 2e-3)
    close(dg, wdg, 2e-3)
    close(db, wdb, 1e-5)


def test_no_scale_no_center_not_trainable_and_in_place():
    x = rng(30).standard_normal((4, 3, 5)).astype(np.float32)
    want, *_ = ref_bn(x, (1,), None, None, 1e-3)
    dy = rng(31).standard_normal(x.shape).astype(np.float32)
    wdx, _, _ = ref_bn_backward(x, dy, (1,), None, 1e-3)
    xc = x.copy()
    y, sm, si = nk.bn_forward_training(xc, out=xc)
    assert y is xc
    close(y, want, 1e-5)
    dx, dg, db = nk.bn_backward(x, dy, sm, si, trainable=False)
    assert dg is None and db is None
    close(dx, wdx, 1e-4)


def test_isas_agree():
    x = rng(40).standard_normal((3, 37, 5)).astype(np.float32)
    results = {}
    try:
        for isa in ("avx512", "avx2", "sse2", "neon", "scalar"):
            if nk.isa_available(isa):
                nk.set_max_isa(isa)
                assert nk.active_isa() == isa
                results[isa] = nk.bn_forward_training(x)[0]
    finally:
        nk.set_max_isa(None)
    assert "scalar" in results
    for isa, y in results.items():
        close(y, results["scalar"], 1e-5)


def test_threads_bitwise_identical():
    x = rng(41).standard_normal((8, 16, 33)).astype(np.float32)
    old = nk.get_num_threads()
    try:
        nk.set_num_threads(1)
        a = nk.bn_forward_training(x)[0]
        nk.set_num_threads(2)
        assert nk.get_num_threads() == 2
        b = nk.bn_forward_training(x)[0]
    finally:
        nk.set_num_threads(0)
    assert old >= 1
    assert np.array_equal(a, b)


def test_settings_and_version():
    assert nk.version()[0] == nk._lib.BINDING_MAJOR
    assert nk.version_string() == "%d.%d.%d" % nk.version()
    t = nk.get_stream_threshold()
    nk.set_stream_threshold(1 << 20)
    assert nk.get_stream_threshold() == 1 << 20
    nk.set_stream_threshold(-1)
    assert nk.get_stream_threshold() == t
    with pytest.raises(nk.NormkitError) as e:
        nk.set_max_isa("pentium")
    assert e.value.status == 9 and e.value.status_name == "NK_ERR_BAD_ISA"
    assert nk.active_isa() != "none"


def test_errors_carry_status_and_message():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(nk.NormkitError) as e:
        nk.bn_forward_training(x, epsilon=0.0)
    assert e.value.status == 4 and "epsilon" in e.value.message
    with pytest.raises(nk.NormkitError) as e:
        nk.bn_forward_training(x, virtual_batch_size=-1)
    assert e.value.status == 4 and "virtual_batch_size" in e.value.message
    with pytest.raises(ValueError):
        nk.bn_forward_training(x, gamma=np.ones(4, np.float32))
    with pytest.raises(TypeError):
        nk.bn_forward_training(x.astype(np.float64))
    with pytest.raises(TypeError):
        nk.bn_forward_training(x, moving_mean=np.zeros(3), moving_var=np.ones(3))  # float64
    with pytest.raises(ValueError):
        nk.bn_forward_training(x, axis=2)
    with pytest.raises(TypeError):
        nk.bn_options(bogus=1)


def test_split_api_rejects_what_c_cannot_hold():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    n, m, q = nk.bn_partial_stats(x)
    # means and m2s are (P, C): a (4, 3) pair with 2 counts, or a transposed
    # (C, P) pair, is an error, not 6 or 2 channels.
    with pytest.raises(ValueError):
        nk.bn_merge_stats([n, n], np.stack([m] * 4), np.stack([q] * 4))
    with pytest.raises(ValueError):
        nk.bn_merge_stats([n, n], np.stack([m] * 2).T, np.stack([q] * 2).T)
    count, mean, m2 = nk.bn_merge_stats([n, n], np.stack([m] * 2), np.stack([q] * 2))
    assert count == 2 * n and mean.shape == (3,)
    # One part may come as (C,) arrays, and counts as numpy integers or
    # one-element integer arrays (an MPI buffer).
    c1, m1, q1 = nk.bn_merge_stats(n, m, q)
    assert c1 == n and np.array_equal(m1, m) and np.array_equal(q1, q)
    c2, _, _ = nk.bn_merge_stats([np.array(n), np.array([n])], np.stack([m] * 2), np.stack([q] * 2))
    assert c2 == 2 * n
    nk.bn_finalize_stats(np.array([count], np.int64), mean, m2)
    # Counts are integers that fit int64: no truncation, no wrap.
    with pytest.raises(TypeError):
        nk.bn_merge_stats([2.7], m[None], q[None])
    with pytest.raises(TypeError):
        nk.bn_finalize_stats(3.9, mean, m2)
    with pytest.raises(ValueError):
        nk.bn_finalize_stats(2**64 + 1, mean, m2)
    mo, io = nk.bn_finalize_stats(np.int64(count), mean, m2)
    s1, s2 = nk.bn_backward_reduce(x, x, mo, io)
    with pytest.raises(ValueError):
        nk.bn_backward_apply(x, x, 2**64 + 20, mo, io, s1, s2)
    # Every array is float32: dy as x.
    with pytest.raises(TypeError):
        nk.bn_backward_reduce(x, x.astype(np.float64), mo, io)
    with pytest.raises(ValueError):
        nk.alpha_dropout_forward(x, 0.1, seed=-1)
    with pytest.raises(TypeError):
        nk.lecun_normal_init((3, 4), 4.5)


def test_layer_like_keras():
    layer = nk.BatchNorm(4, axis=-1)
    assert np.all(layer.gamma == 1) and np.all(layer.beta == 0)
    assert np.all(layer.moving_mean == 0) and np.all(layer.moving_var == 1)
    x = (rng(50).standard_normal((6, 5, 4)) * 2 + 3).astype(np.float32)
    y0 = layer(x)  # inference with the initial moving statistics
    close(y0, x / np.sqrt(1 + 1e-3), 1e-6)
    y = layer(x, training=True)
    want, mean, var, _, _, _ = ref_bn(x, (2,), None, None, 1e-3)
    close(y, want, 1e-5)
    close(layer.moving_mean, (1 - MO) * mean, 1e-6)
    dy = rng(51).standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    wdx, wdg, wdb = ref_bn_backward(x, dy, (2,), None, 1e-3)
    close(dx, wdx, 1e-4)
    close(layer.dgamma, wdg, 1e-4)
    close(layer.dbeta, wdb, 1e-5)


def ref_inference_backward(x, dy, axis, gamma, moving_mean, moving_var, eps):
    """float64 gradient of the inference forward (moving statistics constant):
    dx = dy * gamma / sqrt(moving_var + eps), dbeta = sum(dy),
    dgamma = sum(dy * (x - moving_mean) / sqrt(moving_var + eps))."""
    shp = [x.shape[i] if i == axis % x.ndim else 1 for i in range(x.ndim)]
    red = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    inv = 1 / np.sqrt(moving_var.astype(np.float64) + np.float64(np.float32(eps))).reshape(shp)
    g = np.ones(shp) if gamma is None else gamma.astype(np.float64).reshape(shp)
    d64 = dy.astype(np.float64)
    xhat = (x.astype(np.float64) - moving_mean.astype(np.float64).reshape(shp)) * inv
    return d64 * g * inv, (d64 * xhat).sum(axis=red), d64.sum(axis=red)


def _layer_with_stats(C, seed, **kw):
    layer = nk.BatchNorm(C, **kw)
    layer.gamma[:] = rng(seed).uniform(0.5, 2.0, C)
    layer.beta[:] = rng(seed + 1).standard_normal(C)
    layer.moving_mean[:] = rng(seed + 2).standard_normal(C)
    layer.moving_var[:] = rng(seed + 3).uniform(0.2, 3.0, C)
    return layer


@pytest.mark.parametrize("axis", [1, -1], ids=["NCHW", "NHWC"])
def test_frozen_layer_runs_in_inference_mode_tf2(axis):
    """TF2: trainable=False runs in inference mode even with training=True, leaves
    the moving statistics alone, and passes dx = dy * gamma / sqrt(mv + eps) back;
    no dgamma, dbeta."""
    C = 5
    layer = _layer_with_stats(C, 80, axis=axis, trainable=False)
    mm0, mv0 = layer.moving_mean.copy(), layer.moving_var.copy()
    x = (rng(84).standard_normal((4, C, 3, C)) * 2 + 1).astype(np.float32)
    dy = rng(85).standard_normal(x.shape).astype(np.float32)
    y = layer(x, training=True)
    assert np.array_equal(layer.moving_mean, mm0) and np.array_equal(layer.moving_var, mv0)
    want_y = nk.bn_forward_inference(x, mm0, mv0, layer.gamma, layer.beta, axis=axis)
    assert np.array_equal(y, want_y)
    shp = [x.shape[i] if i == axis % x.ndim else 1 for i in range(x.ndim)]
    close(y, (x - mm0.reshape(shp).astype(np.float64)) / np.sqrt(mv0.reshape(shp) + np.float64(np.float32(1e-3)))
          * layer.gamma.reshape(shp) + layer.beta.reshape(shp), 1e-5)
    layer.dgamma = layer.dbeta = np.zeros(C, np.float32)  # backward must reset them
    dx = layer.backward(dy)
    wdx, _, _ = ref_inference_backward(x, dy, axis, layer.gamma, mm0, mv0, 1e-3)
    close(dx, wdx, 1e-6)
    assert layer.dgamma is None and layer.dbeta is None
    assert dx.shape == x.shape and dx.strides == x.strides


def test_trainable_layer_backward_in_inference_mode():
    C = 4
    layer = _layer_with_stats(C, 90, axis=1)
    x = (rng(94).standard_normal((3, C, 7)) * 1.5 - 0.5).astype(np.float32)
    dy = rng(95).standard_normal(x.shape).astype(np.float32)
    layer(x, training=True)  # a training call, then an inference one: backward follows the last
    mm, mv = layer.moving_mean.copy(), layer.moving_var.copy()
    layer(x, training=False)
    assert np.array_equal(layer.moving_mean, mm) and np.array_equal(layer.moving_var, mv)
    dx = layer.backward(dy)
    wdx, wdg, wdb = ref_inference_backward(x, dy, 1, layer.gamma, mm, mv, 1e-3)
    close(dx, wdx, 1e-6)
    close(layer.dgamma, wdg, 1e-5)
    close(layer.dbeta, wdb, 1e-5)
    # A training call again: the training gradient again.
    y = layer(x, training=True)
    dx = layer.backward(dy)
    wdx, wdg, wdb = ref_bn_backward(x, dy, (1,), layer.gamma, 1e-3)
    close(dx, wdx, 1e-4)
    close(layer.dgamma, wdg, 1e-4)
    # Frozen after the fact: still the training gradient of that call, without dgamma, dbeta.
    layer.trainable = False
    dx = layer.backward(dy)
    close(dx, wdx, 1e-4)
    assert layer.dgamma is None and layer.dbeta is None
    with pytest.raises(RuntimeError):
        nk.BatchNorm(C).backward(dy)


# ---- the *_ex functions: their C implementation lands later --------------------
needs_ex = pytest.mark.skipif(not nk.has_function("nk_bn_forward_training_ex"),
                              reason="nk_bn_forward_training_ex not in this libnormkit yet")


@needs_ex
def test_ex_plain_equals_forward_training():
    x = rng(60).standard_normal((4, 3, 5)).astype(np.float32)
    dy = rng(61).standard_normal(x.shape).astype(np.float32)
    g = rng(62).standard_normal(3).astype(np.float32)
    s = nk.BnStateArrays.tf_initial(3)
    y = nk.bn_forward_training_ex(x, s, g)
    want, mean, var, _, _, _ = ref_bn(x, (1,), g, None, 1e-3)
    close(y, want, 1e-5)
    close(s.moving_mean, 0.01 * mean, 1e-6)
    dx, dg, db = nk.bn_backward_ex(x, dy, s, g)
    wdx, wdg, wdb = ref_bn_backward(x, dy, (1,), g, 1e-3)
    close(dx, wdx, 1e-4)


@needs_ex
@pytest.mark.parametrize("grouping", ["strided", "contiguous"])
def test_ex_ghost_batches_vs_float64(grouping):
    N, C, L, V = 6, 3, 4, 2
    G = N // V
    x = rng(63).standard_normal((N, C, L)).astype(np.float32)
    s = nk.BnStateArrays.tf_initial(C)
    y = nk.bn_forward_training_ex(x, s, virtual_batch_size=V, virtual_grouping=grouping)
    want = np.empty(x.shape)
    means, vars_ = [], []
    for gi in range(G):
        idx = np.arange(gi, N, G) if grouping == "strided" else np.arange(gi * V, gi * V + V)
        w, m, v, _, _, _ = ref_bn(x[idx], (1,), None, None, 1e-3)
        want[idx] = w
        means.append(m)
        vars_.append(v)
    close(y, want, 1e-5)
    close(s.moving_mean, 0.01 * np.mean(means, axis=0), 1e-6)
    close(s.moving_var, 0.99 + 0.01 * np.mean(vars_, axis=0), 1e-5)


@needs_ex
@pytest.mark.parametrize("order", [(2, 0, 1, 3), (1, 2, 3, 0), (0, 2, 3, 1)])
def test_ghost_batches_in_any_memory_order(order):
    """Virtual batches split axis 0 whatever the memory order of x (the
    binding keeps axis 0 outermost in what it hands the library)."""
    x = rng(64).standard_normal((4, 3, 2, 5)).astype(np.float32)
    dy = rng(65).standard_normal(x.shape).astype(np.float32)
    held = np.transpose(np.ascontiguousarray(np.transpose(x, order)), np.argsort(order))
    assert np.array_equal(held, x)
    for grouping in ("strided", "contiguous"):
        opts = dict(virtual_batch_size=2, virtual_grouping=grouping)
        s1, s2 = nk.BnStateArrays.tf_initial(3), nk.BnStateArrays.tf_initial(3)
        y1 = nk.bn_forward_training_ex(x, s1, **opts)
        y2 = nk.bn_forward_training_ex(held, s2, **opts)
        close(y2, y1, 1e-6)
        close(s2.saved_mean, s1.saved_mean, 1e-6)
        dx1, _, _ = nk.bn_backward_ex(x, dy, s1, **opts)
        dx2, _, _ = nk.bn_backward_ex(held, dy, s2, **opts)
        close(dx2, dx1, 1e-5)
        y3, _, _ = nk.bn_forward_training(held, **opts)
        close(y3, y1, 1e-6)


@needs_ex
def test_ex_renorm_vs_float64():
    N, C, L = 5, 3, 4
    eps = 1e-3
    x = (rng(64).standard_normal((N, C, L)) * 2 + 1).astype(np.float32)
    s = nk.BnStateArrays.tf_initial(C, renorm=True)
    s.renorm_mean[:] = 0.5
    s.renorm_stddev[:] = 1.5
    y = nk.bn_forward_training_ex(x, s, renorm=True, rmax=1.2, rmin=0.8, dmax=0.3)
    _, mean, var, xhat, _, _ = ref_bn(x, (1,), None, None, eps)
    sig = np.sqrt(var + eps)
    sd = np.maximum(1.5, np.sqrt(eps))
    r = np.clip(sig / sd, 0.8, 1.2)
    d = np.clip((mean - 0.5) / sd, -0.3, 0.3)
    close(y, xhat * r.reshape(1, C, 1) + d.reshape(1, C, 1), 1e-5)
    close(s.saved_r, r, 1e-5)
    close(s.saved_d, d, 1e-5)
    close(s.renorm_mean, 0.99 * 0.5 + 0.01 * mean, 1e-6)
    close(s.renorm_stddev, 0.99 * 1.5 + 0.01 * sig, 1e-6)


def test_ex_adjustment_vs_float64():
    """TF's adjustment: y = gamma * (xhat * a + b) + beta in training; the
    gradient flows through a to dx, with a and b constants."""
    N, C, L = 6, 3, 5
    eps = 1e-3
    x = (rng(65).standard_normal((N, C, L)) * 1.5 + 0.5).astype(np.float32)
    dy = rng(66).standard_normal(x.shape).astype(np.float32)
    gamma = (1 + 0.2 * rng(67).standard_normal(C)).astype(np.float32)
    beta = rng(68).standard_normal(C).astype(np.float32)
    a = rng(69).uniform(0.93, 1.07, C).astype(np.float32)
    b = rng(70).uniform(-0.1, 0.1, C).astype(np.float32)
    s = nk.BnStateArrays.tf_initial(C)
    s.adjustment_scale, s.adjustment_bias = a, b
    y = nk.bn_forward_training_ex(x, s, gamma=gamma, beta=beta)
    _, mean, var, xhat, red, _ = ref_bn(x, (1,), None, None, eps)
    sh = (1, C, 1)
    close(y, gamma.reshape(sh) * (xhat * a.reshape(sh) + b.reshape(sh)) + beta.reshape(sh), 1e-5)
    dx, dg, db = nk.bn_backward_ex(x, dy, s, gamma=gamma)
    # BN's gradient with gamma * a as the scale; dgamma of the adjusted output.
    want_dx, _, _ = ref_bn_backward(x, dy, (1,), gamma * a, eps)
    close(dx, want_dx, 1e-4)
    d64 = dy.astype(np.float64)
    close(dg, (d64 * (xhat * a.reshape(sh) + b.reshape(sh))).sum(axis=red), 1e-4)
    close(db, d64.sum(axis=red), 1e-4)


def test_version_check_at_load(monkeypatch):
    monkeypatch.setattr(nk._lib, "BINDING_MAJOR", nk.version()[0] + 1)
    with pytest.raises(ImportError, match="major version"):
        nk._lib.Library(nk.library_path())
    monkeypatch.undo()
    lib = nk._lib.Library(nk.library_path())
    assert lib.nk_version() == 10000 * nk.version()[0] + 100 * nk.version()[1] + nk.version()[2]
    assert lib.has("nk_bn_apply")


def ref_tf_renorm(xs, gamma, beta, eps, momentum, renorm_momentum, rmax, rmin, dmax):
    """TF's testRenorm (tensorflow/python/layers/normalization_test.py) in float64:
    from moving_mean 0, moving_stddev 1, renorm_mean 0, renorm_stddev 1, the
    training output of each step, then the inference output after its updates."""
    moving_mean, moving_stddev, renorm_mean, renorm_stddev = 0., 1., 0., 1.
    out = []
    for x in xs:
        mean = x.mean(0)
        variance = x.var(0)
        stddev = np.sqrt(variance + eps)
        r = (stddev / renorm_stddev).clip(rmin, rmax)
        d = ((mean - renorm_mean) / renorm_stddev).clip(-dmax, dmax)
        y_train = ((x - mean) / stddev * r + d) * gamma + beta
        renorm_mean += (mean - renorm_mean) * (1. - renorm_momentum)
        renorm_stddev += (stddev - renorm_stddev) * (1. - renorm_momentum)
        moving_mean += (mean - moving_mean) * (1. - momentum)
        moving_stddev += (stddev - moving_stddev) * (1. - momentum)
        y_test = ((x - moving_mean) / (moving_stddev * moving_stddev) ** 0.5 * gamma) + beta
        out.append((y_train, y_test, np.copy(moving_stddev)))  # += works in place on arrays
    return out


@needs_ex
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tf_renorm_replay_from_tf_initial(seed):
    """TF's testRenorm through the binding, from BnStateArrays.tf_initial: TF starts
    moving_stddev at sqrt(1) = 1 (not sqrt(1 + epsilon)); 5 training steps, each
    followed by an inference call, both within TF's atol 1e-5."""
    C, eps, momentum, renorm_momentum = 3, 1e-3, 0.99, 0.8
    rmax, rmin, dmax, gamma, beta = 1.1, 0.9, 0.1, 2., 3.
    s = nk.BnStateArrays.tf_initial(C, renorm=True)
    assert np.array_equal(s.moving_stddev, np.ones(C, np.float32))
    assert np.array_equal(s.renorm_stddev, np.ones(C, np.float32))
    assert not s.renorm_mean.any() and not s.moving_mean.any()
    r = np.random.RandomState(seed)
    xs = [r.random_sample((4, C)) for _ in range(5)]
    want = ref_tf_renorm(xs, gamma, beta, eps, momentum, renorm_momentum, rmax, rmin, dmax)
    g, b = np.full(C, gamma, np.float32), np.full(C, beta, np.float32)
    opts = dict(epsilon=eps, momentum=momentum, renorm=True, renorm_momentum=renorm_momentum,
                rmax=rmax, rmin=rmin, dmax=dmax)
    for x, (y_train, y_test, moving_stddev) in zip(xs, want):
        x32 = x.astype(np.float32)
        y = nk.bn_forward_training_ex(x32, s, g, b, axis=1, **opts)
        np.testing.assert_allclose(y, y_train, rtol=0, atol=1e-5)
        yi = nk.bn_forward_inference(x32, s.moving_mean, s.moving_var, g, b, axis=1, epsilon=eps)
        np.testing.assert_allclose(yi, y_test, rtol=0, atol=1e-5)
        np.testing.assert_allclose(s.moving_stddev, moving_stddev, rtol=1e-6)
        np.testing.assert_allclose(s.moving_var, np.maximum(moving_stddev ** 2 - eps, 0), rtol=1e-5)
