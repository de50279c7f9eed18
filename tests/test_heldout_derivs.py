"""Held-out acceptance tests of DESIGN.md §3b (f_jvp, f_jacobian, f_hvp, f_hessian) on the NumPy
and Numba modules (and §3c: the array-API module has the same names).

Oracles: seed 002's worked Jacobian (d vec(Z) / d vec(W) of Z = A W + B, row-major) and its
gradient [[5, 5], [7, 7], [9, 9]]; JAX in float64 (jax.jvp, jax.jacrev, jax.hessian).
"""

from __future__ import annotations

import numpy as np
import pytest

from heldout_common import generate, import_generated, to_np

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

SPEC = """
module: ho_der
dims: {B: 2, N: 5, D: 3, H: 4, K: 2}
derivatives: [jvp, jacobian, hvp, hessian]
functions:
  affine:
    inputs: {A: [2, 3], W: [3, 2], Bv: [2]}
    wrt: [W]
    derivatives: [jvp, jacobian]
    steps:
      - Z = A @ W + Bv
    outputs: [Z]
  affsum:
    inputs: {A: [2, 3], W: [3, 2], Bv: [2]}
    wrt: [W, Bv]
    steps:
      - Z = A @ W + Bv
      - S = sum(Z)
    outputs: [S, Z]
  mlp:
    inputs: {X: [N, D], W1: [D, H], b1: [H], w2: [H], y: [N]}
    wrt: [W1, b1, w2]
    steps:
      - Hd = tanh(X @ W1 + b1)
      - r = Hd @ w2 - y
      - loss = mean(r ** 2) + 0.01 * sum(W1 ** 2) + sum(exp(b1) * w2)
    outputs: [loss]
  vecout:
    inputs: {x: [D], M: [D, D]}
    derivatives: [jvp, jacobian]
    steps:
      - yv = tanh(M @ x) * x
    outputs: [yv]
  tensor_out:
    inputs: {X: [B, N, D], W: [D, K]}
    derivatives: [jacobian, jvp]
    steps:
      - Z = sin(X @ W) * 2
    outputs: [Z]
"""

SEED_A = np.array([[1.0, 2, 3], [4, 5, 6]])
SEED_W = np.array([[7.0, 8], [10, 11], [12, 13]])
SEED_B = np.array([13.0, 14])
SEED_JAC = np.array(
    [[1, 0, 2, 0, 3, 0], [0, 1, 0, 2, 0, 3], [4, 0, 5, 0, 6, 0], [0, 4, 0, 5, 0, 6]], dtype=float
)


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_der")
    return generate(d, SPEC, backend="all")


@pytest.fixture(scope="module", params=["numpy", "numba"])
def mod(request, outdir):
    return import_generated(outdir, "ho_der" if request.param == "numpy" else "ho_der_numba")


def test_seed002_jacobian_row_major(mod):
    outs, jac = mod.affine_jacobian(SEED_A, SEED_W, SEED_B)
    Z = outs[0] if isinstance(outs, tuple) else outs
    np.testing.assert_allclose(Z, [[76, 83], [163, 179]])
    assert type(jac).__name__ == "affine_Grads" and jac._fields == ("W",)
    assert isinstance(jac, mod.affine_Grads)
    assert jac.W.shape == (4, 6)
    np.testing.assert_allclose(jac.W, SEED_JAC)
    np.testing.assert_allclose(jac.W.reshape(Z.shape + SEED_W.shape)[1, 0], [[4, 0], [5, 0], [6, 0]])


def test_seed002_gradient_and_scalar_jacobian(mod):
    (S, Z), g = mod.affsum_value_and_grad(SEED_A, SEED_W, SEED_B)
    assert float(S) == 501.0
    np.testing.assert_allclose(g.W, [[5, 5], [7, 7], [9, 9]])
    np.testing.assert_allclose(g.Bv, [2, 2])
    outs, jac = mod.affsum_jacobian(SEED_A, SEED_W, SEED_B)
    assert jac.W.shape == (1, 6) and jac.Bv.shape == (1, 2)
    np.testing.assert_allclose(jac.W, [[5, 5, 7, 7, 9, 9]])
    # linear in W and Bv: the Hessian is zero, (n, n) with n = 6 + 2
    outs, grads, Hm = mod.affsum_hessian(SEED_A, SEED_W, SEED_B)
    assert Hm.shape == (8, 8)
    np.testing.assert_allclose(Hm, np.zeros((8, 8)), atol=1e-12)
    np.testing.assert_allclose(grads.W, [[5, 5], [7, 7], [9, 9]])


