"""Gradient checks: generated gradients against central finite differences in float64.

For a scalar first output, every gradient is compared coordinate by coordinate (a random sample of
at most ``max_coords`` coordinates per input) and along one random direction over all coordinates.
For a non-scalar first output, the dot-product test ``<u, J v>`` (finite differences) against
``<J^T u, v>`` (the generated backward with ``g = u``) is used.  The error reported is
``max|analytic - numeric| / max(1, max|numeric|)``: relative for large gradients, absolute for
small ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compiler import compile_spec, render
from .ir import Program
from .parse import Function
from .spec import Spec

TOLERANCE = 1e-6
STEP = 1e-6
# Ops whose (first) operand must stay positive for the function to be smooth and finite.
_POSITIVE_ARG0 = {"log", "sqrt", "log1p"}


@dataclass(frozen=True)
class Result:
    """The worst error of one gradient."""

    function: str
    wrt: str
    error: float
    method: str  # "coordinates+direction" or "dot-product"

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= TOLERANCE


def example_dims(spec: Spec, fn: Function) -> dict[str, int]:
    """The spec's ``dims``; symbolic dims it does not give get distinct small sizes (3, 4, ...)."""
    dims = dict(spec.dims)
    size = 3
    for d in fn.dims:
        if d not in dims:
            while size in dims.values():
                size += 1
            dims[d] = size
            size += 1
    return dims


_MATRIX_FUNCTIONS = {"inv", "det", "logdet"}


def _reaching(program: Program, targets: set[str]) -> set[str]:
    """Inputs that the values ``targets`` depend on."""
    deps: dict[str, set[str]] = {i: {i} for i in program.inputs}
    for op in program.ops:
        deps[op.out] = set().union(*(deps.get(a, set()) for a in op.args if isinstance(a, str)))
    return set().union(*(deps.get(v, set()) for v in targets)) if targets else set()


def conditioned_inputs(program: Program) -> set[str]:
    """Square inputs that reach an inverse or a determinant: drawn near the identity."""
    return _reaching(program, {op.args[0] for op in program.ops  # type: ignore[misc]
                               if op.op in _MATRIX_FUNCTIONS and isinstance(op.args[0], str)})


def positive_inputs(program: Program) -> set[str]:
    """Inputs that reach an operand which must be positive (log, sqrt, divisor, fractional power)."""
    must: set[str] = set()
    for op in program.ops:
        if op.op in _POSITIVE_ARG0 or (op.op == "pow" and float(op.attr("exponent")) % 1 != 0):  # type: ignore[arg-type]
            must.add(op.args[0]) if isinstance(op.args[0], str) else None
        if op.op == "div" and isinstance(op.args[1], str):
            must.add(op.args[1])
    return _reaching(program, must)


def random_inputs(fn: Function, dims: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Well-scaled float64 inputs: positive where a log, sqrt or divisor needs it, near the
    identity where an inverse or determinant does."""
    positive = positive_inputs(fn.program)
    conditioned = conditioned_inputs(fn.program)
    out = []
    for name in fn.program.inputs:
        shape = tuple(d if isinstance(d, int) else dims[d] for d in fn.program.values[name].shape)
        if name in conditioned and len(shape) == 2 and shape[0] == shape[1]:
            out.append(np.eye(shape[0]) + 0.2 * rng.standard_normal(shape) / np.sqrt(shape[0]))
        elif name in positive:
            out.append(np.array(rng.uniform(0.5, 1.5, size=shape)))
        else:
            out.append(np.array(rng.standard_normal(shape) * 0.7))
    return out


def _error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    a, n = np.asarray(analytic, float), np.asarray(numeric, float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
        return float("inf")
    return float(np.max(np.abs(a - n), initial=0.0) / max(1.0, float(np.max(np.abs(n), initial=0.0))))


def check_function(module: Any, spec: Spec, fn: Function, seed: int = 0,
                   max_coords: int = 64) -> list[Result]:
    """Worst finite-difference error of each gradient of one function."""
    rng = np.random.default_rng(seed)
    dims = example_dims(spec, fn)
    args = random_inputs(fn, dims, rng)
    names = list(fn.program.inputs)
    f = getattr(module, fn.name)

    def first(values: list[np.ndarray]) -> np.ndarray:
        out = f(*values)
        return np.asarray(out[0] if len(fn.program.outputs) > 1 else out, dtype=float)

    outputs, saved = getattr(module, fn.name + "_forward")(*args)
    out0 = np.asarray(outputs[0] if len(fn.program.outputs) > 1 else outputs)
    results = []
    if out0.ndim == 0:
        grads = getattr(module, fn.name + "_backward")(saved)
        for w in fn.wrt:
            i = names.index(w)
            g = np.asarray(getattr(grads, w), dtype=float)
            x = args[i]
            flat = np.arange(x.size)
            if x.size > max_coords:
                flat = rng.choice(x.size, size=max_coords, replace=False)
            numeric, analytic = [], []
            for k in flat:
                idx = np.unravel_index(k, x.shape) if x.ndim else ()
                numeric.append(_central(first, args, i, idx))
                analytic.append(g[idx])
            v = np.array(rng.standard_normal(x.shape))
            numeric.append(_directional(first, args, i, v))
            analytic.append(float(np.sum(g * v)))
            results.append(Result(fn.name, w, _error(np.array(analytic), np.array(numeric)),
                                  "coordinates+direction"))
    else:
        u = rng.standard_normal(out0.shape)
        grads = getattr(module, fn.name + "_backward")(saved, u)

        def projected(values: list[np.ndarray]) -> np.ndarray:
            return np.asarray(np.sum(u * first(values)))

        for w in fn.wrt:
            i = names.index(w)
            v = rng.standard_normal(args[i].shape)
            numeric_uv = _directional(projected, args, i, v)
            analytic_uv = float(np.sum(np.asarray(getattr(grads, w)) * v))
            results.append(Result(fn.name, w, _error(np.array([analytic_uv]), np.array([numeric_uv])),
                                  "dot-product"))
    return results


def _central(f: Any, args: list[np.ndarray], i: int, idx: tuple) -> float:
    plus = [a.copy() for a in args]
    minus = [a.copy() for a in args]
    plus[i][idx] += STEP
    minus[i][idx] -= STEP
    return float((f(plus) - f(minus)) / (2 * STEP))


def _directional(f: Any, args: list[np.ndarray], i: int, v: np.ndarray) -> float:
    plus = list(args)
    minus = list(args)
    plus[i] = args[i] + STEP * v
    minus[i] = args[i] - STEP * v
    return float((f(plus) - f(minus)) / (2 * STEP))


def check_spec(spec: Spec, seed: int = 0, backend: str = "numpy") -> list[Result]:
    """Check every gradient of every function of a spec (in float64, whatever its dtype)."""
    from .api import import_source

    spec64 = dataclasses.replace(spec, dtype="float64")
    compiled = compile_spec(spec64)
    module = import_source(render(compiled, backend), spec.module + "_gradcheck", backend)
    results: list[Result] = []
    with np.errstate(all="ignore"):
        for cf in compiled.functions:
            results.extend(check_function(module, spec64, cf.function, seed=seed))
    return results
