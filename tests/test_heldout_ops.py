"""Held-out acceptance tests: every op of DESIGN.md §1b, on the NumPy, Numba and array-API modules.

Oracle: JAX in float64 (jax.grad of an independent JAX transcription of each spec function), and
closed forms for the subgradient conventions of §1b (ties, where). One spec holds all functions so
that each backend is generated (and Numba compiled) once.
"""

from __future__ import annotations

import numpy as np
import pytest

from heldout_common import generate, import_generated, to_np

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy
jsp = jax.scipy.special

SPEC = """
module: ho_ops
dtype: float64
dims: {B: 2, N: 3, D: 4, K: 3, H: 5}
functions:
  ein_batched:
    inputs: {A: [B, N, D], W: [B, D, K]}
    steps:
      - Z = einsum("bij,bjk->bik", A, W)
      - loss = sum(tanh(Z) ** 2)
    outputs: [loss, Z]
  ein_three:
    inputs: {X: [N, D], W: [D, K], V: [K, H]}
    steps:
      - Z = einsum("ij,jk,kl->il", X, W, V)
      - loss = sum(sin(Z))
    outputs: [loss]
  ein_vec:
    inputs: {X: [N, D], v: [D], u: [N]}
    steps:
      - z = einsum("nd,d->n", X, v)
      - s = einsum("n,n->", z, u)
      - loss = s * s + sum(z)
    outputs: [loss]
  bmm_weight:
    inputs: {X: [B, N, D], W: [D, K]}
    steps:
      - Z = X @ W
      - loss = sum(cos(Z))
    outputs: [loss, Z]
  bmm_broadcast:
    inputs: {X: [B, N, D], Y: [1, D, K], v: [K, 1]}
    steps:
      - Z = X @ Y
      - loss = sum(square(Z)) + sum(Z @ v)
    outputs: [loss]
  rank4:
    inputs: {X: [B, N, D, K], v: [K], c: [D, 1]}
    steps:
      - T = transpose(X, (0, 2, 1, 3))
      - S = swapaxes(T, 1, 3)
      - R = reshape(S, (B * K, N * D))
      - Z = X * v + c
      - loss = sum(R ** 3) + 0.1 * sum(exp(Z)) + sum(R @ reshape(X, (N * D, B * K)))
    outputs: [loss]
  cat_stack:
    inputs: {a: [N, D], b: [N, K], c: [N, D], w: [2, N, D]}
    wrt: [a, b, c]
    steps:
      - C = concatenate((a, b), axis=1)
      - S = stack((a, c), axis=0)
      - T = concatenate((a, c), axis=0)
      - loss = sum(tanh(C) * C) + sum(exp(S) * w) + sum(T ** 3)
    outputs: [loss]
  structure:
    inputs: {v: [D], A: [D, D]}
    steps:
      - M = diag(v) + eye(D) * 2.0 + A
      - d = diag(A @ A)
      - loss = sum(M @ M) + sum(d * v) + sum(eye(D) * A)
    outputs: [loss]
  stats:
    inputs: {X: [N, D]}
    steps:
      - v = var(X, axis=0)
      - s = std(X, axis=1, keepdims=True)
      - u = std(X, axis=0)
      - loss = sum(v * v) + sum(X / s) + sum(u * u * u)
    outputs: [loss]
  elementwise:
    inputs: {x: [D]}
    steps:
      - loss = sum(erf(x) + expm1(x) * cosh(x) + sinh(x) * arctan(x) + log_sigmoid(3 * x))
    outputs: [loss]
  dims_numbers:
    inputs: {Qm: [N, D], Km: [N, D]}
    steps:
      - S = Qm @ Km.T / sqrt(D)
      - loss = sum(softmax(S, axis=1) * S) / N + sum(Qm) * D
    outputs: [loss]
  labels:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    steps:
      - lp = log_softmax(Z, axis=1)
      - picked = take_along_axis(lp, y, axis=1)
      - loss = -mean(picked)
    outputs: [loss]
  onehot:
    inputs: {Z: [N, K], y: {shape: [N], dtype: int64}}
    steps:
      - Y = one_hot(y, K)
      - loss = sum((Z - Y) ** 2)
    outputs: [loss, Y]
  layer:
    inputs: {X: [M, P], W: [P, Q], b: [Q]}
    steps:
      - Hd = tanh(X @ W + b)
    outputs: [Hd]
  two_layers:
    inputs: {X: [N, D], W1: [D, H], b1: [H], W2: [H, K], b2: [K]}
    steps:
      - H1 = layer(X, W1, b1)
      - H2 = layer(H1, W2, b2)
      - loss = sum(H2 ** 2)
    outputs: [loss]
  selection:
    inputs: {a: [N, D], b: [N, D]}
    steps:
      - m = where(a < b, a * b, b - a)
      - loss = sum(maximum(a, b) * minimum(a, 2 * b)) + sum(clip(a, -0.5, 0.5) * b) + sum(m * m)
    outputs: [loss]
  extreme:
    inputs: {X: [N, D]}
    steps:
      - m1 = max(X, axis=1)
      - m0 = min(X, axis=0, keepdims=True)
      - loss = sum(m1 * m1) + sum(m0 * X) + max(X) - min(X)
    outputs: [loss]
"""

