"""How the binding hands numpy buffers and option structs to the library:
size-1 axes with any stride, options= with a foreign struct_size, outputs
that overlap inputs, 0-d arrays."""
import ctypes

import numpy as np
import pytest

import normkit as nk


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_size1_axes_with_any_stride():
    # a[None] gives the batch axis stride 0; the saved statistics must still
    # have N*G (N*C) entries and the outputs equal those of a C-ordered copy.
    a = rand(200, 3, 4)  # H, W, C
    x = a[None]
    assert x.strides[0] == 0
    xc = np.ascontiguousarray(x).copy()
    y, sm, si = nk.group_norm_forward(x, axis=-1, groups=2)
    yc, smc, sic = nk.group_norm_forward(xc, axis=-1, groups=2)
    assert sm.shape == (2,)
    np.testing.assert_array_equal(y, yc)
    np.testing.assert_array_equal(sm, smc)
    yi, im, ii = nk.instance_norm_forward_training(x, axis=-1)
    yic, imc, iic = nk.instance_norm_forward_training(xc, axis=-1)
    assert im.shape == (4,)
    np.testing.assert_array_equal(yi, yic)
    np.testing.assert_array_equal(im, imc)
    dy = rand(*x.shape, seed=1)
    np.testing.assert_array_equal(nk.instance_norm_backward(x, dy, imc, iic, axis=-1)[0],
                                  nk.instance_norm_backward(xc, dy, imc, iic, axis=-1)[0])
    # NCHW with a stride-0 batch axis, Layer Norm rows with a stride-0 axis, CReLU along one.
    b = rand(3, 5, 7)
    np.testing.assert_array_equal(nk.group_norm_forward(b[None], groups=3)[0],
                                  nk.group_norm_forward(b[None].copy(), groups=3)[0])
    r = rand(4, 9)
    np.testing.assert_array_equal(nk.layer_norm_forward(r[:, None, :])[0], nk.layer_norm_forward(r[:, None, :].copy())[0])
    np.testing.assert_array_equal(nk.crelu_forward(r[:, None, :]), nk.crelu_forward(r[:, None, :].copy()))
    dyc = rand(4, 2, 9, seed=2)
    np.testing.assert_array_equal(nk.crelu_backward(r[:, None, :], dyc), nk.crelu_backward(r[:, None, :].copy(), dyc))


def test_options_struct_size_is_the_binding_s():
    x = rand(4, 3, 5)
    o = nk.bn_options(epsilon=1e-3)
    o.struct_size = 1 << 20  # the library must never read that far
    y = nk.bn_forward_training(x, options=o)[0]
    np.testing.assert_array_equal(y, nk.bn_forward_training(x, epsilon=1e-3)[0])
    assert o.struct_size == 1 << 20  # the caller's struct is left as it was
    g = nk.gn_options(groups=3)
    g.struct_size = 3
    np.testing.assert_array_equal(nk.group_norm_forward(x, options=g)[0], nk.group_norm_forward(x, groups=3)[0])
    with pytest.raises(TypeError):
        nk.bn_forward_training(x, options=g)  # another op's options
    with pytest.raises(TypeError):
        nk.bn_forward_training(x, options=o, epsilon=1e-5)  # both ways at once


def test_outputs_may_equal_but_not_overlap_inputs():
    buf = rand(2 * 3 * 5 + 1)
    x = buf[:-1].reshape(2, 3, 5)
    shifted = buf[1:].reshape(2, 3, 5)
    with pytest.raises(ValueError):
        nk.bn_forward_training(x, out=shifted)
    with pytest.raises(ValueError):
        nk.layer_norm_forward(x, out=shifted)
    with pytest.raises(ValueError):
        nk.relu_forward(x, out=shifted)
    with pytest.raises(ValueError):
        nk.selu_backward(x, rand(2, 3, 5), out=shifted)
    with pytest.raises(ValueError):
        nk.alpha_dropout_forward(x, 0.1, 1, out=shifted)
    # In place stays allowed, and gives the out-of-place result.
    xi = x.copy()
    want = nk.bn_forward_training(xi)[0]
    assert nk.bn_forward_training(xi, out=xi)[0] is xi
    np.testing.assert_array_equal(xi, want)
    yi = x.copy()
    nk.relu_forward(yi, out=yi)
    np.testing.assert_array_equal(yi, np.maximum(x, 0))


def test_zero_dimensional_elementwise():
    x = np.array(-2.0, np.float32)
    y = nk.selu_forward(x)
    assert y.shape == ()
    out = np.empty((), np.float32)
    assert nk.relu_forward(x, out=out) is out and out == 0.0
