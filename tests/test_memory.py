"""The NumPy backend's memory plan (``codegen/memory.py``): dead arrays are deleted and computed
into, nothing else is ever written, results are unchanged, and the peak stays near the minimum."""

from __future__ import annotations

import gc
import re
import textwrap
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import codegen
from codegen.api import import_source
from codegen.compiler import compile_spec
from codegen.emit import Emitter
from codegen.emit_numba import NumbaEmitter
from codegen.finite_differences import example_dims, random_inputs
from codegen.loader import load_spec

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "specs").glob("*.yaml")) + sorted((REPO / "benchmarks" / "specs").glob("*.yaml"))

# Broadcasting, scalars, float32, fan-out and accumulation: the cases an in-place op could get wrong.
EDGE_SPEC = """
module: edge
dtype: {dtype}
dims: {{N: 5, K: 3}}
functions:
  bcast:
    inputs: {{X: [N, K], b: [K], c: [N, 1], s: []}}
    steps:
      - A = tanh(X * b + c) * s
      - B = exp(A - c) + A * A
      - loss = sum(B ** 2) + mean(sigmoid(B) * b)
    outputs: [loss, A]
  scalars:
    inputs: {{x: [], y: [], v: [K]}}
    steps:
      - z = x * y + sin(x)
      - w = v * z - v * v
      - loss = sum(w ** 2) * z
    outputs: [loss, w]
  columns:
    inputs: {{X: [N, K], c: [N, 1]}}
    steps:
      - Y = softplus(X - c) / (1 + c * c)
      - loss = sum(log_softmax(Y, axis=1) * X)
    outputs: [loss, Y]
"""


def _unplanned(spec):
    """The same spec's NumPy module rendered without the memory plan."""
    with mock.patch.object(Emitter, "plan_memory", new=property(lambda self: False)):
        source = codegen.generate_source(spec)
    return import_source(source, "unplanned")


def _frozen(values):
    """Read-only copies: the generated code raises ValueError if it writes into one of them."""
    out = []
    for v in values:
        a = np.array(v)
        a.flags.writeable = False
        out.append(a)
    return out


def _cases():
    for path in SPECS:
        yield pytest.param(path.read_text(), id=path.stem)
    for dtype in ("float64", "float32"):
        yield pytest.param(EDGE_SPEC.format(dtype=dtype), id=f"edge-{dtype}")


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("text", list(_cases()))
def test_planned_module_writes_only_its_own_arrays_and_computes_the_same(text):
    spec = load_spec(text, "test.yaml")
    planned = codegen.load_module(spec)
    plain = _unplanned(spec)
    dtype = np.dtype(spec.dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for cf in compile_spec(spec).functions:
        fn = cf.function
        rng = np.random.default_rng(1)
        args = _frozen(a.astype(dtype) if a.dtype.kind == "f" else a  # (labels stay int64)
                       for a in random_inputs(fn, example_dims(spec, fn), rng))
        copies = [a.copy() for a in args]
        name = fn.name
        outs, grads = getattr(planned, f"{name}_value_and_grad")(*args)
        outs_p, grads_p = getattr(plain, f"{name}_value_and_grad")(*args)
        outs_f, saved = getattr(planned, f"{name}_forward")(*args)
        saved = type(saved)(*(_frozen([v])[0] if isinstance(v, np.ndarray) else v for v in saved))
        g = _frozen([np.ones(np.shape(_tuple(outs)[0]), dtype=dtype)])[0]
        grads_b = getattr(planned, f"{name}_backward")(saved, g)
        grads_b2 = getattr(planned, f"{name}_backward")(saved, g)  # saved is unchanged
        for a, c in zip(args, copies):
            assert np.array_equal(a, c)
        for w, x, y, z, z2 in zip(fn.wrt, grads, grads_p, grads_b, grads_b2):
            assert x.dtype == dtype and x.shape == y.shape, w
            np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol, err_msg=f"{name}: d{w}")
            np.testing.assert_allclose(z, y, rtol=rtol, atol=rtol, err_msg=f"{name}: d{w}")
            assert np.array_equal(z, z2), w
        for o, o_p, o_f in zip(_tuple(outs), _tuple(outs_p), _tuple(outs_f)):
            np.testing.assert_allclose(o, o_p, rtol=rtol)
            np.testing.assert_allclose(o_f, o_p, rtol=rtol)
            assert np.asarray(o).dtype == dtype


