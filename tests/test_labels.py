"""Integer and boolean inputs, labels (take_along_axis, one_hot), dims as numbers and calls
between spec functions (DESIGN.md §1b), on both backends.

Values are checked against the reference interpreter (its own loops over the labels) and closed
forms; gradients against central differences of ``sum(g * f(x))`` for a random cotangent ``g``;
the Numba module against the NumPy module.  All the functions are in one spec, so one Numba
module is compiled for the whole file.
"""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pytest
from helpers import assert_close, numeric_grad

import codegen
from codegen.compiler import compile_spec
from codegen.interpret import interpret
from codegen.loader import load_spec

BACKENDS = ("numpy", "numba")

SPEC = """
module: labelcases
dims: {N: 4, K: 3, J: 2, D: 5}
functions:
  take1:
    inputs: {a: [N, K], y: {shape: [N, 1], dtype: int64}}
    steps: ["z = take_along_axis(a, y, axis=1)"]
    outputs: [z]
  take0:
    inputs: {a: [N, K], y: {shape: [J, K], dtype: int64}}
    steps: ["z = take_along_axis(a * a, y, axis=0)"]
    outputs: [z]
  takevec:
    inputs: {a: [K], y: {shape: [J], dtype: int64}}
    steps: ["z = take_along_axis(exp(a), y, axis=-1)"]
    outputs: [z]
  taket:
    inputs: {b: [K, N], y: {shape: [N, J], dtype: int64}}
    steps: ["z = take_along_axis(b.T, y, axis=1) * 2"]
    outputs: [z]
  hot:
    inputs: {Z: [N, K], y: {shape: [N], dtype: int64}}
    steps: ["z = one_hot(y, K) * Z ** 2 + sum(one_hot(y, 3), axis=1, keepdims=True)"]
    outputs: [z]
  ce:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}, m: {shape: [N], dtype: bool}}
    steps:
      - "logp = log_softmax(Z, axis=1)"
      - "loss = -sum(take_along_axis(logp, y, axis=1)) / N"
    outputs: [loss, logp]
  mask:
    inputs: {Z: [N, K], mk: {shape: [N, K], dtype: bool}}
    steps: ["z = where(mk, Z ** 2, sin(Z)) + where(mk, 1.0, 0.0) * Z"]
    outputs: [z]
  dims:
    inputs: {X: [N, D]}
    steps: ["z = X / sqrt(D) + N * X ** 2", "s = D", "t = sum(X) / (N * D)"]
    outputs: [z, s, t]
  calls:
    inputs: {X: [N, D], W1: [D, K], W2: [K, J], y: {shape: [N, 1], dtype: int64}}
    steps:
      - H = lay(X, W1)
      - z = pick(lay(H, W2), y)
    outputs: [z, H]
  lay:
    inputs: {X: [M, A], W: [A, B]}
    steps: ["Z = X @ W / sqrt(A)", "Y = tanh(Z) * B"]
    outputs: [Y]
  pick:
    inputs: {P: [M, C], y: {shape: [M, 1], dtype: int64}}
    steps: ["q = log_softmax(P, axis=1)", "r = take_along_axis(q, y, axis=1)"]
    outputs: [r]
"""
SIZES = {"N": 4, "K": 3, "J": 2, "D": 5}

# labels for each function's integer inputs (repeated labels on purpose: take0 takes row 0 of
# every column twice, so its gradient must add both contributions)
LABELS = {
    "take1": [np.array([[0], [2], [2], [1]])],
    "take0": [np.array([[0, 0, 3], [0, 2, 0]])],
    "takevec": [np.array([2, 2])],
    "taket": [np.array([[0, 2], [1, 1], [2, 0], [0, 0]])],
    "hot": [np.array([1, 0, 2, 2])],
    "ce": [np.array([[1], [0], [2], [2]]), np.array([True, False, True, True])],
    "mask": [np.array([[True, False, True], [False, False, True], [True, True, True],
                       [False, False, False]])],
    "calls": [np.array([[1], [0], [1], [1]])],
    "pick": [np.array([[1], [0], [1], [1]])],
}

