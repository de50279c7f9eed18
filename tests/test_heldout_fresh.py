"""Held-out acceptance tests: gradients are fresh arrays (§3: "each gradient has its input's shape
and dtype"; the README: a new writeable array that shares no memory with an input, an output, g,
the saved values or another gradient), including constant and zero gradients, which are the easy
ones to share by accident (one cached zeros array, a read-only np.broadcast_to view of ones).
"""

from __future__ import annotations

import numpy as np
import pytest

from heldout_common import generate, import_generated

SPEC = """
module: ho_fresh
functions:
  consts:
    inputs: {a: [3], b: [3], c: [2, 3], s: []}
    steps:
      - loss = sum(a) + 2 * sum(b) + mean(c) + 0 * s
    outputs: [loss]
  unused:
    inputs: {a: [3], b: [3], c: [3]}
    steps:
      - loss = sum(a * a)
    outputs: [loss]
  passthru:
    inputs: {X: [2, 3], W: [3, 3]}
    steps:
      - Y = X @ W
    outputs: [Y, X]
"""


@pytest.fixture(scope="module", params=["numpy", "numba"])
def mod(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_fresh_" + request.param)
    out = generate(d, SPEC, backend=request.param)
    return import_generated(out, "ho_fresh" if request.param == "numpy" else "ho_fresh_numba")


def _all_distinct_writeable(arrays, others):
    for i, x in enumerate(arrays):
        x = np.asarray(x)
        for y in arrays[i + 1 :]:
            assert not np.shares_memory(x, np.asarray(y))
        for y in others:
            assert not np.shares_memory(x, np.asarray(y))


def test_constant_gradients_are_fresh(mod):
    a, b, c, s = np.ones(3), np.ones(3), np.ones((2, 3)), np.float64(1.5)
    _, g = mod.consts_value_and_grad(a, b, c, s)
    np.testing.assert_allclose(g.a, np.ones(3))
    np.testing.assert_allclose(g.b, 2 * np.ones(3))
    np.testing.assert_allclose(g.c, np.full((2, 3), 1 / 6))
    assert float(g.s) == 0.0 and np.shape(g.s) == ()
    assert all(getattr(g, k).dtype == np.float64 for k in "abc")
    _all_distinct_writeable([g.a, g.b, g.c], [a, b, c])
    g.a[...] = 7.0  # writeable
    g.b[...] = 7.0
    g.c[...] = 7.0
    _, g2 = mod.consts_value_and_grad(a, b, c, s)
    np.testing.assert_allclose(g2.a, np.ones(3))
    np.testing.assert_allclose(g2.b, 2 * np.ones(3))
    np.testing.assert_allclose(g2.c, np.full((2, 3), 1 / 6))
    outs, saved = mod.consts_forward(a, b, c, s)
    g3 = mod.consts_backward(saved)
    g3.a[...] = -1.0
    np.testing.assert_allclose(mod.consts_backward(saved).a, np.ones(3))


def test_zero_gradients_are_fresh(mod):
    a, b, c = np.arange(3.0), np.ones(3), np.ones(3)
    _, g = mod.unused_value_and_grad(a, b, c)
    np.testing.assert_allclose(g.a, 2 * a)
    np.testing.assert_array_equal(g.b, np.zeros(3))
    np.testing.assert_array_equal(g.c, np.zeros(3))
    _all_distinct_writeable([g.a, g.b, g.c], [a, b, c])
    g.b[...] = 5.0
    np.testing.assert_array_equal(g.c, np.zeros(3))
    _, g2 = mod.unused_value_and_grad(a, b, c)
    np.testing.assert_array_equal(g2.b, np.zeros(3))


def test_passthrough_gradient_and_outputs(mod):
    X, W = np.arange(6.0).reshape(2, 3), np.eye(3) * 2
    gY = np.ones((2, 3)) * 3
    outs, saved = mod.passthru_forward(X, W)
    g = mod.passthru_backward(saved, gY)
    np.testing.assert_allclose(g.X, gY @ W.T)
    np.testing.assert_allclose(g.W, X.T @ gY)
    _all_distinct_writeable([g.X, g.W], [X, W, gY])
    g.X[...] = 0
    np.testing.assert_array_equal(gY, np.ones((2, 3)) * 3)
