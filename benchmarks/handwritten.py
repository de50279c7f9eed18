"""Hand-written NumPy gradients for the benchmark workloads: the baseline of every ratio.

Each ``<name>_value_and_grad(*inputs)`` takes the inputs of ``benchmarks/specs/<name>.yaml`` in
spec order and returns ``(loss, grads)`` with ``grads`` a tuple in the spec's ``wrt`` order, the
way a careful engineer would write them by hand: the chain rule worked out on paper, BLAS for
the products, no recomputation, in-place updates where a temporary would be thrown away at once,
and only what the backward pass needs kept alive.  No input validation (the generated modules
check shapes and dtypes; this is the "trusted caller" baseline).

``run.py`` checks every function here against the generated gradients before timing anything.
"""

from __future__ import annotations

import numpy as np


def small_mlp_value_and_grad(X, Y, W1, b1, W2, b2):
    """loss = sum((tanh(X W1 + b1) W2 + b2 - Y)^2); gradients w.r.t. W1, b1, W2, b2."""
    H1 = X @ W1
    H1 += b1
    np.tanh(H1, out=H1)
    R = H1 @ W2  # becomes the residual Z2 - Y
    R += b2
    R -= Y
    loss = np.vdot(R, R)
    R *= 2.0  # dZ2
    dW2 = H1.T @ R
    db2 = R.sum(axis=0)
    dZ1 = R @ W2.T
    dZ1 *= 1.0 - H1 * H1
    dW1 = X.T @ dZ1
    db1 = dZ1.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def mid_mlp_value_and_grad(X, Y, W1, b1, W2, b2):
    """loss = -mean_n sum_k Y log_softmax(tanh(X W1 + b1) W2 + b2); rows of Y sum to 1 (one-hot)."""
    n = X.shape[0]
    H1 = X @ W1
    H1 += b1
    np.tanh(H1, out=H1)
    Z = H1 @ W2
    Z += b2
    Z -= Z.max(axis=1, keepdims=True)  # shifted logits: log_softmax is unchanged
    P = np.exp(Z)
    s = P.sum(axis=1, keepdims=True)
    P /= s  # softmax
    Z -= np.log(s)  # log_softmax
    loss = -np.vdot(Y, Z) / n
    P -= Y  # dZ = (softmax - Y) / n, using sum_k Y = 1 per row
    P /= n
    dW2 = H1.T @ P
    db2 = P.sum(axis=0)
    dH1 = P @ W2.T
    dH1 *= 1.0 - H1 * H1
    dW1 = X.T @ dH1
    db1 = dH1.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def dictionary_value_and_grad(X, D, R):
    """f = ||X - D R||_F^2; df/dD = -2 E R^T, df/dR = -2 D^T E with E = X - D R."""
    E = D @ R
    np.subtract(X, E, out=E)
    f = np.vdot(E, E)
    E *= -2.0
    return f, (E @ R.T, D.T @ E)


def elementwise_value_and_grad(X, W):
    """loss = sum(softplus(tanh(X W) + sin X)^2), elementwise; gradients w.r.t. X and W."""
    T = X * W
    np.tanh(T, out=T)
    A = np.sin(X)
    A += T
    B = np.logaddexp(0.0, A)  # softplus, stable
    loss = np.vdot(B, B)
    # dA = 2 B sigmoid(A), with sigmoid(A) = exp(A - softplus(A)) (never overflows)
    A -= B
    np.exp(A, out=A)
    A *= B
    A *= 2.0
    dX = np.cos(X)
    dX *= A
    # d(X W) = dA (1 - T^2)
    np.multiply(T, T, out=T)
    np.subtract(1.0, T, out=T)
    T *= A
    dW = T * X
    T *= W
    dX += T
    return loss, (dX, dW)


def make_deep_chain(steps):
    """The hand-written value_and_grad of the ``steps``-step chain of ``specs/deep_chain.yaml``."""

    def deep_chain_value_and_grad(X, w):
        """a_0 = X, a_k = tanh(a_(k-1)) w + a_(k-1) / 2 (w a row), loss = sum(a_K^2).

        Only the tanh values are kept for the backward pass:
        da_(k-1) = da_k (1/2 + w (1 - t_k^2)) and dw = sum_k sum_rows da_k t_k.
        """
        return _deep_chain(X, w, steps)

    return deep_chain_value_and_grad


DEEP_CHAIN_STEPS = 200
deep_chain_value_and_grad = make_deep_chain(DEEP_CHAIN_STEPS)


def _deep_chain(X, w, steps):
    ts = np.empty((steps,) + X.shape)
    a = X
    for k in range(steps):
        t = np.tanh(a, out=ts[k])
        nxt = t * w
        nxt += 0.5 * a
        a = nxt
    loss = np.vdot(a, a)
    da = 2.0 * a
    dw = np.zeros_like(w)
    g = np.empty_like(a)
    for k in range(steps - 1, -1, -1):
        t = ts[k]
        dw += np.einsum("ij,ij->j", da, t)
        np.multiply(t, t, out=g)
        np.subtract(1.0, g, out=g)
        g *= w
        g += 0.5
        da *= g
    return loss, (da, dw)


def attention_value_and_grad(X, C, scale, Wq, Wk, Wv):
    """loss = sum(softmax(Q K^T * scale, axis=2) V * C), Q, K, V = X Wq, X Wk, X Wv (batched);
    gradients w.r.t. X, Wq, Wk, Wv."""
    B, N, D = X.shape
    X2 = X.reshape(B * N, D)
    Q, K, V = (X2 @ W for W in (Wq, Wk, Wv))
    Q, K, V = (M.reshape(B, N, D) for M in (Q, K, V))
    S = Q @ K.transpose(0, 2, 1) * scale
    S -= S.max(axis=2, keepdims=True)
    P = np.exp(S, out=S)
    P /= P.sum(axis=2, keepdims=True)
    A = P @ V
    loss = np.vdot(A, C)
    dP = C @ V.transpose(0, 2, 1)
    dV = P.transpose(0, 2, 1) @ C
    dP -= np.sum(dP * P, axis=2, keepdims=True)
    dP *= P
    dP *= scale
    dQ = (dP @ K).reshape(B * N, D)
    dK = (dP.transpose(0, 2, 1) @ Q).reshape(B * N, D)
    dV = dV.reshape(B * N, D)
    dX = dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T
    return loss, (dX.reshape(B, N, D), X2.T @ dQ, X2.T @ dK, X2.T @ dV)


def layer_norm_value_and_grad(X, C, g, c):
    """loss = sum(((X - mu) / sqrt(var + 1e-5) * g + c) * C) over the last axis; gradients
    w.r.t. X, g, c."""
    mu = X.mean(axis=2, keepdims=True)
    xc = X - mu
    r = 1.0 / np.sqrt(np.mean(xc * xc, axis=2, keepdims=True) + 1e-5)
    xh = xc * r
    loss = np.vdot(xh * g + c, C)
    dc = C.sum(axis=(0, 1))
    dg = np.einsum("bnd,bnd->d", C, xh)
    dxh = C * g
    dX = dxh - dxh.mean(axis=2, keepdims=True)
    dX -= xh * np.mean(dxh * xh, axis=2, keepdims=True)
    dX *= r
    return loss, (dX, dg, dc)
