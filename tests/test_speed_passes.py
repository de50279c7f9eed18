"""The passes behind issue 14's attention and layer-norm speed, checked on the IR and the source
(gradients themselves are checked against finite differences by the value tests)."""

from pathlib import Path

import numpy as np

import codegen
from codegen import compiler
from codegen.loader import load_spec

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "specs"


def _program(name: str):
    return compiler.compile_spec(load_spec((BENCH / f"{name}.yaml").read_text(), name)) \
        .functions[0].value_and_grad


def _source(name: str) -> str:
    return compiler.render(compiler.compile_spec(load_spec((BENCH / f"{name}.yaml").read_text(),
                                                           name)), "numpy")


def test_layer_norm_computes_x_minus_mu_once_and_sums_no_negation():
    program = _program("layer_norm")
    subs = [op for op in program.ops if op.op == "sub" and op.args == ("X", "mu")]
    assert len(subs) == 1  # the step of v and the step of loss share it
    producers = program.producers()
    for op in program.ops:
        if op.op == "sum" and op.phase == "backward" and isinstance(op.args[0], str):
            inner = producers.get(op.args[0])
            assert inner is None or inner.op != "neg", op  # -sum(x), not sum(-x)


def test_attention_dk_is_a_product_not_a_transposed_product():
    program = _program("attention")
    producers = program.producers()
    for op in program.ops:
        if op.phase == "backward" and op.op == "permute" and isinstance(op.args[0], str):
            inner = producers.get(op.args[0])
            assert inner is None or inner.phase != "backward" or inner.op != "matmul", op


def test_batch_times_matrix_is_one_product_and_agrees_with_matmul():
    source = _source("attention")
    assert "(X.reshape(B * N, D) @ Wq).reshape(B, N, D)" in source
    mod = codegen.load_module(BENCH / "attention.yaml")
    rng = np.random.default_rng(3)
    X, C = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    W = [rng.standard_normal((4, 4)) for _ in range(3)]
    loss = mod.attention(X, C, 0.5, *W)
    Q, K, V = X @ W[0], X @ W[1], X @ W[2]
    S = Q @ np.swapaxes(K, 1, 2) * 0.5
    P = np.exp(S - S.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    assert np.isclose(loss, np.sum(P @ V * C), rtol=1e-13)
