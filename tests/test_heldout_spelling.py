"""Held-out acceptance tests: §1b spellings with NumPy's meaning that need a spec of their own
(each one alone, so that one refused spelling does not hide the others).

Oracle: JAX in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from heldout_common import generate, import_generated

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

R = np.random.default_rng(99)

CASES = {
    # §1b: einsum "with NumPy's meaning", one or more operands: an index in no other operand
    # and not in the output is summed (np.einsum("bnd->dn", X) == X.sum(0).T).
    "einsum_sum_index": (
        """
        inputs: {X: [2, 3, 4]}
        steps:
          - Z = einsum("bnd->dn", X)
          - loss = sum(Z * Z * Z)
        outputs: [loss]
        """,
        {"X": R.standard_normal((2, 3, 4))},
        lambda X: jnp.sum(jnp.einsum("bnd->dn", X) ** 3),
        5,
    ),
    "einsum_contract_two_sum_one": (
        """
        inputs: {A: [2, 3], Bm: [3, 4]}
        steps:
          - z = einsum("ij,jk->i", A, Bm)
          - loss = sum(z * z)
        outputs: [loss]
        """,
        {"A": R.standard_normal((2, 3)), "Bm": R.standard_normal((3, 4))},
        lambda A, Bm: jnp.sum(jnp.einsum("ij,jk->i", A, Bm) ** 2),
        5,
    ),
    # §1 "matrix/vector in any pairing" + §1b "batched matrix product (NumPy matmul)":
    # a batch of matrices times a vector is np.matmul's [B, N, K] @ [K] -> [B, N].
    "batch_at_vector": (
        """
        inputs: {X: [2, 3, 4], v: [4]}
        steps:
          - z = X @ v
          - loss = sum(tanh(z))
        outputs: [loss]
        """,
        {"X": R.standard_normal((2, 3, 4)), "v": R.standard_normal(4)},
        lambda X, v: jnp.sum(jnp.tanh(X @ v)),
        6,
    ),
    "vector_at_batch": (
        """
        inputs: {v: [3], X: [2, 3, 4]}
        steps:
          - z = v @ X
          - loss = sum(sin(z))
        outputs: [loss]
        """,
        {"v": R.standard_normal(3), "X": R.standard_normal((2, 3, 4))},
        lambda v, X: jnp.sum(jnp.sin(v @ X)),
        6,
    ),
    # §1b: bool inputs ("m: {shape: [N, N], dtype: bool}") are masks; where takes a mask.
    "bool_mask_where": (
        """
        inputs: {S: [3, 3], m: {shape: [3, 3], dtype: bool}}
        wrt: [S]
        steps:
          - Sm = where(m, S, -1000.0)
          - loss = sum(softmax(Sm, axis=1) * S)
        outputs: [loss]
        """,
        {"S": R.standard_normal((3, 3)), "m": np.tril(np.ones((3, 3), dtype=bool))},
        lambda S, m: jnp.sum(jax.nn.softmax(jnp.where(m, S, -1000.0), axis=1) * S),
        7,
    ),
    # the same ops spelled the way §1b spells them, that pass (controls for the above)
    "einsum_matvec_control": (
        """
        inputs: {A: [2, 3], x: [3]}
        steps:
          - z = einsum("ij,j->i", A, x)
          - loss = sum(z * z)
        outputs: [loss]
        """,
        {"A": R.standard_normal((2, 3)), "x": R.standard_normal(3)},
        lambda A, x: jnp.sum((A @ x) ** 2),
        None,
    ),
    "einsum_scalar_output": (
        """
        inputs: {u: [3], w: [3]}
        steps:
          - s = einsum("n,n->", u, w)
          - loss = s * s
        outputs: [loss]
        """,
        {"u": R.standard_normal(3), "w": R.standard_normal(3)},
        lambda u, w: jnp.dot(u, w) ** 2,
        2,
    ),
}


def _case_params():
    out = []
    for name, case in CASES.items():
        n = case[3]
        marks = [pytest.mark.xfail(strict=True, reason=f"FINDINGS.md #{n}")] if n else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _case_params())
def test_numpy_spelling_against_jax(tmp_path, name):
    body, inputs, fn, _ = CASES[name]
    import textwrap

    spec = f"module: ho_sp_{name}\nfunctions:\n  f:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    out = generate(tmp_path, spec + "\n", backend="numpy")
    mod = import_generated(out, f"ho_sp_{name}")
    value, grads = mod.f_value_and_grad(**inputs)
    float_names = [k for k, v in inputs.items() if v.dtype == np.float64]
    args = [jnp.asarray(v) for v in inputs.values()]
    argnums = tuple(list(inputs).index(k) for k in float_names)
    ref_v, ref_g = jax.value_and_grad(fn, argnums=argnums)(*args)
    np.testing.assert_allclose(value, np.asarray(ref_v), rtol=1e-10)
    for k, g in zip(float_names, ref_g):
        np.testing.assert_allclose(getattr(grads, k), np.asarray(g), rtol=1e-9, atol=1e-12)