B, N, D, K, H = 2, 3, 4, 3, 5


def _oracles():
    """name -> (inputs, wrt, jax function of the inputs returning the first output)."""
    r = np.random.default_rng(1234)

    def g(*shape):
        return r.standard_normal(shape)

    o = {}
    o["ein_batched"] = (
        {"A": g(B, N, D), "W": g(B, D, K)},
        ["A", "W"],
        lambda A, W: jnp.sum(jnp.tanh(jnp.einsum("bij,bjk->bik", A, W)) ** 2),
    )
    o["ein_three"] = (
        {"X": g(N, D), "W": g(D, K), "V": g(K, H)},
        ["X", "W", "V"],
        lambda X, W, V: jnp.sum(jnp.sin(X @ W @ V)),
    )

    def ein_vec(X, v, u):
        z = X @ v
        s = z @ u
        return s * s + jnp.sum(z)

    o["ein_vec"] = ({"X": g(N, D), "v": g(D), "u": g(N)}, ["X", "v", "u"], ein_vec)
    o["bmm_weight"] = ({"X": g(B, N, D), "W": g(D, K)}, ["X", "W"], lambda X, W: jnp.sum(jnp.cos(X @ W)))

    def bmm_broadcast(X, Y, v):
        Z = jnp.matmul(X, Y)
        return jnp.sum(Z**2) + jnp.sum(Z @ v)

    o["bmm_broadcast"] = ({"X": g(B, N, D), "Y": g(1, D, K), "v": g(K, 1)}, ["X", "Y", "v"], bmm_broadcast)

    def rank4(X, v, c):
        T = jnp.transpose(X, (0, 2, 1, 3))
        S = jnp.swapaxes(T, 1, 3)
        R = jnp.reshape(S, (B * K, N * D))
        Z = X * v + c
        return jnp.sum(R**3) + 0.1 * jnp.sum(jnp.exp(Z)) + jnp.sum(R @ jnp.reshape(X, (N * D, B * K)))

    o["rank4"] = ({"X": g(B, N, D, K), "v": g(K), "c": g(D, 1)}, ["X", "v", "c"], rank4)

    def cat_stack(a, b, c, w):
        C = jnp.concatenate((a, b), axis=1)
        S = jnp.stack((a, c), axis=0)
        T = jnp.concatenate((a, c), axis=0)
        return jnp.sum(jnp.tanh(C) * C) + jnp.sum(jnp.exp(S) * w) + jnp.sum(T**3)

    o["cat_stack"] = ({"a": g(N, D), "b": g(N, K), "c": g(N, D), "w": g(2, N, D)}, ["a", "b", "c"], cat_stack)

    def structure(v, A):
        M = jnp.diag(v) + jnp.eye(D) * 2.0 + A
        d = jnp.diag(A @ A)
        return jnp.sum(M @ M) + jnp.sum(d * v) + jnp.sum(jnp.eye(D) * A)

    o["structure"] = ({"v": g(D), "A": g(D, D)}, ["v", "A"], structure)

    def stats(X):
        v = jnp.var(X, axis=0)
        s = jnp.std(X, axis=1, keepdims=True)
        u = jnp.std(X, axis=0)
        return jnp.sum(v * v) + jnp.sum(X / s) + jnp.sum(u**3)

    o["stats"] = ({"X": g(N, D)}, ["X"], stats)

    def elementwise(x):
        return jnp.sum(
            jsp.erf(x) + jnp.expm1(x) * jnp.cosh(x) + jnp.sinh(x) * jnp.arctan(x) + jax.nn.log_sigmoid(3 * x)
        )

    o["elementwise"] = ({"x": g(D)}, ["x"], elementwise)

    def dims_numbers(Qm, Km):
        S = Qm @ Km.T / np.sqrt(D)
        return jnp.sum(jax.nn.softmax(S, axis=1) * S) / N + jnp.sum(Qm) * D

    o["dims_numbers"] = ({"Qm": g(N, D), "Km": g(N, D)}, ["Qm", "Km"], dims_numbers)
    y = np.array([[2], [0], [2]], dtype=np.int64)
    o["labels"] = (
        {"Z": g(N, K), "y": y},
        ["Z"],
        lambda Z, y: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(Z, axis=1), y, axis=1)),
    )
    o["onehot"] = (
        {"Z": g(N, K), "y": np.array([1, 1, 0], dtype=np.int64)},
        ["Z"],
        lambda Z, y: jnp.sum((Z - jax.nn.one_hot(y, K, dtype=jnp.float64)) ** 2),
    )
    o["layer"] = (
        {"X": g(2, 3), "W": g(3, 5), "b": g(5)},
        ["X", "W", "b"],
        lambda X, W, b: jnp.tanh(X @ W + b),
    )

    def two_layers(X, W1, b1, W2, b2):
        H1 = jnp.tanh(X @ W1 + b1)
        H2 = jnp.tanh(H1 @ W2 + b2)
        return jnp.sum(H2**2)

    o["two_layers"] = (
        {"X": g(N, D), "W1": g(D, H), "b1": g(H), "W2": g(H, K), "b2": g(K)},
        ["X", "W1", "b1", "W2", "b2"],
        two_layers,
    )

    def selection(a, b):
        m = jnp.where(a < b, a * b, b - a)
        return jnp.sum(jnp.maximum(a, b) * jnp.minimum(a, 2 * b)) + jnp.sum(jnp.clip(a, -0.5, 0.5) * b) + jnp.sum(m * m)

    # no ties here (ties have their own closed-form tests below)
    o["selection"] = ({"a": g(N, D), "b": g(N, D)}, ["a", "b"], selection)

    def extreme(X):
        m1 = jnp.max(X, axis=1)
        m0 = jnp.min(X, axis=0, keepdims=True)
        return jnp.sum(m1 * m1) + jnp.sum(m0 * X) + jnp.max(X) - jnp.min(X)

    o["extreme"] = ({"X": g(N, D)}, ["X"], extreme)
    return o


