"""The Python API, for tests and notebooks: generate source from a spec string or file, or load it."""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
import warnings
from pathlib import Path

from .compiler import Compiled, compile_spec, render
from .files import private_dir_problem, same_content, write_files
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
    private directory (see ``module_dir``), because Numba's ``cache=True`` needs a file to cache
    beside.
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
    from .emit_numba import RUNTIME_FILENAME, runtime_source

    folder = module_dir()
    # The module imports the Numba runtime beside it (``from . import``): it is imported as a
    # module of a package of its own whose directory is the private one.
    package = "_codegen_modules_" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    qualified = f"{package}.{name}_{backend}_{digest}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    file = folder / f"{name}_{backend}_{digest}.py"
    # Only what this call generated is imported: the files are compared with the sources (and
    # replaced when they differ) even in a directory that only the user can write.
    files = {file: source, folder / RUNTIME_FILENAME: runtime_source()}
    changed = {path: text for path, text in files.items() if not same_content(path, text)}
    if changed:
        write_files(changed)
    if package not in sys.modules:
        holder = types.ModuleType(package)
        holder.__path__ = [str(folder)]
        sys.modules[package] = holder
    spec = importlib.util.spec_from_file_location(qualified, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # Numba's cache finds the module's globals by its name
    spec.loader.exec_module(module)
    return module


_module_dir: Path | None = None


def module_dir() -> Path:
    """The directory Numba modules are imported from (and cached beside): private to the user.

    ``CODEGEN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/codegen`` (``~/.cache/codegen``), so
    that Numba's cache stays warm across processes.  It is used only when it is a real directory
    (not a symbolic link), owned by the user and writable by no one else; otherwise, or when it
    cannot be created, a fresh ``tempfile.mkdtemp`` directory (mode 0700, removed at exit) is
    used.  Never a predictable shared path such as ``/tmp/codegen-<uid>``, which another user
    could create first and fill with code.
    """
    global _module_dir
    if _module_dir is not None and private_dir_problem(_module_dir) is None:
        return _module_dir
    chosen = os.environ.get("CODEGEN_CACHE_DIR")
    if not chosen:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        chosen = os.path.join(base, "codegen") if os.path.isabs(base) else ""
    folder = Path(chosen) if chosen else None
    if folder is not None:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            folder = None
    if folder is None or private_dir_problem(folder) is not None:
        folder = Path(tempfile.mkdtemp(prefix="codegen-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _module_dir = folder
    return folder


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
