"""The pipeline, end to end: spec → forward IR → planner → passes → emitter → formatted source."""

from __future__ import annotations

import builtins
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from .emit import Emitter, spec_label
from .errors import SpecError, SpecWarning
from .ir import Program
from .loader import _module_problem as module_problem
from .reserved import function_names
from .parse import Function, parse_function
from .passes import optimize
from .planner import differentiate
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
    out = []
    for fs in spec.functions:
        if fs.name in dir(builtins):
            raise SpecError(
                f"function name '{fs.name}' would shadow the Python builtin of that name "
                "in the generated module; choose another", fs.loc)
        fn = parse_function(spec, fs)
        out.append(CompiledFunction(fn, optimize(differentiate(fn, True)),
                                    optimize(differentiate(fn, False))))
    return Compiled(spec, out)


def emitter_for(backend: str, dtype: str, **options: bool) -> Emitter:
    """The emitter of a backend by name (options: the Numba backend's parallel, fastmath)."""
    if backend == "numpy":
        return Emitter(dtype)
    if backend == "numba":
        from .emit_numba import NumbaEmitter

        return NumbaEmitter(dtype, **options)
    if backend == "array_api":
        from .emit_xp import ArrayAPIEmitter

        return ArrayAPIEmitter(dtype)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


@_gc_paused
def render(compiled: Compiled, backend: str = "numpy", outdir: str | None = None,
           **options: bool) -> str:
    """The generated module's source for one backend (black-formatted, deterministic)."""
    spec = compiled.spec
    emitter = emitter_for(backend, spec.dtype, **options)
    emitter.module_names = {n for cf in compiled.functions for n in function_names(cf.function.name)}
    views = [emitter.function_view(cf.function, cf.value_and_grad, cf.backward)
             for cf in compiled.functions]
    helpers = emitter.helpers([p for cf in compiled.functions for p in (cf.value_and_grad, cf.backward)])
    return emitter.module(spec_label(spec.path, outdir), spec.sha256, spec.module, spec.doc, views,
                          helpers)


def module_filename(module: str, backend: str) -> str:
    """``nn.py`` for NumPy, ``nn_numba.py`` for Numba, ``nn_xp.py`` for the array API."""
    suffix = {"numpy": "", "array_api": "_xp"}.get(backend, f"_{backend}")
    return f"{module}{suffix}.py"
