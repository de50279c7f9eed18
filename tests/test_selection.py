"""DESIGN 1b's subgradient conventions, in closed form, on both backends and in the interpreter:

- ``maximum``/``minimum`` (and so ``clip``) at ties: each side gets half the cotangent;
- ``max``/``min`` reductions: tied extremes share the cotangent equally;
- ``where`` sends the cotangent only to the branch it chose, and a NaN or inf of the branch it
  did not choose never reaches a gradient (``where(x > 0, log(x), 0)`` at ``x = 0``: gradient 0);
- ``std`` at zero variance: gradient 0 (sqrt's convention); ``var``'s gradient ``2 (a - m) / n``.

Every function is in one spec, so the Numba module compiles once.  Misuse is a located spec
error with a hint.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import codegen
from codegen.compiler import compile_spec
from codegen.interpret import interpret
from codegen.loader import load_spec

SPEC = """
module: selection
functions:
  tie_max:
    inputs: {a: [N], b: [N]}
    steps:
      - y = sum(maximum(a, b))
    outputs: [y]
  tie_min:
    inputs: {a: [N], b: [N]}
    steps:
      - y = sum(3 * minimum(a, b))
    outputs: [y]
  clipped:
    inputs: {x: [N]}
    steps:
      - y = sum(clip(x, -1, 1))
    outputs: [y]
  row_max:
    inputs: {a: [M, N]}
    steps:
      - y = sum(max(a, axis=1) * 2)
    outputs: [y]
  all_min:
    inputs: {a: [M, N]}
    steps:
      - y = min(a)
    outputs: [y]
  all_max:
    inputs: {a: [M, N]}
    steps:
      - y = 2 * max(a)
    outputs: [y]
  col_min:
    inputs: {a: [M, N]}
    steps:
      - y = sum(min(a, axis=0, keepdims=True))
    outputs: [y]
  safe_log:
    inputs: {x: [N]}
    steps:
      - y = sum(where(x > 0, log(x), 0))
    outputs: [y]
  safe_sqrt:
    inputs: {x: [N]}
    steps:
      - y = sum(where(x <= 0, 0, sqrt(x) * 3))
    outputs: [y]
  safe_exp:
    inputs: {x: [N]}
    steps:
      - y = sum(where(x < 100, 2 * x, exp(x * x)))
    outputs: [y]
  safe_reciprocal:
    inputs: {x: [N], w: [N]}
    steps:
      - y = sum(where(x >= 1, w / x, w))
    outputs: [y]
  stds:
    inputs: {a: [M, N]}
    steps:
      - y = sum(std(a, axis=0))
    outputs: [y]
  variance:
    inputs: {a: [M, N]}
    steps:
      - y = sum(var(a, axis=1, keepdims=True))
    outputs: [y]
