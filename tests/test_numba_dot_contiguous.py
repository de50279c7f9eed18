"""Numba's np.dot gets C- or F-contiguous operands: no NumbaPerformanceWarning from einsum's
matrix products, their gradients or attention's transposed products (issue 14)."""

import warnings

import numpy as np
import pytest

import codegen

numba = pytest.importorskip("numba")

SPEC = """
module: dot_layouts
dims: {B: 3, N: 4, D: 5, K: 2}
functions:
  head:
    inputs: {h: [B, N, D], W: [N, D, K], C: [B, K]}
    steps:
      - logits = einsum("bnd,ndk->bk", h, W)
      - loss = sum(logits * C)
    outputs: [loss]
  pair:
    inputs: {a: [N, D], b: [D, K]}
    steps:
      - y = einsum("ij,jk->ik", a, b)
      - loss = sum(y * y)
    outputs: [loss]
  left:
    inputs: {a: [D, N], b: [D, K]}
    steps:
      - y = einsum("ji,jk->ik", a, b)
      - loss = sum(y * y)
    outputs: [loss]
  attention:
    inputs: {X: [B, N, D], Wq: [D, D], Wk: [D, D], C: [B, N, N]}
    steps:
      - S = softmax((X @ Wq) @ swapaxes(X @ Wk, 1, 2), axis=2)
      - loss = sum(S * C)
    outputs: [loss]
"""


def test_no_numba_performance_warning_from_dot_operands():
    rng = np.random.default_rng(0)
    B, N, D, K = 3, 4, 5, 2
    calls = {
        "head": (rng.standard_normal((B, N, D)), rng.standard_normal((N, D, K)),
                 rng.standard_normal((B, K))),
        "pair": (rng.standard_normal((N, D)), rng.standard_normal((D, K))),
        "left": (rng.standard_normal((D, N)), rng.standard_normal((D, K))),
        "attention": (rng.standard_normal((B, N, D)), rng.standard_normal((D, D)),
                      rng.standard_normal((D, D)), rng.standard_normal((B, N, N))),
    }
    reference = codegen.load_module(SPEC, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", numba.NumbaPerformanceWarning)
        mod = codegen.load_module(SPEC, backend="numba")
        for name, args in calls.items():
            for kind in ("value_and_grad",):
                loss, grads = getattr(mod, f"{name}_{kind}")(*args)
                ref_loss, ref_grads = getattr(reference, f"{name}_{kind}")(*args)
                assert loss == pytest.approx(ref_loss, rel=1e-12)
                for g, r in zip(grads, ref_grads):
                    np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
            _, saved = getattr(mod, f"{name}_forward")(*args)
            getattr(mod, f"{name}_backward")(saved, 1.0)
