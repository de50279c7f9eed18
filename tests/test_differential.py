"""Differential fuzzing: random valid specs over the whole vocabulary, three backends, one oracle.

A Hypothesis strategy writes specs of many functions each (several steps, expressions nested a
few levels) over every op of the README's vocabulary: arithmetic with scalar, row ``[n]`` /
``[1, n]``, column ``[m, 1]`` and matrix broadcasting, ``@`` in every pairing, ``.T``, every
elementwise function (DESIGN.md 1b's too: ``erf``, ``expm1``, ``arctan``, ``log_sigmoid``, and
``tan``/``cosh``/``sinh`` of a bounded argument), ``sum``/``mean``/``logsumexp``/``max``/``min``/
``var`` with every ``axis``/``keepdims`` combination, ``std``, ``softmax``/``log_softmax`` along
every axis, ``maximum``/``minimum``/``clip``/``where`` (conditions ``< <= > >=``),
``trace``/``inv``/``det``/``logdet`` and ``outer``, the tensor ops that keep to ranks 0-2
(``transpose``, ``swapaxes``, ``reshape``, ``einsum``, ``diag``, ``eye``, ``concatenate`` and
``stack`` reduced along their new or longer axis, ``one_hot`` and ``take_along_axis`` of int64
labels), constants, ride-along outputs (transposes, inputs, earlier steps), a ``wrt`` subset,
float64 and float32.  The symbolic dims have different sizes (N = 3, K = 4), so that an
``N * K`` where ``N / K`` belongs, or a swapped axis, changes the numbers.  Domains are valid by
construction: ``log``, ``sqrt``, ``log1p``, divisors and fractional powers get positive
arguments (``softplus(E) + 0.5``, ``exp(tanh(E))``, ...), ``inv``/``det``/``logdet`` get
``S + 0.05 * tanh(E)`` with ``S`` an input drawn near the identity, ``std`` reduces axes of
symbolic size of ``x + 0.3 * tanh(E)`` (``x`` an input: variance away from 0), ``clip``'s
bounds are no value a constant subexpression takes.  Ties of ``maximum``/``max``/``where`` are
left to the random inputs (exact identities such as ``maximum(x0, x0)`` agree with central
differences under the one-winner and the split conventions alike).

For every function:

- the outputs (first and ride-along) of ``f``, ``f_value_and_grad`` and ``f_forward`` of the
  NumPy module, of the array-API module (``<module>_xp.py``, on NumPy arrays) and of the Numba
  module are compared with the reference interpreter (``codegen.interpret``), in float64, or for
  a float32 spec with the float64 interpretation of the same float32 inputs (looser
  tolerance), and must have the spec's dtype;
- the gradients of ``f_value_and_grad`` (g = 1) and of ``f_forward`` + ``f_backward`` with a
  random cotangent ``g`` are compared with central differences of the interpreted function
  (float64 specs), between the backends, and for float32 specs with the float64 module's;
- a float64 function also asks for derivative kinds (DESIGN.md 3b): ``jvp``, ``hvp`` for a
  scalar first output, now and then ``jacobian`` and ``hessian``.  ``f_jvp``'s ``dout`` is
  compared with central differences of the interpreted function along a random tangent (and
  with <gradient, tangent> for a scalar), ``f_hvp``'s ``hv`` with central differences of the
  gradient along the tangent (step 1e-5), ``f_jacobian`` with the central-difference Jacobian,
  ``f_hessian`` times the tangent with ``hv``'s differences;
- the first functions of each spec (``STRICT_FUNCTIONS``) also run the array-API module on
  array-api-strict arrays (which refuse anything outside the standard; not ``einsum``, which
  the standard lacks): the same results as on NumPy arrays.

One Numba module holds all the functions of a spec, so its import and compile are shared.
Runs are reproducible (``derandomize=True``, no example database, no shrinking: a failure
prints the failing function as a one-function spec, with the seed of its inputs).  Effort is
chosen with ``HYPOTHESIS_PROFILE``:

- ``ci`` (default): NumPy and array API: 16 specs of 24 functions (384 functions, about 30 s on
  the loaded two-core machine); Numba: 1 spec of 10 functions against all three, without
  derivative kinds (about 60 s, most of it the cold compile); the whole file about 140 s cold
  there (115 s before the derivative kinds and the array API were fuzzed);
- ``dev``: NumPy and array API: 96 functions, Numba: 6 with derivative kinds;
- ``deep``: NumPy and array API: 1000 specs of 24 functions (24,000 functions), Numba: 100
  specs of 24 functions (2,400) with derivative kinds, several hours on two cores::

    HYPOTHESIS_PROFILE=deep python -m pytest tests/test_differential.py

Generating the modules (black formatting the derivative kinds' code) is most of the time of the
NumPy part.  Bugs found are pinned as named regression tests at the end of this file.
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
BUDGETS = {"dev": ((4, 24), (1, 6)), "ci": ((16, 24), (1, 10)), "deep": ((1000, 24), (100, 24))}
PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
(NUMPY_SPECS, NUMPY_FUNCTIONS), (NUMBA_SPECS, NUMBA_FUNCTIONS) = \
    BUDGETS.get(PROFILE_NAME, BUDGETS["ci"])
FUNCTIONS = 24
# the Numba part asks for derivative kinds (more kernels to compile) outside the CI profile
NUMBA_DERIVATIVES = PROFILE_NAME != "ci"

SIZES = {"N": 3, "K": 4}
SYMBOLIC = ("N", "K")
# every shape a value may have: scalar, vectors, rows, columns, matrices (square and not)
SHAPES: list[tuple] = [
    (), ("N",), ("K",), (1, "N"), (1, "K"), ("N", 1), ("K", 1), ("N", "K"), ("K", "N"),
    ("N", "N"), ("K", "K"), (1, 1),
]
ELEMENTWISE = ["exp", "tanh", "sigmoid", "relu", "softplus", "sin", "cos", "abs", "square",
               "erf", "expm1", "arctan", "log_sigmoid"]
BOUNDED = ["tan", "cosh", "sinh"]  # of an argument kept in (-1.2, 1.2): tan(tanh(E)), ...
# clip's bounds: none a value a constant subexpression takes (sigmoid(0) = 0.5, tanh(0) = 0, ...)
CLIP_BOUNDS = [("-0.6", "0.4"), ("-1.3", "0.8"), ("0.15", "1.7"), ("-2.2", "-0.35")]

# Value tolerances: max|actual - reference| / max(1, max|reference|)
TOL64 = 1e-9
TOL32 = 2e-3
FD_TOL = 2e-5  # analytic gradients against central differences (float64)
STEP = 1e-6
HVP_STEP = 1e-5  # central differences of the gradient along a tangent (f_hvp, f_hessian)
HVP_TOL = 2e-5
STRICT_FUNCTIONS = 6  # functions of each spec also run on array-api-strict arrays


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


def _reduced_axes(s: tuple, kw: str) -> tuple[int, ...]:
    """The axes a reduction's keywords (", axis=-1, keepdims=True") reduce of shape s."""
    if "axis=" not in kw:
        return tuple(range(len(s)))
    axis = int(kw.split("axis=")[1].split(",")[0])
    return (axis % len(s),)


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
    derivatives: list[str] | None = None  # derivative kinds asked for (DESIGN.md 3b)
    labels: dict[str, str] = field(default_factory=dict)  # int64 inputs: name -> dim of range

    def yaml(self) -> str:
        def shape(s: tuple) -> str:
            return "[" + ", ".join(str(d) for d in s) + "]"
        lines = [f"  {self.name}:", "    inputs:"]
        lines += [f"      {k}: {{shape: {shape(v)}, dtype: int64}}" if k in self.labels
                  else f"      {k}: {shape(v)}" for k, v in self.inputs.items()]
        if self.wrt is not None:
            lines.append(f"    wrt: [{', '.join(self.wrt)}]")
        if self.derivatives:
            lines.append(f"    derivatives: [{', '.join(self.derivatives)}]")
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
        return self.fresh(shape)

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

    def operands(self, shape: tuple, count: int) -> list[tuple]:
        """Shapes of ``count`` operands that broadcast together to ``shape``."""
        while True:
            shapes = [self.choice(SUBSHAPES[shape]) for _ in range(count)]
            out: tuple | None = ()
            for t in shapes:
                out = _broadcast(out, t) if out is not None else None
            if out == shape:
                return shapes
            if self.flip():
                shapes[self.rng.randrange(count)] = shape
                return shapes

    def select(self, shape: tuple, d: int) -> str:
        """maximum / minimum / clip / where.  Ties are left to chance (random inputs) or are
        exact identities (maximum(x0, x0)), where every subgradient convention that gives the
        gradient to one side or splits it agrees with central differences."""
        kind = self.choice(["maximum", "minimum", "clip", "where"])
        if kind == "clip":
            lo, hi = self.choice(CLIP_BOUNDS)
            return f"clip({self.expr(shape, d)}, {lo}, {hi})"
        if kind == "where":
            a, b, c1, c2 = self.operands(shape, 4)
            op = self.choice(["<", "<=", ">", ">="])
            cond = f"{_paren(self.expr(c1, d))} {op} {_paren(self.expr(c2, d))}"
            return f"where({cond}, {self.expr(a, d)}, {self.expr(b, d)})"
        a, b = self.operands(shape, 2)
        return f"{kind}({self.expr(a, d)}, {self.expr(b, d)})"

    def std(self, shape: tuple, d: int) -> str:
        """std over axes of symbolic size of an input (its own random values) plus a bounded
        expression, so that the variance is bounded away from 0 (sqrt's derivative)."""
        forms = [(s, kw) for s, kw in REDUCTIONS[shape] if s and all(
            s[i] in SYMBOLIC for i in _reduced_axes(s, kw))]
        if not forms:
            return self.leaf(shape)
        source, kw = self.choice(forms)
        have = [n for n in self.fn.inputs if self.fn.inputs[n] == source
                and not n.startswith("S") and n not in self.fn.labels]
        base = self.choice(have) if have and self.flip() else self.fresh(source)
        return f"std({base} + 0.3 * tanh({self.expr(source, d)}){kw})"

    def label(self, shape: tuple, depth: str) -> str:
        """An int64 input of ``shape`` holding labels in [0, depth)."""
        name = f"y{len(self.fn.inputs)}"
        self.fn.inputs[name] = shape
        self.fn.labels[name] = depth
        return name

    def tensor(self, shape: tuple, d: int) -> str:
        """The tensor ops of DESIGN.md 1b that keep to these shapes: transpose / swapaxes /
        reshape, einsum, diag / eye, concatenate / stack (reduced along the new or longer axis),
        one_hot / take_along_axis of int64 labels."""
        forms = ["reshape", "stack"]
        if len(shape) == 2:
            forms += ["transpose", "swapaxes", "einsum"]
            if shape[0] == shape[1] and shape[0] in SYMBOLIC:
                forms += ["diag", "eye"]
            if shape[1] in SYMBOLIC:
                forms += ["one_hot", "concatenate"]
            if (shape[0] == 1) != (shape[1] == 1):
                forms += ["take_along_axis"]
        if len(shape) == 1 and shape[0] in SYMBOLIC:
            forms += ["diag", "concatenate"]  # (one_hot needs labels of rank 1 or more)
        form = self.choice(forms)
        if form == "reshape":
            dims = sorted(x for x in shape if x != 1)
            sources = [t for t in SHAPES if t and sorted(x for x in t if x != 1) == dims]
            target = "(" + ", ".join(str(x) for x in shape) + ("," if len(shape) == 1 else "") + ")"
            return f"reshape({self.expr(self.choice(sources), d)}, {target})" if shape and \
                sources else self.leaf(shape)
        if form == "stack":
            fn, axis = self.choice(["mean", "max", "min", "logsumexp"]), \
                self.rng.randint(0, len(shape))
            a, b = self.expr(shape, d), self.expr(shape, d)
            return f"{fn}(stack(({a}, {b}), axis={axis}), axis={axis})"
        if form == "transpose":
            return f"transpose({self.expr(shape[::-1], d)}, (1, 0))"
        if form == "swapaxes":
            return f"swapaxes({self.expr(shape[::-1], d)}, {self.choice(['0, 1', '1, 0', '-1, 0'])})"
        if form == "einsum":
            inner = self.choice(list(SYMBOLIC))
            return self.choice([
                f'einsum("ij,jk->ik", {self.expr((shape[0], inner), d)}, '
                f'{self.expr((inner, shape[1]), d)})',
                f'einsum("ji->ij", {self.expr(shape[::-1], d)})',
                f'einsum("ij,ij->ij", {self.expr(shape, d)}, {self.expr(shape, d)})',
                f'einsum("ik,jk->ij", {self.expr((shape[0], inner), d)}, '
                f'{self.expr((shape[1], inner), d)})'])
        if form == "eye":
            return f"{_paren(self.expr(shape, d))} * eye({shape[0]})"
        if form == "diag":
            if len(shape) == 2:
                return f"diag({self.expr((shape[0],), d)})"
            return f"diag({self.expr((shape[0], shape[0]), d)})"
        if form == "one_hot":
            y = self.label(shape[:-1], shape[-1])
            return f"{_paren(self.expr(shape, d))} * one_hot({y}, {shape[-1]})"
        if form == "concatenate":
            d_last = shape[-1]
            fn = self.choice(["sum", "mean", "logsumexp", "max", "min"])
            a, b = self.expr(("N", d_last), d), self.expr(("K", d_last), d)
            kd = ", keepdims=True" if len(shape) == 2 else ""
            if len(shape) == 2 and shape[0] != 1:
                return self.leaf(shape)
            return f"{fn}(concatenate(({a}, {b}), axis=0), axis=0{kd})"
        # take_along_axis: a column of a matrix's rows at labels (or a row of its columns)
        if shape[1] == 1:
            other = self.choice(list(SYMBOLIC))
            y = self.label(shape, other)
            return f"take_along_axis({self.expr((shape[0], other), d)}, {y}, axis=1)"
        other = self.choice(list(SYMBOLIC))
        y = self.label(shape, other)
        return f"take_along_axis({self.expr((other, shape[1]), d)}, {y}, axis=0)"

    def fresh(self, shape: tuple) -> str:
        name = f"x{len(self.fn.inputs)}"
        self.fn.inputs[name] = shape
        self.fn.shapes[name] = shape
        return name

    def expr(self, shape: tuple, depth: int) -> str:
        if depth <= 0:
            return self.leaf(shape)
        d = depth - 1
        kinds = ["leaf", "binary", "binary", "const", "unary", "unary", "positive-fn", "pow",
                 "reduce", "matmul", "neg", "bounded-fn", "select", "select", "std", "tensor",
                 "tensor"]
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
        if kind == "leaf" or kind in ("reduce", "std") and shape not in REDUCTIONS:
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
        if kind == "bounded-fn":
            arg = self.choice(["tanh", "sin", "sigmoid"]) + f"({self.expr(shape, d)})"
            return f"{self.choice(BOUNDED)}({arg})"
        if kind == "select":
            return self.select(shape, d)
        if kind == "std":
            return self.std(shape, d)
        if kind == "tensor":
            return self.tensor(shape, d)
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
            fn = self.choice(["sum", "mean", "logsumexp", "max", "min", "var"])
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


