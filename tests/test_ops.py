"""Table-driven finite-difference tests: every op, over scalar, vector, matrix and broadcast shapes.

Each case is a one-step function ``y = EXPR``.  The generated backward is called with a random
cotangent ``g`` of y's shape and compared, coordinate by coordinate, with central differences of
``sum(g * y(x))``; ``value_and_grad`` is compared with differences of ``sum(y(x))``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from helpers import assert_close, module_from, numeric_grad

import codegen
from codegen.ops import CALLABLE, OPS, POSITIVE

DIMS = {"M": 3, "N": 4, "P": 2}
S, V, R, C, MAT, NP_, NM = [], ["N"], [1, "N"], ["M", 1], ["M", "N"], ["N", "P"], ["N", "M"]

# (id, expression, {input: shape}, positive inputs?)
CASES: list[tuple[str, str, dict, bool]] = []

for sym, name in [("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "div")]:
    for label, sa, sb in [
        ("scalar-scalar", S, S), ("matrix-matrix", MAT, MAT), ("matrix-row", MAT, V),
        ("matrix-row2d", MAT, R), ("matrix-column", MAT, C), ("column-row", C, R),
        ("vector-scalar", V, S), ("scalar-matrix", S, MAT), ("row-matrix", V, MAT),
    ]:
        CASES.append((f"{name}-{label}", f"a {sym} b", {"a": sa, "b": sb}, sym == "/"))
    CASES.append((f"{name}-const-left", f"2.5 {sym} a", {"a": MAT}, sym == "/"))
    CASES.append((f"{name}-const-right", f"a {sym} 3", {"a": MAT}, False))
    CASES.append((f"{name}-same-operand", f"a {sym} a", {"a": MAT}, sym == "/"))

# elementwise functions: inputs drawn from the op table's domain
for fn in ["exp", "log", "log1p", "sqrt", "square", "abs", "tanh", "sigmoid", "relu", "softplus",
           "sin", "cos", "tan", "erf", "expm1", "cosh", "sinh", "arctan", "log_sigmoid"]:
    positive = OPS[fn].domain == (POSITIVE,)
    for label, shape in [("scalar", S), ("vector", V), ("matrix", MAT)]:
        CASES.append((f"{fn}-{label}", f"{fn}(a)", {"a": shape}, positive))
    CASES.append((f"{fn}-of-expr", f"{fn}(a * b + 0.1)", {"a": MAT, "b": V}, positive))

for c, pos in [("2", False), ("3", False), ("0.5", True), ("-1", True), ("1", False), ("-2.5", True),
               ("0", False)]:
    CASES.append((f"pow-{c}", f"a ** {c}", {"a": MAT}, pos))
CASES.append(("neg", "-a", {"a": MAT}, False))
CASES.append(("neg-neg", "-(-a * b)", {"a": MAT, "b": C}, False))
CASES.append(("uplus", "+a", {"a": V}, False))

for label, sa, sb in [("mat-mat", MAT, NP_), ("mat-vec", MAT, V), ("vec-mat", ["M"], MAT),
                      ("vec-vec", V, V)]:
    CASES.append((f"matmul-{label}", "a @ b", {"a": sa, "b": sb}, False))
CASES.append(("matmul-transposed", "a.T @ b", {"a": MAT, "b": ["M", "P"]}, False))
CASES.append(("matmul-both-transposed", "a.T @ b.T", {"a": MAT, "b": ["P", "M"]}, False))
CASES.append(("matmul-chain", "a @ b @ c", {"a": MAT, "b": NP_, "c": ["P"]}, False))
CASES.append(("quadratic-form", "x @ G @ x", {"x": V, "G": ["N", "N"]}, False))
CASES.append(("matmul-gram", "a @ a.T", {"a": MAT}, False))
CASES.append(("transpose", "a.T", {"a": MAT}, False))
CASES.append(("transpose-vector", "a.T * 2", {"a": V}, False))
CASES.append(("transpose-of-expr", "(a * b).T", {"a": MAT, "b": C}, False))

for fn in ["sum", "mean"]:
    for label, shape in [("vector", V), ("matrix", MAT), ("column", C), ("row", R)]:
        CASES.append((f"{fn}-all-{label}", f"{fn}(a)", {"a": shape}, False))
        for axis in ([0, -1] if len(shape) == 1 else [0, 1, -1, -2]):
            CASES.append((f"{fn}-axis{axis}-{label}", f"{fn}(a, axis={axis})", {"a": shape}, False))
            CASES.append((f"{fn}-axis{axis}-keep-{label}", f"{fn}(a, axis={axis}, keepdims=True)",
                          {"a": shape}, False))
    CASES.append((f"{fn}-keepdims-all", f"{fn}(a, keepdims=True)", {"a": MAT}, False))
    CASES.append((f"{fn}-times-matrix", f"{fn}(a, axis=1) * b", {"a": MAT, "b": ["P", "M"]}, False))
    CASES.append((f"{fn}-keep-broadcast", f"a - {fn}(a, axis=1, keepdims=True)", {"a": MAT}, False))
    CASES.append((f"{fn}-of-broadcast", f"{fn}(a + b)", {"a": C, "b": R}, False))
    CASES.append((f"{fn}-axis0-of-broadcast", f"{fn}(a * b, axis=0)", {"a": C, "b": V}, False))

for fn in ["logsumexp", "softmax", "log_softmax"]:
    axes = [None, 0, 1, -1]
    for axis in axes:
        kw = "" if axis is None else f", axis={axis}"
        CASES.append((f"{fn}-axis{axis}-matrix", f"{fn}(a{kw})", {"a": MAT}, False))
        if fn == "logsumexp":
            CASES.append((f"{fn}-axis{axis}-keep", f"{fn}(a{kw}, keepdims=True)", {"a": MAT}, False))
    CASES.append((f"{fn}-vector", f"{fn}(a)", {"a": V}, False))
    CASES.append((f"{fn}-of-broadcast", f"{fn}(a + b, axis=1)", {"a": C, "b": V}, False))
CASES.append(("xent", "-sum(b * log_softmax(a, axis=1), axis=1)", {"a": MAT, "b": MAT}, False))
SQ = ["N", "N"]
for fn in ["trace", "inv", "det", "logdet"]:
    CASES.append((f"{fn}", f"{fn}(a)", {"a": SQ}, False))
    CASES.append((f"{fn}-of-product", f"{fn}(a @ a.T + b)", {"a": MAT[::-1], "b": SQ}, False))
CASES.append(("outer", "outer(u, v)", {"u": ["M"], "v": V}, False))
CASES.append(("outer-of-exprs", "outer(tanh(u), v * 2) @ v", {"u": ["M"], "v": V}, False))
CASES.append(("inv-times", "inv(a) @ b", {"a": SQ, "b": NP_}, False))

# selection (DESIGN 1b): random normal inputs are away from ties and kinks (the conventions at
# ties have closed-form tests in tests/test_selection.py)
CASES.append(("where-matrix", "where(a > b, a * b, exp(a))", {"a": MAT, "b": MAT}, False))
CASES.append(("where-row", "where(a >= 0, a, b * 2)", {"a": MAT, "b": V}, False))
CASES.append(("where-column", "where(a < b, tanh(a), 0)", {"a": MAT, "b": C}, False))
CASES.append(("where-numbers", "where(a <= 0.3, 1.0, 2.0) * b", {"a": MAT, "b": MAT}, False))
CASES.append(("where-log", "where(a > 0.1, log(a), a)", {"a": MAT}, False))
CASES.append(("maximum", "maximum(a, b)", {"a": MAT, "b": MAT}, False))
CASES.append(("maximum-const", "maximum(a, 0.2) * a", {"a": MAT}, False))
CASES.append(("minimum-row", "minimum(a, b)", {"a": MAT, "b": V}, False))
CASES.append(("clip", "clip(a, -0.5, 0.5)", {"a": MAT}, False))
CASES.append(("clip-arrays", "clip(a, b, b + 2)", {"a": MAT, "b": C}, False))
CASES.append(("clip-column-row", "clip(a, b - 2, c + 2)", {"a": MAT, "b": C, "c": V}, False))
for fn in ["max", "min"]:
    CASES.append((f"{fn}-all", f"{fn}(a)", {"a": MAT}, False))
    CASES.append((f"{fn}-vector", f"{fn}(a)", {"a": V}, False))
    CASES.append((f"{fn}-axis0", f"{fn}(a, axis=0)", {"a": MAT}, False))
    CASES.append((f"{fn}-axis1-keep", f"{fn}(a, axis=-1, keepdims=True) - a", {"a": MAT}, False))
for fn in ["var", "std"]:
    CASES.append((f"{fn}-all", f"{fn}(a)", {"a": MAT}, False))
    CASES.append((f"{fn}-axis0", f"{fn}(a, axis=0)", {"a": MAT}, False))
    CASES.append((f"{fn}-axis1-keep", f"{fn}(a, axis=1, keepdims=True) * b", {"a": MAT, "b": C},
                  False))
CASES.append(("diag-of-vector", "diag(v) @ a", {"v": ["M"], "a": MAT}, False))
CASES.append(("diag-of-matrix", "diag(a) * v", {"a": SQ, "v": V}, False))
CASES.append(("diag-of-product", "diag(a @ a.T) + diag(tanh(b))", {"a": MAT, "b": ["M"]}, False))
CASES.append(("eye-dim", "eye(N) * 2 + a", {"a": SQ}, False))
CASES.append(("eye-int", "eye(3) @ b - b * 3", {"b": [3, "P"]}, False))
CASES.append(("scalar-times-sum", "sum(a) * b", {"a": MAT, "b": MAT}, False))
CASES.append(("broadcast-then-matmul", "(a + b) @ c", {"a": C, "b": R, "c": NP_}, False))
CASES.append(("sum-of-matmul", "sum(a @ b, axis=0) + b", {"a": ["P", "N"], "b": ["N"]}, False))
CASES.append(("fan-out", "a * tanh(a) + exp(a) * a", {"a": MAT}, False))
CASES.append(("constant-only-input-path", "a * 0 + b", {"a": MAT, "b": MAT}, False))

# --- ranks 3 and 4: broadcasting, reductions, batched @, axes ops, einsum ----------------------
T3, T3T, T4 = ["P", "M", "N"], ["P", "N", "M"], ["P", 1, "M", "N"]
for label, sa, sb in [("rank3-vector", T3, V), ("rank3-matrix", T3, MAT),
                      ("rank3-size1-axes", ["P", 1, "N"], ["M", 1]),
                      ("rank4-rank3", T4, ["M", 1]), ("rank4-rank4", T4, ["P", "N", 1, 1])]:
    CASES.append((f"mul-{label}", "a * b", {"a": sa, "b": sb}, False))
    CASES.append((f"sub-{label}", "a - b", {"a": sa, "b": sb}, False))
for fn, kw in [("sum", "axis=1"), ("mean", "axis=2, keepdims=True"), ("sum", "axis=0"),
               ("softmax", "axis=2"), ("logsumexp", "axis=1"), ("log_softmax", "axis=0")]:
    CASES.append((f"{fn}-{kw.replace(' ', '')}-rank3", f"{fn}(tanh(a), {kw})", {"a": T3}, False))
CASES.append(("sum-rank4", "sum(a * a, axis=3)", {"a": T4}, False))
for label, sa, sb in [("batch-matrix", T3, NP_), ("batch-batch", T3, T3T),
                      ("broadcast-batch", ["P", "M", "N"], [1, "N", "M"]),
                      ("matrix-batch", MAT, T3T), ("rank4-rank3", T4, ["M", "N", "P"])]:
    CASES.append((f"matmul-{label}", "a @ b", {"a": sa, "b": sb}, False))
CASES.append(("matmul-attention", "softmax(a @ swapaxes(b, 1, 2), axis=2) @ b",
              {"a": T3, "b": T3}, False))
CASES.append(("transpose-axes", "transpose(a, (0, 2, 1)) * 2", {"a": T3}, False))
CASES.append(("transpose-cycle", "transpose(a, (2, 0, 1))", {"a": T3}, False))
CASES.append(("transpose-all", "transpose(a)", {"a": T4}, False))
CASES.append(("swapaxes", "swapaxes(a, 0, 2)", {"a": T3}, False))
CASES.append(("swapaxes-matrix", "swapaxes(a, 0, 1) @ b", {"a": MAT, "b": ["M", "P"]}, False))
CASES.append(("reshape-merge", "reshape(a, (P, M * N))", {"a": T3}, False))
CASES.append(("reshape-split", "reshape(tanh(a), (P, M, N))", {"a": ["P", "M", "N"]}, False))
CASES.append(("reshape-flat", "reshape(a, (N * M,)) * 2", {"a": MAT}, False))
CASES.append(("reshape-of-transpose", "reshape(transpose(a, (0, 2, 1)), (P * N, M))",
              {"a": T3}, False))
CASES.append(("concatenate", "concatenate((a, b), axis=1)", {"a": MAT, "b": ["M", "P"]}, False))
CASES.append(("concatenate-three", "concatenate((a, b, a * 2), axis=0)",
              {"a": MAT, "b": MAT}, False))
CASES.append(("concatenate-rank3", "concatenate((a, b), axis=2)", {"a": T3, "b": T3}, False))
CASES.append(("stack", "stack((a, b), axis=0)", {"a": MAT, "b": MAT}, False))
CASES.append(("stack-last-three", "stack((a, tanh(b), a), axis=-1)", {"a": T3, "b": T3}, False))
for label, sub, shapes_ in [("matmul", "ij,jk->ik", (MAT, NP_)),
                            ("batched", "bij,bjk->bik", (T3, T3T)),
                            ("transpose", "bij->jbi", (T3,)),
                            ("rowdot", "ij,ij->i", (MAT, MAT)),
                            ("outer", "i,j->ij", (["M"], V)),
                            ("three", "bij,jk,k->bi", (T3, ["N", "P"], ["P"])),
                            ("batch-out-last", "bij,bjk->ikb", (T3, T3T)),
                            ("dot", "n,n->", (V, V)),
                            # (NumPy's meaning: an index in one operand only is summed over)
                            ("sum-lone", "bnd->dn", (T3,)),
                            ("contract-and-sum", "ij,jk->i", (MAT, NP_)),
                            ("sum-all", "bij->", (T3,)),
                            ("scalar-operand", "ij,k->k", (MAT, ["P"])),
                            ("full", "ij,ij->", (MAT, MAT))]:
    names_ = "abc"[:len(shapes_)]
    CASES.append((f"einsum-{label}", f'einsum("{sub}", {", ".join(names_)})',
                  dict(zip(names_, shapes_)), False))


# a batch of matrices times a vector, as NumPy's matmul means it
CASES.append(("matmul-batch-vector", "a @ b", {"a": T3, "b": V}, False))
CASES.append(("matmul-vector-batch", "b @ a", {"a": T4, "b": ["M"]}, False))


def _spec(expr: str, inputs: dict) -> str:
    lines = "\n".join(f"      {k}: {v}" for k, v in inputs.items()).replace("'", "")
    return f"""
