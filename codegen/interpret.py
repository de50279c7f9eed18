"""The reference interpreter: a spec function's forward program evaluated op by op with NumPy.

This is the value oracle of ``--gradcheck`` and of the tests.  It reads the parsed forward IR
(``parse_function(...).program``) and nothing downstream of it: not the planner, the passes,
fusion, lowering, memory planning, the emitters or the templates.  Each op has its own small,
plain NumPy implementation here (written independently of the generated code's helpers), and
every value is a fresh array, so no aliasing can leak between steps.

    outputs = interpret(compiled_function, [X, W, b])      # a tuple in ``outputs`` order

An elementwise op that NumPy has as a ufunc of the same name needs no entry here.
An op it does not know raises ``InterpretError`` naming the op and its spec step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .ir import Const, DimSize, Op, Program
from .shapes import dim_value


class InterpretError(Exception):
    """The interpreter met an op it has no implementation for, or inputs that do not fit."""


def _reduce_axes(x: np.ndarray, axis: object) -> tuple[int, ...]:
    return tuple(range(x.ndim)) if axis is None else (int(axis),)  # type: ignore[call-overload]


def _lse(x: np.ndarray, axis: object, keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) over ``axis``, shifted by the maximum (finite for any finite input)."""
    axes = _reduce_axes(x, axis)
    if x.ndim == 0:
        return x.copy()
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


