"""Run time promises of the generated modules, in both backends.

- Gradients are fresh arrays: never an input, an output, ``g``, a saved value or another gradient
  (not even a view of one); outputs never alias inputs.
- Empty inputs (a dim of size 0) give what NumPy gives (``mean`` of nothing is NaN).
- Inputs: NumPy scalars and integer or boolean arrays are converted, ndarray subclasses are taken
  as plain arrays, masked arrays and other float precisions are refused.
- Non-finite inputs give the same values and gradients in both backends, NaN positions included.
"""

from __future__ import annotations

import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import spec_numba_module

import codegen
from codegen.compiler import compile_spec
from codegen.finite_differences import example_dims, random_inputs
from codegen.loader import load_spec, load_spec_file

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
BACKENDS = ("numpy", "numba")

_modules: dict = {}


def module(path, backend: str):
    """A spec's module, generated and imported once per test session."""
    key = (str(path), backend)
    if key not in _modules:
        # (the Numba module as test_numba imports it, under gradcheck's name: compiled once)
        _modules[key] = (spec_numba_module(path) if backend == "numba"
                         else codegen.load_module(path, backend=backend))
    return _modules[key]


def inline(text: str, backend: str):
    key = (text, backend)
    if key not in _modules:
        _modules[key] = codegen.load_module(textwrap.dedent(text), backend=backend)
    return _modules[key]


def _arrays(value) -> list[np.ndarray]:
    """The arrays inside a value (a tuple, a NamedTuple, an array, a scalar)."""
    if isinstance(value, tuple):
        return [a for v in value for a in _arrays(v)]
    return [value] if isinstance(value, np.ndarray) else []


def assert_fresh(grads, shapes: dict, dtype, others: dict[str, object]) -> None:
    """Each gradient is a new writeable array of its input's shape and dtype that shares memory
    with nothing in ``others`` and with no other gradient."""
    for w, g in zip(grads._fields, grads):
        assert np.shape(g) == shapes[w], w
        assert np.asarray(g).dtype == dtype, w
        if np.ndim(g) == 0 and isinstance(g, np.generic):
            continue  # a NumPy scalar: immutable, nothing to share
        assert isinstance(g, np.ndarray) and type(g) is np.ndarray, (w, type(g))
        assert g.flags.writeable and (g.flags.c_contiguous or g.flags.owndata), (w, g.flags)
        for what, value in others.items():
            for a in _arrays(value):
                assert not np.shares_memory(g, a), f"d{w} shares memory with {what}"
        for v, h in zip(grads._fields, grads):
            if v != w and isinstance(h, np.ndarray):
                assert not np.shares_memory(g, h), f"d{w} shares memory with d{v}"


def check_function(mod, name: str, fn, args: list, dtype) -> None:
    """The promise for one function: value_and_grad, and forward + backward with g an array and
    g a scalar; outputs never share memory with inputs."""
    shapes = {w: np.shape(a) for w, a in zip(fn.program.inputs, args)}
    inputs = tuple(a.copy() for a in args)
    outs, grads = getattr(mod, name + "_value_and_grad")(*args)
    arrays = _arrays(outs if isinstance(outs, tuple) else (outs,))
    for k, o in enumerate(arrays):
        assert not any(np.shares_memory(o, a) for a in args), f"{name}: an output aliases an input"
        assert not any(np.shares_memory(o, p) for p in arrays[:k]), f"{name}: outputs alias"
    assert_fresh(grads, shapes, dtype, {"an input": tuple(args), "an output": outs})
    outs, saved = getattr(mod, name + "_forward")(*args)
    first = outs[0] if isinstance(outs, tuple) else outs
    for g in (np.random.default_rng(3).standard_normal(np.shape(first)).astype(dtype), 1.0):
        grads = getattr(mod, name + "_backward")(saved, g)
        assert_fresh(grads, shapes, dtype, {"an input": tuple(args), "an output": outs,
                                            "g": g, "a saved value": tuple(saved)})
    for a, b in zip(args, inputs):  # and nothing wrote into the inputs
        np.testing.assert_array_equal(a, b)


