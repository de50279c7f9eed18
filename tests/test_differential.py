"""Differential fuzzing: random valid specs over the whole vocabulary, both backends, one oracle.

A Hypothesis strategy writes specs of many functions each (several steps, expressions nested a
few levels) over every op of the README's vocabulary: arithmetic with scalar, row ``[n]`` /
``[1, n]``, column ``[m, 1]`` and matrix broadcasting, ``@`` in every pairing, ``.T``, every
elementwise function, ``sum``/``mean``/``logsumexp`` with every ``axis``/``keepdims``
combination, ``softmax``/``log_softmax`` along every axis, ``trace``/``inv``/``det``/``logdet``
and ``outer``, constants, ride-along outputs (transposes, inputs, earlier steps), a ``wrt``
subset, float64 and float32.  The symbolic dims have different sizes (N = 3, K = 4), so that an
``N * K`` where ``N / K`` belongs, or a swapped axis, changes the numbers.  Domains are valid by
construction: ``log``, ``sqrt``, ``log1p``, divisors and fractional powers get positive
arguments (``softplus(E) + 0.5``, ``exp(tanh(E))``, ...), ``inv``/``det``/``logdet`` get
``S + 0.05 * tanh(E)`` with ``S`` an input drawn near the identity.

For every function:

- the outputs (first and ride-along) of ``f``, ``f_value_and_grad`` and ``f_forward`` of the
  NumPy module and of the Numba module are compared with the reference interpreter
  (``codegen.interpret``), in float64, or for a float32 spec with the float64 interpretation of
  the same float32 inputs (looser tolerance), and must have the spec's dtype;
- the gradients of ``f_value_and_grad`` (g = 1) and of ``f_forward`` + ``f_backward`` with a
  random cotangent ``g`` are compared with central differences of the interpreted function
  (float64 specs), between the two backends, and for float32 specs with the float64 module's.

One Numba module holds all the functions of a spec, so its import and compile are shared.
Runs are reproducible (``derandomize=True``, no example database, no shrinking: a failure
prints the failing function as a one-function spec, with the seed of its inputs).  Effort is
chosen with ``HYPOTHESIS_PROFILE``:

- ``ci`` (default): NumPy: 16 specs of 24 functions (384 functions); Numba: 1 spec of 12
  functions against both backends (most of the time is its cold compile);
- ``dev``: NumPy: 96 functions, Numba: 6;
- ``deep``: NumPy: 1000 specs of 24 functions (24,000 functions), Numba: 100 specs of 24
  functions (2,400), a few hours on two cores::

    HYPOTHESIS_PROFILE=deep python -m pytest tests/test_differential.py

Bugs found are pinned as named regression tests at the end of this file.
"""

from __future__ import annotations

import hashlib
import os
import random
import textwrap
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from codegen.api import import_source
from codegen.compiler import compile_spec, render
from codegen.interpret import interpret
from codegen.loader import load_spec

# --------------------------------------------------------------------------- profiles

_COMMON = {"derandomize": True, "database": None, "deadline": None, "print_blob": False,
           "phases": [Phase.explicit, Phase.generate], "suppress_health_check": list(HealthCheck)}
# per profile: (NumPy-only specs, functions each), (specs for both backends, functions each);
# a cold Numba compile costs a few seconds per function on a loaded two-core machine
BUDGETS = {"dev": ((4, 24), (1, 6)), "ci": ((16, 24), (1, 12)), "deep": ((1000, 24), (100, 24))}
PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
(NUMPY_SPECS, NUMPY_FUNCTIONS), (NUMBA_SPECS, NUMBA_FUNCTIONS) = \
    BUDGETS.get(PROFILE_NAME, BUDGETS["ci"])
FUNCTIONS = 24

SIZES = {"N": 3, "K": 4}
SYMBOLIC = ("N", "K")
# every shape a value may have: scalar, vectors, rows, columns, matrices (square and not)
SHAPES: list[tuple] = [
    (), ("N",), ("K",), (1, "N"), (1, "K"), ("N", 1), ("K", 1), ("N", "K"), ("K", "N"),
    ("N", "N"), ("K", "K"), (1, 1),
]
ELEMENTWISE = ["exp", "tanh", "sigmoid", "relu", "softplus", "sin", "cos", "abs", "square"]