_cache: dict = {}


def module(backend: str):  # type: ignore[no-untyped-def]
    if backend not in _cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", codegen.SpecWarning)  # non-scalar first outputs
            _cache[backend] = codegen.load_module(textwrap.dedent(SPEC), backend=backend,
                                                  path="labelcases.yaml")
    return _cache[backend]


def compiled():  # type: ignore[no-untyped-def]
    if "compiled" not in _cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", codegen.SpecWarning)
            c = compile_spec(load_spec(textwrap.dedent(SPEC), "labelcases.yaml"))
        _cache["compiled"] = {cf.function.name: cf for cf in c.functions}
    return _cache["compiled"]


def float_inputs(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    fn = compiled()[name].function
    out = []
    for i in fn.program.inputs:
        value = fn.program.values[i]
        if not value.dtype:
            shape = tuple(SIZES.get(d, 3) if isinstance(d, str) else d for d in value.shape)
            if name in ("lay", "pick"):
                shape = tuple({"M": 4, "A": 5, "B": 3, "C": 3}.get(d, d) for d in value.shape)
            out.append(rng.standard_normal(shape))
    return out


FUNCTIONS = ["take1", "take0", "takevec", "taket", "hot", "ce", "mask", "dims", "calls", "lay",
             "pick"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_values_match_the_interpreter_and_gradients_finite_differences(name, backend):
    mod = module(backend)
    rng = np.random.default_rng(sum(map(ord, name)))
    floats = float_inputs(name, rng)
    labels = LABELS.get(name, [])
    n_float = len(floats)

    def call(f, fl):  # type: ignore[no-untyped-def]
        return f(*fl, *labels)

    fn = compiled()[name].function
    n_out = len(fn.program.outputs)
    outs = call(getattr(mod, name), floats)
    outs = outs if n_out > 1 else (outs,)
    ref = interpret(fn, floats + labels)
    if name == "mask":  # (a bool input as where's condition: NumPy's where, written out)
        Z, mk = floats[0], labels[0]
        assert_close(outs[0], np.where(mk, Z ** 2 + Z, np.sin(Z)), rtol=1e-15, atol=0, what="mask")
    for got, want in zip(outs, ref):
        assert_close(got, want, rtol=1e-12, atol=1e-12, what=f"{name} value")
        assert np.asarray(got).dtype == np.float64
    first, saved = getattr(mod, f"{name}_forward")(*floats, *labels)
    first = first[0] if n_out > 1 else first
    g = rng.standard_normal(np.shape(first))
    grads = getattr(mod, f"{name}_backward")(saved, g)
    assert len(grads) == n_float  # integer and boolean inputs are never differentiated

    def objective(fl):  # type: ignore[no-untyped-def]
        out = call(getattr(mod, name), fl)
        return float(np.sum(g * (out[0] if n_out > 1 else out)))

    for i in range(n_float):
        assert_close(grads[i], numeric_grad(objective, floats, i), rtol=1e-6, atol=1e-7,
                     what=f"{name} d{fn.wrt[i]}")
    if backend == "numba":  # the same gradients as the NumPy module, bit for bit or nearly
        want = getattr(module("numpy"), f"{name}_value_and_grad")(*floats, *labels)[1]
        got = getattr(mod, f"{name}_value_and_grad")(*floats, *labels)[1]
        for a, b in zip(got, want):
            assert_close(a, b, rtol=1e-12, atol=1e-13, what=f"{name} numba vs numpy")


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_forms(backend):
    mod = module(backend)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3))
    y = LABELS["take1"][0]
    assert_close(mod.take1(a, y), a[np.arange(4), y[:, 0]][:, None], rtol=0, atol=0)
    # take0: rows picked per column, twice row 0 of column 0: its gradient is 2 * 2a * g twice
    (z, grads) = mod.take0_value_and_grad(a, LABELS["take0"][0].clip(0, 3))
    expected = np.zeros((4, 3))
    np.add.at(expected, (LABELS["take0"][0].clip(0, 3), np.arange(3)[None, :]), 1.0)
    assert_close(grads.a, 2 * a * expected, rtol=1e-14, atol=0)
    assert expected[0, 0] == 2  # (the case it checks: a label taken twice)
    Z = rng.standard_normal((4, 3))
    yy = LABELS["hot"][0]
    assert_close(mod.hot(Z, yy), np.eye(3)[yy] * Z**2 + 1, rtol=1e-15, atol=0)
    # dims as numbers: D = 5, N = 4
    X = rng.standard_normal((4, 5))
    z, s, t = mod.dims(X)
    assert_close(z, X / np.sqrt(5) + 4 * X**2, rtol=1e-14, atol=0)
    assert s == 5.0 and np.asarray(s).dtype == np.float64
    assert t == pytest.approx(X.sum() / 20)
    # a call binds the callee's dims afresh: lay is [D]->[K] then [K]->[J], B a number each time
    W1, W2 = rng.standard_normal((5, 3)), rng.standard_normal((3, 2))
    yc = LABELS["calls"][0]
    H = np.tanh(X @ W1 / np.sqrt(5)) * 3
    P = np.tanh(H @ W2 / np.sqrt(3)) * 2
    logp = P - np.log(np.exp(P).sum(axis=1, keepdims=True))
    z, H_out = mod.calls(X, W1, W2, yc)
    assert_close(H_out, H, rtol=1e-13, atol=1e-15)
    assert_close(z, np.take_along_axis(logp, yc, axis=1), rtol=1e-13, atol=1e-15)


