"""Issue-4 vocabulary: closed forms of the Matrix Cookbook identities and ML losses, numerical
stability at extreme inputs (float64 and float32), and the conventions at kinks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, module_from

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "generated"))

import matrix  # noqa: E402
import nn  # noqa: E402

rng = np.random.default_rng(7)


def well_conditioned(n: int) -> np.ndarray:
    return np.eye(n) * 2 + 0.3 * rng.standard_normal((n, n))


def test_gaussian_nll_closed_form():
    A = rng.standard_normal((4, 4))
    S = A @ A.T + 4 * np.eye(4)
    X = rng.standard_normal((20, 4))
    C = X.T @ X / 20
    nll, g = matrix.gaussian_nll_value_and_grad(S, C)
    Si = np.linalg.inv(S)
    assert_close(nll, 0.5 * np.log(np.linalg.det(S)) + 0.5 * np.trace(Si @ C))
    assert_close(g.S, 0.5 * (Si.T - Si.T @ C.T @ Si.T))
    assert_close(g.S, 0.5 * (Si - Si @ C @ Si))  # S and C symmetric


def test_cookbook_trace_product():
    A, X = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    f, g = matrix.trace_product_value_and_grad(A, X)
    assert_close(f, np.trace(A @ X))
    assert_close(g.X, A.T)
    assert not np.shares_memory(g.X, A)  # a fresh array, not a view of A


def test_cookbook_trace_quadratic():
    A, X = rng.standard_normal((5, 5)), rng.standard_normal((5, 4))
    f, g = matrix.trace_quadratic_value_and_grad(A, X)
    assert_close(f, np.trace(X.T @ A @ X))
    assert_close(g.X, (A + A.T) @ X)


def test_cookbook_inverse_bilinear():
    a, X, b = rng.standard_normal(4), well_conditioned(4), rng.standard_normal(4)
    f, g = matrix.inverse_bilinear_value_and_grad(a, X, b)
    Xi = np.linalg.inv(X)
    assert_close(f, a @ Xi @ b)
    assert_close(g.X, -Xi.T @ np.outer(a, b) @ Xi.T)


def test_cookbook_log_abs_det_and_det():
    X = well_conditioned(4)
    X[0] *= -1  # a negative determinant: logdet is log|det X|
    f, g = matrix.log_abs_det_value_and_grad(X)
    assert_close(f, np.log(abs(np.linalg.det(X))))
    assert_close(g.X, np.linalg.inv(X).T)
    f, g = matrix.determinant_value_and_grad(X)
    assert_close(f, np.linalg.det(X))
    assert_close(g.X, np.linalg.det(X) * np.linalg.inv(X).T)


def test_outer_contraction():
    u, v, A = rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal((5, 4))
    f, g = matrix.outer_contraction_value_and_grad(u, v, A)
    assert_close(f, u @ A @ v)
    assert_close(g.u, A @ v)
    assert_close(g.v, A.T @ u)


def test_singular_matrix_raises_linalg_error():
    X = np.ones((4, 4))
    with pytest.raises(np.linalg.LinAlgError):
        matrix.log_abs_det_value_and_grad(X)
    with pytest.raises(np.linalg.LinAlgError):
        matrix.inverse_bilinear_value_and_grad(np.ones(4), X, np.ones(4))


def one_hot(labels, k):
    return np.eye(k)[labels]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_cross_entropy_gradient_is_softmax_minus_y():
    mod = module_from("""
        functions:
          xent:
            inputs: {Z: [N, K], Y: [N, K]}
            wrt: [Z]
            steps: ["loss = -sum(Y * log_softmax(Z, axis=1))"]
            outputs: [loss]
        """)
    Z = rng.standard_normal((6, 5)) * 3
    Y = one_hot(rng.integers(0, 5, 6), 5)
    loss, g = mod.xent_value_and_grad(Z, Y)
    assert_close(g.Z, softmax(Z) - Y, rtol=1e-12, atol=1e-15)
    assert_close(loss, -np.sum(Y * np.log(softmax(Z))))
    Z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]])
    Y = one_hot([1, 2], 3)
    loss, g = mod.xent_value_and_grad(Z, Y)
    assert np.isfinite(loss) and np.all(np.isfinite(g.Z))
    assert_close(loss, 2000.0)  # -log softmax at the true class: 2000 and 0
    assert_close(g.Z, softmax(Z) - Y, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_classifier_and_softmax_regression_extreme_logits(dtype):
    X = (rng.standard_normal((6, 8)) * 1e3).astype(dtype)
    Y = one_hot(rng.integers(0, 3, 6), 3).astype(dtype)
    W, b = (rng.standard_normal((8, 3)) * 10).astype(dtype), np.zeros(3, dtype)
    if dtype == np.float32:
        mod = module_from(Path(ROOT / "specs" / "nn.yaml").read_text().replace(
            "dtype: float64", "dtype: float32"), name="nn32.yaml")
    else:
        mod = nn
    (loss, Z), g = mod.softmax_regression_value_and_grad(X, Y, W, b)
    assert Z.dtype == dtype and g.W.dtype == dtype
    assert np.abs(Z).max() > 1000  # logits far beyond exp's range
    assert np.isfinite(loss) and np.all(np.isfinite(g.W)) and np.all(np.isfinite(g.b))
    assert_close(g.b, (softmax(Z.astype(float)) - Y).mean(axis=0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_softplus_logsumexp_stable_at_1000(dtype):
    mod = module_from(f"""
        dtype: {np.dtype(dtype).name}
        functions:
          f:
            inputs: {{x: [N]}}
            steps:
              - "s = sigmoid(x)"
              - "p = softplus(x)"
              - "l = logsumexp(x)"
              - "y = sum(s) + sum(p) + l"
            outputs: [y, s, p, l]
        """)
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        (y, s, p, lse), g = mod.f_value_and_grad(x)
    assert s.dtype == dtype and g.x.dtype == dtype
    assert_close(s, [0.0, 1 / (1 + np.exp(30.0)), 0.5, 1 / (1 + np.exp(-30.0)), 1.0],
                 rtol=1e-6, atol=1e-30)
    assert_close(p, [0.0, np.log1p(np.exp(-30.0)), np.log(2.0), 30.0, 1000.0], rtol=1e-6)
    assert_close(lse, 1000.0, rtol=1e-6)
    assert np.all(np.isfinite(g.x))
    # d/dx [sigmoid + softplus] + softmax(x): sigmoid' + sigmoid + softmax
    sig = np.array(s, dtype=float)
    expected = sig * (1 - sig) + sig + np.exp(x.astype(float) - 1000.0)
    assert_close(g.x, expected, rtol=1e-5, atol=1e-30)


def test_logistic_regression_closed_form():
    X, y, w = rng.standard_normal((9, 8)), rng.integers(0, 2, 9).astype(float), rng.standard_normal(8)
    (loss, p), g = nn.logistic_regression_value_and_grad(X, y, w, 0.1)
    z = X @ w + 0.1
    sig = 1 / (1 + np.exp(-z))
    assert_close(loss, np.mean(-y * np.log(sig) - (1 - y) * np.log(1 - sig)))
    assert_close(g.w, X.T @ (sig - y) / 9)
    assert_close(g.b, np.mean(sig - y))
    assert_close(p, sig)


def test_kink_conventions():
    mod = module_from("""
        functions:
          f:
            inputs: {x: [N]}
            steps: ["y = sum(relu(x)) + sum(abs(x)) + sqrt(sum(x * x)) + sum(sqrt(x * x))"]
            outputs: [y]
        """)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, g = mod.f_value_and_grad(np.zeros(3))
    assert y == 0.0
    np.testing.assert_array_equal(g.x, np.zeros(3))  # relu'(0) = abs'(0) = 0, sqrt'(0) -> 0
    _, g = mod.f_value_and_grad(np.array([-2.0, 3.0]))
    assert_close(g.x, [0 - 1 - 2 / np.sqrt(13) - 1, 1 + 1 + 3 / np.sqrt(13) + 1])


def test_mlp_classifier_gradient_closed_form():
    X, Y = rng.standard_normal((7, 8)), one_hot(rng.integers(0, 3, 7), 3)
    W1, b1, W2, b2 = (rng.standard_normal(s) for s in [(8, 16), 16, (16, 3), 3])
    (loss, Z), g = nn.mlp_classifier_value_and_grad(X, Y, W1, b1, W2, b2)
    H = np.tanh(X @ W1 + b1)
    dZ = (softmax(H @ W2 + b2) - Y) / 7
    dA = dZ @ W2.T * (1 - H**2)
    assert_close(loss, -np.mean(np.sum(Y * np.log(softmax(Z)), axis=1)))
    assert_close(g.W2, H.T @ dZ)
    assert_close(g.b2, dZ.sum(0))
    assert_close(g.W1, X.T @ dA)
    assert_close(g.b1, dA.sum(0))