def _spec_functions():
    for path in SPECS:
        spec = load_spec_file(str(path))
        for backend in BACKENDS:
            yield pytest.param(path, backend, id=f"{spec.module}-{backend}")


@pytest.mark.parametrize("path, backend", list(_spec_functions()))
def test_gradients_are_fresh_arrays_over_every_spec(path, backend):
    spec = load_spec_file(str(path))
    mod = module(path, backend)
    for cf in compile_spec(spec).functions:
        fn = cf.function
        args = random_inputs(fn, example_dims(spec, fn), np.random.default_rng(1))
        check_function(mod, fn.name, fn, args, np.dtype(spec.dtype))


ALIASES = """
    module: aliases
    dims: {N: 3, D: 2}
    functions:
      first:
        inputs: {X: [N, D], W: [D]}
        steps: [Y = X * W]
        outputs: [X, Y]
      ident:
        inputs: {X: [N, D]}
        steps: [Y = X]
        outputs: [Y]
      views:
        inputs: {X: [N, D]}
        steps: [Y = X.T, Z = +X]
        outputs: [Y, Z]
      passthru:
        inputs: {X: [N, D], b: [D]}
        steps: [Y = X + b]
        outputs: [Y]
      twice:
        inputs: {x: [D]}
        steps: [y = x * 2]
        outputs: [y, x]
      pair:
        inputs: {X: [N, D], W: [D, D]}
        steps: [A = X @ W, Y = A, Z = Y.T, V = A.T]
        outputs: [Z, Y, A, V]
      chain:
        inputs: {X: [N, D]}
        steps: [Y = X, Z = Y * 2]
        outputs: [Z, Y]
    """


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_as_outputs_and_pass_through_gradients_are_fresh(backend):
    """An input that is the first output (dX is g), Y = X, Y = X.T, Y = X + b (dX is g, a
    read-only broadcast of a scalar g), outputs that are views of each other: before, the
    caller's g or its input came back, or two outputs shared memory."""
    mod = inline(ALIASES, backend)
    spec = load_spec(textwrap.dedent(ALIASES), "<string>")
    rng = np.random.default_rng(0)
    for cf in compile_spec(spec).functions:
        fn = cf.function
        args = random_inputs(fn, example_dims(spec, fn), rng)
        check_function(mod, fn.name, fn, args, np.dtype(np.float64))
    X, W = rng.standard_normal((3, 2)), rng.standard_normal(2)
    (X_out, _), saved = mod.first_forward(X, W)
    np.testing.assert_array_equal(X_out, X)
    G = rng.standard_normal((3, 2))
    grads = mod.first_backward(saved, G)
    assert grads.X is not G and not np.shares_memory(grads.X, G)
    np.testing.assert_array_equal(grads.X, G)
    y = mod.ident(X)
    assert y is not X and not np.shares_memory(y, X)
    np.testing.assert_array_equal(y, X)
    _, saved = mod.passthru_forward(X, W)
    grads = mod.passthru_backward(saved, 1.0)
    assert grads.X.strides == (16, 8) and grads.X.flags.writeable
    np.testing.assert_array_equal(grads.X, np.ones((3, 2)))


