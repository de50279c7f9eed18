"""Helpers of the held-out acceptance tests (tests/test_heldout_*.py).

Written against the contract only (DESIGN.md §1-§3c, the seeds): a spec is written to a
temporary directory, generated with the documented command line, and the generated module is
imported by its name with OUTDIR on ``sys.path`` (as the README's quick start does).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent

LOCATED = re.compile(r"^(?P<path>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$", re.M)


def run_codegen(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m codegen ARGS`` in cwd, with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CODEGEN_DEBUG", None)
    return subprocess.run(
        [PYTHON, "-m", "codegen", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def write_spec(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def generate(directory: Path, text: str, backend: str = "numpy", name: str = "spec.yaml") -> Path:
    """Write the spec and generate it; returns OUTDIR. Fails the test on a non-zero exit."""
    spec = write_spec(directory, text, name)
    out = directory / "out"
    proc = run_codegen([str(spec), "-o", str(out), "--backend", backend], cwd=directory)
    assert proc.returncode == 0, f"codegen exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return out


def import_generated(outdir: Path, module: str):
    """Import OUTDIR/<module>.py by name with OUTDIR on sys.path (the README's way)."""
    if str(outdir) not in sys.path:
        sys.path.insert(0, str(outdir))
    if module in sys.modules:
        del sys.modules[module]
    importlib.invalidate_caches()
    return importlib.import_module(module)


def to_np(x):
    """A library's array (NumPy, array-api-strict, JAX) as a float64 NumPy array."""
    if isinstance(x, (int, float, np.generic, np.ndarray)):
        return np.asarray(x)
    try:
        return np.from_dlpack(x)
    except Exception:  # pragma: no cover - fallbacks for libraries without DLPack on CPU
        return np.asarray(x)


def central_diff(f, args: dict, name: str, h: float = 1e-6) -> np.ndarray:
    """Central differences in float64 of the scalar f(**args) with respect to args[name]."""
    x = np.array(args[name], dtype=np.float64)
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        xp = x.copy()
        xp[idx] += h
        xm = x.copy()
        xm[idx] -= h
        fp = float(np.sum(f(**{**args, name: xp})))
        fm = float(np.sum(f(**{**args, name: xm})))
        out[idx] = (fp - fm) / (2 * h)
    return out


def first(out):
    return out[0] if isinstance(out, tuple) else out


class StrictArgs:
    """The array-API module called with array-api-strict arrays (§3c: computes in their library)."""

    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        import array_api_strict as xps

        fn = getattr(self._mod, name)
        if isinstance(fn, type) or not callable(fn):
            return fn

        def call(*args, **kwargs):
            conv = [xps.asarray(np.asarray(a)) for a in args]
            return fn(*conv, **{k: xps.asarray(np.asarray(v)) for k, v in kwargs.items()})

        return call
