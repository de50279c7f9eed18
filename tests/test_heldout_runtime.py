"""Held-out acceptance tests: run-time sizes other than the spec's example `dims` (§1: dims are
"optional example sizes"; §1b: "a dim's name in a step is its size at run time"), broadcasting in
where/maximum gradients, nested calls (§1b reuse), the §3 call conventions, and §2's --check.

Oracles: JAX in float64 and closed forms of §1b's conventions.
"""

from __future__ import annotations

import numpy as np
import pytest

from heldout_common import StrictArgs, generate, import_generated, run_codegen, to_np, write_spec

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

SPEC = """
module: ho_rt
dims: {N: 3, D: 4}
functions:
  scaled:
    inputs: {Q: [N, D], Km: [N, D]}
    steps:
      - S = Q @ Km.T / sqrt(D)
      - loss = sum(S * S) / N + sum(eye(D) * (Q.T @ Km)) + mean(reshape(Q, (N * D, 1)) ** 3)
    outputs: [loss, S]
  wb:
    inputs: {c: [N, D], a: [D], b: [N, D]}
    wrt: [a, b]
    steps:
      - loss = sum(where(c > 0, a, b) * c)
    outputs: [loss]
  mx:
    inputs: {X: [N, D], b: [D]}
    steps:
      - loss = sum(maximum(X, b) * X) + sum(maximum(X, 0))
    outputs: [loss]
  inner:
    inputs: {X: [M, P], W: [P, R]}
    steps:
      - Y = sin(X @ W)
      - s = sum(Y)
    outputs: [Y, s]
  middle:
    inputs: {X: [M, P], W: [P, P]}
    steps:
      - Z = inner(X, W) + inner(X, W * 2)
    outputs: [Z]
  outer_fn:
    inputs: {X: [N, D], W: [D, D]}
    steps:
      - loss = sum(middle(X, W) ** 2)
    outputs: [loss, X]
"""