def functions(rng: random.Random, name: str, derivatives: bool = False) -> Fn:
    """One function: 1-4 steps, the last the first output; ride-along outputs sometimes; with
    ``derivatives``, the derivative kinds: jvp, and hvp for a scalar first output, and now and
    then jacobian or hessian (loops or blocks of those)."""
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
        floats = sorted(n for n in fn.inputs if n not in fn.labels)
        fn.wrt = rng.sample(floats, rng.randint(1, len(floats)))
    if derivatives:
        scalar = fn.shapes[last] == ()
        fn.derivatives = ["jvp", "hvp"] if scalar else ["jvp"]
        if rng.random() < 0.15:
            fn.derivatives.append("jacobian")
        if scalar and rng.random() < 0.15:
            fn.derivatives.append("hessian")
    return fn


@st.composite
def specs(draw: st.DrawFn, count: int = FUNCTIONS, derivatives: bool = True
          ) -> tuple[str, list[Fn]]:
    """A spec of ``count`` random functions.  Hypothesis draws only the seed: the generator is a
    seeded ``random.Random``, so that every example (the first one too) is a typical spec.
    A float64 spec asks for derivative kinds if ``derivatives`` (see ``functions``)."""
    rng = random.Random(draw(st.integers(0, 2**63)))
    dtype = rng.choice(["float64", "float64", "float64", "float32"])
    fns = [functions(rng, f"f{k}", derivatives and dtype == "float64") for k in range(count)]
    return spec_yaml(fns, dtype), fns


