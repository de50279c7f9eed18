"""The Python API, for tests and notebooks: generate source from a spec string or file, or load it."""

from __future__ import annotations

import os
import types
import warnings

from .compiler import Compiled, compile_spec, render
from .importing import import_source, module_dir
from .loader import load_spec, load_spec_file
from .spec import Spec

__all__ = ["generate_source", "gradcheck", "import_source", "load_module", "module_dir"]


def _spec(spec: str | os.PathLike | Spec, path: str | None) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec
                                         and spec.endswith((".yaml", ".yml"))):
        return load_spec_file(spec)
    return load_spec(str(spec), path or "<string>")


def _compile(spec: Spec) -> Compiled:
    """Compile, issuing the spec's warnings (``SpecWarning``) at the caller of the public function."""
    compiled = compile_spec(spec)
    for warning in compiled.warnings:
        warnings.warn(warning, stacklevel=3)
    return compiled


def generate_source(spec: str | os.PathLike | Spec, backend: str = "numpy",
                    path: str | None = None) -> str:
    """Source of the generated module for a spec given as YAML text, a spec file path, or a Spec.

    Raises ``SpecError`` (``path:line:col: error: ...``) for a bad spec, and warns with
    ``SpecWarning`` (``path:line:col: warning: ...``) for a probable mistake.
    """
    return render(_compile(_spec(spec, path)), backend)


def load_module(spec: str | os.PathLike | Spec, backend: str = "numpy",
                path: str | None = None) -> types.ModuleType:
    """Generate a spec's module and import it.

    The NumPy module is imported in memory; a Numba module is imported from a file in a
    private directory (see ``module_dir``), because Numba's ``cache=True`` needs a file to cache
    beside.
    """
    s = _spec(spec, path)
    return import_source(render(_compile(s), backend), s.module, backend)


def gradcheck(spec: str | os.PathLike | Spec, path: str | None = None, seed: int = 0,
              backend: str = "numpy"):  # type: ignore[no-untyped-def]
    """Compare every gradient of a spec with central finite differences (see the README)."""
    from .finite_differences import check_spec
    from .parse import parse_function

    s = _spec(spec, path)
    for fs in s.functions:
        for warning in parse_function(s, fs).warnings:
            warnings.warn(warning, stacklevel=2)
    return check_spec(s, seed=seed, backend=backend)
