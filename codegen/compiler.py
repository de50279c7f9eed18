"""The pipeline, end to end, every stage a pass over the IR run here in order.

spec → parse (forward IR) → differentiate (joint IR, ``planner.py``) → optimise (``passes.py``)
→ lower (loop backends, ``lower.py``) → fuse (loop backends, ``fusion.py``) → split long kernels
into parts (loop backends) → render statements (the emitter) → plan memory (array backends,
``memory.py``) → print the module (the emitter's templates, then black).

The stages after optimisation depend on the backend: the emitter says which it wants (its
``lowers``, ``fuses``, ``plan_memory``, ... attributes) and receives their results as a plan
(``plan.py``); it runs none of them.
"""

from __future__ import annotations

import builtins
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from .derivatives import DerivativePrograms, derivative_helpers, derivative_programs, derivative_view
from .emit import Emitter, FunctionView, spec_label
from .errors import SpecError, SpecWarning
from .fusion import fuse
from .ir import Op, Program
from .loader import _module_problem as module_problem
from .lower import lower
from .memory import plan as plan_memory
from .parse import Function, parse_function, quiet_called
from .passes import backward_reads, constant_only, optimize
from .plan import Body, FunctionPlan, Group, grad_values
from .planner import SEED, differentiate
from .reserved import function_names
from .spec import Spec

BACKENDS = ("numpy", "numba", "array_api")


P = ParamSpec("P")
R = TypeVar("R")