# --------------------------------------------------------------------------- the comparison


def random_inputs(compiled_fn, dtype, seed: int, labels: dict | None = None  # type: ignore[no-untyped-def]
                  ) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    program = compiled_fn.function.program
    out = []
    for name in program.inputs:
        shape = tuple(SIZES.get(d, d) for d in program.values[name].shape)  # type: ignore[arg-type]
        if program.values[name].dtype == "int64":  # labels in [0, size of their dim)
            depth = SIZES.get((labels or {}).get(name, ""), min(SIZES.values()))
            out.append(rng.integers(0, depth, size=shape).astype(np.int64))
            continue
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
    base = [_as64(a) for a in args]
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


def _as64(a: np.ndarray) -> np.ndarray:
    """A float input in float64 (labels stay int64)."""
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _compare_outputs(cf, what: str, result, expected, tol: float, dtype: str  # type: ignore[no-untyped-def]
                     ) -> list[str]:
    """The outputs a call returned (one array, or a tuple for several) against the interpreter's."""
    problems = []
    outs = _as_tuple(result, len(expected))
    for k, (got, want) in enumerate(zip(outs, expected)):
        out_name = cf.function.program.outputs[k]
        err = _err(got, want)
        if not err <= tol:
            problems.append(f"{what}: output {out_name} differs from the interpreter (error "
                            f"{err:.2e}; got {np.asarray(got)!r:.200}, expected {want!r:.200})")
        elif np.asarray(got).dtype != np.dtype(dtype):
            problems.append(f"{what}: output {out_name} has dtype {np.asarray(got).dtype}, "
                            f"not {dtype}")
    return problems