def test_returned_arrays_do_not_share_memory():
    """An output computed in a reused buffer is never also a gradient or a saved value's buffer."""
    mod = codegen.load_module(EDGE_SPEC.format(dtype="float64"))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal((5, 1)), 0.7]
    (_, A), grads = mod.bcast_value_and_grad(*args)
    (_, A_f), saved = mod.bcast_forward(*args)
    arrays = [A, *grads] + [v for v in saved if isinstance(v, np.ndarray)]
    for i, x in enumerate(arrays):
        for y in arrays[i + 1:]:
            if x is not y and not (x is A_f or y is A_f):
                assert not np.shares_memory(x, y)


def _peak(call) -> int:
    call()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        tracemalloc.stop()
    return peak


KiB = 1024
UFUNC_BUFFER = 64 * KiB  # NumPy's iterator buffer for a broadcast operand (8192 elements)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_peak_of_dictionary_learning_is_the_residual_and_the_gradients(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    mod = codegen.load_module(REPO / "benchmarks" / "specs" / "dictionary.yaml", backend=backend)
    M, N, P = 200, 500, 50
    rng = np.random.default_rng(0)
    X, D, R = rng.standard_normal((M, N)), rng.standard_normal((M, P)), rng.standard_normal((P, N))
    floor = 8 * (M * N + M * P + P * N)  # E, dD and dR are alive together
    # (Numba: the loss's column sums, 8 N bytes, are freed before the products)
    assert _peak(lambda: mod.dictionary_value_and_grad(X, D, R)) <= floor + 2 * KiB


def test_peak_of_elementwise_chain_is_four_arrays():
    mod = codegen.load_module(REPO / "benchmarks" / "specs" / "elementwise.yaml")
    n = 300
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    assert _peak(lambda: mod.elementwise_value_and_grad(X, W)) <= 4 * 8 * n * n + 4 * KiB


def test_peak_of_mlp_is_three_hidden_arrays_and_the_gradients():
    mod = codegen.load_module(REPO / "benchmarks" / "specs" / "small_mlp.yaml")
    N, D, H, K = 32, 16, 32, 4
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) for s in ((N, D), (N, K), (D, H), (H,), (H, K), (K,))]
    bound = 8 * (3 * N * H + D * H + H + H * K + K + 2 * N * K) + 2 * KiB
    assert _peak(lambda: mod.small_mlp_value_and_grad(*args)) <= bound


def _chain_spec(steps: int, M: int, N: int, dtype: str = "float64") -> str:
    lines = ["      - a1 = tanh(X) * w + X * 0.5"] + [
        f"      - a{k} = tanh(a{k - 1}) * w + a{k - 1} * 0.5" for k in range(2, steps + 1)]
    return textwrap.dedent(f"""\
        module: chain
        dtype: {dtype}
        dims: {{M: {M}, N: {N}}}
        functions:
          chain:
            inputs: {{X: [M, N], w: [N]}}
            steps:
        """) + "\n".join(lines) + f"\n      - loss = sum(a{steps} ** 2)\n    outputs: [loss]\n"


def test_peak_of_deep_chain_keeps_one_array_per_step():
    steps, M, N = 30, 120, 120  # an array (115 KB) is larger than the ufunc buffer
    mod = codegen.load_module(_chain_spec(steps, M, N))
    rng = np.random.default_rng(0)
    X, w = rng.standard_normal((M, N)), rng.standard_normal(N)
    array = 8 * M * N
    # the tanh of every step (backward reads them), two arrays of the current step (its
    # cotangent and the tanh branch's), the iterator's buffer for the broadcast row, ~150 bytes of
    # ndarray header per array.  Three arrays of the step if the backward started ``da`` from
    # ``a * 0.5`` before finishing the tanh branch, or if ``dw`` summed a temporary product.
    bound = (steps + 2) * array + UFUNC_BUFFER + (steps + 3) * 160 + 4 * KiB
    assert _peak(lambda: mod.chain_value_and_grad(X, w)) <= bound