# --- empty inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_mean_is_nan_as_in_numpy(backend):
    """nn.linear_regression with N = 0: NaN loss (NumPy's mean of nothing), zero gradients; the
    NumPy module raised ZeroDivisionError from 1 / N."""
    mod = module(ROOT / "specs" / "nn.yaml", backend)
    X, y, w, b = np.zeros((0, 8)), np.zeros(0), np.ones(8), 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, grads = mod.linear_regression_value_and_grad(X, y, w, b)
        loss2, saved = mod.linear_regression_forward(X, y, w, b)
        grads2 = mod.linear_regression_backward(saved, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.mean((X @ w + b - y) ** 2)
    assert np.isnan(loss) and np.isnan(loss2) and np.isnan(expected)
    for g in (grads, grads2):
        np.testing.assert_array_equal(g.w, np.zeros(8))
        assert g.b == 0.0
    if backend == "numpy":  # NumPy's own warning (compiled code never warns)
        assert any("Mean of empty slice" in str(c.message) for c in caught)


# --- inputs: NumPy scalars, integer arrays, subclasses -----------------------------------------

INPUTS = """
    module: inputs
    dims: {N: 3, D: 2}
    functions:
      f:
        inputs: {X: [N, D], s: [], w: [D]}
        steps: ["y = sum((X @ w) * s)", "Z = X * s"]
        outputs: [y, Z]
    """


def _reference(X, s, w):
    X, w = np.asarray(X, dtype=float), np.asarray(w, dtype=float)
    return float(np.sum(X @ w) * s), X * s


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_scalars_and_integer_or_boolean_arrays_are_converted(backend):
    mod = inline(INPUTS, backend)
    X = np.arange(6.0).reshape(3, 2)
    w = np.array([1.0, -2.0])
    mod.f(X, 1.0, w)  # a first call: the Numba wrappers' fast path has seen these types
    for s in (np.float32(2.5), np.int64(3), np.bool_(True), np.float16(0.5), 2, True):
        (y, Z), grads = mod.f_value_and_grad(X, s, w)
        y0, Z0 = _reference(X, float(s), w)
        assert y == pytest.approx(y0) and np.allclose(Z, Z0)
        assert np.asarray(grads.s).dtype == np.float64 and np.shape(grads.s) == ()
    for Xi, wi in ((X.astype(np.int64), w), (X > 2, w), (X, np.array([1, -2], dtype=np.int32)),
                   (X.astype(np.uint8), np.array([True, False]))):
        (y, Z), grads = mod.f_value_and_grad(Xi, 2.0, wi)
        y0, Z0 = _reference(Xi, 2.0, wi)
        assert y == pytest.approx(y0) and np.allclose(Z, Z0) and Z.dtype == np.float64
        assert grads.w.dtype == np.float64
    with pytest.raises(ValueError, match=r"input X has dtype float32; expected float64"):
        mod.f(X.astype(np.float32), 2.0, w)
    with pytest.raises(ValueError, match=r"input w has dtype complex128"):
        mod.f(X, 2.0, w.astype(complex))
    with pytest.raises(ValueError, match=r"input s must be a float64 array of shape \[\]"):
        mod.f(X, None, w)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix's
@pytest.mark.parametrize("backend", BACKENDS)
def test_ndarray_subclasses_are_plain_arrays_and_masked_arrays_are_refused(backend):
    """np.matrix made ``X * s`` a matrix product, and masked arrays silently lost their mask."""
    mod = inline(INPUTS, backend)
    X = np.arange(6.0).reshape(3, 2)
    w = np.array([1.0, -2.0])
    mod.f(X, 2.0, w)
    (y, Z), grads = mod.f_value_and_grad(np.matrix(X), np.float64(2.0), w)
    y0, Z0 = _reference(X, 2.0, w)
    assert y == pytest.approx(y0) and type(Z) is np.ndarray and np.allclose(Z, Z0)
    assert type(grads.w) is np.ndarray
    with pytest.raises(ValueError, match=r"input w has shape \(1, 2\); expected \[D\]"):
        mod.f(X, 2.0, np.matrix(w))
    masked = np.ma.masked_array(X, mask=X > 3)
    for call in (mod.f, mod.f_forward, mod.f_value_and_grad):
        with pytest.raises(ValueError, match=r"input X is a masked array"):
            call(masked, 2.0, w)


# --- non-finite and empty inputs: both backends give the same numbers --------------------------


def _cases():
    from test_ops import CASES

    seen, picked = set(), []
    for case in CASES:
        op = case[0].split("-")[0]
        # every op; every axis of the normalisations; every exponent; means over several axes
        several = op == "mean" and ("all" in case[0] or "broadcast" in case[0])
        key = (case[0] if op in ("logsumexp", "softmax", "log_softmax", "pow", "max", "min")
               or several else op)
        if key not in seen and "of-product" not in case[0]:
            seen.add(key)
            picked.append(case)
    return picked


def _same(a, b) -> bool:
    """Equal shapes and dtypes, NaN and inf at the same places, finite values close."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    inf = np.isinf(a)
    if not np.array_equal(inf, np.isinf(b)) or not np.array_equal(a[inf], b[inf]):
        return False
    finite = np.isfinite(a)
    return bool(np.allclose(a[finite], b[finite], rtol=1e-9, atol=1e-12))


def _case_inputs(inputs, positive, rng, dims, which=None, special=None) -> list[np.ndarray]:
    """Random inputs of a case at ``dims``; ``special`` as the first element of input ``which``."""
    args = []
    for k, shape in enumerate(inputs.values()):
        concrete = tuple(dims[d] if isinstance(d, str) else d for d in shape)
        x = rng.uniform(0.5, 1.5, concrete) if positive else rng.standard_normal(concrete)
        if list(shape) == ["N", "N"] and concrete[0]:
            x = np.eye(concrete[0]) * 3 + 0.5 * x
        x = np.array(x, dtype=np.float64)
        if k == which and x.size:
            x.flat[0] = special
        args.append(x)
    return args


def _run(mod, name, args):
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(mod, name + "_value_and_grad")(*args)
    except Exception as e:  # noqa: BLE001 - the backends must raise the same type
        return e


def test_backends_agree_on_non_finite_and_empty_inputs_for_every_op():
    """Each op with inf, -inf or NaN in each input in turn, and with each dim of size 0: the
    Numba module gives the NumPy module's values and gradients, NaN positions included (or
    raises the same exception). Before: softmax([inf, 1]) was [nan, 0] in NumPy, all NaN in
    Numba; relu's gradient at NaN, softplus's at inf and (-inf) ** 0.5 differed; NumPy's inv,
    det and logdet computed what Numba refused; logsumexp over an empty axis raised in NumPy;
    Numba's mean over two axes divided by M and multiplied by N; Numba could not compile
    logsumexp(a, keepdims=True); Numba's max and min (over every axis or one) skipped NaN and
    gave -inf or inf over an empty axis, where np.max raises."""
    from test_ops import DIMS, case_module, case_name

    cases = _cases()
    # each case's function in test_ops' shared module (its kernels compile once per session)
    np_mod, nb_mod = (case_module(b) for b in BACKENDS)
    failures = []
    for cid, expr, inputs, positive in cases:
        name = case_name(cid)
        rng = np.random.default_rng(zlib.crc32(cid.encode()))
        trials = [("finite inputs", _case_inputs(inputs, positive, rng, DIMS))]
        trials += [(f"{special} in input {which}",
                    _case_inputs(inputs, positive, rng, DIMS, which, special))
                   for special in (np.inf, -np.inf, np.nan) for which in range(len(inputs))]
        trials += [(f"{d} = 0", _case_inputs(inputs, positive, rng, {**DIMS, d: 0})) for d in DIMS
                   if any(d in shape for shape in inputs.values())]
        for label, args in trials:
            a, b = _run(np_mod, name, args), _run(nb_mod, name, args)
            if isinstance(a, Exception) or isinstance(b, Exception):
                if type(a) is not type(b):
                    failures.append(f"{cid} ({expr}), {label}: {a!r} vs {b!r}"[:300])
                continue
            same = [_same(a[0], b[0])] + [_same(x, y) for x, y in zip(a[1], b[1])]
            if not all(same):
                failures.append(f"{cid} ({expr}), {label}: value, grads equal: {same}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_normalisations_follow_the_max_shifted_formula(backend):
    """The rule the README states: shift by the maximum, or by 0 where it is not finite."""
    mod = inline("""
        module: nf
        functions:
          sm:
            inputs: {z: [3]}
            steps: [y = softmax(z)]
            outputs: [y]
          lse:
            inputs: {z: [3]}
            steps: [y = logsumexp(z)]
            outputs: [y]
        """, backend)
    with np.errstate(all="ignore"):
        z = np.array([np.inf, 1.0, -0.2])
        e = np.exp(z)  # the shift is 0: the maximum is not finite
        np.testing.assert_array_equal(mod.sm(z), e / e.sum())  # [nan, 0, 0]
        assert mod.lse(z) == np.inf
        assert mod.lse(np.full(3, -np.inf)) == -np.inf
        assert np.isnan(mod.lse(np.array([np.nan, 1.0, 2.0])))