def _call(problems: list[str], what: str, fn, *args):  # type: ignore[no-untyped-def]
    """fn(*args), or None with the exception recorded as a problem (a crash is a finding)."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except Exception as e:  # noqa: BLE001
        problems.append(f"{what} raised {type(e).__name__}: {e}")
        return None


def check_derivatives(cf, fn: Fn, args: list[np.ndarray], modules: dict, expected,  # type: ignore[no-untyped-def]
                      seed: int, jacs: dict[str, np.ndarray]) -> list[str]:
    """The derivative kinds of a float64 function (DESIGN.md 3b) in every module: f_jvp against
    central differences of the interpreted function along a random tangent (and, for a scalar
    first output, against <gradient, tangent>); f_hvp against central differences of the NumPy
    module's gradient along the tangent; f_jacobian against the central-difference Jacobian;
    f_hessian times the tangent against those differences of the gradient."""
    name, kinds = cf.function.name, fn.derivatives or []
    problems: list[str] = []
    wrt, inputs = list(cf.function.wrt), list(cf.function.program.inputs)
    where = [inputs.index(w) for w in wrt]
    rng = np.random.default_rng(seed + 2)
    tangents = tuple(rng.standard_normal(args[i].shape) for i in where)

    def moved(h: float) -> list[np.ndarray]:
        out = list(args)
        for i, t in zip(where, tangents):
            out[i] = args[i] + h * t
        return out

    vg = modules["numpy"].__dict__[name + "_value_and_grad"]
    with np.errstate(all="ignore"):
        jvp_fd = (interpret(cf, moved(STEP))[0] - interpret(cf, moved(-STEP))[0]) / (2 * STEP)
        grad = tuple(vg(*args)[1])
        hv_fd = None
        if "hvp" in kinds:  # the gradient is checked against central differences above
            plus, minus = vg(*moved(HVP_STEP))[1], vg(*moved(-HVP_STEP))[1]
            hv_fd = [(np.asarray(a) - np.asarray(b)) / (2 * HVP_STEP) for a, b in zip(plus, minus)]
    scalar = expected[0].shape == ()
    for backend, mod in modules.items():
        if "jvp" in kinds:
            r = _call(problems, f"{backend} {name}_jvp", getattr(mod, name + "_jvp"), *args,
                      tangents)
            if r is not None:
                problems += _compare_outputs(cf, f"{backend} {name}_jvp", r[0], expected, TOL64,
                                             "float64")
                err = _err(r[1], jvp_fd)
                if not err <= FD_TOL:
                    problems.append(f"{backend} {name}_jvp: dout differs from central differences "
                                    f"along the tangent (error {err:.2e}; got {np.asarray(r[1])!r:.200}"
                                    f", expected {jvp_fd!r:.200})")
                if scalar:
                    inner = sum(float(np.vdot(gw, t)) for gw, t in zip(grad, tangents))
                    err = _err(r[1], inner)
                    if not err <= TOL64 * 100:
                        problems.append(f"{backend} {name}_jvp: dout {r[1]!r} is not <gradient, "
                                        f"tangent> = {inner!r} (error {err:.2e})")
        if "hvp" in kinds:
            r = _call(problems, f"{backend} {name}_hvp", getattr(mod, name + "_hvp"), *args,
                      tangents)
            if r is not None:
                problems += _compare_outputs(cf, f"{backend} {name}_hvp", r[0], expected, TOL64,
                                             "float64")
                for w, got, want in zip(wrt, r[1], grad):
                    if not _err(got, want) <= TOL64 * 100:
                        problems.append(f"{backend} {name}_hvp: d{w} differs from "
                                        f"f_value_and_grad's (error {_err(got, want):.2e})")
                for w, got, want in zip(wrt, r[2], hv_fd):
                    err = _err(got, want)
                    if not err <= HVP_TOL:
                        problems.append(f"{backend} {name}_hvp: hv.{w} differs from central "
                                        f"differences of the gradient (error {err:.2e}; got "
                                        f"{np.asarray(got)!r:.200}, expected {want!r:.200})")
        if "jacobian" in kinds:
            r = _call(problems, f"{backend} {name}_jacobian", getattr(mod, name + "_jacobian"),
                      *args)
            if r is not None:
                problems += _compare_outputs(cf, f"{backend} {name}_jacobian", r[0], expected,
                                             TOL64, "float64")
                for w, got in zip(wrt, r[1]):
                    x = args[inputs.index(w)]
                    want = jacs[w].reshape(x.size, -1).T
                    err = _err(got, want)
                    if not err <= FD_TOL:
                        problems.append(f"{backend} {name}_jacobian: jac.{w} differs from central "
                                        f"differences (error {err:.2e}; shape {np.shape(got)}, "
                                        f"expected {want.shape})")
        if "hessian" in kinds and hv_fd is not None:
            r = _call(problems, f"{backend} {name}_hessian", getattr(mod, name + "_hessian"),
                      *args)
            if r is not None:
                problems += _compare_outputs(cf, f"{backend} {name}_hessian", r[0], expected,
                                             TOL64, "float64")
                t = np.concatenate([np.ravel(t) for t in tangents])
                want = np.concatenate([np.ravel(h) for h in hv_fd])
                H = np.asarray(r[2])
                err = _err(H @ t, want) if H.shape == (t.size, t.size) else float("inf")
                if not err <= HVP_TOL:
                    problems.append(f"{backend} {name}_hessian: H (shape {H.shape}) times the "
                                    f"tangent differs from central differences of the gradient "
                                    f"(error {err:.2e})")
    return problems


def check_strict(cf, fn: Fn, args: list[np.ndarray], xp_module, expected) -> list[str]:  # type: ignore[no-untyped-def]
    """The array-API module on array-api-strict arrays (which refuse anything outside the
    standard): the same outputs and gradients as on NumPy arrays, and the same derivative kinds."""
    xps = pytest.importorskip("array_api_strict")
    name, kinds = cf.function.name, fn.derivatives or []

    def back(x):  # type: ignore[no-untyped-def]
        return np.asarray(x._array) if type(x).__module__.startswith("array_api_strict") \
            else np.asarray(x)

    problems: list[str] = []
    xs = [xps.asarray(a) for a in args]
    calls = [("_value_and_grad", ())]
    if "jvp" in kinds or "hvp" in kinds:
        where = [list(cf.function.program.inputs).index(w) for w in cf.function.wrt]
        rng = np.random.default_rng(1)
        tangents = tuple(rng.standard_normal(args[i].shape) for i in where)
        calls += [(f"_{k}", (tangents,)) for k in ("jvp", "hvp") if k in kinds]
    for call, extra in calls:
        want = _call(problems, f"array_api {name}{call}", getattr(xp_module, name + call), *args,
                     *extra)
        got = _call(problems, f"array_api {name}{call} on array-api-strict",
                    getattr(xp_module, name + call), *xs,
                    *[tuple(xps.asarray(t) for t in e) for e in extra])
        if want is None or got is None:
            continue
        flat_want = [np.asarray(v) for v in _leaves(want)]
        flat_got = [back(v) for v in _leaves(got)]
        tol = TOL64 if np.asarray(expected[0]).dtype == np.float64 else TOL32
        for k, (a, b) in enumerate(zip(flat_got, flat_want)):
            if not _err(a, b) <= tol:
                problems.append(f"array_api {name}{call} on array-api-strict: result {k} differs "
                                f"from the same module's on NumPy (error {_err(a, b):.2e})")
    return problems


def _leaves(x):  # type: ignore[no-untyped-def]
    if isinstance(x, tuple):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def check_function(cf, fn: Fn, dtype: str, modules: dict, reference64=None,  # type: ignore[no-untyped-def]
                   strict: bool = False, strict_xp: bool = False) -> list[str]:
    """Every comparison of one function; returns the problems found (empty: all agree)."""
    name = cf.function.name
    seed = zlib.crc32(fn.yaml().encode())
    args = random_inputs(cf, dtype, seed, fn.labels)
    pristine = [a.copy() for a in args]
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
            problems += _compare_outputs(cf, f"{backend} {name}{call}", r if call == "" else r[0],
                                         expected, tol, dtype)
            if backend != "array_api":  # (which may return views: README, "On a GPU")
                for k, out in enumerate(_as_tuple(r if call == "" else r[0], len(expected))):
                    if any(np.shares_memory(out, a) for a in args):
                        problems.append(f"{backend} {name}{call}: output "
                                        f"{cf.function.program.outputs[k]} shares memory with "
                                        f"an input")
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
    jacs: dict[str, np.ndarray] = {}
    if dtype == "float64":
        for w in wrt:
            i = inputs.index(w)
            with np.errstate(all="ignore"):
                jac = jacs[w] = _jacobian(cf, args, i)
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
        _, saved = getattr(reference64, name + "_forward")(*[_as64(a) for a in args])
        ref["value_and_grad"] = getattr(reference64, name + "_value_and_grad")(
            *[_as64(a) for a in args])[1]
        ref["backward"] = getattr(reference64, name + "_backward")(saved, g.astype(np.float64))
        for (backend, call), gs in grads.items():
            for w, got, want in zip(wrt, gs, ref[call]):
                err = _err(got, want)
                if not err <= TOL32 * 5:
                    problems.append(f"{backend} {call}: d{w} differs from the float64 module's "
                                    f"(error {err:.2e})")
    for k, (a, a0) in enumerate(zip(args, pristine)):
        if not np.array_equal(a, a0):
            problems.append(f"input {list(cf.function.program.inputs)[k]} was written into")
    for other in ("numba", "array_api"):  # the same gradients as the NumPy module's, closely
        for call in ("value_and_grad", "backward"):
            if ("numpy", call) in grads and (other, call) in grads:
                for w, a, b in zip(wrt, grads[("numpy", call)], grads[(other, call)]):
                    err = _err(b, a)
                    if not err <= (1e-8 if dtype == "float64" else TOL32):
                        problems.append(f"{other} {call}: d{w} differs from numpy's (error "
                                        f"{err:.2e})")
    if fn.derivatives and dtype == "float64" and not problems:
        problems += check_derivatives(cf, fn, args, modules, expected, seed, jacs)
    if strict_xp and "array_api" in modules and "einsum(" not in fn.yaml():  # (not standard)
        problems += check_strict(cf, fn, args, modules["array_api"], expected)
    return problems


def _has_strict() -> bool:
    try:
        import array_api_strict  # noqa: F401
    except ImportError:
        return False
    return True


def _module_name(text: str) -> str:
    return "diff" + hashlib.sha256(text.encode()).hexdigest()[:12]


def check_spec(text: str, fns: list[Fn], backends: tuple[str, ...], strict: bool = False) -> int:
    """Compare every function of a spec; raise with each failing function's own spec."""
    compiled = compile_spec(load_spec(text, "differential.yaml"))  # a SpecError is a finding
    dtype = compiled.spec.dtype
    name = _module_name(text)
    # the array-API module is imported as plain Python (NumPy's way): it needs no compile
    modules = {b: import_source(render(compiled, b), name + ("_xp" if b == "array_api" else ""),
                                "numpy" if b == "array_api" else b) for b in backends}
    reference64 = None
    if dtype == "float32":
        text64 = text.replace("dtype: float32", "dtype: float64", 1)
        reference64 = import_source(render(compile_spec(load_spec(text64, "d.yaml")), "numpy"),
                                    _module_name(text64))
    failures = []
    for k, (cf, fn) in enumerate(zip(compiled.functions, fns)):
        problems = check_function(cf, fn, dtype, modules, reference64, strict,
                                  strict_xp=k < STRICT_FUNCTIONS and _has_strict())
        if problems:
            failures.append(f"--- {spec_yaml([fn], dtype)}" + "\n".join(problems[:6]))
    if failures:
        raise Mismatch(f"{len(failures)} of {len(fns)} functions disagree:\n\n" +
                       "\n\n".join(failures))
    return len(fns)