"""

# function -> (inputs, expected gradients), in closed form
X0 = np.array([0.0, -1.0, 2.0, 1.0e-300, -0.0])
A = np.array([[1.0, 3.0, 3.0], [-2.0, 5.0, 4.0]])
CONST_COL = np.array([[1.0, 2.0, 7.0], [1.0, -3.0, 7.0]])
CASES = {
    "tie_max": ((np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 0.0])),
                ([0.5, 0.0, 1.0], [0.5, 1.0, 0.0])),
    "tie_min": ((np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 0.0])),
                ([1.5, 3.0, 0.0], [1.5, 0.0, 3.0])),
    "clipped": ((np.array([-1.0, 1.0, 0.25, 2.0, -3.0]),), ([0.5, 0.5, 1.0, 0.0, 0.0],)),
    "row_max": ((A,), ([[0.0, 1.0, 1.0], [0.0, 2.0, 0.0]],)),
    "all_min": ((np.array([[1.0, 1.0], [2.0, 1.0]]),), ([[1 / 3, 1 / 3], [0.0, 1 / 3]],)),
    "col_min": ((np.array([[1.0, 2.0], [1.0, 0.0]]),), ([[0.5, 0.0], [0.5, 1.0]],)),
    "all_max": ((np.array([[1.0, 3.0], [3.0, 0.0]]),), ([[0.0, 1.0], [1.0, 0.0]],)),
    "safe_log": ((X0,), ([0.0, 0.0, 0.5, 1.0e300, 0.0],)),
    "safe_sqrt": ((np.array([-1.0, 0.0, 4.0]),), ([0.0, 0.0, 0.75],)),
    "safe_exp": ((np.array([50.0, 1.0, 200.0]),), ([2.0, 2.0, np.inf],)),
    "safe_reciprocal": ((np.array([0.0, 2.0]), np.array([1.0, 1.0])),
                        ([0.0, -0.25], [1.0, 0.5])),
    "stds": ((CONST_COL,), ([[0.0, 0.5, 0.0], [0.0, -0.5, 0.0]],)),
    "variance": ((A,), (2 * (A - A.mean(axis=1, keepdims=True)) / 3,)),
}


@pytest.fixture(scope="module")
def modules():
    mods = {"numpy": codegen.load_module(SPEC, path="selection.yaml")}
    try:
        import numba  # noqa: F401
    except ImportError:
        return mods
    mods["numba"] = codegen.load_module(SPEC, backend="numba", path="selection.yaml")
    return mods


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", list(CASES))
def test_conventions_in_closed_form(modules, backend, name):
    if backend not in modules:
        pytest.skip("numba not installed")
    mod = modules[backend]
    args, expected = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0) computed, not chosen
        y, grads = getattr(mod, name + "_value_and_grad")(*args)
        y2, saved = getattr(mod, name + "_forward")(*args)
        grads2 = getattr(mod, name + "_backward")(saved, 1.0)
    fn = next(f for f in compile_spec(load_spec(SPEC, "selection.yaml")).functions
              if f.function.name == name)
    (reference,) = interpret(fn, list(args))
    np.testing.assert_allclose(y, reference, rtol=1e-12)
    np.testing.assert_allclose(y2, reference, rtol=1e-12)
    for got, got2, want in zip(grads, grads2, expected):
        want = np.asarray(want, dtype=float)
        if name == "safe_exp":  # the third element chose exp(x * x) = inf: its slope is inf
            assert got[2] == np.inf or np.isnan(got[2])
            got, got2, want = got[:2], got2[:2], want[:2]
        assert not np.isnan(got).any(), got
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(got2, want, rtol=1e-12, atol=1e-300)


# The extremes as np.max and np.min compute them: the spec's functions of the module above
EXTREMES = {
    "all_max": (lambda a: 2 * np.max(a), None),
    "all_min": (np.min, None),
    "row_max": (lambda a: np.sum(np.max(a, axis=1) * 2), 1),
    "col_min": (lambda a: np.sum(np.min(a, axis=0, keepdims=True)), 0),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", list(EXTREMES))
def test_max_and_min_propagate_nan_and_refuse_empty_input_as_numpy_does(modules, backend, name):
    """A NaN among the elements a max or min reduces gives NaN, as np.max does, and NaN
    gradients over that slice (0/0 ties); reducing an axis of size 0 raises np.max's
    ValueError, in every call. Before: Numba's loop skipped NaN (max(acc, nan) is acc) and gave
    -inf or inf over an empty axis."""
    if backend not in modules:
        pytest.skip("numba not installed")
    mod = modules[backend]
    oracle, axis = EXTREMES[name]
    a = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]])
    a[1, 1] = np.nan
    for y in (getattr(mod, name)(a), getattr(mod, name + "_forward")(a)[0]):
        assert np.isnan(oracle(a)) and np.isnan(y), y
    with np.errstate(invalid="ignore"):
        y, (grad,) = getattr(mod, name + "_value_and_grad")(a)
    assert np.isnan(y)
    touched = np.zeros(a.shape, bool)  # the elements reduced together with the NaN
    touched[1 if axis == 1 else slice(None), 1 if axis == 0 else slice(None)] = True
    np.testing.assert_array_equal(np.isnan(grad), touched)
    for shape in ((0, 3), (2, 0), (0, 0)):
        empty = np.zeros(shape)
        try:
            expected = oracle(empty)
        except ValueError as e:
            assert "zero-size array to reduction operation" in str(e)
            for call in (name, name + "_forward", name + "_value_and_grad"):
                with pytest.raises(ValueError, match="zero-size array to reduction operation "
                                                     "maximum which has no identity"):
                    getattr(mod, call)(empty)
        else:  # only non-empty axes reduced over nothing: an empty sum
            assert getattr(mod, name)(empty) == expected == 0.0
            y, (grad,) = getattr(mod, name + "_value_and_grad")(empty)
            assert y == 0.0 and grad.shape == shape


def test_where_selects_the_cotangent_it_does_not_multiply_by_a_mask():
    source = codegen.generate_source(
        "functions:\n  f:\n    inputs: {x: [N]}\n    steps:\n      - y = sum(where(x > 0, log(x), 0))\n"
        "    outputs: [y]\n", path="w.yaml")
    assert "np.where(" in source
    backward = source[source.index("def f_backward"):]
    assert "np.where(y_1, np.divide(" in backward or "np.where(y_1, " in backward
    assert "heaviside" not in backward


@pytest.mark.parametrize("step, message", [
    ("y = x > 0", "only allowed as the condition of where()"),
    ("y = (x > 0) * x", "only allowed as the condition of where()"),
    ("y = where(x == 0, x, 0)", "== and !=, is not supported"),
    ("y = where(0 < x < 1, x, 0)", "chained comparisons"),
    ("y = where(1 > 0, x, 0)", "must read an array"),
    ("y = where(x > 0, x)", "where() takes exactly 3 arguments"),
    ("y = clip(x, 0)", "clip() takes exactly 3 arguments"),
    ("y = clip(x, 1, 0)", "lower bound 1 is above the upper bound 0"),
    ("y = std(x, ddof=1)", "unexpected keyword 'ddof'"),
    ("y = var(x, axis=2)", "axis"),
    ("y = max(x, x)", "takes exactly one array argument"),
    ("y = maximum(x, w)", "maximum()"),
])
def test_misuse_is_a_located_spec_error_with_a_hint(step, message):
    text = ("functions:\n  f:\n    inputs: {x: [N], w: [M, 2]}\n    steps:\n"
            f"      - {step}\n    outputs: [y]\n")
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="s.yaml")
    assert message in info.value.message, info.value.message
    assert str(info.value).startswith("s.yaml:5:9: error: f: step ")


# The op-table cases of this ops (tests/test_ops.py), on Numba: values against the
# interpreter, gradients against the NumPy module's (one module: one compile).
NEW_OPS = ("erf", "expm1", "cosh", "sinh", "arctan", "log_sigmoid", "where", "maximum", "minimum",
           "clip", "max-", "min-", "var", "std", "diag", "eye")


def _new_cases() -> list:
    from test_ops import CASES

    return [c for c in CASES if c[0].startswith(NEW_OPS) and not c[0].endswith(("-scalar",
                                                                               "-vector"))]


def test_numba_agrees_on_the_new_op_cases():
    pytest.importorskip("numba")
    from test_ops import _inputs, case_module, case_name

    import zlib

    # each case's function in test_ops' shared module (its kernels compile once per session)
    compiled = case_module("compiled")
    numpy_mod, numba_mod = case_module("numpy"), case_module("numba")
    for case_id, _, ins, positive in _new_cases():
        name = case_name(case_id)
        args = _inputs(ins, positive, np.random.default_rng(zlib.crc32(case_id.encode())))
        function = next(cf for cf in compiled.functions if cf.function.name == name)
        (reference,) = interpret(function, args)
        y_nb, g_nb = getattr(numba_mod, f"{name}_value_and_grad")(*args)
        y_np, g_np = getattr(numpy_mod, f"{name}_value_and_grad")(*args)
        np.testing.assert_allclose(y_nb, reference, rtol=1e-10, atol=1e-12, err_msg=case_id)
        np.testing.assert_allclose(y_np, reference, rtol=1e-10, atol=1e-12, err_msg=case_id)
        for a, b in zip(g_np, g_nb):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10, err_msg=case_id)


# A [M, 1] column or [1, N] row broadcast in several places of one fused chain, before and
# after a reduction: each broadcast's gradient is a sum over the broadcast axis, and the fusion
# pass adds the later sums of one loop into the earliest one's total. Before: when the chain
# met a sum of the same shape after the one it was added to, the Numba emitter raised
# KeyError (the total's name was not bound yet), e.g. for clip(a, b, b + 2).
BROADCAST_TWICE = [
    ("y = abs(abs(a * (b - 1)) * (b + 1))",),
    ("y = clip(a, b, b + 2)",),
    ("y = clip(a * r, b - r, b + 2)",),
    ("y = maximum(a * r, r - 1) * (r + 2)",),
    ("y = minimum(a - b, b * b) + a * (b + 1)",),
    ("y = a * b + sin(a * (b - 1)) * cos(b + 2 * a)",),
    ("s = sum(a * b, axis=1, keepdims=True)", "y = (s + b) * (a - b)"),
    ("s = sum(a * (r - 1), axis=0, keepdims=True)", "y = tanh(s * r) * (a + r)"),
    ("y = sum((a - b) ** 2 * (b + r) + abs(a * b))",),
    ("y = sum(tanh(a * b) * (b + 1), axis=1)",),
    ("y = mean(a * b * (b + 1) + (a - b) * r, axis=0)",),
    ("e = exp(a * b - 1)", "y = e * r / sum(e * (r + 3), axis=0, keepdims=True)"),
    ("y = softmax(a * b, axis=1) * (b - 1) + log_softmax(a * r, axis=0) * r",),
    ("y = max(a * b, axis=1, keepdims=True) * (b + 1) + a * (b - 2)",),
    ("z = a * b", "w = z * (b + 1) + z * (b - 1)", "y = sum(w * w) + sum(w * r)"),
]


def test_numba_agrees_on_a_column_or_row_broadcast_in_several_places_of_one_chain():
    """Values against the interpreter and the NumPy module; gradients against the NumPy module
    and central differences (float64). All functions in one module: one Numba compile."""
    pytest.importorskip("numba")
    from helpers import numeric_grad

    lines = ["module: bcast", "dims: {M: 3, N: 4}", "functions:"]
    for k, steps in enumerate(BROADCAST_TWICE):
        lines += [f"  f{k}:", "    inputs: {a: [M, N], b: [M, 1], r: [1, N]}", "    steps:"]
        lines += [f"      - {step}" for step in steps]
        lines += ["    outputs: [y]"]
    text = "\n".join(lines) + "\n"
    compiled = compile_spec(load_spec(text, "bcast.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", codegen.SpecWarning)  # non-scalar outputs, unused r
        numpy_mod = codegen.load_module(text, path="bcast.yaml")
        numba_mod = codegen.load_module(text, backend="numba", path="bcast.yaml")
    rng = np.random.default_rng(7)
    for k, steps in enumerate(BROADCAST_TWICE):
        what = f"f{k}: {'; '.join(steps)}"
        args = [rng.standard_normal(s) for s in ((3, 4), (3, 1), (1, 4))]
        (reference,) = interpret(compiled.functions[k], args)
        y_nb, g_nb = getattr(numba_mod, f"f{k}_value_and_grad")(*args)
        y_np, g_np = getattr(numpy_mod, f"f{k}_value_and_grad")(*args)
        np.testing.assert_allclose(y_nb, reference, rtol=1e-10, atol=1e-12, err_msg=what)
        np.testing.assert_allclose(getattr(numba_mod, f"f{k}")(*args), reference, rtol=1e-10,
                                   atol=1e-12, err_msg=what)
        np.testing.assert_allclose(y_np, reference, rtol=1e-10, atol=1e-12, err_msg=what)
        assert len(g_nb) == len(g_np) == 3, what
        for i, (x_nb, x_np) in enumerate(zip(g_nb, g_np)):
            np.testing.assert_allclose(x_nb, x_np, rtol=1e-9, atol=1e-10, err_msg=what)

            def total(xs, k=k):
                (out,) = interpret(compiled.functions[k], xs)
                return float(np.sum(out))

            np.testing.assert_allclose(x_nb, numeric_grad(total, args, i), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{what}: gradient {i} vs finite differences")
