"""Gradient and value checks of a generated module, in float64.

Values: every output (first and ride-along) of ``f``, ``f_value_and_grad`` and ``f_forward`` is
compared with the reference interpreter (``codegen.interpret``, plain NumPy from the parsed IR);
the error is ``max|actual - reference| / max(1, max|reference|)`` and must be at most
``VALUE_TOLERANCE``.  A call that raises, or returns the wrong shape, fails the check.

Gradients: both the gradients of ``f_value_and_grad`` (g = 1 folded in: the derivative of
``sum(y)``) and those of ``f_forward`` + ``f_backward`` with a random cotangent ``g`` of the
first output's shape (the derivative of ``sum(g * y)``) are compared with central differences of
the interpreted function, coordinate by coordinate (a random sample of at most ``max_coords``
coordinates per input) and along one random direction over all coordinates.  The error reported
is ``max|analytic - numeric| / max(1, max|numeric|)``: relative for large gradients, absolute
for small ones; the worse of the two calls counts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import importing
from .compiler import Compiled, compile_spec, emitter_for, render
from .ir import Op, Program
from .ops import NONSINGULAR, OPS, POSITIVE, POSITIVE_IF_FRACTIONAL
from .parse import Function
from .spec import Spec

TOLERANCE = 1e-6
# Outputs against the reference interpreter: max|actual - reference| / max(1, max|reference|).
VALUE_TOLERANCE = 1e-9
STEP = 1e-6
# The most memory a gradient check may need (its estimate: every value of the joint forward and
# backward program at the example dims, plus the two perturbed copies of the inputs, in float64).
MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class Result:
    """The worst error of one gradient (``kind="gradient"``, ``wrt`` the input) or of one output's
    value (``kind="value"``, ``wrt`` the output's name) of one function."""

    function: str
    wrt: str
    error: float
    method: str  # how it was checked
    kind: str = "gradient"
    detail: str = ""  # which call was worst, or the exception a call raised

    @property
    def tolerance(self) -> float:
        return VALUE_TOLERANCE if self.kind == "value" else TOLERANCE

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tolerance


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


class GradcheckTooLarge(ValueError):
    """The spec's dims make a gradient check need more memory than ``MAX_BYTES``."""


def _size(amount: int) -> str:
    """A byte count in binary units (3 significant digits)."""
    value = float(amount)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            return f"{amount:,} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def memory_needed(spec: Spec, cf: Any) -> tuple[int, dict[str, int]]:
    """(bytes, dims) a gradient check of one compiled function needs, estimated before allocating:
    every value of the joint forward and backward program, plus two copies of the inputs."""
    fn = cf.function
    dims = example_dims(spec, fn)
    program = cf.value_and_grad

    def elements(shape: tuple) -> int:
        n = 1
        for d in shape:
            n *= d if isinstance(d, int) else dims.get(d, 1)
        return n

    total = sum(elements(v.shape) for v in program.values.values())
    total += 2 * sum(elements(fn.program.values[i].shape) for i in fn.program.inputs)
    used = {d: dims[d] for d in fn.dims if d in dims}
    return 8 * total, used


def check_memory(compiled: Compiled) -> None:
    """Raise GradcheckTooLarge when a function's gradient check would need more than MAX_BYTES."""
    for cf in compiled.functions:
        need, dims = memory_needed(compiled.spec, cf)
        if need > MAX_BYTES:
            sizes = ", ".join(f"{d}={n}" for d, n in dims.items()) or "no symbolic dims"
            raise GradcheckTooLarge(
                f"gradcheck of function '{cf.function.name}' at the spec's dims ({sizes}) would "
                f"need about {_size(need)} of memory for its inputs, values and gradients in "
                f"float64; the limit is {_size(MAX_BYTES)}: give smaller example sizes in 'dims'")


def _operands_in(program: Program, wanted: str) -> set[str]:
    """Values read where the op table's ``domain`` of the operand is ``wanted``."""
    found: set[str] = set()
    for op in program.ops:
        for a, domain in zip(op.args, OPS[op.op].domain):
            if isinstance(a, str) and _domain(op, domain) == wanted:
                found.add(a)
    return found


def _domain(op: Op, domain: str) -> str:
    if domain == POSITIVE_IF_FRACTIONAL:
        return POSITIVE if float(op.attr("exponent")) % 1 != 0 else ""  # type: ignore[arg-type]
    return domain


def _reaching(program: Program, targets: set[str]) -> set[str]:
    """Inputs that the values ``targets`` depend on."""
    deps: dict[str, set[str]] = {i: {i} for i in program.inputs}
    for op in program.ops:
        deps[op.out] = set().union(*(deps.get(a, set()) for a in op.args if isinstance(a, str)))
    return set().union(*(deps.get(v, set()) for v in targets)) if targets else set()


def conditioned_inputs(program: Program) -> set[str]:
    """Square inputs that reach an inverse or a determinant: drawn near the identity."""
    return _reaching(program, _operands_in(program, NONSINGULAR))


def positive_inputs(program: Program) -> set[str]:
    """Inputs that reach an operand which must be positive (log, sqrt, divisor, fractional power)."""
    return _reaching(program, _operands_in(program, POSITIVE))


def label_bound(program: Program, name: str, dims: dict[str, int]) -> int:
    """The number of classes the labels ``name`` index (the smallest over the ops reading them;
    3 when none does)."""
    bounds = []
    for op in program.ops:
        if name not in [op.args[k] for k in OPS[op.op].labels]:
            continue
        if op.op == "one_hot":
            depth = op.attr("depth")
        else:
            axis = op.attr("axis")
            assert isinstance(axis, int)
            depth = program.shape_of(op.args[0])[axis]
        bounds.append(depth if isinstance(depth, int) else dims[str(depth)])
    return min(bounds, default=3)


def random_inputs(fn: Function, dims: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Well-scaled float64 inputs: positive where a log, sqrt or divisor needs it, near the
    identity where an inverse or determinant does."""
    positive = positive_inputs(fn.program)
    conditioned = conditioned_inputs(fn.program)
    out: list[np.ndarray] = []
    for name in fn.program.inputs:
        shape = tuple(d if isinstance(d, int) else dims[d] for d in fn.program.values[name].shape)
        kind = fn.program.values[name].dtype
        if kind == "bool":
            out.append(rng.random(shape) < 0.5)
        elif kind:  # labels: within [0, K) of every op that reads them
            out.append(rng.integers(0, label_bound(fn.program, name, dims), size=shape))
        elif name in conditioned and len(shape) == 2 and shape[0] == shape[1]:
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


def _outputs(result: Any, n: int) -> tuple:
    """A public function's outputs as a tuple (one output comes back bare)."""
    return tuple(result) if n > 1 else (result,)


def _value_error(actual: Any, expected: np.ndarray) -> tuple[float, str]:
    a = np.asarray(actual)
    if a.shape != expected.shape:
        return float("inf"), f"shape {a.shape}, expected {expected.shape}"
    if not np.issubdtype(a.dtype, np.floating):
        return float("inf"), f"dtype {a.dtype}, expected a float"
    a = a.astype(float)
    both = np.isfinite(a) & np.isfinite(expected)
    if not np.array_equal(np.isfinite(a), np.isfinite(expected)) or \
            not np.array_equal(a[~both], expected[~both], equal_nan=True):
        return float("inf"), "non-finite values differ"
    err = np.max(np.abs(a[both] - expected[both]), initial=0.0)
    return float(err / max(1.0, float(np.max(np.abs(expected[both]), initial=0.0)))), ""


def _call(function: Any, *args: Any) -> tuple[Any, str]:
    """``function(*args)``, or None and the exception it raised (a crash is a failed check)."""
    try:
        return function(*args), ""
    except Exception as e:  # noqa: BLE001 - reported as a failure of this check
        return None, f"{type(e).__name__}: {str(e)[:200]}"


def check_values(module: Any, fn: Function, args: list[np.ndarray]) -> list[Result]:
    """Every output (first and ride-along) of ``f``, ``f_value_and_grad`` and ``f_forward``
    against the reference interpreter (``codegen.interpret``), one result per output."""
    from .interpret import interpret

    n = len(fn.program.outputs)
    expected = interpret(fn, args)
    errors: list[list[tuple[float, str]]] = [[] for _ in range(n)]
    calls = [(fn.name, lambda r: r), (fn.name + "_value_and_grad", lambda r: r[0]),
             (fn.name + "_forward", lambda r: r[0])]
    for name, pick in calls:
        result, crash = _call(getattr(module, name), *args)
        for k in range(n):
            if crash:
                err, why = float("inf"), f"{name} raised {crash}"
            else:
                try:
                    err, why = _value_error(_outputs(pick(result), n)[k], expected[k])
                except (TypeError, IndexError, ValueError) as e:
                    err, why = float("inf"), f"unexpected result ({type(e).__name__}: {e})"
                why = f"{name} ({why})" if why else name
            errors[k].append((err, why))
    results = []
    for out, errs in zip(fn.program.outputs, errors):
        worst = max((e for e, _ in errs), key=lambda e: np.inf if np.isnan(e) else e)
        failing = [why for e, why in errs if not e <= VALUE_TOLERANCE]  # NaN fails too
        results.append(Result(fn.name, str(out), worst, "outputs of f, f_value_and_grad, "
                              "f_forward vs the reference interpreter", kind="value",
                              detail=", ".join(failing)))
    return results


def check_function(module: Any, spec: Spec, fn: Function, seed: int = 0,
                   max_coords: int = 64) -> list[Result]:
    """The values of one function against the interpreter, and each of its gradients against
    central differences of the interpreted function, both from ``f_value_and_grad`` (g = 1: the
    differences of ``sum(y)``) and from ``f_forward`` + ``f_backward`` with a random cotangent
    ``g`` of the first output's shape (the differences of ``sum(g * y)``)."""
    from .interpret import interpret

    rng = np.random.default_rng(seed)
    dims = example_dims(spec, fn)
    args = random_inputs(fn, dims, rng)
    names = list(fn.program.inputs)
    results = check_values(module, fn, args)
    shape0 = interpret(fn, args)[0].shape
    g = np.array(rng.standard_normal(shape0))

    def objective(weights: np.ndarray) -> Any:
        return lambda values: float(np.sum(weights * interpret(fn, values)[0]))

    vag, crash_vag = _call(getattr(module, fn.name + "_value_and_grad"), *args)
    fwd, crash_fwd = _call(getattr(module, fn.name + "_forward"), *args)
    bwd, crash_bwd = (None, crash_fwd) if crash_fwd else \
        _call(getattr(module, fn.name + "_backward"), fwd[1], g)
    checks = [("value_and_grad (g = 1)", None if crash_vag else vag[1], crash_vag,
               objective(np.ones(shape0))),
              ("forward+backward (random g)", bwd, crash_bwd, objective(g))]
    for w in fn.wrt:
        i = names.index(w)
        x = args[i]
        flat = np.arange(x.size)
        if x.size > max_coords:
            flat = rng.choice(x.size, size=max_coords, replace=False)
        v = np.array(rng.standard_normal(x.shape))
        worst, detail = 0.0, ""
        for label, grads, crash, f in checks:
            if crash:
                err, why = float("inf"), f"{label}: raised {crash}"
            else:
                grad = np.asarray(getattr(grads, w))
                if grad.shape != x.shape:
                    err, why = float("inf"), f"{label}: shape {grad.shape}, expected {x.shape}"
                else:
                    grad = grad.astype(float)
                    numeric, analytic = [], []
                    for k in flat:
                        idx = np.unravel_index(k, x.shape) if x.ndim else ()
                        numeric.append(_central(f, args, i, idx))
                        analytic.append(grad[idx])
                    numeric.append(_directional(f, args, i, v))
                    analytic.append(float(np.sum(grad * v)))
                    err, why = _error(np.array(analytic), np.array(numeric)), label
            if not err <= worst:
                worst, detail = err, why
        results.append(Result(fn.name, w, worst, "coordinates+direction", detail=detail))
    return results


def _moved(args: list[np.ndarray], where: list[int], direction: list[np.ndarray], s: float
           ) -> list[np.ndarray]:
    out = list(args)
    for i, v in zip(where, direction):
        out[i] = args[i] + s * v
    return out


def check_derivatives(module: Any, spec: Spec, fn: Function, seed: int = 0,
                      max_coords: int = 16) -> list[Result]:
    """The derivative kinds the spec asks for (DESIGN.md §3b), one result each: f_jvp and
    f_jacobian against central differences of the interpreted function (along a random
    direction; along unit vectors, at most ``max_coords`` per input), f_hvp and f_hessian against
    central differences of the gradient of ``f_value_and_grad`` (itself checked above)."""
    from .interpret import interpret

    kinds = [ref.name for ref in fn.spec.derivatives]
    if not kinds:
        return []
    rng = np.random.default_rng(seed + 1)
    args = random_inputs(fn, example_dims(spec, fn), rng)
    names = list(fn.program.inputs)
    where = [names.index(w) for w in fn.wrt]
    first = str(fn.program.values[str(fn.program.outputs[0])].hint)
    direction = [np.array(rng.standard_normal(args[i].shape)) for i in where]

    def y(values: list[np.ndarray]) -> np.ndarray:
        return np.asarray(interpret(fn, values)[0], dtype=float)

    def grads(values: list[np.ndarray]) -> np.ndarray:
        g = getattr(module, fn.name + "_value_and_grad")(*values)[1]
        return np.concatenate([np.ravel(x) for x in g])

    def units(i: int) -> np.ndarray:
        size = args[i].size
        return np.arange(size) if size <= max_coords else rng.choice(size, max_coords, replace=False)

    def unit(i: int, k: int) -> list[np.ndarray]:
        out = [np.zeros(args[j].shape) for j in where]
        out[where.index(i)].reshape(-1)[k] = 1.0
        return out

    def diff(f: Any, d: list[np.ndarray]) -> np.ndarray:
        return (f(_moved(args, where, d, STEP)) - f(_moved(args, where, d, -STEP))) / (2 * STEP)

    results = []
    for kind in kinds:
        analytic: list[np.ndarray] = []
        numeric: list[np.ndarray] = []
        try:
            if kind == "jvp":
                analytic.append(np.ravel(getattr(module, fn.name + "_jvp")(*args, direction)[1]))
                numeric.append(np.ravel(diff(y, direction)))
                method = "directional derivative vs differences of the function"
            elif kind == "jacobian":
                jac = getattr(module, fn.name + "_jacobian")(*args)[1]
                for i, w in zip(where, fn.wrt):
                    for k in units(i):
                        analytic.append(np.asarray(getattr(jac, w))[:, k])
                        numeric.append(np.ravel(diff(y, unit(i, k))))
                method = "columns vs differences of the function"
            elif kind == "hvp":
                hv = getattr(module, fn.name + "_hvp")(*args, direction)[2]
                analytic.append(np.concatenate([np.ravel(h) for h in hv]))
                numeric.append(diff(grads, direction))
                method = "H v vs differences of the gradient"
            else:
                H = getattr(module, fn.name + "_hessian")(*args)[2]
                offset = 0
                for i in where:
                    for k in units(i):
                        analytic.append(np.asarray(H)[:, offset + k])
                        numeric.append(diff(grads, unit(i, k)))
                    offset += args[i].size
                method = "columns vs differences of the gradient"
            err, detail = _error(np.concatenate(analytic), np.concatenate(numeric)), ""
        except Exception as e:  # noqa: BLE001 - reported as a failure of this check
            err, detail, method = float("inf"), f"{type(e).__name__}: {str(e)[:200]}", kind
        results.append(Result(fn.name, first, err, method, kind=kind, detail=detail))
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
    spec64 = dataclasses.replace(spec, dtype="float64")
    compiled = compile_spec(spec64)
    check_memory(compiled)  # before any module is imported or input allocated
    module = importing.import_source(render(compiled, backend), spec.module + "_gradcheck", backend)
    results: list[Result] = []
    with np.errstate(all="ignore"):
        for cf in compiled.functions:
            results.extend(check_function(module, spec64, cf.function, seed=seed))
            if emitter_for(backend, spec64.dtype).writes_derivatives:  # (every backend's does)
                results.extend(check_derivatives(module, spec64, cf.function, seed=seed))
    return results