@settings(max_examples=NUMPY_SPECS, **_COMMON)
@given(specs(NUMPY_FUNCTIONS))
def test_numpy_and_array_api_modules_agree_with_the_interpreter(spec):
    text, fns = spec
    check_spec(text, fns, ("numpy", "array_api"))


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
@settings(max_examples=NUMBA_SPECS, **_COMMON)
@given(specs(NUMBA_FUNCTIONS, derivatives=NUMBA_DERIVATIVES))
def test_both_backends_agree_with_the_interpreter_and_each_other(spec):
    pytest.importorskip("numba")
    text, fns = spec
    check_spec(text, fns, ("numpy", "numba", "array_api"))


def test_generator_reaches_the_whole_vocabulary():
    """The strategy uses every op, every reduction form, every shape and every derivative kind
    (on a fixed sample)."""
    from hypothesis import find

    words = {"exp(", "log(", "log1p(", "sqrt(", "square(", "abs(", "tanh(", "sigmoid(", "relu(",
             "softplus(", "sin(", "cos(", "tan(", "erf(", "expm1(", "cosh(", "sinh(", "arctan(",
             "log_sigmoid(", "sum(", "mean(", "logsumexp(", "max(", "min(", "var(", "std(",
             "softmax(", "log_softmax(", "maximum(", "minimum(", "clip(", "where(", " < ", " <= ",
             " > ", " >= ", "trace(", "inv(", "det(", "logdet(", "outer(", "transpose(",
             "swapaxes(", "reshape(", "concatenate(", "stack(", "einsum(", "diag(", "eye(",
             "one_hot(", "take_along_axis(", "dtype: int64", " @ ", ".T", " ** ", " / ", " - ",
             " + ", " * ", "keepdims=True", "keepdims=False", "axis=-2", "axis=-1", "axis=0",
             "axis=1", "[1, N]", "[N, 1]", "[K, N]", "[1, 1]", "    wrt:", "dtype: float32",
             "= s0.T", "derivatives: [jvp]", "derivatives: [jvp, hvp]", "jacobian", "hessian"}
    seen: set[str] = set()

    def record(spec) -> bool:  # type: ignore[no-untyped-def]
        seen.update(word for word in words if word in spec[0])
        return False

    with pytest.raises(Exception):  # noqa: B017 - find() raises when nothing satisfies record
        find(specs(8), record, settings=settings(max_examples=30, **_COMMON))
    missing = words - seen
    assert not missing, missing