def test_the_cross_entropy_spec_agrees_with_itself_and_a_closed_form():
    """specs/labels.yaml: take_along_axis and one_hot give the same loss and gradient."""
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "specs" / "labels.yaml"
    mod = codegen.load_module(spec.read_text(), path="labels.yaml")
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((16, 4))
    y = rng.integers(0, 4, size=16)
    (loss, logp), g1 = mod.ce_take_value_and_grad(Z, y[:, None])
    loss2, g2 = mod.ce_one_hot_value_and_grad(Z, y)
    p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(16), y])), rel=1e-13)
    assert loss2 == pytest.approx(loss, rel=1e-13)
    assert_close(g1.Z, (p - np.eye(4)[y]) / 16, rtol=1e-12, atol=1e-15)
    assert_close(g2.Z, g1.Z, rtol=1e-12, atol=1e-15)


# --- run-time errors and conversions of integer and boolean inputs -------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_label_outside_the_classes_is_a_value_error(backend):
    mod = module(backend)
    a = np.ones((4, 3))
    Z = np.ones((4, 3))
    mod.take1(a, LABELS["take1"][0])  # a valid call first: the Numba wrappers' fast path
    for bad, label in ((3, 3), (-1, -1)):
        y = LABELS["take1"][0].copy()
        y[2, 0] = bad
        for f in (mod.take1, mod.take1_forward, mod.take1_value_and_grad):
            with pytest.raises(ValueError, match=rf"take1: y has the label {label}, outside \[0, 3\)"):
                f(a, y)
        yh = LABELS["hot"][0].copy()
        yh[0] = bad
        with pytest.raises(ValueError, match=rf"hot: y has the label {label}, outside \[0, 3\)"):
            mod.hot_value_and_grad(Z, yh)
    # a call's labels are named after the caller's input
    y = LABELS["calls"][0].copy()
    y[0, 0] = 2
    with pytest.raises(ValueError, match=r"calls: y has the label 2, outside \[0, 2\)"):
        mod.calls(np.ones((4, 5)), np.ones((5, 3)), np.ones((3, 2)), y)
    # take0 along axis 0: labels index rows
    with pytest.raises(ValueError, match=r"take0: y has the label 4, outside \[0, 4\)"):
        mod.take0(a, np.array([[0, 0, 4], [0, 0, 0]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_inputs_take_integers_of_any_width_and_refuse_floats(backend):
    mod = module(backend)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3))
    y = LABELS["take1"][0]
    want = mod.take1(a, y)
    for other in (y.astype(np.int32), y.astype(np.uint8), y.astype(np.int16), y.tolist(),
                  np.asfortranarray(np.tile(y, (1, 2))[:, :1]), y.astype(np.uint64)):
        assert_close(mod.take1(a, other), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"take1: input y must be an array of int64 of shape "
                                         r"\[N, 1\] \(got dtype float64\)"):
        mod.take1(a, y.astype(float))
    with pytest.raises(ValueError, match=r"input y must be an array of int64 .*\(got dtype bool\)"):
        mod.take1(a, y > 0)
    with pytest.raises(ValueError, match=r"input y must be an array of int64 .*\(got dtype uint64\)"):
        mod.take1(a, np.array([[2**63], [0], [0], [0]], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"take1: input y has shape \(4,\); expected \[N, 1\]"):
        mod.take1(a, y[:, 0])
    with pytest.raises(ValueError, match=r"input y has shape \(3, 1\); expected \[N, 1\] with N=4"):
        mod.take1(a, y[:3])
    with pytest.raises(ValueError, match=r"input y is a masked array"):
        mod.take1(a, np.ma.masked_array(y, mask=y > 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_boolean_inputs_take_booleans_only(backend):
    mod = module(backend)
    Z = np.zeros((4, 3))
    y = LABELS["ce"][0]
    m = LABELS["ce"][1]
    loss, _ = mod.ce(Z, y, m)
    assert loss == pytest.approx(np.log(3))
    assert mod.ce(Z, y, m.tolist())[0] == loss
    with pytest.raises(ValueError, match=r"ce: input m must be an array of bool of shape \[N\] "
                                         r"\(got dtype int64\)"):
        mod.ce(Z, y, m.astype(np.int64))
    with pytest.raises(ValueError, match=r"ce: input m has shape \(3,\); expected \[N\] with N=4"):
        mod.ce(Z, y, m[:3])
    assert mod.ce_Grads._fields == ("Z",)  # the default wrt: the float inputs


FLOAT32 = """
module: f32inputs
dtype: float32
functions:
  f:
    inputs: {X: [N, D], s: [], y: {shape: [N, 1], dtype: int64}}
    steps: ["Z = X * s / sqrt(D)", "loss = sum(take_along_axis(Z, y, axis=1))"]
    outputs: [loss, Z]
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_inputs_convert_integers_booleans_numbers_and_lists_not_other_floats(backend):
    """§1b: an input of the spec's float dtype also takes integer and boolean arrays, Python
    numbers and lists (converted); a float array of another precision is refused.  Both backends
    give the same float32 results, and no float64 leaks in (np.sqrt(D) is a float64 scalar)."""
    mod = codegen.load_module(textwrap.dedent(FLOAT32), backend=backend, path="f32.yaml")
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([[1], [0], [1]])
    (loss, Z), grads = mod.f_value_and_grad(X, np.float32(2), y)
    assert Z.dtype == np.float32 and grads.X.dtype == np.float32 and grads.s.dtype == np.float32
    assert np.asarray(loss).dtype == np.float32
    expected = X * 2 / np.float32(np.sqrt(2))
    assert_close(Z, expected, rtol=1e-6, atol=0)
    for Xi, si in ((X.astype(np.int64), 2), (X.tolist(), 2.0), (X.astype(np.uint8), True * 2),
                   (X, [2.0]), (X.astype(np.int16), np.int64(2))):
        if isinstance(si, list):
            with pytest.raises(ValueError, match=r"input s has shape \(1,\); expected \[\]"):
                mod.f(Xi, si, y)
            continue
        (l2, Z2), g2 = mod.f_value_and_grad(Xi, si, y)
        assert Z2.dtype == np.float32 and g2.X.dtype == np.float32
        assert_close(Z2, Z, rtol=0, atol=0)
    assert mod.f(X > 2, 2, y)[1].dtype == np.float32  # booleans: 0 and 1
    for other in (np.float64, np.float16):
        with pytest.raises(ValueError, match=rf"input X has dtype {np.dtype(other)}; expected "
                                             r"float32"):
            mod.f(X.astype(other), 2, y)


def test_both_backends_convert_the_same_inputs():
    """Every input the NumPy module accepts, the Numba module accepts, with the same result."""
    mods = [codegen.load_module(textwrap.dedent(FLOAT32), backend=b, path="f32.yaml")
            for b in BACKENDS]
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    cases = [(X, 2.0, [[1], [0], [1]]), (X.astype(int), np.int8(3), np.array([[1], [0], [1]],
                                                                             dtype=np.int8)),
             (X.tolist(), True, np.array([[0], [0], [1]], dtype=np.uint32)),
             (X.astype(np.float64), 2.0, [[1], [0], [1]]), (X, 2.0, [[1.0], [0.0], [1.0]]),
             (X, 2.0, [[1], [2], [1]])]
    for case in cases:
        results = []
        for mod in mods:
            try:
                results.append(mod.f(*case))
            except ValueError as e:
                results.append(str(e))
        if isinstance(results[0], str):
            assert results[1] == results[0]
        else:
            for a, b in zip(*results):  # (float32: Numba's loops round once, in float64)
                assert_close(a, b, rtol=1e-6, atol=1e-6)


# --- spec errors: located, with a hint -----------------------------------------------------------

ERRORS = """functions:
  f:
    inputs:
      Z: [N, K]
      y: {{shape: [N, 1], dtype: int64}}
      m: {{shape: [N], dtype: bool}}
      v: {{shape: [N], dtype: int64}}
    steps:
      - 'q = log_softmax(Z, axis=1)'
      - '{step}'
    outputs: [out]
  lay:
    inputs: {{X: [M, A], W: [A, B]}}
    steps: ['Y = tanh(X @ W)']
    outputs: [Y]
  g:
    inputs: {{X: [M, A]}}
    steps: ['Y = h(X)']
    outputs: [Y]
  h:
    inputs: {{X: [M, A]}}
    steps: ['Y = g(X) * 2']
    outputs: [Y]
"""

STEP_ERRORS = [
    ("out = take_along_axis(q, Z, axis=1)", "the labels 'Z' are a float value, not integers; "
     "declare the input as y: {shape: [N, 1], dtype: int64}"),
    ("out = take_along_axis(q, m, axis=1)", "the labels 'm' are a bool input, not integers"),
    ("out = take_along_axis(q, y)", "take_along_axis() takes an array, the labels and axis="),
    ("out = take_along_axis(q, v, axis=1)", "the labels [N] need the rank of the array [N, K]"),
    ("out = take_along_axis(q, y, axis=2)", "axis 2 is out of range"),
    ("out = take_along_axis(q, 2 * y, axis=1)", "the labels must be an integer input, by name"),
    ("out = take_along_axis(1.5, y, axis=1)", "the first argument must be a float array"),
    ("out = q * y", "'y' is an int64 input: it can only be the labels of take_along_axis"),
    ("out = q * m", "'m' is a bool input: it can only be the condition of where(m, a, b)"),
    ("out = one_hot(v, Z)", "one_hot(y, K): K must be a dim's name (of an input's shape) or a "
     "positive integer"),
    ("out = one_hot(v, Q)", "K must be a dim's name"),
    ("out = one_hot(Z, K)", "one_hot(): the labels 'Z' are a float value"),
    ("out = one_hot(y, 0)", "K must be a dim's name (of an input's shape) or a positive integer"),
    ("out = q / P", "unknown name 'P' (not an input, an earlier step or a dim)"),
    ("out = f(Z, y, m, v)", "the call f(Z, y, m, v) is recursive (f -> f)"),
    ("out = g(Z)", "in h(X), h's step 'Y = g(X) * 2': the call g(X) is recursive (g -> h -> g)"),
    ("out = layr(Z, Z)", "unknown function 'layr'"),
    ("out = layr(Z, Z)", "did you mean 'lay'?"),
    ("out = lay(Z)", "lay(Z): lay takes 2 arguments (X, W), got 1"),
    ("out = lay(Z, W=Z)", "pass the arguments by position"),
    ("out = lay(Z, Z)", "lay(Z, Z): argument 2 ('Z') has shape [N, K], but lay's input W is "
     "[A, B], and A is K from an earlier argument"),
    ("out = lay(y, Z)", "'y' is an int64 input"),
    ("out = lay(Z, q.T) + 1", None),  # fine: [N, K] @ [K, N]
]


@pytest.mark.parametrize("step, message", STEP_ERRORS, ids=[s for s, _ in STEP_ERRORS])
def test_misuse_is_a_located_spec_error(step, message):
    text = ERRORS.format(step=step)
    if message is None:  # (without g and h, which are recursive whoever calls them)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", codegen.SpecWarning)
            codegen.generate_source(text.split("  g:")[0], path="e.yaml")
        return
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="e.yaml")
    err = info.value
    assert message in err.message, err.message
    assert err.loc is not None and err.loc.line == 10 and str(err).startswith("e.yaml:10:")


def test_dim_in_no_input_is_an_error_and_a_value_of_a_dims_name_wins():
    text = """
    dims: {N: 3, K: 2, Q: 4}
    functions:
      f:
        inputs: {X: [N, K]}
        steps: ["y = sum(X) * Q"]
        outputs: [y]
    """
    with pytest.raises(codegen.SpecError, match=r"s.yaml:6:\d+: error: f: step 'y = sum\(X\) \* Q'"
                                                r": the dim 'Q' is in no input's shape of f"):
        codegen.generate_source(textwrap.dedent(text), path="s.yaml")
    shadow = """
    functions:
      f:
        inputs: {X: [N, E], E: [E]}
        steps: ["y = sum(X * E)"]
        outputs: [y]
    """
    mod = codegen.load_module(textwrap.dedent(shadow), path="s.yaml")
    X, E = np.ones((2, 3)), np.arange(3.0)
    assert mod.f(X, E) == pytest.approx(6.0)  # E the input, not the size 3


LOADER_ERRORS = [
    ("y: {shape: [N], dtype: int64}", "wrt: [X, y]", 6,
     "wrt names 'y', an int64 input of f: integer and boolean inputs are never differentiated; "
     "leave it out of wrt (the default wrt is every float input)"),
    ("y: {shape: [N], dtype: float32}", "", 4,
     "dtype of input 'y' of function 'f' is float32, but the spec's dtype is float64"),
    ("y: {shape: [N], dtype: int32}", "", 4,
     "must be one of float64, float, int64, bool, got string 'int32'"),
    ("y: {shap: [N], dtype: int64}", "", 4, "unknown key 'shap' in input 'y' of function 'f' "
     "(allowed: shape, dtype); did you mean 'shape'?"),
    ("y: {dtype: int64}", "", 4, "input 'y' of function 'f' is missing required key 'shape'"),
]


@pytest.mark.parametrize("decl, wrt, line, message", LOADER_ERRORS,
                         ids=[d for d, _, _, _ in LOADER_ERRORS])
def test_declaration_errors(decl, wrt, line, message):
    text = f"""functions:
  f:
    inputs:
      {decl}
      X: [N]
    {wrt}
    steps: ['loss = sum(X)']
    outputs: [loss]
"""
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="d.yaml")
    assert message in info.value.message, info.value.message
    assert info.value.loc.line == line


def test_a_function_of_integer_inputs_only_is_an_error():
    text = """functions:
  f:
    inputs: {y: {shape: [N], dtype: int64}}
    steps: ['z = sum(one_hot(y, 3))']
    outputs: [z]
"""
    with pytest.raises(codegen.SpecError, match=r"has no float input to differentiate"):
        codegen.generate_source(text, path="i.yaml")


def test_an_integer_input_is_not_an_output():
    text = """functions:
  f:
    inputs: {X: [N], y: {shape: [N], dtype: int64}}
    steps: ['z = sum(X)']
    outputs: [z, y]
"""
    with pytest.raises(codegen.SpecError, match=r"i.yaml:5:\d+: error: output 'y' of f is an "
                                                r"int64 input"):
        codegen.generate_source(text, path="i.yaml")


def test_inlined_steps_are_commented_with_the_call():
    text = """functions:
  f:
    inputs: {X: [N, D], W1: [D, H], W2: [H, K]}
    steps: ['H1 = lay(X, W1)', 'loss = sum(lay(H1, W2))']
    outputs: [loss]
  lay:
    inputs: {X: [M, A], W: [A, B]}
    steps: ['Z = X @ W', 'Y = tanh(Z) / sqrt(A)']
    outputs: [Y]
"""
    with warnings.catch_warnings():
        warnings.simplefilter("error", codegen.SpecWarning)  # lay is called: no warning
        source = codegen.generate_source(text, path="c.yaml")
    assert "# lay(X, W1): lay: Z = X @ W\n" in source
    assert "# lay(H1, W2): lay: Y = tanh(Z) / sqrt(A)\n" in source
    assert "H1_Z = X @ W1" in source  # lay's Z, named after the caller's step


def test_a_call_passes_integer_and_boolean_inputs_of_the_callees_dtype():
    text = """functions:
  f:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}, m: {shape: [N], dtype: bool}}
    steps: ['loss = ce(Z, y, THIRD)']
    outputs: [loss]
  ce:
    inputs: {P: [M, C], t: {shape: [M, 1], dtype: int64}, w: {shape: [M], dtype: bool}}
    steps: ['loss = -sum(take_along_axis(log_softmax(P, axis=1), t, axis=1))']
    outputs: [loss]
"""
    mod = codegen.load_module(text.replace("THIRD", "m"), path="p.yaml")
    Z = np.zeros((2, 4))
    assert mod.f(Z, [[0], [3]], [True, False]) == pytest.approx(2 * np.log(4))
    with pytest.raises(ValueError, match=r"f: y has the label 4, outside \[0, 4\)"):
        mod.f(Z, [[0], [4]], [True, False])
    with pytest.raises(codegen.SpecError, match=r"p.yaml:4:\d+: error: .*ce\(Z, y, y\): argument 3 "
                                                r"must be a bool input \(for ce's input w\)"):
        codegen.generate_source(text.replace("THIRD", "y"), path="p.yaml")


def test_calls_that_double_at_every_level_are_an_error_not_a_hang(monkeypatch):
    from codegen import parse

    monkeypatch.setattr(parse, "MAX_INLINED_OPS", 300)
    lines = ["functions:", "  f0:", "    inputs: {X: [N]}", "    steps: ['y = sum(X * X)']",
             "    outputs: [y]"]
    for k in range(1, 40):  # f_k calls f_(k-1) twice: 2 ** 39 inlined steps without a limit
        lines += [f"  f{k}:", "    inputs: {X: [N]}",
                  f"    steps: ['y = f{k - 1}(X) + f{k - 1}(X * 2)']", "    outputs: [y]"]
    with pytest.raises(codegen.SpecError, match=r"calls inline more than 300 ops"):
        codegen.generate_source("\n".join(lines) + "\n", path="x.yaml")