def test_seed002_jvp_tuple_and_grads_tangent(mod):
    T = np.arange(6.0).reshape(3, 2) - 2
    outs, dout = mod.affine_jvp(SEED_A, SEED_W, SEED_B, (T,))
    np.testing.assert_allclose(dout, SEED_A @ T)
    np.testing.assert_allclose(dout.ravel(), SEED_JAC @ T.ravel())
    outs2, dout2 = mod.affine_jvp(SEED_A, SEED_W, SEED_B, mod.affine_Grads(W=T))
    np.testing.assert_allclose(dout2, SEED_A @ T)
    outs3, dout3 = mod.affine_jvp(A=SEED_A, W=SEED_W, Bv=SEED_B, tangents=(T,))
    np.testing.assert_allclose(dout3, SEED_A @ T)


def _mlp_inputs():
    r = np.random.default_rng(7)
    return {
        "X": r.standard_normal((5, 3)),
        "W1": r.standard_normal((3, 4)) * 0.7,
        "b1": r.standard_normal(4) * 0.5,
        "w2": r.standard_normal(4),
        "y": r.standard_normal(5),
    }


def _mlp_jax(X, W1, b1, w2, y):
    Hd = jnp.tanh(X @ W1 + b1)
    r = Hd @ w2 - y
    return jnp.mean(r**2) + 0.01 * jnp.sum(W1**2) + jnp.sum(jnp.exp(b1) * w2)