BACKENDS = ["numpy", "numba", "array_api", "array_api_strict"]


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    d = tmp_path_factory.mktemp("ho_rt")
    out = generate(d, SPEC, backend="all")
    return {
        "numpy": import_generated(out, "ho_rt"),
        "numba": import_generated(out, "ho_rt_numba"),
        "array_api": import_generated(out, "ho_rt_xp"),
        "array_api_strict": StrictArgs(import_generated(out, "ho_rt_xp")),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,d", [(3, 4), (5, 7), (1, 2)])
def test_dims_are_run_time_sizes(mods, backend, n, d):
    m = mods[backend]
    r = np.random.default_rng(n * 10 + d)
    Q, Km = r.standard_normal((n, d)), r.standard_normal((n, d))

    def f(Q, Km):
        S = Q @ Km.T / np.sqrt(d)
        return jnp.sum(S * S) / n + jnp.sum(jnp.eye(d) * (Q.T @ Km)) + jnp.mean(jnp.reshape(Q, (n * d, 1)) ** 3)

    ref_v, ref_g = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(Q), jnp.asarray(Km))
    (loss, S), g = m.scaled_value_and_grad(Q, Km)
    np.testing.assert_allclose(to_np(loss), np.asarray(ref_v), rtol=1e-10)
    np.testing.assert_allclose(to_np(S), Q @ Km.T / np.sqrt(d), rtol=1e-10)
    np.testing.assert_allclose(to_np(g.Q), np.asarray(ref_g[0]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_np(g.Km), np.asarray(ref_g[1]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_broadcast_gradient(mods, backend):
    m = mods[backend]
    c = np.array([[1.0, -2.0, 0.0, 3.0], [-1.0, 2.0, 5.0, -4.0], [0.5, 0.5, -0.5, 0.0]])
    a = np.array([10.0, 20.0, 30.0, 40.0])
    b = np.arange(12.0).reshape(3, 4)
    loss, g = m.wb_value_and_grad(c, a, b)
    assert float(to_np(loss)) == pytest.approx(float(np.sum(np.where(c > 0, a, b) * c)))
    np.testing.assert_allclose(to_np(g.a), np.sum(np.where(c > 0, c, 0.0), axis=0))
    np.testing.assert_allclose(to_np(g.b), np.where(c > 0, 0.0, c))
    assert to_np(g.a).shape == (4,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximum_broadcast_ties(mods, backend):
    m = mods[backend]
    X = np.array([[1.0, 0.0, -2.0, 3.0], [2.0, 5.0, 0.0, -1.0], [1.0, -3.0, 4.0, 3.0]])
    b = np.array([1.0, 5.0, -2.0, 3.0])
    _, g = m.mx_value_and_grad(X, b)
    hx = np.where(X > b, 1.0, np.where(X == b, 0.5, 0.0))
    hb = np.where(b > X, 1.0, np.where(X == b, 0.5, 0.0))
    relu = np.where(X > 0, 1.0, np.where(X == 0, 0.5, 0.0))
    np.testing.assert_allclose(to_np(g.X), hx * X + np.maximum(X, b) + relu)
    np.testing.assert_allclose(to_np(g.b), np.sum(hb * X, axis=0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_calls(mods, backend):
    m = mods[backend]
    r = np.random.default_rng(2)
    X, W = r.standard_normal((3, 4)), r.standard_normal((4, 4)) * 0.5

    def f(X, W):
        Z = jnp.sin(X @ W) + jnp.sin(X @ (W * 2))
        return jnp.sum(Z**2)

    ref_v, ref_g = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(X), jnp.asarray(W))
    (loss, Xout), g = m.outer_fn_value_and_grad(X, W)
    np.testing.assert_allclose(to_np(loss), np.asarray(ref_v), rtol=1e-10)
    np.testing.assert_allclose(to_np(Xout), X)
    np.testing.assert_allclose(to_np(g.X), np.asarray(ref_g[0]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_np(g.W), np.asarray(ref_g[1]), rtol=1e-9, atol=1e-12)
    # the callee alone: outputs in `outputs` order
    Y, s = m.inner(X, W)
    np.testing.assert_allclose(to_np(Y), np.sin(X @ W), rtol=1e-12)
    assert float(to_np(s)) == pytest.approx(float(np.sum(np.sin(X @ W))))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_call_conventions(mods, backend):
    """§3: positional or keyword; f returns one value or a tuple in outputs order; f_backward's g."""
    m = mods[backend]
    r = np.random.default_rng(3)
    c, a, b = r.standard_normal((3, 4)), r.standard_normal(4), r.standard_normal((3, 4))
    v1 = m.wb(c, a, b)
    v2 = m.wb(c=c, b=b, a=a)
    assert np.ndim(v1) == 0 and float(v1) == float(v2)
    outs, saved = m.wb_forward(c, a, b)
    g1 = m.wb_backward(saved)
    g3 = m.wb_backward(saved, 3.0)
    np.testing.assert_allclose(g3.a, 3 * g1.a)
    np.testing.assert_allclose(g3.b, 3 * g1.b)
    _, gv = m.wb_value_and_grad(c, a, b)
    np.testing.assert_allclose(gv.a, g1.a)
    assert isinstance(gv, m.wb_Grads) and m.wb_Grads._fields == ("a", "b")
    res = m.scaled(c, b)
    assert isinstance(res, tuple) and len(res) == 2 and np.shape(res[1]) == (3, 3)


def test_check_and_determinism(tmp_path):
    """§2: --check writes nothing, exits 1 naming each missing/differing file; same spec, same bytes."""
    spec = write_spec(
        tmp_path,
        """
        module: ho_chk
        functions:
          f:
            inputs: {x: [3]}
            steps:
              - loss = sum(tanh(x) ** 2)
            outputs: [loss]
        """,
    )
    proc = run_codegen([str(spec), "-o", "out", "--check"], cwd=tmp_path)
    assert proc.returncode == 1 and "ho_chk.py" in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "ho_chk.py").exists()
    proc = run_codegen([str(spec), "-o", "out"], cwd=tmp_path)
    assert proc.returncode == 0
    first = (tmp_path / "out" / "ho_chk.py").read_bytes()
    assert first.startswith(b"#") and b"ho_chk" in first or b"spec.yaml" in first.splitlines()[0]
    proc = run_codegen([str(spec), "-o", "out2"], cwd=tmp_path)
    assert (tmp_path / "out2" / "ho_chk.py").read_bytes() == first
    assert run_codegen([str(spec), "-o", "out", "--check"], cwd=tmp_path).returncode == 0
    (tmp_path / "out" / "ho_chk.py").write_bytes(first + b"\n# edited\n")
    proc = run_codegen([str(spec), "-o", "out", "--check"], cwd=tmp_path)
    assert proc.returncode == 1 and "ho_chk.py" in proc.stdout + proc.stderr
    assert b"import codegen" not in first and b"from codegen" not in first