# --------------------------------------------------------------------------- regressions
# Each bug the fuzzer found, as its minimal spec (one function), checked the same way.


def _regression(body: str, dtype: str = "float64",
                backends=("numpy", "numba", "array_api")) -> None:
    text = f"module: diff\ndtype: {dtype}\ndims: {{N: 3, K: 4}}\nfunctions:\n" + \
        textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")
    compiled = compile_spec(load_spec(text, "regression.yaml"))
    fns = []
    for cf in compiled.functions:
        fn = Fn(cf.function.name, inputs={k: cf.function.program.values[k].shape
                                          for k in cf.function.program.inputs})
        fn.steps = [s.text for s in cf.function.spec.steps]
        fn.derivatives = list(cf.derivatives.kinds) if cf.derivatives else None
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


def test_regression_jvp_and_hvp_of_a_function_of_many_inputs():
    """Found by the fuzzer (round 3): f_jvp's and f_hvp's input check was written split over
    three lines; with nine inputs its first line was still too long, and black, handed that line
    alone, failed on it (``cannot parse``): no module could be generated."""
    _regression("""
        f:
          inputs: {x0: [K, N], x3: [], x4: [], x5: [], x6: [], x7: [], x8: [K, K], x9: [1, K],
                   s0: [K]}
          derivatives: [jvp, hvp]
          steps:
            - s = x3 * sum(x8) + sum(s0 * x9) + x4 * x5 * x6 * x7 + sum(x0)
          outputs: [s]
        """, backends=("numpy", "array_api"))