def test_mlp_default_kinds_against_jax(mod):
    """The module-level `derivatives:` applies to mlp; hvp, hessian, jvp, jacobian against JAX."""
    inp = _mlp_inputs()
    wrt = ("W1", "b1", "w2")
    args = {k: jnp.asarray(v) for k, v in inp.items()}

    def f(W1, b1, w2):
        return _mlp_jax(args["X"], W1, b1, w2, args["y"])

    primals = tuple(args[w] for w in wrt)
    r = np.random.default_rng(8)
    v = tuple(r.standard_normal(inp[w].shape) for w in wrt)
    grads_ref = jax.grad(f, argnums=(0, 1, 2))(*primals)
    hv_ref = jax.jvp(jax.grad(f, argnums=(0, 1, 2)), primals, tuple(jnp.asarray(t) for t in v))[1]
    _, dout_ref = jax.jvp(f, primals, tuple(jnp.asarray(t) for t in v))
    flat = jnp.concatenate([p.ravel() for p in primals])
    sizes = [int(np.prod(inp[w].shape)) for w in wrt]

    def f_flat(z):
        parts, i = [], 0
        for w, s in zip(wrt, sizes):
            parts.append(z[i : i + s].reshape(inp[w].shape))
            i += s
        return f(*parts)

    H_ref = np.asarray(jax.hessian(f_flat)(flat))

    outs, grads, hv = mod.mlp_hvp(*inp.values(), v)
    assert float(outs if np.ndim(outs) == 0 else outs[0]) == pytest.approx(float(f(*primals)), rel=1e-12)
    assert hv._fields == wrt and grads._fields == wrt
    for w, gr, h in zip(wrt, grads_ref, hv_ref):
        np.testing.assert_allclose(getattr(grads, w), np.asarray(gr), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(getattr(hv, w), np.asarray(h), rtol=1e-8, atol=1e-11)
        assert getattr(hv, w).shape == inp[w].shape
    outs, grads, Hm = mod.mlp_hessian(**inp)
    assert Hm.shape == (sum(sizes), sum(sizes))
    np.testing.assert_allclose(Hm, H_ref, rtol=1e-8, atol=1e-11)
    outs, dout = mod.mlp_jvp(*inp.values(), mod.mlp_Grads(*v))
    assert np.shape(dout) == ()
    assert float(dout) == pytest.approx(float(dout_ref), rel=1e-9, abs=1e-12)
    outs, jac = mod.mlp_jacobian(**inp)
    for w, gr in zip(wrt, grads_ref):
        assert getattr(jac, w).shape == (1, inp[w].size)
        np.testing.assert_allclose(getattr(jac, w), np.asarray(gr).reshape(1, -1), rtol=1e-9, atol=1e-12)


def test_vector_output_jvp_and_jacobian(mod):
    r = np.random.default_rng(9)
    x, M = r.standard_normal(3), r.standard_normal((3, 3))

    def f(x, M):
        return jnp.tanh(M @ x) * x

    Jx, JM = jax.jacrev(f, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(M))
    outs, jac = mod.vecout_jacobian(x, M)
    assert jac._fields == ("x", "M")
    assert jac.x.shape == (3, 3) and jac.M.shape == (3, 9)
    np.testing.assert_allclose(jac.x, np.asarray(Jx), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac.M, np.asarray(JM).reshape(3, 9), rtol=1e-9, atol=1e-12)
    tx, tM = r.standard_normal(3), r.standard_normal((3, 3))
    _, ref = jax.jvp(f, (jnp.asarray(x), jnp.asarray(M)), (jnp.asarray(tx), jnp.asarray(tM)))
    outs, dout = mod.vecout_jvp(x, M, (tx, tM))
    assert dout.shape == (3,)
    np.testing.assert_allclose(dout, np.asarray(ref), rtol=1e-9, atol=1e-12)


def test_tensor_output_jacobian_row_major(mod):
    r = np.random.default_rng(10)
    X, W = r.standard_normal((2, 5, 3)), r.standard_normal((3, 2))

    def f(X, W):
        return jnp.sin(X @ W) * 2

    JX, JW = jax.jacrev(f, argnums=(0, 1))(jnp.asarray(X), jnp.asarray(W))
    outs, jac = mod.tensor_out_jacobian(X, W)
    assert jac.X.shape == (20, 30) and jac.W.shape == (20, 6)
    np.testing.assert_allclose(jac.X, np.asarray(JX).reshape(20, 30), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac.W, np.asarray(JW).reshape(20, 6), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac.W.reshape((2, 5, 2) + W.shape), np.asarray(JW), rtol=1e-9, atol=1e-12)
    tX, tW = r.standard_normal(X.shape), r.standard_normal(W.shape)
    _, ref = jax.jvp(f, (jnp.asarray(X), jnp.asarray(W)), (jnp.asarray(tX), jnp.asarray(tW)))
    _, dout = mod.tensor_out_jvp(X, W, (tX, tW))
    assert dout.shape == (2, 5, 2)
    np.testing.assert_allclose(dout, np.asarray(ref), rtol=1e-9, atol=1e-12)


def test_hvp_against_central_differences_of_gradient(mod):
    """hv ≈ (grad(x + h v) - grad(x - h v)) / 2h, the gradient from the module itself."""
    inp = _mlp_inputs()
    r = np.random.default_rng(11)
    v = [r.standard_normal(inp[w].shape) for w in ("W1", "b1", "w2")]
    _, _, hv = mod.mlp_hvp(*inp.values(), tuple(v))
    h = 1e-5
    plus = dict(inp, W1=inp["W1"] + h * v[0], b1=inp["b1"] + h * v[1], w2=inp["w2"] + h * v[2])
    minus = dict(inp, W1=inp["W1"] - h * v[0], b1=inp["b1"] - h * v[1], w2=inp["w2"] - h * v[2])
    gp = mod.mlp_value_and_grad(**plus)[1]
    gm = mod.mlp_value_and_grad(**minus)[1]
    for w in ("W1", "b1", "w2"):
        fd = (getattr(gp, w) - getattr(gm, w)) / (2 * h)
        np.testing.assert_allclose(getattr(hv, w), fd, rtol=1e-6, atol=1e-7)


def test_kinds_not_asked_are_absent(mod):
    assert not hasattr(mod, "affine_hvp") and not hasattr(mod, "affine_hessian")
    assert hasattr(mod, "affine_value_and_grad") and hasattr(mod, "affine_backward")


def test_array_api_module_has_derivative_kinds(outdir):
    """§3c: the array-API module has 'the same names and results as the NumPy module'."""
    xp_mod = import_generated(outdir, "ho_der_xp")
    outs, jac = xp_mod.affine_jacobian(SEED_A, SEED_W, SEED_B)
    np.testing.assert_allclose(to_np(jac.W), SEED_JAC)
    outs, grads, Hm = xp_mod.mlp_hessian(**_mlp_inputs())
    assert to_np(Hm).shape == (20, 20)  # W1 [3, 4], b1 [4], w2 [4]