module: t
dims: {{M: 3, N: 4, P: 2}}
functions:
  f:
    inputs:
{lines}
    steps:
      - y = {expr}
    outputs: [y]
"""


def _inputs(inputs: dict, positive: bool, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for shape in inputs.values():
        concrete = tuple(DIMS[d] if isinstance(d, str) else d for d in shape)
        x = rng.uniform(0.5, 1.5, concrete) if positive else rng.standard_normal(concrete)
        if list(shape) == ["N", "N"]:  # square inputs of inv/det: well conditioned
            x = np.eye(concrete[0]) * 3 + 0.5 * x
        out.append(np.array(x, dtype=np.float64))
    return out


# --- one module of the cases that other files run on both backends --------------------------
# test_numba (one case per op), test_runtime (non-finite and empty inputs) and test_selection (the
# newer ops) each compare cases' value_and_grad on the Numba and the NumPy module.  One spec
# holds a function per case any of them uses (c<k> is CASES[k]: its inputs, y = EXPR), generated
# once per backend and session, so that each case's Numba kernel compiles once (cold: about a
# second), not once per file.

_SHARED: dict = {}


def shared_case_ids() -> set[str]:
    from test_numba import _one_case_per_op
    from test_runtime import _cases
    from test_selection import _new_cases

    return {c[0] for pick in (_one_case_per_op, _cases, _new_cases) for c in pick()}


def case_module(backend: str):  # type: ignore[no-untyped-def]
    """The shared module of ``backend`` ("numpy", "numba"), or with "compiled" the spec's
    ``compile_spec`` result; function ``case_name(id)`` is the case's."""
    if backend not in _SHARED:
        ids = shared_case_ids()
        lines = ["module: opcase", "dims: {M: 3, N: 4, P: 2}", "functions:"]
        for k, (case_id, expr, inputs, _) in enumerate(CASES):
            if case_id in ids:
                lines += [f"  c{k}:", "    inputs:"]
                lines += [f"      {n}: [{', '.join(map(str, s))}]" for n, s in inputs.items()]
                lines += ["    steps:", f"      - y = {expr}", "    outputs: [y]"]
        text = "\n".join(lines) + "\n"
        if backend == "compiled":
            from codegen.compiler import compile_spec
            from codegen.loader import load_spec

            _SHARED[backend] = compile_spec(load_spec(text, "opcase.yaml"))
        else:
            _SHARED[backend] = codegen.load_module(text, backend=backend, path="opcase.yaml")
    return _SHARED[backend]


