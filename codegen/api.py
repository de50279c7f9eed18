"""The Python API, for tests and notebooks: generate source from a spec string or file, or load it."""

from __future__ import annotations

import os
import types
from pathlib import Path

from .compiler import compile_spec, render
from .loader import load_spec, load_spec_file
from .spec import Spec


def _spec(spec: str | os.PathLike | Spec, path: str | None) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec
                                         and spec.endswith((".yaml", ".yml"))):
        return load_spec_file(spec)
    return load_spec(str(spec), path or "<string>")


def generate_source(spec: str | os.PathLike | Spec, backend: str = "numpy",
                    path: str | None = None) -> str:
    """Source of the generated module for a spec given as YAML text, a spec file path, or a Spec.

    Raises ``SpecError`` (``path:line:col: error: ...``) for a bad spec.
    """
    return render(compile_spec(_spec(spec, path)), backend)


def load_module(spec: str | os.PathLike | Spec, backend: str = "numpy",
                path: str | None = None) -> types.ModuleType:
    """Generate a spec's module and import it in memory (nothing is written to disk)."""
    s = _spec(spec, path)
    source = render(compile_spec(s), backend)
    module = types.ModuleType(s.module)
    module.__file__ = f"<codegen:{Path(s.path).name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own output
    return module


def gradcheck(spec: str | os.PathLike | Spec, path: str | None = None, seed: int = 0):  # type: ignore[no-untyped-def]
    """Compare every gradient of a spec with central finite differences; see ``codegen.gradcheck``."""
    from .finite_differences import check_spec

    return check_spec(_spec(spec, path), seed=seed)