# Value tolerances: max|actual - reference| / max(1, max|reference|)
TOL64 = 1e-9
TOL32 = 2e-3
FD_TOL = 2e-5  # analytic gradients against central differences (float64)
STEP = 1e-6


def _broadcast(a: tuple, b: tuple) -> tuple | None:
    n = max(len(a), len(b))
    pa, pb = (None,) * (n - len(a)) + a, (None,) * (n - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x is None or x == 1:
            out.append(y if y is not None else x)
        elif y is None or y == 1 or x == y:
            out.append(x)
        else:
            return None
    return tuple(out)


def _reduce(s: tuple, axis: int | None, keepdims: bool) -> tuple:
    axes = range(len(s)) if axis is None else (axis % len(s),)
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(s))
    return tuple(d for i, d in enumerate(s) if i not in axes)


# (source shape, axis text, keepdims text) of every reduction call, by result shape
REDUCTIONS: dict[tuple, list[tuple[tuple, str]]] = {}
for _s in SHAPES:
    _axes: list[int | None] = [None] + ([0, -1] if len(_s) == 1 else [0, 1, -1, -2] if _s else [])
    for _axis in _axes:
        for _kd in ("", ", keepdims=False", ", keepdims=True"):
            if _kd and not _s:
                continue
            _r = _reduce(_s, _axis, _kd.endswith("True")) if _s else ()
            _kw = ("" if _axis is None else f", axis={_axis}") + _kd
            REDUCTIONS.setdefault(_r, []).append((_s, _kw))
SUBSHAPES = {t: [s for s in SHAPES if _broadcast(s, t) == t] for t in SHAPES}


# --------------------------------------------------------------------------- the generator


@dataclass
class Fn:
    """One generated function: its inputs (name -> shape), steps and outputs."""

    name: str
    inputs: dict[str, tuple] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    shapes: dict[str, tuple] = field(default_factory=dict)  # every value's shape
    outputs: list[str] = field(default_factory=list)
    wrt: list[str] | None = None

    def yaml(self) -> str:
        def shape(s: tuple) -> str:
            return "[" + ", ".join(str(d) for d in s) + "]"
        lines = [f"  {self.name}:", "    inputs:"]
        lines += [f"      {k}: {shape(v)}" for k, v in self.inputs.items()]
        if self.wrt is not None:
            lines.append(f"    wrt: [{', '.join(self.wrt)}]")
        lines.append("    steps:")
        lines += [f"      - {s}" for s in self.steps]
        lines.append(f"    outputs: [{', '.join(self.outputs)}]")
        return "\n".join(lines) + "\n"


def spec_yaml(functions: list[Fn], dtype: str) -> str:
    head = f"module: diff\ndtype: {dtype}\ndims: {{N: {SIZES['N']}, K: {SIZES['K']}}}\nfunctions:\n"
    return head + "".join(f.yaml() for f in functions)


def _paren(e: str) -> str:
    return e if e.replace("_", "").isalnum() else f"({e})"


