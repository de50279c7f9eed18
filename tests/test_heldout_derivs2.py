"""Held-out acceptance tests: §3b derivative kinds at §1b's convention points, through labels,
and a float32 spec (§1, §1b, §3), on the NumPy and Numba modules.

Expected values: closed forms of §1b's conventions (where's untaken branch contributes nothing, also
to second derivatives), the definitions of §3b (for a scalar output, the Jacobian is the gradient as
a row and the JVP is the gradient's dot product with the tangent), and JAX in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from heldout_common import generate, import_generated

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

SPEC = """
module: ho_der2
derivatives: [jvp, jacobian, hvp, hessian]
functions:
  wlog:
    inputs: {x: [4]}
    steps:
      - loss = sum(where(x > 0, log(x), 0))
    outputs: [loss]
  ties:
    inputs: {a: [4], b: [4], X: [2, 3]}
    steps:
      - loss = sum(maximum(a, b) * a) + sum(max(X, axis=1) ** 2) + sum(clip(a, -1, 1))
    outputs: [loss]
  xent:
    inputs: {Z: [3, 4], y: {shape: [3, 1], dtype: int64}, W: [4, 4]}
    steps:
      - L = Z @ W
      - loss = -mean(take_along_axis(log_softmax(L, axis=1), y, axis=1))
    outputs: [loss]
  onehot_mse:
    inputs: {Z: [3, 4], y: {shape: [3], dtype: int64}}
    steps:
      - loss = sum((softmax(Z, axis=1) - one_hot(y, 4)) ** 2)
    outputs: [loss]
"""

SPEC32 = """
module: ho_f32
dtype: float32
functions:
  f:
    inputs: {X: [3, 4], W: [4, 2], y: {shape: [3], dtype: int64}}
    steps:
      - Y = one_hot(y, 2)
      - P = softmax(X @ W, axis=1)
      - loss = sum((P - Y) ** 2)
    outputs: [loss, Y, P]