ORACLES = _oracles()
NAMES = sorted(ORACLES)


def _expected(name):
    inputs, wrt, fn = ORACLES[name]
    args = [jnp.asarray(v) for v in inputs.values()]
    keys = list(inputs)
    argnums = tuple(keys.index(w) for w in wrt)
    if name == "layer":  # non-scalar first output: value_and_grad gives the gradient of its sum (README, §3)
        value = fn(*args)
        grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=argnums)(*args)
    else:
        value, grads = jax.value_and_grad(fn, argnums=argnums)(*args)
    return np.asarray(value), [np.asarray(x) for x in grads]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_ops")
    out = generate(d, SPEC, backend="all")
    return {
        "numpy": import_generated(out, "ho_ops"),
        "numba": import_generated(out, "ho_ops_numba"),
        "array_api": import_generated(out, "ho_ops_xp"),
    }


def _check(mod, name, convert=lambda a: a):
    inputs, wrt, _ = ORACLES[name]
    value, grads = _expected(name)
    args = {k: convert(v) for k, v in inputs.items()}
    outs, got = getattr(mod, f"{name}_value_and_grad")(**args)
    first = outs[0] if isinstance(outs, tuple) else outs
    np.testing.assert_allclose(to_np(first), value, rtol=1e-9, atol=1e-10, err_msg=f"{name} value")
    plain = getattr(mod, name)(**args)
    plain_first = plain[0] if isinstance(plain, tuple) else plain
    np.testing.assert_allclose(to_np(plain_first), value, rtol=1e-9, atol=1e-10, err_msg=f"{name}() value")
    assert tuple(got._fields) == tuple(wrt)
    for w, expect in zip(wrt, grads):
        actual = to_np(getattr(got, w))
        assert actual.shape == np.shape(inputs[w]), (name, w, actual.shape)
        np.testing.assert_allclose(actual, expect, rtol=1e-8, atol=1e-10, err_msg=f"{name} d{w}")