def case_name(case_id: str) -> str:
    """The shared module's function of a case (c<k>, k its index in CASES)."""
    assert case_id in shared_case_ids(), case_id
    return f"c{next(k for k, c in enumerate(CASES) if c[0] == case_id)}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_gradients_match_finite_differences(case):
    _, expr, inputs, positive = case
    mod = module_from(_spec(expr, inputs))
    rng = np.random.default_rng(zlib.crc32(case[0].encode()))
    args = _inputs(inputs, positive, rng)
    y, saved = mod.f_forward(*args)
    expected = np.asarray(eval_numpy(expr, dict(zip(inputs, args))))
    assert_close(y, expected, what="forward value")
    g = np.array(rng.standard_normal(np.shape(y)))
    grads = mod.f_backward(saved, g)
    y2, grads1 = mod.f_value_and_grad(*args)
    assert_close(y2, y, what="value_and_grad value")
    for i, name in enumerate(inputs):
        num = numeric_grad(lambda a: float(np.sum(g * mod.f(*a))), args, i)
        got = getattr(grads, name)
        assert np.shape(got) == args[i].shape and np.asarray(got).dtype == np.float64
        assert_close(got, num, rtol=1e-5, atol=1e-6, what=f"d{name} (backward, g random)")
        num1 = numeric_grad(lambda a: float(np.sum(mod.f(*a))), args, i)
        assert_close(getattr(grads1, name), num1, rtol=1e-5, atol=1e-6,
                     what=f"d{name} (value_and_grad)")