"""


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_der2")
    out = generate(d, SPEC, backend="all")
    write = d / "f32"
    out32 = generate(write, SPEC32, backend="all")
    return out, out32


@pytest.fixture(scope="module", params=["numpy", "numba"])
def mods(request, outdir):
    out, out32 = outdir
    suffix = "" if request.param == "numpy" else "_numba"
    return import_generated(out, "ho_der2" + suffix), import_generated(out32, "ho_f32" + suffix)


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def test_where_untaken_branch_in_every_kind(mods):
    m = mods[0]
    x = np.array([0.0, -1.0, 2.0, 0.5])
    grad = np.array([0.0, 0.0, 0.5, 2.0])
    hdiag = np.array([0.0, 0.0, -0.25, -4.0])
    _, g = quiet(m.wlog_value_and_grad, x)
    np.testing.assert_array_equal(g.x, grad)
    _, jac = quiet(m.wlog_jacobian, x)
    np.testing.assert_allclose(jac.x, grad[None, :])
    t = np.array([1.0, 2.0, 3.0, 4.0])
    _, dout = quiet(m.wlog_jvp, x, (t,))
    assert float(dout) == pytest.approx(grad @ t)
    _, g2, hv = quiet(m.wlog_hvp, x, (t,))
    np.testing.assert_allclose(hv.x, hdiag * t)
    np.testing.assert_array_equal(g2.x, grad)
    _, _, Hm = quiet(m.wlog_hessian, x)
    np.testing.assert_allclose(Hm, np.diag(hdiag))


def test_ties_jvp_and_jacobian_agree_with_gradient(mods):
    """At ties the derivative is a convention; §3b's jac is d vec(y)/d vec(x): for a scalar y it is
    the gradient as a row, and f_jvp(t) = jac @ t, whichever way (reverse or forward) it is computed."""
    m = mods[0]
    a = np.array([1.0, 2.0, -1.0, 0.5])
    b = np.array([1.0, 0.0, -3.0, 0.5])
    X = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    _, g = m.ties_value_and_grad(a, b, X)
    # closed forms of §1b: maximum ties half each, max ties share equally, clip at x == lo half
    da = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)) * a + np.maximum(a, b)
    da = da + np.where((a > -1) & (a < 1), 1.0, np.where((a == -1) | (a == 1), 0.5, 0.0))
    np.testing.assert_allclose(g.a, da)
    np.testing.assert_allclose(g.b, np.where(b > a, 1.0, np.where(a == b, 0.5, 0.0)) * a)
    np.testing.assert_allclose(g.X, [[0, 3, 3], [4 / 3, 4 / 3, 4 / 3]])
    _, jac = m.ties_jacobian(a, b, X)
    flat = np.concatenate([g.a, g.b, g.X.ravel()])
    np.testing.assert_allclose(np.concatenate([jac.a[0], jac.b[0], jac.X[0]]), flat)
    r = np.random.default_rng(3)
    t = (r.standard_normal(4), r.standard_normal(4), r.standard_normal((2, 3)))
    _, dout = m.ties_jvp(a, b, X, t)
    assert float(dout) == pytest.approx(float(flat @ np.concatenate([x.ravel() for x in t])), rel=1e-12)


def _jax_hessian(fn, inputs, wrt):
    shapes = [np.shape(inputs[w]) for w in wrt]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = jnp.concatenate([jnp.asarray(inputs[w]).ravel() for w in wrt])

    def f_flat(z):
        parts, i = {}, 0
        for w, s, n in zip(wrt, shapes, sizes):
            parts[w] = z[i : i + n].reshape(s)
            i += n
        return fn(**{**{k: jnp.asarray(v) for k, v in inputs.items()}, **parts})

    return np.asarray(jax.hessian(f_flat)(flat))


def test_hessian_through_labels(mods):
    m = mods[0]
    r = np.random.default_rng(4)
    inp = {"Z": r.standard_normal((3, 4)), "y": np.array([[3], [0], [3]]), "W": r.standard_normal((4, 4))}

    def xent(Z, y, W):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(Z @ W, axis=1), y, axis=1))

    outs, grads, Hm = m.xent_hessian(**inp)
    assert grads._fields == ("Z", "W")  # default wrt: every float input, in spec order
    np.testing.assert_allclose(Hm, _jax_hessian(xent, inp, ["Z", "W"]), rtol=1e-8, atol=1e-11)
    t = (r.standard_normal((3, 4)), r.standard_normal((4, 4)))
    _, dout = m.xent_jvp(inp["Z"], inp["y"], inp["W"], t)
    _, g = m.xent_value_and_grad(**inp)
    assert float(dout) == pytest.approx(float(np.sum(g.Z * t[0]) + np.sum(g.W * t[1])), rel=1e-9)


def test_hessian_through_one_hot(mods, request):
    m = mods[0]
    r = np.random.default_rng(6)
    inp2 = {"Z": r.standard_normal((3, 4)), "y": np.array([1, 3, 3])}

    def omse(Z, y):
        return jnp.sum((jax.nn.softmax(Z, axis=1) - jax.nn.one_hot(y, 4, dtype=jnp.float64)) ** 2)

    outs, grads, Hm = m.onehot_mse_hessian(**inp2)
    np.testing.assert_allclose(Hm, _jax_hessian(omse, inp2, ["Z"]), rtol=1e-8, atol=1e-11)
    v = (r.standard_normal((3, 4)),)
    _, _, hv = m.onehot_mse_hvp(inp2["Z"], inp2["y"], v)
    np.testing.assert_allclose(hv.Z.ravel(), _jax_hessian(omse, inp2, ["Z"]) @ v[0].ravel(), rtol=1e-8, atol=1e-11)


def test_float32_spec_dtypes(mods):
    m32 = mods[1]
    r = np.random.default_rng(5)
    X = r.standard_normal((3, 4)).astype(np.float32)
    W = r.standard_normal((4, 2)).astype(np.float32)
    y = np.array([1, 0, 1])
    (loss, Y, P), g = m32.f_value_and_grad(X, W, y)
    assert Y.dtype == np.float32 and P.dtype == np.float32  # one_hot: "a float array of the spec's dtype"
    np.testing.assert_array_equal(Y, np.eye(2, dtype=np.float32)[y])
    assert g.X.dtype == np.float32 and g.W.dtype == np.float32
    assert g.X.shape == (3, 4) and g.W.shape == (4, 2)

    def f(X, W):
        return jnp.sum((jax.nn.softmax(X @ W, axis=1) - jax.nn.one_hot(y, 2, dtype=jnp.float64)) ** 2)

    ref = jax.grad(f, argnums=(0, 1))(jnp.asarray(X, dtype=jnp.float64), jnp.asarray(W, dtype=jnp.float64))
    np.testing.assert_allclose(g.X, np.asarray(ref[0]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.W, np.asarray(ref[1]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="X"):
        m32.f(X.astype(np.float64), W, y)