class Gen:
    """Draws a random well-shaped expression of a given shape (``expr``), with valid domains."""

    def __init__(self, rng: random.Random, fn: Fn) -> None:
        self.rng, self.fn = rng, fn

    def choice(self, options: list):  # type: ignore[no-untyped-def]
        return self.rng.choice(options)

    def flip(self) -> bool:
        return self.rng.random() < 0.5

    def leaf(self, shape: tuple) -> str:
        have = [n for n, s in self.fn.shapes.items() if s == shape and not n.startswith("S")]
        if have and self.rng.random() < 2 / 3:
            return self.choice(have)
        name = f"x{len(self.fn.inputs)}"
        self.fn.inputs[name] = shape
        self.fn.shapes[name] = shape
        return name

    def square(self, d: str) -> str:
        """A conditioned input (drawn near the identity) of shape [d, d]."""
        name = f"S{d}"
        if name not in self.fn.inputs:
            self.fn.inputs[name] = (d, d)
            self.fn.shapes[name] = (d, d)
        return name

    def number(self) -> str:
        return self.choice(["2", "0.5", "3", "1.5", "-2", "0.25", "10"])

    def positive(self, shape: tuple, depth: int) -> str:
        e = self.expr(shape, depth)
        return self.choice([f"softplus({e}) + 0.5", f"exp(tanh({e}))", f"sigmoid({e}) + 0.25",
                            f"{_paren(e)} ** 2 + 1", f"square({e}) + 0.5", f"abs({e}) + 1"])

    def conditioned(self, d: str, depth: int) -> str:
        s = self.square(d)
        e = self.expr(self.choice(SUBSHAPES[(d, d)]), depth)
        base = self.choice([s, s, f"{s}.T", f"{s} @ {s}"])
        return f"{base} + 0.05 * tanh({e})"

    def expr(self, shape: tuple, depth: int) -> str:
        if depth <= 0:
            return self.leaf(shape)
        d = depth - 1
        kinds = ["leaf", "binary", "binary", "const", "unary", "unary", "positive-fn", "pow",
                 "reduce", "matmul", "neg"]
        if len(shape) == 2:
            kinds += ["transpose"]
            if shape[0] in SYMBOLIC and shape[1] in SYMBOLIC:
                kinds += ["outer"]
            if shape[0] == shape[1] and shape[0] in SYMBOLIC:
                kinds += ["inv"]
        if shape:
            kinds += ["softmax"]
        else:
            kinds += ["matrix-scalar"]
        kind = self.choice(kinds)
        if kind == "leaf" or kind == "reduce" and shape not in REDUCTIONS:
            return self.leaf(shape)
        if kind == "binary":
            op = self.choice(["+", "-", "*", "/"])
            while True:
                a, b = self.choice(SUBSHAPES[shape]), self.choice(SUBSHAPES[shape])
                if _broadcast(a, b) == shape:
                    break
                if self.flip():
                    a = shape
                    break
            left = self.expr(a, d)
            right = self.positive(b, d) if op == "/" else self.expr(b, d)
            return f"{_paren(left)} {op} {_paren(right)}"
        if kind == "const":
            op, c = self.choice(["+", "-", "*", "/"]), self.number()
            if self.flip():
                return f"{_paren(self.expr(shape, d))} {op} {c}"
            right = self.positive(shape, d) if op == "/" else self.expr(shape, d)
            return f"{c} {op} {_paren(right)}"
        if kind == "unary":
            return f"{self.choice(ELEMENTWISE)}({self.expr(shape, d)})"
        if kind == "neg":
            return f"-{_paren(self.expr(shape, d))}"
        if kind == "positive-fn":
            return f"{self.choice(['log', 'sqrt', 'log1p'])}({self.positive(shape, d)})"
        if kind == "pow":
            c = self.choice(["2", "3", "1", "0", "-1", "-2", "0.5", "1.5", "-0.5"])
            base = self.positive(shape, d) if c.startswith("-") or "." in c else self.expr(shape, d)
            return f"{_paren(base)} ** {c}"
        if kind == "reduce" and shape in REDUCTIONS:
            source, kw = self.choice(REDUCTIONS[shape])
            fn = self.choice(["sum", "mean", "logsumexp"])
            return f"{fn}({self.expr(source, d)}{kw})"
        if kind == "softmax" and shape:
            fn = self.choice(["softmax", "log_softmax"])
            axes = [""] + [f", axis={a}" for a in ([0, -1] if len(shape) == 1 else [0, 1, -1, -2])]
            return f"{fn}({self.expr(shape, d)}{self.choice(axes)})"
        if kind == "matmul":
            inner = self.choice(list(SYMBOLIC))
            if len(shape) == 0:
                a, b = (inner,), (inner,)
            elif len(shape) == 1:
                a, b = self.choice([((shape[0], inner), (inner,)), ((inner,), (inner, shape[0]))])
            else:
                a, b = (shape[0], inner), (inner, shape[1])
            return f"{_paren(self.expr(a, d))} @ {_paren(self.expr(b, d))}"
        if kind == "transpose":
            return f"{_paren(self.expr(shape[::-1], d))}.T"
        if kind == "outer":
            return f"outer({self.expr((shape[0],), d)}, {self.expr((shape[1],), d)})"
        if kind == "inv":
            return f"inv({self.conditioned(shape[0], d)})"
        # matrix-scalar: trace, det, logdet
        n = self.choice(list(SYMBOLIC))
        fn = self.choice(["trace", "det", "logdet"])
        arg = self.expr((n, n), d) if fn == "trace" else self.conditioned(n, d)
        return f"{fn}({arg})"