def eval_numpy(expr: str, env: dict) -> np.ndarray:
    """The reference forward, written with NumPy directly (independent of the generated code);
    an elementwise function not listed is NumPy's function of that name (``expm1``)."""
    fns = {
        "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt, "square": np.square,
        "abs": np.abs, "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "relu": lambda x: np.maximum(x, 0), "softplus": lambda x: np.log1p(np.exp(x)),
        "sin": np.sin, "cos": np.cos, "sum": np.sum,
        "erf": np.vectorize(math.erf), "where": np.where, "maximum": np.maximum,
        "minimum": np.minimum, "clip": np.clip, "max": np.max, "min": np.min, "var": np.var,
        "std": np.std, "diag": np.diag, "eye": lambda n: np.eye(DIMS.get(n, n)),
        "log_sigmoid": lambda x: -np.log1p(np.exp(-x)), "mean": np.mean,
        **{d: d for d in DIMS},  # eye(N)
        "logsumexp": lambda x, axis=None, keepdims=False: np.log(np.sum(np.exp(x), axis=axis,
                                                                          keepdims=keepdims)),
        "softmax": lambda x, axis=None: np.exp(x) / np.sum(np.exp(x), axis=axis, keepdims=True),
        "log_softmax": lambda x, axis=None: x - np.log(np.sum(np.exp(x), axis=axis,
                                                              keepdims=True)),
        "trace": np.trace, "inv": np.linalg.inv, "det": np.linalg.det,
        "logdet": lambda x: np.log(np.abs(np.linalg.det(x))), "outer": np.outer,
        "transpose": np.transpose, "swapaxes": np.swapaxes, "reshape": np.reshape,
        "concatenate": np.concatenate, "stack": np.stack, "einsum": np.einsum,
    }
    for name in CALLABLE:
        if name not in fns and isinstance(getattr(np, name, None), np.ufunc):
            fns[name] = getattr(np, name)
    return eval(expr, {"__builtins__": {}}, {**fns, **DIMS, **env})  # test-only reference


def test_sigmoid_keeps_relative_accuracy_for_large_negative_inputs():
    """exp(-logaddexp(0, -x)) loses about |x| ulps at x << 0 (1.5e-13 at -700): not _sigmoid."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 200
    mod = codegen.load_module("functions:\n  f:\n    inputs: {x: [N]}\n    steps:\n"
                              "      - y = sigmoid(x)\n    outputs: [y]\n")
    x = np.array([-745.0, -700.0, -300.5, -40.25, -30.0, -1.5, 0.0, -0.0, 1.5, 40.0, 800.0])
    y = mod.f(x)
    exact = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x])
    np.testing.assert_array_less(np.abs(y - exact), 2 * np.spacing(np.abs(exact)) + 1e-323)
