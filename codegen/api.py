"""The Python API, for tests and notebooks: generate source from a spec string or file, or load it."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

from .compiler import Compiled, compile_spec, render
from .loader import load_spec, load_spec_file
from .spec import Spec


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
    per-user cache directory, because Numba's ``cache=True`` needs a file to cache beside.
    """
    s = _spec(spec, path)
    return import_source(render(_compile(s), backend), s.module, backend)


def import_source(source: str, name: str, backend: str = "numpy") -> types.ModuleType:
    """Import generated source as a module (see ``load_module``)."""
    if backend == "numpy":
        module = types.ModuleType(name)
        module.__file__ = f"<codegen:{name}>"
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our output
        return module
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"codegen-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    file = folder / f"{name}_{backend}_{digest}.py"
    if not file.exists():
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, file)
    qualified = f"{name}_{backend}_{digest}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # Numba's cache finds the module's globals by its name
    spec.loader.exec_module(module)
    return module


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