def test_regression_where_of_a_folded_cotangent_is_a_float_array():
    """Found by the fuzzer (round 3): the cotangent of -(y) is -1, folded to a number after
    where's VJP had read it as an array; the NumPy module's np.where(c, -1, 0) was then an int64
    gradient (also for a float32 spec); likewise where the cotangent is -K * N, a number made
    from dims (h: the broadcast of a scalar summed)."""
    for dtype in ("float64", "float32"):
        _regression("""
            f:
              inputs: {a: [], b: [], x: []}
              steps:
                - s = -(where(a > b, x, x))
              outputs: [s]
            g:
              inputs: {a: [N], b: [N], x: [N]}
              steps:
                - s = sum(-where(a > b, x, 2.0))
              outputs: [s]
            h:
              inputs: {x0: [K, N], x1: [], x2: []}
              steps:
                - s0 = x0 - where(x1 < x1, x2, x1)
              outputs: [s0]
            """, dtype=dtype, backends=("numpy", "array_api"))


def test_regression_numba_stack_of_scalars():
    """Found by the fuzzer (round 3): ``stack`` of 0-d values rendered np.stack((a, b)), which
    Numba refuses for scalars (floats in a kernel): no Numba module compiled."""
    _regression("""
        f:
          inputs: {a: [], b: []}
          derivatives: [jvp]  # (f_jvp held a float and a 0-d array)
          steps:
            - s = log1p(softplus(max(stack((a, b), axis=0), axis=0)) + 0.5)
            - loss = s * sum(stack((b, a * 2), axis=-1) ** 2)
          outputs: [loss]
        """)


def test_regression_einsum_that_rearranges_is_a_copy():
    """Found by the fuzzer (round 3): np.einsum of one operand summing no index is a view of
    it, which np.asarray(order="C") kept where contiguous (ji->ij of a [1, N], ij->ij): the
    NumPy module returned the caller's array as an output, and wrote cos(x) into it in place."""
    _regression("""
        f:
          inputs: {x4: [N, N], x6: [1, N]}
          wrt: [x6, x4]
          steps:
            - s3 = sin(einsum("ji->ij", x6))
            - t_x4 = x4.T
          outputs: [s3, t_x4]
        g:
          inputs: {x: [N, K]}
          steps:
            - y = einsum("ij->ij", x)
          outputs: [y]
        """, backends=("numpy", "array_api"))
