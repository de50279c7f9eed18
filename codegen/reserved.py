"""Names a spec may not use: the one place the loader, the step parser, the schema and the
emitters ask.

A step calls the vocabulary's functions by name (``tanh``, ``sum``: the op table's callable
ops), so no value, dim or function may take one. A generated module binds, at module level,
the names its templates bind (imports, helpers, constants: read from the template files
themselves, so a new helper is reserved the moment it is written) and, for each spec function
``f``, the names in :func:`function_names`. The functions generated for ``f`` also read a few
builtins (:data:`BODY_BUILTINS`). A user name (function, input, step, dim) that were any of
these would shadow it: it is refused where the spec writes it, and locals the emitters invent
never take one.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .ops import CALLABLE

# Builtins that the functions generated for a spec function read (the Numba kernels' loops,
# the wrappers' except clauses): an input or step of that name would shadow them.
# tests/test_numba_hardening.py checks that generated code reads no other.
BODY_BUILTINS = frozenset({"range", "max", "min", "abs", "type", "TypeError", "ValueError"})
# Modules the generated code imports, by their own names (a user name `numpy` or `typing`
# shadows nothing, but reads as if it did).
IMPORTED = frozenset({"numpy", "numba", "typing", "sys", "types", "warnings", "threading"})
# Kept from earlier versions: the usual alias of numba.
LEGACY = frozenset({"nb"})
# Module names a spec's module may not take (the loader adds the standard library and every
# package Numba imports, found at load time): what generated code imports, what Numba imports
# through it, and codegen itself.
MODULES = IMPORTED | {"llvmlite", "scipy", "yaml", "codegen"}
# The functions a step calls by name.
VOCABULARY = frozenset(CALLABLE)

_DEF = re.compile(r"^(?:def|class)\s+([A-Za-z_]\w*)\s*[(:]")
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")
_IMPORT = re.compile(r"^import\s+([\w.]+)(?:\s+as\s+(\w+))?\s*$")
_FROM = re.compile(r"^from\s+[\w.]+\s+import\s+(.+)$")


def templates_dir() -> Path:
    """The Jinja templates: inside the installed package, or the repo's top-level ``templates/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "module.py.j2").is_file():
            return candidate
    raise FileNotFoundError("codegen's templates are missing from the installation")


@functools.cache
def template_names() -> frozenset[str]:
    """Every name a template (NumPy or Numba, helpers included) binds at module level."""
    names: set[str] = set()
    for path in sorted(templates_dir().rglob("*.j2")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := _DEF.match(line) or _ASSIGN.match(line):
                names.add(match.group(1))
            elif match := _IMPORT.match(line):
                names.add(match.group(2) or match.group(1).split(".")[0])
            elif match := _FROM.match(line):
                for item in match.group(1).strip("()").split(","):
                    names.add(item.split(" as ")[-1].strip())
    names.discard("")
    return frozenset(names)


@functools.cache
def reserved_names() -> frozenset[str]:
    """The names a spec may not give a function, an input, a step or a dim (those not starting
    with '_': such names are refused anyway)."""
    public = {n for n in template_names() if not n.startswith("_")}
    return frozenset(public | BODY_BUILTINS | IMPORTED | LEGACY | VOCABULARY)


def inputs_const(function: str) -> str:
    """The module constant holding a function's expected input shapes."""
    return f"_{function.upper()}_INPUTS"


def tangents_const(function: str) -> str:
    """The module constant holding the shapes of a function's inputs and tangents (f_jvp, f_hvp)."""
    return f"_{function.upper()}_TANGENT_SHAPES"


PUBLIC_SUFFIXES = ("", "_forward", "_backward", "_value_and_grad", "_Grads", "_Saved",
                   "_jvp", "_jacobian", "_hvp", "_hessian")  # (the last four: DESIGN.md §3b)
KERNEL_SUFFIXES = ("_forward", "_backward", "_value_and_grad", "_jvp", "_hvp",
                   # (f_jacobian's and f_hessian's)
                   "_jvp_block", "_hvp_block", "_vjp_rows", "_jvp_cols", "_hvp_cols")


def function_names(function: str) -> list[str]:
    """The module-level names generated for spec function ``function``: its public functions
    and types, then its kernels (Numba) and its inputs constant."""
    return ([function + s for s in PUBLIC_SUFFIXES]
            + [f"_{function}{s}" for s in KERNEL_SUFFIXES] + [inputs_const(function),
                                                               tangents_const(function)])
