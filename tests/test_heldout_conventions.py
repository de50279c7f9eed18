"""Held-out acceptance tests: §1b's subgradient conventions, integer/boolean inputs, labels, run-time
input conversion and fresh gradients (§3), on the NumPy, Numba and array-API modules.

Every expected gradient here is a closed form of the convention DESIGN.md §1b states:
- maximum/minimum (and so clip) ties: each side gets half the cotangent;
- max/min reductions: tied elements share the cotangent equally;
- where: cotangent only to the chosen branch, NaN/inf of the other branch never reaches a gradient.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from heldout_common import StrictArgs, generate, import_generated, to_np

SPEC = """
module: ho_conv
dims: {N: 3, D: 4, K: 3}
functions:
  maxi:
    inputs: {a: [D], b: [D], w: [D]}
    wrt: [a, b]
    steps:
      - loss = sum(maximum(a, b) * w)
    outputs: [loss]
  mini:
    inputs: {a: [D], b: [D], w: [D]}
    wrt: [a, b]
    steps:
      - loss = sum(minimum(a, b) * w)
    outputs: [loss]
  clip_num:
    inputs: {x: [D], w: [D]}
    wrt: [x]
    steps:
      - loss = sum(clip(x, -1, 1) * w)
    outputs: [loss]
  clip_in:
    inputs: {x: [D], lo: [], hi: [], w: [D]}
    wrt: [x, lo, hi]
    steps:
      - loss = sum(clip(x, lo, hi) * w)
    outputs: [loss]
  rmax:
    inputs: {X: [N, D], r: [N]}
    wrt: [X]
    steps:
      - loss = sum(max(X, axis=1) * r)
    outputs: [loss]
  rmin_keep:
    inputs: {X: [N, D], r: [N, 1]}
    wrt: [X]
    steps:
      - m = min(X, axis=1, keepdims=True)
      - loss = sum(m * r)
    outputs: [loss, m]
  rmax_all:
    inputs: {X: [N, D]}
    steps:
      - loss = 3 * max(X)
    outputs: [loss]
  where_log:
    inputs: {x: [D]}
    steps:
      - loss = sum(where(x > 0, log(x), 0))
    outputs: [loss]
  where_xlogx:
    inputs: {x: [D]}
    steps:
      - loss = sum(where(x > 0, x * log(x), 0 * x))
    outputs: [loss]
  where_inf:
    inputs: {x: [D]}
    steps:
      - loss = sum(where(x < 1, 1 / (1 - x), x))
    outputs: [loss]
  where_sqrt:
    inputs: {x: [D]}
    steps:
      - loss = sum(where(x >= 0, x, sqrt(-x) * 0 + exp(-1 / x)))
    outputs: [loss]
  labels:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    steps:
      - picked = take_along_axis(Z, y, axis=1)
      - loss = sum(picked * picked)
    outputs: [loss]
  onehot:
    inputs: {Z: [N, K], y: {shape: [N], dtype: int64}}
    steps:
      - loss = sum(Z * one_hot(y, K))
    outputs: [loss]
  twosame:
    inputs: {a: [D], b: [D]}
    steps:
      - loss = sum(a + b)
    outputs: [loss]
  ident:
    inputs: {X: [D]}
    steps:
      - Y = X * 1.0
    outputs: [X, Y]