def functions(rng: random.Random, name: str) -> Fn:
    """One function: 1-4 steps, the last the first output; ride-along outputs sometimes."""
    fn = Fn(name)
    gen = Gen(rng, fn)
    for k in range(rng.randint(1, 4)):
        shape = rng.choice(SHAPES + [(), ()])  # scalar losses a little more often
        fn.steps.append(f"s{k} = {gen.expr(shape, rng.randint(1, 3))}")
        fn.shapes[f"s{k}"] = shape
    last = f"s{len(fn.steps) - 1}"
    fn.outputs = [last]
    extra = [n for n in fn.shapes if n != last]
    for n in rng.sample(extra, min(len(extra), rng.randint(0, 2))):
        if len(fn.shapes[n]) == 2 and rng.random() < 0.5:  # a transposed ride-along output
            fn.steps.append(f"t_{n} = {n}.T")
            n = f"t_{n}"
        fn.outputs.append(n)
    if rng.random() < 0.25:
        fn.wrt = rng.sample(sorted(fn.inputs), rng.randint(1, len(fn.inputs)))
    return fn


@st.composite
def specs(draw: st.DrawFn, count: int = FUNCTIONS) -> tuple[str, list[Fn]]:
    """A spec of ``count`` random functions.  Hypothesis draws only the seed: the generator is a
    seeded ``random.Random``, so that every example (the first one too) is a typical spec."""
    rng = random.Random(draw(st.integers(0, 2**63)))
    dtype = rng.choice(["float64", "float64", "float64", "float32"])
    fns = [functions(rng, f"f{k}") for k in range(count)]
    return spec_yaml(fns, dtype), fns


# --------------------------------------------------------------------------- the comparison


def random_inputs(compiled_fn, dtype, seed: int) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    program = compiled_fn.function.program
    out = []
    for name in program.inputs:
        shape = tuple(SIZES.get(d, d) for d in program.values[name].shape)  # type: ignore[arg-type]
        if name.startswith("S"):
            x = np.eye(shape[0]) + 0.2 * rng.standard_normal(shape) / np.sqrt(shape[0])
        else:
            x = rng.standard_normal(shape) * 0.7
        out.append(np.asarray(x, dtype=dtype))
    return out


def _as_tuple(result, n: int) -> tuple:  # type: ignore[no-untyped-def]
    return tuple(result) if n > 1 else (result,)


def _err(actual, expected) -> float:  # type: ignore[no-untyped-def]
    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if a.shape != e.shape:
        return float("inf")
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - e), initial=0.0) / max(1.0, np.max(np.abs(e), initial=0.0)))


