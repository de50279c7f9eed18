"""Importing generated source: in memory (NumPy), or from a file in a private directory (Numba).

Used by the API (``load_module``) and by ``--gradcheck`` (``finite_differences``), which is why
it is a module of its own: neither imports the other.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

from .files import private_dir_problem, same_content, write_files


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