"""

BACKENDS = ["numpy", "numba", "array_api", "array_api_strict"]



@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_conv")
    out = generate(d, SPEC, backend="all")
    return {
        "numpy": import_generated(out, "ho_conv"),
        "numba": import_generated(out, "ho_conv_numba"),
        "array_api": import_generated(out, "ho_conv_xp"),
        "array_api_strict": StrictArgs(import_generated(out, "ho_conv_xp")),
    }


def vg(mod, name, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy may warn about the branch not taken
        outs, grads = getattr(mod, f"{name}_value_and_grad")(*args)
    return outs, grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximum_minimum_ties_half(mods, backend):
    m = mods[backend]
    a = np.array([1.0, 2.0, 3.0, -1.0])
    b = np.array([1.0, 5.0, 0.0, -1.0])
    w = np.array([2.0, 3.0, 5.0, 7.0])
    _, g = vg(m, "maxi", a, b, w)
    np.testing.assert_allclose(to_np(g.a), w * np.array([0.5, 0, 1, 0.5]))
    np.testing.assert_allclose(to_np(g.b), w * np.array([0.5, 1, 0, 0.5]))
    _, g = vg(m, "mini", a, b, w)
    np.testing.assert_allclose(to_np(g.a), w * np.array([0.5, 1, 0, 0.5]))
    np.testing.assert_allclose(to_np(g.b), w * np.array([0.5, 0, 1, 0.5]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_ties_half(mods, backend):
    m = mods[backend]
    x = np.array([-1.0, 0.3, 1.0, 2.0])
    w = np.array([2.0, 3.0, 5.0, 7.0])
    outs, g = vg(m, "clip_num", x, w)
    assert float(to_np(outs)) == pytest.approx(float(np.sum(np.clip(x, -1, 1) * w)))
    np.testing.assert_allclose(to_np(g.x), w * np.array([0.5, 1, 0.5, 0]))
    lo, hi = -1.0, 1.0
    _, g = vg(m, "clip_in", x, lo, hi, w)
    np.testing.assert_allclose(to_np(g.x), w * np.array([0.5, 1, 0.5, 0]))
    # lo gets half at the tie x == lo; hi half at x == hi and all of it where x > hi
    assert float(to_np(g.lo)) == pytest.approx(0.5 * 2.0)
    assert float(to_np(g.hi)) == pytest.approx(0.5 * 5.0 + 7.0)
    assert np.shape(to_np(g.lo)) == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_min_reductions_share_ties(mods, backend):
    m = mods[backend]
    X = np.array([[1.0, 4.0, 4.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 3.0, -5.0, -5.0]])
    r = np.array([6.0, 8.0, 9.0])
    _, g = vg(m, "rmax", X, r)
    expect = np.array([[0, 3, 3, 0], [2, 2, 2, 2], [0, 9, 0, 0]], dtype=float)
    np.testing.assert_allclose(to_np(g.X), expect)
    outs, g = vg(m, "rmin_keep", X, r[:, None])
    np.testing.assert_allclose(to_np(outs[1]), np.min(X, axis=1, keepdims=True))
    expect = np.array([[0, 0, 0, 6], [2, 2, 2, 2], [0, 0, 4.5, 4.5]])
    np.testing.assert_allclose(to_np(g.X), expect)
    _, g = vg(m, "rmax_all", X)
    expect = np.zeros_like(X)
    expect[0, 1] = expect[0, 2] = 1.5  # two elements tie at the maximum 4
    np.testing.assert_allclose(to_np(g.X), expect)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_untaken_nan_inf_never_reach_gradient(mods, backend):
    m = mods[backend]
    x = np.array([0.0, -1.0, 2.0, 0.5])
    outs, g = vg(m, "where_log", x)
    assert float(to_np(outs)) == pytest.approx(np.log(2.0) + np.log(0.5))
    np.testing.assert_array_equal(to_np(g.x), [0.0, 0.0, 0.5, 2.0])
    outs, g = vg(m, "where_xlogx", x)
    np.testing.assert_allclose(to_np(g.x), [0.0, 0.0, np.log(2.0) + 1, np.log(0.5) + 1])
    x = np.array([1.0, 0.5, 3.0, -1.0])
    outs, g = vg(m, "where_inf", x)
    assert np.isfinite(to_np(outs))
    np.testing.assert_allclose(to_np(g.x), [1.0, 1 / 0.25, 1.0, 1 / 4.0])
    x = np.array([0.0, 1.0, 2.5, 0.0])
    outs, g = vg(m, "where_sqrt", x)
    np.testing.assert_array_equal(to_np(g.x), [1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_take_along_axis_and_one_hot(mods, backend):
    m = mods[backend]
    Z = np.arange(9.0).reshape(3, 3) / 10 - 0.3
    y = np.array([[2], [0], [2]])
    outs, g = vg(m, "labels", Z, y)
    picked = np.take_along_axis(Z, y, axis=1)
    assert float(to_np(outs)) == pytest.approx(float(np.sum(picked**2)))
    expect = np.zeros_like(Z)
    np.put_along_axis(expect, y, 2 * picked, axis=1)
    np.testing.assert_allclose(to_np(g.Z), expect)
    y1 = np.array([1, 1, 0])
    outs, g = vg(m, "onehot", Z, y1)
    np.testing.assert_allclose(to_np(g.Z), np.eye(3)[y1])
    # integer arrays of another width are accepted (converted exactly)
    outs, g = vg(m, "onehot", Z, y1.astype(np.int32))
    np.testing.assert_allclose(to_np(g.Z), np.eye(3)[y1])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("bad", [3, -1, 7])
def test_labels_out_of_range_value_error(mods, backend, bad):
    m = mods[backend]
    Z = np.zeros((3, 3))
    y = np.array([[0], [bad], [1]])
    with pytest.raises(ValueError):
        m.labels_value_and_grad(Z, y)
    with pytest.raises(ValueError):
        m.labels(Z, y)
    with pytest.raises(ValueError):
        m.onehot_value_and_grad(Z, np.array([0, bad, 1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_labels_refused(mods, backend):
    m = mods[backend]
    with pytest.raises(ValueError):
        m.labels(np.zeros((3, 3)), np.array([[0.0], [1.0], [2.0]]))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_runtime_input_conversion(mods, backend):
    """§1b: a float input accepts integer and boolean arrays, Python numbers and lists; another
    float precision is refused with a ValueError naming the input (§3)."""
    m = mods[backend]
    outs, g = m.maxi_value_and_grad([1, 2, 3, 4], np.array([0, 5, 1, 9], dtype=np.int32), np.array([True] * 4))
    assert float(outs) == pytest.approx(1 + 5 + 3 + 9)
    np.testing.assert_allclose(g.a, [1, 0, 1, 0])
    assert g.a.dtype == np.float64
    _, g = m.clip_in_value_and_grad(np.zeros(4), -1, 1, np.ones(4))
    assert g.lo.dtype == np.float64
    with pytest.raises(ValueError, match="a"):
        m.maxi(np.zeros(4, dtype=np.float32), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"b"):
        m.maxi(np.zeros(4), np.zeros(5), np.zeros(4))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gradients_are_fresh_arrays(mods, backend):
    """§3: each gradient is its own array: mutating one changes no other, no input, no output."""
    m = mods[backend]
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([4.0, 3.0, 2.0, 1.0])
    a0, b0 = a.copy(), b.copy()
    _, g = m.twosame_value_and_grad(a, b)
    assert not np.shares_memory(g.a, g.b)
    g.a[:] = 99.0
    np.testing.assert_array_equal(g.b, np.ones(4))
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    outs, saved = m.twosame_forward(a, b)
    g1 = m.twosame_backward(saved, 1.0)
    g2 = m.twosame_backward(saved, 1.0)
    g1.a[:] = -5.0
    np.testing.assert_array_equal(g2.a, np.ones(4))
    np.testing.assert_array_equal(g1.b, np.ones(4))
    # an input that is itself the first output: its gradient is g, copied
    X = np.array([1.0, 2.0, 3.0, 4.0])
    outs, saved = m.ident_forward(X)
    assert not np.shares_memory(outs[0], X)
    gg = np.array([1.0, -1.0, 2.0, 0.5])
    grads = m.ident_backward(saved, gg)
    np.testing.assert_array_equal(grads.X, gg)
    assert not np.shares_memory(grads.X, gg)
    assert not np.shares_memory(grads.X, X)
    grads.X[:] = 0
    np.testing.assert_array_equal(gg, [1.0, -1.0, 2.0, 0.5])
    np.testing.assert_array_equal(X, [1.0, 2.0, 3.0, 4.0])