def _softmax(x: np.ndarray, axis: object) -> np.ndarray:
    axes = _reduce_axes(x, axis)
    if x.ndim == 0:
        return np.ones_like(x)
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def _log_softmax(x: np.ndarray, axis: object) -> np.ndarray:
    return x - _lse(x, axis, True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow, accurate for large |x|
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _where(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(np.asarray(c) != 0, a, b))


def _reduction(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def run(op: Op, x: np.ndarray) -> np.ndarray:
        return fn(x, axis=op.attr("axis"), keepdims=bool(op.attr("keepdims", False)))
    return run


def _power(op: Op, x: np.ndarray) -> np.ndarray:
    c = op.attr("exponent")
    return np.power(x, float(c))  # type: ignore[arg-type]


def _labels(y: np.ndarray, depth: int, op: Op) -> np.ndarray:
    bad = (y < 0) | (y >= depth)
    if np.any(bad):
        raise ValueError(f"{op.attr('label')} has the label {y[bad].flat[0]}, outside [0, {depth})")
    return y.astype(np.intp)


def _take_along_axis(op: Op, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """out[..., j, ...] = a[..., y[..., j, ...], ...] along the op's axis, by explicit indexing."""
    axis = int(op.attr("axis"))  # type: ignore[call-overload]
    y = _labels(y, a.shape[axis], op)
    out = np.empty(y.shape, dtype=a.dtype)
    for pos in np.ndindex(*y.shape):
        src = list(pos)
        src[axis] = y[pos]
        out[pos] = a[tuple(src)]
    return out


def _one_hot(op: Op, y: np.ndarray, depth: int) -> np.ndarray:
    y = _labels(y, depth, op)
    out = np.zeros(y.shape + (depth,))
    for pos in np.ndindex(*y.shape):
        out[pos + (y[pos],)] = 1.0
    return out


# op name -> implementation(op, *array args); arrays are float64 (or the requested dtype)
IMPLEMENTATIONS: dict[str, Callable[..., np.ndarray]] = {
    # arithmetic with broadcasting
    "add": lambda op, a, b: a + b,
    "sub": lambda op, a, b: a - b,
    "mul": lambda op, a, b: a * b,
    "div": lambda op, a, b: a / b,
    "neg": lambda op, a: -a,
    "pow": _power,
    "identity": lambda op, a: a.copy(),
    "copy": lambda op, a: a.copy(),  # an output that would share an input's memory
    # elementwise functions
    "exp": lambda op, a: np.exp(a),
    "log": lambda op, a: np.log(a),
    "log1p": lambda op, a: np.log1p(a),
    "sqrt": lambda op, a: np.sqrt(a),
    "square": lambda op, a: a * a,
    "abs": lambda op, a: np.abs(a),
    "tanh": lambda op, a: np.tanh(a),
    "sigmoid": lambda op, a: _sigmoid(a),
    "relu": lambda op, a: np.where(a > 0, a, 0.0).astype(a.dtype),
    "softplus": lambda op, a: _softplus(a),
    "sin": lambda op, a: np.sin(a),
    "cos": lambda op, a: np.cos(a),
    "erf": lambda op, a: np.vectorize(math.erf, otypes=[float])(a),
    "log_sigmoid": lambda op, a: -_softplus(-a),
    # selection: masks (as 0/1 floats), where, the elementwise extremes
    "less": lambda op, a, b: a < b,
    "less_equal": lambda op, a, b: a <= b,
    "greater": lambda op, a, b: a > b,
    "greater_equal": lambda op, a, b: a >= b,
    "where": lambda op, c, a, b: _where(c, a, b),
    "maximum": lambda op, a, b: np.maximum(a, b),
    "minimum": lambda op, a, b: np.minimum(a, b),
    # (where(c, 1.0, 2.0)'s array: "full", whose shape the loop below resolves)
    # linear algebra
    "matmul": lambda op, a, b: np.matmul(a, b),
    "transpose": lambda op, a: a.T.copy(),
    "outer": lambda op, a, b: np.multiply.outer(a, b),
    "trace": lambda op, a: np.trace(a),
    "diag": lambda op, a: np.diag(a).copy(),
    # axes (a reshape to symbolic dims needs their sizes: interpret() binds them)
    "reshape": lambda op, a: a.reshape(op.attr("shape")).copy(),
    "permute": lambda op, a: np.transpose(a, op.attr("axes")).copy(),
    "concatenate": lambda op, *xs: np.concatenate(xs, axis=op.attr("axis")),
    "stack": lambda op, *xs: np.stack(xs, axis=op.attr("axis")),
    "einsum": lambda op, *xs: np.einsum(op.attr("subscripts"), *xs),
    "inv": lambda op, a: np.linalg.inv(a),
    "det": lambda op, a: np.linalg.det(a),
    "logdet": lambda op, a: np.linalg.slogdet(a)[1],
    # reductions and normalisations along an axis
    "sum": _reduction(np.sum),
    "mean": _reduction(np.mean),
    "max": _reduction(np.max),
    "logsumexp": _reduction(_lse),
    "softmax": lambda op, a: _softmax(a, op.attr("axis")),
    "log_softmax": lambda op, a: _log_softmax(a, op.attr("axis")),
    # labels (integer inputs, kept as integers)
    "take_along_axis": _take_along_axis,
    "one_hot": _one_hot,  # (given the depth: see interpret)
}


def implementation(name: str) -> Callable[..., np.ndarray] | None:
    """The implementation of op ``name``: its entry above, else NumPy's one-argument ufunc of that
    name (``expm1`` is ``np.expm1``), else None."""
    impl = IMPLEMENTATIONS.get(name)
    if impl is None:
        ufunc = getattr(np, name, None)
        if isinstance(ufunc, np.ufunc) and ufunc.nin == 1 and ufunc.nout == 1:
            return lambda op, a: ufunc(a)
    return impl


def _program(target: Any) -> Program:
    """The forward program of a ``Function``, a ``CompiledFunction`` or a ``Program``."""
    if isinstance(target, Program):
        return target
    fn = getattr(target, "function", target)  # CompiledFunction -> Function
    program = getattr(fn, "program", None)
    if not isinstance(program, Program):
        raise TypeError(f"interpret() needs a parsed function or a Program, not {type(target).__name__}")
    return program


def _bind_dims(program: Program, env: dict[str, np.ndarray]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name in program.inputs:
        declared = program.values[name].shape
        actual = env[name].shape
        if len(declared) != len(actual):
            raise InterpretError(f"input {name} has shape {actual}; expected rank {len(declared)}")
        for d, n in zip(declared, actual):
            if isinstance(d, int):
                if d != n:
                    raise InterpretError(f"input {name} has shape {actual}; expected {declared}")
            elif dims.setdefault(d, n) != n:
                raise InterpretError(f"input {name}: dim {d} is {n} here but {dims[d]} elsewhere")
    return dims


def interpret(target: Any, inputs: Sequence[Any] | Mapping[str, Any],
              dtype: Any = np.float64) -> tuple[np.ndarray, ...]:
    """Evaluate a function's forward program on ``inputs`` and return its outputs, in order.

    ``target`` is a parsed ``Function`` (``parse_function(spec, fn)``), a ``CompiledFunction``
    or a forward ``Program``; ``inputs`` are positional (spec order) or a mapping by name.
    Every array is converted to ``dtype`` (float64 by default, whatever the spec's dtype), so
    a float32 module can be compared with a float64 reference on the same inputs.
    """
    program = _program(target)
    if isinstance(inputs, Mapping):
        missing = [n for n in program.inputs if n not in inputs]
        if missing:
            raise InterpretError(f"missing inputs: {', '.join(missing)}")
        values = [inputs[n] for n in program.inputs]
    else:
        values = list(inputs)
        if len(values) != len(program.inputs):
            raise InterpretError(f"expected {len(program.inputs)} inputs "
                                 f"({', '.join(program.inputs)}), got {len(values)}")
    env: dict[str, np.ndarray] = {  # copies; integer and boolean inputs keep their dtype
        n: np.array(v, dtype=program.values[n].dtype or dtype) for n, v in zip(program.inputs, values)
    }
    dims = _bind_dims(program, env)

    def arg(a: object) -> np.ndarray:
        if isinstance(a, Const):
            return np.asarray(a.value, dtype=dtype)
        if isinstance(a, DimSize):
            return np.asarray(dims[a.name], dtype=dtype)
        return env[a]  # type: ignore[index]

    def reshape(op: Op, a: np.ndarray) -> np.ndarray:
        shape = op.attr("shape")
        return a.reshape(tuple(dim_value(d, dims) for d in shape)).copy()  # type: ignore[attr-defined]

    for op in program.ops:
        impl = reshape if op.op == "reshape" else implementation(op.op)
        if op.op == "one_hot":  # its depth is a dim's size or a number
            depth = op.attr("depth")
            impl = functools.partial(_one_hot, depth=dims[depth] if isinstance(depth, str) else depth)  # type: ignore[arg-type]
        elif op.op in ("full", "eye"):
            declared: tuple = op.attr("shape")  # type: ignore[assignment]
            shape = tuple(d if isinstance(d, int) else dims[d] for d in declared)
            impl = ((lambda op, a: np.full(shape, a)) if op.op == "full"  # noqa: E731
                    else (lambda op: np.eye(shape[0])))
        if impl is None:
            where = f" (step '{op.origin.step}')" if op.origin.step else ""
            raise InterpretError(f"the reference interpreter has no implementation of op "
                                 f"'{op.op}'{where}")
        with np.errstate(all="ignore"):
            result = np.asarray(impl(op, *(arg(a) for a in op.args)), dtype=dtype)
        expected = tuple(dim_value(d, dims) for d in program.values[op.out].shape)
        if result.shape != expected:  # a bug here, or in the shape rules: never silently go on
            raise InterpretError(f"op '{op.op}' gave shape {result.shape}; the IR says {expected}")
        env[op.out] = result
    return tuple(arg(o).copy() for o in program.outputs)