def _gc_paused(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with the cyclic garbage collector paused: the IR of a long spec is
    hundreds of thousands of small objects, which the collector would walk again and again
    (about 20 % of generating a 1000-step chain); nothing built here is a leaking cycle."""

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


@dataclass
class CompiledFunction:
    """A function's forward program and its two joint programs."""

    function: Function
    value_and_grad: Program  # seed g = 1, folded
    backward: Program  # seed g = the backward's argument
    derivatives: DerivativePrograms | None = None  # f_jvp, f_hvp, ... (DESIGN.md §3b)


@dataclass
class Compiled:
    """A whole spec, differentiated and optimised, ready for any backend."""

    spec: Spec
    functions: list[CompiledFunction]

    @property
    def warnings(self) -> list[SpecWarning]:
        """What compiles but is probably a mistake, in spec order (see ``parse._warnings``)."""
        return [w for cf in self.functions for w in cf.function.warnings]


@_gc_paused
def compile_spec(spec: Spec) -> Compiled:
    """Parse, shape-check and differentiate every function of ``spec``."""
    problem = module_problem(spec.module)  # (a Spec built without the loader)
    if problem:
        raise SpecError(f"module name '{spec.module}' {problem}; choose another", spec.loc)
    parsed, out = [], []
    for fs in spec.functions:
        if fs.name in dir(builtins):
            raise SpecError(
                f"function name '{fs.name}' would shadow the Python builtin of that name "
                "in the generated module; choose another", fs.loc)
        parsed.append(parse_function(spec, fs))
    quiet_called(parsed)
    for fn in parsed:
        vg = optimize(differentiate(fn, True))
        out.append(CompiledFunction(fn, vg, optimize(differentiate(fn, False)),
                                    derivative_programs(fn, vg)))
    return Compiled(spec, out)


def emitter_for(backend: str, dtype: str, **options: bool | int | None) -> Emitter:
    """The emitter of a backend by name (options: the Numba backend's parallel, fastmath and
    max_part_ops)."""
    if backend == "numpy":
        return Emitter(dtype)
    if backend == "numba":
        from .emit_numba import NumbaEmitter

        return NumbaEmitter(dtype, **options)  # type: ignore[arg-type]
    if backend == "array_api":
        from .emit_xp import ArrayAPIEmitter

        return ArrayAPIEmitter(dtype)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def plan_function(cf: CompiledFunction, emitter: Emitter) -> FunctionPlan:
    """The backend's stages after optimisation, up to what its emitter prints: lowering, the
    bodies of the generated functions, their loop groups and their parts."""
    vg, bw = cf.value_and_grad, cf.backward
    if emitter.lowers:
        vg, bw = lower(vg), lower(bw)
    bw_saved, _ = backward_reads(bw)
    vg_saved, _ = backward_reads(vg)
    keep_named = set(bw_saved) | set(vg_saved)
    fwd_ops = [op for op in vg.ops if op.phase == "forward"]
    vg_numbers, bw_numbers = constant_only(vg), constant_only(bw)
    forward = Body(vg, fwd_ops, keep_named, "forward", numbers=vg_numbers)
    backward = Body(bw, [op for op in bw.ops if op.phase == "backward"], grad_values(bw),
                    "backward", numbers=bw_numbers)
    vg_bwd_ops = [op for op in vg.ops if op.phase == "backward"]
    if emitter.fuses_value_and_grad:  # one run: a forward loop and the backward loop that reads
        # it element by element become one loop nest
        value_and_grad = [Body(vg, fwd_ops + vg_bwd_ops, grad_values(vg), "value_and_grad",
                               numbers=vg_numbers)]
    else:
        value_and_grad = [Body(vg, fwd_ops, keep_named, "value_and_grad", numbers=vg_numbers),
                          Body(vg, vg_bwd_ops, grad_values(vg), "value_and_grad",
                               numbers=vg_numbers)]
    bodies = [forward, backward, *value_and_grad]
    for body in bodies:
        program = body.program
        body.live_out = set(body.keep) | {o for o in program.outputs if isinstance(o, str)} | {
            g for _, g in program.grads if isinstance(g, str)}
        if emitter.fuses:
            body.items = fuse(body.ops, program, body.live_out, emitter.max_part_ops)
            body.parts = split(body.items, emitter.max_part_ops)
    return FunctionPlan(cf.function, vg, bw, SEED, bw_saved, vg_saved, forward, backward,
                        value_and_grad)


def split(items: list[Op | Group], max_ops: int | None) -> list[list[Op | Group]]:
    """Runs of ``items`` of at most ``max_ops`` ops each (a longer group alone), compiled as
    functions of their own; one run when ``max_ops`` is None or the items are fewer."""
    size = [len(item.ops) if isinstance(item, Group) else 1 for item in items]
    if max_ops is None or sum(size) <= max_ops:
        return [list(items)]
    parts: list[list[Op | Group]] = [[]]
    count = 0
    for item, n in zip(items, size):
        if parts[-1] and count + n > max_ops:
            parts.append([])
            count = 0
        parts[-1].append(item)
        count += n
    return parts


def memory_pass(view: FunctionView) -> None:
    """The memory plan of each generated function's statements (``memory.py``): what it
    returns is kept, the rest freed when dead and computed into where it can be."""
    for fields, keep in view.returns:
        planned = plan_memory([getattr(view, f) for f in fields], keep)
        for f, stmts in zip(fields, planned):
            setattr(view, f, stmts)


@_gc_paused
def render(compiled: Compiled, backend: str = "numpy", outdir: str | None = None,
           **options: bool | int | None) -> str:
    """The generated module's source for one backend (black-formatted, deterministic)."""
    spec = compiled.spec
    emitter = emitter_for(backend, spec.dtype, **options)
    emitter.module_names = {n for cf in compiled.functions for n in function_names(cf.function.name)}
    plans = [plan_function(cf, emitter) for cf in compiled.functions]
    views = [emitter.function_view(plan) for plan in plans]
    if emitter.plan_memory:
        for view in views:
            memory_pass(view)
    for view, cf in zip(views, compiled.functions):
        if cf.derivatives is not None and emitter.writes_derivatives:
            view.derivs = derivative_view(emitter, cf.function, cf.derivatives, emitter.module_names)
    programs = [p for plan in plans for p in (plan.vg, plan.bw)]
    programs += [tp.program for cf in compiled.functions
                 if cf.derivatives and emitter.writes_derivatives
                 for tp in (cf.derivatives.jvp, cf.derivatives.hvp) if tp is not None]
    helpers = emitter.helpers(programs) + derivative_helpers([v.derivs for v in views])
    return emitter.module(spec_label(spec.path, outdir), spec.sha256, spec.module, spec.doc, views,
                          helpers)


def module_filename(module: str, backend: str) -> str:
    """``nn.py`` for NumPy, ``nn_numba.py`` for Numba, ``nn_xp.py`` for the array API."""
    suffix = {"numpy": "", "array_api": "_xp"}.get(backend, f"_{backend}")
    return f"{module}{suffix}.py"
