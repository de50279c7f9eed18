"""The seeds' worked numbers and closed forms, checked on the committed generated modules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "generated"))

import nn  # noqa: E402
import seeds  # noqa: E402

rng = np.random.default_rng(3)


def test_twice_sum_seed_002_numbers():
    A = np.array([[1.0, 2, 3], [4, 5, 6]])
    F, grads = seeds.twice_sum_value_and_grad(A)
    assert F == 42.0
    np.testing.assert_array_equal(grads.A, np.full((2, 3), 2.0))


def test_affine_sum_seed_002_numbers():
    A = np.array([[1.0, 2, 3], [4, 5, 6]])
    W = np.array([[7.0, 8], [10, 11], [12, 13]])
    B = np.array([13.0, 14])
    (S, Z), grads = seeds.affine_sum_value_and_grad(A, W, B)
    np.testing.assert_array_equal(Z, [[76, 83], [163, 179]])
    assert S == 501.0
    np.testing.assert_array_equal(grads.W, [[5, 5], [7, 7], [9, 9]])
    np.testing.assert_array_equal(grads.A, np.ones((2, 2)) @ W.T)
    np.testing.assert_array_equal(grads.B, [2.0, 2.0])  # B is broadcast over the 2 rows


SEED_002_JACOBIAN = [[1, 0, 2, 0, 3, 0], [0, 1, 0, 2, 0, 3], [4, 0, 5, 0, 6, 0], [0, 4, 0, 5, 0, 6]]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_affine_jacobian_seed_002_numbers(backend):
    """Seed 002: d vec(Z) / d vec(W) of Z = A W + B, row-major, and the chain rule with it."""
    module = seeds if backend == "numpy" else pytest.importorskip("seeds_numba")
    A = np.array([[1.0, 2, 3], [4, 5, 6]])
    W = np.array([[7.0, 8], [10, 11], [12, 13]])
    B = np.array([13.0, 14])
    Z, jac = module.affine_jacobian(A, W, B)
    np.testing.assert_array_equal(Z, [[76, 83], [163, 179]])
    np.testing.assert_array_equal(jac.W, SEED_002_JACOBIAN)
    np.testing.assert_array_equal(np.ones(4) @ jac.W, [5, 5, 7, 7, 9, 9])  # = vec(dS/dW)
    np.testing.assert_array_equal((np.ones(4) @ jac.W).reshape(3, 2),
                                  seeds.affine_sum_value_and_grad(A, W, B)[1].W)
    # the other inputs: dZ/dA = I kron W^T, dZ/dB = the 2 x 2 identity stacked twice
    np.testing.assert_array_equal(jac.A, np.kron(np.eye(2), W.T))
    np.testing.assert_array_equal(jac.B, np.vstack([np.eye(2), np.eye(2)]))
    # forward mode: one column of the Jacobian per unit tangent of W
    for k in range(6):
        e = np.zeros(6)
        e[k] = 1
        tangents = (np.zeros((2, 3)), e.reshape(3, 2), np.zeros(2))
        _, dZ = module.affine_jvp(A, W, B, tangents)
        np.testing.assert_array_equal(dZ.ravel(), np.array(SEED_002_JACOBIAN)[:, k])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_dictionary_learning_hessian_in_R_is_2_DtD_kron_I(backend):
    """Seed 003's dictionary learning: the Hessian of ||X - D R||^2 in R (row-major vec R) is
    2 (D^T D kron I_N); the block in D is 2 (I_M kron R R^T); H v matches the dense H."""
    module = seeds if backend == "numpy" else pytest.importorskip("seeds_numba")
    X, D, R = rng.normal(size=(4, 5)), rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    f, grads, H = module.dictionary_learning_hessian(X, D, R)
    nD = D.size
    assert H.shape == (nD + R.size, nD + R.size)
    assert_close(H[nD:, nD:], 2 * np.kron(D.T @ D, np.eye(5)), what="d2f/dR2")
    assert_close(H[:nD, :nD], 2 * np.kron(np.eye(4), R @ R.T), what="d2f/dD2")
    assert_close(H, H.T, what="symmetry")
    v = (rng.normal(size=D.shape), rng.normal(size=R.shape))
    _, _, hv = module.dictionary_learning_hvp(X, D, R, v)
    assert_close(np.concatenate([hv.D.ravel(), hv.R.ravel()]),
                 H @ np.concatenate([v[0].ravel(), v[1].ravel()]), what="H v")
    assert_close(grads.R, -2 * D.T @ (X - D @ R), what="gradient")


def test_affine_sum_backward_scales_with_g():
    A, W, B = rng.standard_normal((2, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    _, saved = seeds.affine_sum_forward(A, W, B)
    grads = seeds.affine_sum_backward(saved, 2.5)
    assert_close(grads.W, 2.5 * A.T @ np.ones((2, 2)))
    assert_close(grads.B, [5.0, 5.0])


def test_wx_backprop_seed_000_transpose_rule():
    W, x, t = rng.standard_normal((4, 5)), rng.standard_normal(5), rng.standard_normal(4)
    (f, d), grads = seeds.wx_backprop_value_and_grad(W, x, t)
    dd = W @ x - t  # df/dd for f = 0.5 ||d - t||^2
    assert_close(d, W @ x)
    assert_close(f, 0.5 * np.sum(dd**2))
    assert_close(grads.x, W.T @ dd)  # "if going forwards you multiplied by W, go back by W^T"
    assert_close(grads.W, np.outer(dd, x))


def test_dictionary_learning_seed_003_closed_form():
    X, D, R = rng.standard_normal((4, 5)), rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    f, grads = seeds.dictionary_learning_value_and_grad(X, D, R)
    assert_close(f, np.sum((X - D @ R) ** 2))
    assert_close(grads.D, -2 * (X - D @ R) @ R.T)
    assert_close(grads.R, -2 * D.T @ (X - D @ R))
    assert_close(grads.D, -2 * X @ R.T + 2 * D @ R @ R.T)


def test_quadratic_form_seed_003_closed_form():
    a, G = rng.standard_normal(5), rng.standard_normal((5, 5))
    f, grads = seeds.quadratic_form_value_and_grad(a, G)
    assert_close(f, a @ G @ a)
    assert_close(grads.G, np.outer(a, a))
    assert_close(grads.a, (G + G.T) @ a)


def test_one_layer_network_seed_003_closed_form():
    X, Y, W = rng.standard_normal((6, 4)), rng.standard_normal((6, 3)), rng.standard_normal((4, 3))
    (loss, P), grads = nn.one_layer_value_and_grad(X, Y, W)
    s = 1 / (1 + np.exp(-X @ W))
    assert_close(P, s)
    assert_close(loss, np.sum((s - Y) ** 2))
    assert_close(grads.W, 2 * X.T @ ((s - Y) * s * (1 - s)))


def test_mlp_mse_closed_form():
    X, Y = rng.standard_normal((7, 8)), rng.standard_normal((7, 3))
    W1, b1, W2, b2 = (rng.standard_normal(s) for s in [(8, 16), 16, (16, 3), 3])
    (loss, Z2), g = nn.mlp_mse_value_and_grad(X, Y, W1, b1, W2, b2)
    H1 = np.tanh(X @ W1 + b1)
    dZ2 = 2 * (H1 @ W2 + b2 - Y)
    dZ1 = dZ2 @ W2.T * (1 - H1**2)
    assert_close(Z2, H1 @ W2 + b2)
    assert_close(g.W2, H1.T @ dZ2)
    assert_close(g.b2, dZ2.sum(0))
    assert_close(g.W1, X.T @ dZ1)
    assert_close(g.b1, dZ1.sum(0))


def test_linear_regression_closed_form():
    X, y, w = rng.standard_normal((9, 8)), rng.standard_normal(9), rng.standard_normal(8)
    b = np.float64(0.3)
    loss, g = nn.linear_regression_value_and_grad(X, y, w, b)
    r = X @ w + b - y
    assert_close(loss, np.mean(r**2))
    assert_close(g.w, 2 * X.T @ r / 9)
    assert_close(g.b, 2 * r.mean())


M, N, P = 4, 5, 3


@pytest.mark.parametrize(
    "name, shapes, closed_form",
    [
        ("right_product", {"X": (M, N), "W": (N, P), "C": (M, P)}, lambda X, W, C: C @ W.T),
        ("left_product", {"W": (P, M), "X": (M, N), "C": (P, N)}, lambda W, X, C: W.T @ C),
        ("hadamard_product", {"X": (M, N), "K": (M, N), "C": (M, N)}, lambda X, K, C: C * K),
        ("elementwise_function", {"X": (M, N), "C": (M, N)}, lambda X, C: C * np.cos(X)),
        ("matrix_addition", {"X": (M, N), "K": (M, N), "C": (M, N)}, lambda X, K, C: C),
        ("row_broadcast_addition", {"K": (M, N), "x": (1, N), "C": (M, N)},
         lambda K, x, C: C.sum(axis=0, keepdims=True)),
        ("column_broadcast_addition", {"K": (M, N), "x": (M, 1), "C": (M, N)},
         lambda K, x, C: C.sum(axis=1, keepdims=True)),
    ],
)
def test_seed_003_rule_table(name, shapes, closed_form):
    """Each rule of seed 003's formula list, with df/dG = C."""
    args = [rng.standard_normal(s) for s in shapes.values()]
    _, grads = getattr(seeds, name + "_value_and_grad")(*args)
    (field,) = grads._fields
    assert_close(getattr(grads, field), closed_form(*args))


def test_seed_003_frobenius_and_sum():
    G = rng.standard_normal((M, N))
    f, grads = seeds.squared_frobenius_norm_value_and_grad(G)
    assert_close(f, np.linalg.norm(G, "fro") ** 2)
    assert_close(grads.G, 2 * G)
    f, grads = seeds.matrix_sum_value_and_grad(G)
    assert_close(f, G.sum())
    np.testing.assert_array_equal(grads.G, np.ones((M, N)))
