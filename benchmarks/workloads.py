"""The benchmark workloads: spec, inputs, and the same loss written for each system.

Each workload names its spec (``benchmarks/specs/<name>.yaml``, function ``<name>``), makes
float64 inputs at the spec's ``dims`` and gives the hand-written NumPy, PyTorch and JAX versions
of the same loss.  Every system returns ``(loss, grads)`` with ``grads`` in the spec's ``wrt``
order, so ``run.py`` can compare them before timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import handwritten

SPECS = Path(__file__).resolve().parent / "specs"


@dataclass
class Workload:
    name: str  # spec file stem and function name
    title: str  # for the tables
    inputs: tuple[str, ...]  # spec order
    wrt: tuple[str, ...]
    make_inputs: Callable[[np.random.Generator, dict], dict]
    handwritten: Callable
    torch_loss: Callable  # (torch, *tensors) -> scalar tensor
    jax_loss: Callable  # (jnp, jax, *arrays) -> scalar
    dims: dict = field(default_factory=dict)
    spec_text: str | None = None  # None: read SPECS/<name>.yaml
    note: str = ""

    @property
    def spec_path(self) -> Path:
        return SPECS / f"{self.name}.yaml"

    def spec(self) -> str:
        return self.spec_text if self.spec_text is not None else self.spec_path.read_text()

    @property
    def wrt_index(self) -> tuple[int, ...]:
        return tuple(self.inputs.index(w) for w in self.wrt)


def _glorot(rng, fan_in, fan_out):
    return rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)


# --- 1 and 2: MLPs ------------------------------------------------------------------------


def _mlp_inputs(one_hot):
    def make(rng, d):
        N, D, H, K = d["N"], d["D"], d["H"], d["K"]
        X = rng.standard_normal((N, D))
        if one_hot:
            Y = np.zeros((N, K))
            Y[np.arange(N), rng.integers(0, K, N)] = 1.0
        else:
            Y = rng.standard_normal((N, K))
        return {"X": X, "Y": Y, "W1": _glorot(rng, D, H), "b1": 0.1 * rng.standard_normal(H),
                "W2": _glorot(rng, H, K), "b2": 0.1 * rng.standard_normal(K)}
    return make


def _torch_mlp_mse(torch, X, Y, W1, b1, W2, b2):
    return ((torch.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2).sum()


def _jax_mlp_mse(jnp, jax, X, Y, W1, b1, W2, b2):
    return jnp.sum((jnp.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2)


def _torch_mlp_ce(torch, X, Y, W1, b1, W2, b2):
    Z = torch.tanh(X @ W1 + b1) @ W2 + b2
    return -(Y * torch.log_softmax(Z, dim=1)).sum(dim=1).mean()


def _jax_mlp_ce(jnp, jax, X, Y, W1, b1, W2, b2):
    Z = jnp.tanh(X @ W1 + b1) @ W2 + b2
    return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(Z, axis=1), axis=1))


MLP_INPUTS = ("X", "Y", "W1", "b1", "W2", "b2")
MLP_WRT = ("W1", "b1", "W2", "b2")

# --- 3: dictionary learning -----------------------------------------------------------------


def _dictionary_inputs(rng, d):
    M, N, P = d["M"], d["N"], d["P"]
    return {"X": rng.standard_normal((M, N)), "D": rng.standard_normal((M, P)) / np.sqrt(P),
            "R": rng.standard_normal((P, N))}


def _torch_dictionary(torch, X, D, R):
    return ((X - D @ R) ** 2).sum()


def _jax_dictionary(jnp, jax, X, D, R):
    return jnp.sum((X - D @ R) ** 2)


# --- 4: elementwise chain -------------------------------------------------------------------


def _elementwise_inputs(rng, d):
    M, N = d["M"], d["N"]
    return {"X": rng.standard_normal((M, N)), "W": rng.standard_normal((M, N))}


def _torch_elementwise(torch, X, W):
    # F.softplus switches to the identity above 20; here |A| <= 2, so it is log(1 + e^A) exactly
    A = torch.tanh(X * W) + torch.sin(X)
    return (torch.nn.functional.softplus(A) ** 2).sum()


def _jax_elementwise(jnp, jax, X, W):
    A = jnp.tanh(X * W) + jnp.sin(X)
    return jnp.sum(jax.nn.softplus(A) ** 2)


# --- 5: deep chain --------------------------------------------------------------------------

DEEP_STEPS = 200
DEEP_DIMS = {"M": 100, "N": 100}


def deep_chain_spec(steps: int, dims: dict | None = None) -> str:
    """The spec text of the ``steps``-step chain (``specs/deep_chain.yaml`` is this at 200)."""
    d = dims or DEEP_DIMS
    lines = [
        f"# Benchmark workload 5: a {steps}-step elementwise recurrence on a {d['M']} x {d['N']}"
        " matrix.",
        "# Written by benchmarks/workloads.py:deep_chain_spec; run.py checks the two agree.",
        "module: bench_deep_chain",
        "dtype: float64",
        f"doc: A {steps}-step elementwise recurrence with a shared row of weights "
        "(benchmark sizes).",
        f"dims: {{M: {d['M']}, N: {d['N']}}}",
        "functions:",
        "  deep_chain:",
        f"    doc: \"a_0 = X, a_k = tanh(a_(k-1)) * w + a_(k-1) * 0.5 for k = 1..{steps};"
        f" loss = sum(a_{steps} ** 2).\"",
        "    inputs:",
        "      X: [M, N]",
        "      w: [N]",
        "    wrt: [X, w]",
        "    steps:",
    ]
    prev = "X"
    for k in range(1, steps + 1):
        lines.append(f"      - a{k} = tanh({prev}) * w + {prev} * 0.5")
        prev = f"a{k}"
    lines.append(f"      - loss = sum({prev} ** 2)")
    lines.append("    outputs: [loss]")
    return "\n".join(lines) + "\n"


def _deep_inputs(rng, d):
    M, N = d["M"], d["N"]
    # 2 w > 1: the recurrence settles on a nonzero fixed point, values stay O(1)
    return {"X": rng.standard_normal((M, N)), "w": rng.uniform(0.5, 1.0, N)}


def _make_torch_deep(steps):
    def loss(torch, X, w):
        a = X
        for _ in range(steps):
            a = torch.tanh(a) * w + a * 0.5
        return (a**2).sum()
    return loss


def _make_jax_deep(steps):
    def loss(jnp, jax, X, w):
        a = X
        for _ in range(steps):
            a = jnp.tanh(a) * w + a * 0.5
        return jnp.sum(a**2)
    return loss


def deep_chain_workload(steps: int) -> Workload:
    return Workload(
        name="deep_chain", title=f"deep chain ({steps} steps, 100×100)", inputs=("X", "w"),
        wrt=("X", "w"), make_inputs=_deep_inputs,
        handwritten=handwritten.make_deep_chain(steps),
        torch_loss=_make_torch_deep(steps), jax_loss=_make_jax_deep(steps), dims=dict(DEEP_DIMS),
        spec_text=None if steps == DEEP_STEPS else deep_chain_spec(steps),
        note="" if steps == DEEP_STEPS else f"{steps} steps (--quick)")


# --- 6 and 7: attention and layer norm (rank-3 batches) ------------------------------------


def _attention_inputs(rng, d):
    B, N, D = d["B"], d["N"], d["D"]
    return {"X": rng.standard_normal((B, N, D)), "C": rng.standard_normal((B, N, D)),
            "scale": np.float64(1 / np.sqrt(D)), "Wq": _glorot(rng, D, D),
            "Wk": _glorot(rng, D, D), "Wv": _glorot(rng, D, D)}


def _torch_attention(torch, X, C, scale, Wq, Wk, Wv):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    return (torch.softmax(Q @ K.transpose(1, 2) * scale, dim=2) @ V * C).sum()


def _jax_attention(jnp, jax, X, C, scale, Wq, Wk, Wv):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    return jnp.sum(jax.nn.softmax(Q @ jnp.swapaxes(K, 1, 2) * scale, axis=2) @ V * C)


def _layer_norm_inputs(rng, d):
    B, N, D = d["B"], d["N"], d["D"]
    return {"X": rng.standard_normal((B, N, D)), "C": rng.standard_normal((B, N, D)),
            "g": 1 + 0.1 * rng.standard_normal(D), "c": 0.1 * rng.standard_normal(D)}


def _torch_layer_norm(torch, X, C, g, c):
    mu = X.mean(dim=2, keepdim=True)
    v = ((X - mu) ** 2).mean(dim=2, keepdim=True)
    return (((X - mu) / torch.sqrt(v + 1e-5) * g + c) * C).sum()


def _jax_layer_norm(jnp, jax, X, C, g, c):
    mu = jnp.mean(X, axis=2, keepdims=True)
    v = jnp.mean((X - mu) ** 2, axis=2, keepdims=True)
    return jnp.sum(((X - mu) / jnp.sqrt(v + 1e-5) * g + c) * C)


RANK3 = {"B": 32, "N": 64, "D": 64}


def workloads(quick: bool = False) -> list[Workload]:
    return [
        Workload("small_mlp", "small MLP (32×16→32→4, MSE)", MLP_INPUTS, MLP_WRT,
                 _mlp_inputs(False), handwritten.small_mlp_value_and_grad, _torch_mlp_mse,
                 _jax_mlp_mse, {"N": 32, "D": 16, "H": 32, "K": 4}),
        Workload("mid_mlp", "mid MLP (256×784→256→10, softmax CE)", MLP_INPUTS, MLP_WRT,
                 _mlp_inputs(True), handwritten.mid_mlp_value_and_grad, _torch_mlp_ce,
                 _jax_mlp_ce, {"N": 256, "D": 784, "H": 256, "K": 10}),
        Workload("dictionary", "dictionary learning (200×500, rank 50)", ("X", "D", "R"),
                 ("D", "R"), _dictionary_inputs, handwritten.dictionary_value_and_grad,
                 _torch_dictionary, _jax_dictionary, {"M": 200, "N": 500, "P": 50}),
        Workload("elementwise", "elementwise chain (1000×1000, d/dX and d/dW)", ("X", "W"),
                 ("X", "W"), _elementwise_inputs, handwritten.elementwise_value_and_grad,
                 _torch_elementwise, _jax_elementwise, {"M": 1000, "N": 1000}),
        deep_chain_workload(10 if quick else DEEP_STEPS),
        Workload("attention", "attention block (32×64×64, single head)",
                 ("X", "C", "scale", "Wq", "Wk", "Wv"), ("X", "Wq", "Wk", "Wv"),
                 _attention_inputs, handwritten.attention_value_and_grad, _torch_attention,
                 _jax_attention, dict(RANK3)),
        Workload("layer_norm", "layer norm (32×64×64)", ("X", "C", "g", "c"), ("X", "g", "c"),
                 _layer_norm_inputs, handwritten.layer_norm_value_and_grad, _torch_layer_norm,
                 _jax_layer_norm, dict(RANK3)),
    ]