def _rules(src: str, function: str) -> list[str]:
    """The derivative rules named by the backward comments of ``function``, in order."""
    body = src[src.index(f"def {function}("):] + "\n\n\n"
    body = body[:body.index("\n\n\n")]
    comments = re.findall(r"# +→ (.*(?:\n +# {5,}.*)*)", body)
    return [" ".join(part.strip("# ") for part in c.split("\n")) for c in comments]


def test_backward_finishes_the_left_branch_before_the_right_one():
    src = codegen.generate_source(_chain_spec(2, 3, 4))
    rules = _rules(src, "chain_value_and_grad")
    # step a2: tanh(a1) * w first (da1 starts from the tanh rule), then a1 * 0.5 accumulates
    tanh = next(i for i, r in enumerate(rules) if r.startswith("tanh: da1 = "))
    assert rules[tanh + 1].startswith("Hadamard product: da1 = da1 + da2 * 0.5; accumulate (da1")
    assert "dw = np.einsum(\"ij,ij->j\", a2_1, da2)" in src
    assert "dw += np.einsum(\"ij,ij->j\", a1_1, da1)" in src


def test_float32_row_sum_of_a_product_is_an_einsum_and_stays_accurate():
    spec = _chain_spec(3, 50, 40, "float32")
    assert "np.einsum" in codegen.generate_source(spec)
    mod, ref = codegen.load_module(spec), codegen.load_module(_chain_spec(3, 50, 40))
    rng = np.random.default_rng(1)
    X, w = rng.standard_normal((50, 40)), rng.standard_normal(40)
    _, g32 = mod.chain_value_and_grad(X.astype(np.float32), w.astype(np.float32))
    _, g64 = ref.chain_value_and_grad(X, w)
    assert g32.w.dtype == np.float32
    np.testing.assert_allclose(g32.w, g64.w, rtol=1e-4, atol=1e-4)


def test_negated_contribution_is_subtracted_in_place():
    src = codegen.generate_source(REPO / "specs" / "matrix.yaml")
    vg = src[src.index("def gaussian_nll_value_and_grad"):]
    vg = vg[:vg.index("\n\n\n")]
    # inverse: dX = -Y.T @ dY @ Y.T accumulated into dS as a subtraction, not dS += -(...)
    assert "    dS -= nll_3.T @ dnll_3 @ nll_3.T\n" in vg
    assert "np.negative" not in vg and "-(" not in vg


def test_plan_reads_like_the_hand_written_code():
    src = (REPO / "generated" / "nn.py").read_text()
    vg = src[src.index("def mlp_mse_value_and_grad"):]
    assert "    Z1 = X @ W1\n    Z1 += b1\n" in vg
    assert "    H1 = np.tanh(Z1, out=Z1)\n    del Z1\n" in vg
    assert "loss = np.vdot(loss_1, loss_1)" in vg


def test_numba_backend_is_not_planned():
    assert Emitter("float64").plan_memory and not NumbaEmitter("float64").plan_memory
    src = codegen.generate_source(REPO / "specs" / "nn.yaml", backend="numba")
    assert "\n    del " not in src and "out=" not in src


def test_float32_sum_of_squares_stays_a_pairwise_sum():
    src = codegen.generate_source(EDGE_SPEC.format(dtype="float32"))
    assert "np.vdot" not in src and "np.sum(B**2)" in src



def test_in_place_ufunc_calls_are_the_op_tables_calls():
    """The memory plan writes a unary op as a ufunc call with out= from a table of calls (a
    tree, not the op table's format string cut open): each is the op table's call."""
    from codegen import expr as E
    from codegen.memory import INPLACE, UFUNC_CALLS
    from codegen.ops import OPS

    for op in INPLACE - {"add", "sub", "mul", "div", "neg"}:
        func, at, others = UFUNC_CALLS[op]
        args: list = list(others)
        args.insert(at, E.Leaf("{0}"))
        assert E.call(func, *args).render() == OPS[op].fmt, op