# Known failures, each recorded in FINDINGS.md: (test kind, function) -> finding number
XFAIL: dict[tuple[str, str], int] = {}  # (all fixed: FINDINGS.md #2, #4)
EINSUM = {"ein_batched", "ein_three", "ein_vec"}


def _params(kind):
    out = []
    for name in NAMES:
        n = XFAIL.get((kind, name))
        marks = [pytest.mark.xfail(strict=True, reason=f"FINDINGS.md #{n}")] if n else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params("numpy"))
def test_numpy_against_jax(modules, name):
    _check(modules["numpy"], name)


@pytest.mark.parametrize("name", _params("numba"))
def test_numba_against_jax(modules, name):
    _check(modules["numba"], name)


@pytest.mark.parametrize("name", _params("array_api"))
def test_array_api_numpy_inputs(modules, name):
    _check(modules["array_api"], name)


@pytest.mark.parametrize("name", _params("strict"))
def test_array_api_strict_inputs(modules, name):
    xps = pytest.importorskip("array_api_strict")
    if name in EINSUM:
        # einsum is not in the array API standard: §3c wants a clear error naming op and library
        with pytest.raises(NotImplementedError, match=r"(?s)einsum.*array_api_strict"):
            _check(modules["array_api"], name, convert=lambda a: xps.asarray(a))
        return
    _check(modules["array_api"], name, convert=lambda a: xps.asarray(a))


@pytest.mark.parametrize("name", _params("jax"))
def test_array_api_jax_inputs(modules, name):
    _check(modules["array_api"], name, convert=lambda a: jnp.asarray(a))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_forward_backward_with_cotangent(modules, backend):
    """§3: f_backward(saved, g) with g the cotangent of the (non-scalar) first output."""
    mod = modules[backend]
    inputs, wrt, fn = ORACLES["layer"]
    g = np.random.default_rng(5).standard_normal((2, 5))
    outs, saved = mod.layer_forward(**inputs)
    got = mod.layer_backward(saved, g)
    args = [jnp.asarray(v) for v in inputs.values()]
    expect = jax.grad(lambda *a: jnp.sum(fn(*a) * g), argnums=(0, 1, 2))(*args)
    for w, e in zip(wrt, expect):
        np.testing.assert_allclose(getattr(got, w), np.asarray(e), rtol=1e-9, atol=1e-12)