def _jacobian(fn, args: list[np.ndarray], i: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences of the interpreted first output w.r.t. input i: shape x.shape + y.shape."""
    x = args[i].astype(np.float64)
    cols = []
    base = [a.astype(np.float64) for a in args]
    for idx in np.ndindex(*x.shape):
        plus, minus = list(base), list(base)
        plus[i], minus[i] = x.copy(), x.copy()
        plus[i][idx] += STEP
        minus[i][idx] -= STEP
        cols.append((interpret(fn, plus)[0] - interpret(fn, minus)[0]) / (2 * STEP))
    y_shape = cols[0].shape if cols else ()
    return np.array(cols).reshape(x.shape + y_shape)


class Mismatch(AssertionError):
    pass


def check_function(cf, fn: Fn, dtype: str, modules: dict, reference64=None,  # type: ignore[no-untyped-def]
                   strict: bool = False) -> list[str]:
    """Every comparison of one function; returns the problems found (empty: all agree)."""
    name = cf.function.name
    n = len(cf.function.program.outputs)
    seed = zlib.crc32(fn.yaml().encode())
    args = random_inputs(cf, dtype, seed)
    with np.errstate(all="ignore"):
        expected = interpret(cf, args)
    if not all(np.all(np.isfinite(e)) and np.max(np.abs(e), initial=0) < 1e6 for e in expected):
        # out of the range the tolerances are made for (a rare exp of an exp)
        return ["the reference values are not finite or too large"] if strict else []
    tol = TOL64 if dtype == "float64" else TOL32
    problems: list[str] = []
    y0_shape = expected[0].shape
    g = np.asarray(np.random.default_rng(seed + 1).standard_normal(y0_shape), dtype=dtype)
    grads: dict[tuple[str, str], tuple] = {}
    for backend, mod in modules.items():
        results = {}
        for call in ("", "_value_and_grad", "_forward"):
            try:
                with np.errstate(all="ignore"):
                    results[call] = getattr(mod, name + call)(*args)
            except Exception as e:  # noqa: BLE001 - a crash is a finding
                problems.append(f"{backend} {name}{call} raised {type(e).__name__}: {e}")
        for call, r in results.items():
            outs = _as_tuple(r if call == "" else r[0], n)
            for k, (got, want) in enumerate(zip(outs, expected)):
                out_name = cf.function.program.outputs[k]
                err = _err(got, want)
                if not err <= tol:
                    problems.append(f"{backend} {name}{call}: output {out_name} differs from the "
                                    f"interpreter (error {err:.2e}; got {np.asarray(got)!r:.200}, "
                                    f"expected {want!r:.200})")
                elif np.asarray(got).dtype != np.dtype(dtype):
                    problems.append(f"{backend} {name}{call}: output {out_name} has dtype "
                                    f"{np.asarray(got).dtype}, not {dtype}")
        if "_value_and_grad" in results:
            grads[(backend, "value_and_grad")] = tuple(results["_value_and_grad"][1])
        if "_forward" in results:
            try:
                with np.errstate(all="ignore"):
                    grads[(backend, "backward")] = tuple(
                        getattr(mod, name + "_backward")(results["_forward"][1], g))
            except Exception as e:  # noqa: BLE001
                problems.append(f"{backend} {name}_backward raised {type(e).__name__}: {e}")
    wrt = list(cf.function.wrt)
    inputs = list(cf.function.program.inputs)
    for (backend, call), gs in grads.items():
        for w, got in zip(wrt, gs):
            x = args[inputs.index(w)]
            if np.shape(got) != x.shape or np.asarray(got).dtype != np.dtype(dtype):
                problems.append(f"{backend} {call}: d{w} has shape {np.shape(got)} and dtype "
                                f"{np.asarray(got).dtype}; expected {x.shape} {dtype}")
    if dtype == "float64":
        for w in wrt:
            i = inputs.index(w)
            with np.errstate(all="ignore"):
                jac = _jacobian(cf, args, i)
            axes = tuple(range(args[i].ndim, jac.ndim))
            numeric = {"value_and_grad": np.sum(jac, axis=axes),
                       "backward": np.sum(jac * g, axis=axes)}
            for (backend, call), gs in grads.items():
                err = _err(gs[wrt.index(w)], numeric[call])
                if not err <= FD_TOL:
                    problems.append(f"{backend} {call}: d{w} differs from central differences "
                                    f"(error {err:.2e})")
    elif reference64 is not None:
        ref = {}
        _, saved = getattr(reference64, name + "_forward")(*[a.astype(np.float64) for a in args])
        ref["value_and_grad"] = getattr(reference64, name + "_value_and_grad")(
            *[a.astype(np.float64) for a in args])[1]
        ref["backward"] = getattr(reference64, name + "_backward")(saved, g.astype(np.float64))
        for (backend, call), gs in grads.items():
            for w, got, want in zip(wrt, gs, ref[call]):
                err = _err(got, want)
                if not err <= TOL32 * 5:
                    problems.append(f"{backend} {call}: d{w} differs from the float64 module's "
                                    f"(error {err:.2e})")
    if len(grads) > 2:  # both backends: the same gradients, closely
        for call in ("value_and_grad", "backward"):
            if ("numpy", call) in grads and ("numba", call) in grads:
                for w, a, b in zip(wrt, grads[("numpy", call)], grads[("numba", call)]):
                    err = _err(b, a)
                    if not err <= (1e-8 if dtype == "float64" else TOL32):
                        problems.append(f"numba {call}: d{w} differs from numpy's (error "
                                        f"{err:.2e})")
    return problems


def _module_name(text: str) -> str:
    return "diff" + hashlib.sha256(text.encode()).hexdigest()[:12]


def check_spec(text: str, fns: list[Fn], backends: tuple[str, ...], strict: bool = False) -> int:
    """Compare every function of a spec; raise with each failing function's own spec."""
    compiled = compile_spec(load_spec(text, "differential.yaml"))  # a SpecError is a finding
    dtype = compiled.spec.dtype
    name = _module_name(text)
    modules = {b: import_source(render(compiled, b), name, b) for b in backends}
    reference64 = None
    if dtype == "float32":
        text64 = text.replace("dtype: float32", "dtype: float64", 1)
        reference64 = import_source(render(compile_spec(load_spec(text64, "d.yaml")), "numpy"),
                                    _module_name(text64))
    failures = []
    for cf, fn in zip(compiled.functions, fns):
        problems = check_function(cf, fn, dtype, modules, reference64, strict)
        if problems:
            failures.append(f"--- {spec_yaml([fn], dtype)}" + "\n".join(problems[:6]))
    if failures:
        raise Mismatch(f"{len(failures)} of {len(fns)} functions disagree:\n\n" +
                       "\n\n".join(failures))
    return len(fns)


@settings(max_examples=NUMPY_SPECS, **_COMMON)
@given(specs(NUMPY_FUNCTIONS))
def test_numpy_backend_agrees_with_the_interpreter(spec):
    text, fns = spec
    check_spec(text, fns, ("numpy",))


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
@settings(max_examples=NUMBA_SPECS, **_COMMON)
@given(specs(NUMBA_FUNCTIONS))
def test_both_backends_agree_with_the_interpreter_and_each_other(spec):
    pytest.importorskip("numba")
    text, fns = spec
    check_spec(text, fns, ("numpy", "numba"))


def test_generator_reaches_the_whole_vocabulary():
    """The strategy uses every op, every reduction form and every shape (on a fixed sample)."""
    from hypothesis import find

    seen: set[str] = set()

    def record(spec) -> bool:  # type: ignore[no-untyped-def]
        text = spec[0]
        for word in ["exp(", "log(", "log1p(", "sqrt(", "square(", "abs(", "tanh(", "sigmoid(",
                     "relu(", "softplus(", "sin(", "cos(", "sum(", "mean(", "logsumexp(",
                     "softmax(", "log_softmax(", "trace(", "inv(", "det(", "logdet(", "outer(",
                     " @ ", ".T", " ** ", " / ", " - ", " + ", " * ", "keepdims=True",
                     "keepdims=False", "axis=-2", "axis=-1", "axis=0", "axis=1", "[1, N]",
                     "[N, 1]", "[K, N]", "[1, 1]", "    wrt:", "dtype: float32", "= s0.T"]:
            if word in text:
                seen.add(word)
        return False

    with pytest.raises(Exception):  # noqa: B017 - find() raises when nothing satisfies record
        find(specs(8), record, settings=settings(max_examples=30, **_COMMON))
    missing = {"exp(", "log(", "log1p(", "sqrt(", "square(", "abs(", "tanh(", "sigmoid(",
               "relu(", "softplus(", "sin(", "cos(", "sum(", "mean(", "logsumexp(", "softmax(",
               "log_softmax(", "trace(", "inv(", "det(", "logdet(", "outer(", " @ ", ".T",
               " ** ", " / ", " - ", " + ", " * ", "keepdims=True", "keepdims=False",
               "axis=-2", "axis=-1", "axis=0", "axis=1", "[1, N]", "[N, 1]", "[K, N]", "[1, 1]",
               "    wrt:", "dtype: float32", "= s0.T"} - seen
    assert not missing, missing


# --------------------------------------------------------------------------- regressions
# Each bug the fuzzer found, as its minimal spec (one function), checked the same way.


def _regression(body: str, dtype: str = "float64", backends=("numpy", "numba")) -> None:
    text = f"module: diff\ndtype: {dtype}\ndims: {{N: 3, K: 4}}\nfunctions:\n" + \
        textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")
    compiled = compile_spec(load_spec(text, "regression.yaml"))
    fns = []
    for cf in compiled.functions:
        fn = Fn(cf.function.name, inputs={k: cf.function.program.values[k].shape
                                          for k in cf.function.program.inputs})
        fn.steps = [s.text for s in cf.function.spec.steps]
        fns.append(fn)
    if "numba" in backends:
        pytest.importorskip("numba")
    check_spec(text, fns, backends, strict=True)


def _known(bug: str):  # type: ignore[no-untyped-def]
    """A bug being fixed on another branch (numba-values): pinned here, strict until merged."""
    return pytest.mark.xfail(strict=True, reason=f"known bug, fixed on branch numba-values: {bug}")


def test_regression_numba_mean_of_a_matrix():
    _regression("""
        f:
          inputs: {X: [N, K]}
          steps:
            - loss = mean(X ** 2)
          outputs: [loss]
        """)


def test_regression_numba_transposed_output_of_value_and_grad():
    _regression("""
        f:
          inputs: {A: [N, K], x: [K, N]}
          steps:
            - z1 = sigmoid(A @ x)
            - z2 = z1.T
          outputs: [z2]
        g:
          inputs: {Z: [N, K], w: [K]}
          steps:
            - p = softmax(Z, axis=1)
            - q = p.T
            - loss = sum(log(p @ w + 1))
          outputs: [loss, q]
        """)


def test_regression_numba_logsumexp_keepdims_without_axis():
    _regression("""
        f:
          inputs: {X: [N, K]}
          steps:
            - y = logsumexp(X, keepdims=True)
          outputs: [y]
        """)


def test_regression_numba_logsumexp_of_a_vector_along_its_axis():
    _regression("""
        f:
          inputs: {v: [K]}
          steps:
            - y = relu(logsumexp(v, axis=0))
          outputs: [y]
        g:
          inputs: {v: [K]}
          steps:
            - y = tanh(logsumexp(v, axis=0))
          outputs: [y]
        """, dtype="float32")


def test_regression_numba_scalar_times_a_sum_of_sums():
    _regression("""
        f:
          inputs: {s: [], a: [N], b: [K]}
          steps:
            - loss = s * (sum(a) + sum(b))
          outputs: [loss]
        """)


def test_regression_numpy_float32_gradients_of_value_and_grad():
    _regression("""
        f:
          inputs: {u: [N], A: [N, K], X: [K, 1]}
          steps:
            - z1 = u @ A
            - z = z1 - X
          outputs: [z]
        """, dtype="float32", backends=("numpy",))


def test_regression_constant_arithmetic_in_an_exponent():
    _regression("""
        f:
          inputs: {z: [N]}
          steps:
            - y = exp(z) ** 2 ** -1
          outputs: [y]
        """, backends=("numpy",))


def test_regression_power_zero_of_zero_has_gradient_zero():
    """Found by the fuzzer (seed 5058): d(x ** 0)/dx was 0 * x ** -1 = NaN where x = 0."""
    _regression("""
        f:
          inputs: {x: [N, K]}
          steps:
            - z = x - x
            - y = -(z ** 0).T + x.T
          outputs: [y, z]
        """)
