"""Shared test helpers: build a module from an inline spec, and an independent finite-difference check."""

from __future__ import annotations

import os
import textwrap

import numpy as np

import codegen

# The local-only deep profile (the README's "Fuzzing"): HYPOTHESIS_PROFILE=deep also runs the
# exhaustive and longest cases of a few Numba tests that CI runs a representative part of.
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def module_from(yaml_text: str, name: str = "t.yaml"):
    """Generate and import a module from inline YAML (dedented)."""
    return codegen.load_module(textwrap.dedent(yaml_text), path=name)


def numeric_grad(f, args: list[np.ndarray], i: int, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f(args) with respect to args[i], every coordinate."""
    x = args[i]
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[i][idx] += h
        minus[i][idx] -= h
        out[idx] = (f(plus) - f(minus)) / (2 * h)
    return out


def assert_close(actual, expected, rtol: float = 1e-6, atol: float = 1e-7, what: str = "") -> None:
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def write_numba_runtime(folder) -> None:  # type: ignore[no-untyped-def]
    """Write the Numba runtime that generated Numba modules import, into ``folder`` (as the
    command line does beside them)."""
    from codegen.emit_numba import RUNTIME_FILENAME, runtime_source

    (folder / RUNTIME_FILENAME).write_text(runtime_source())


def spec_numba_module(path):  # type: ignore[no-untyped-def]
    """The Numba module of a spec file, imported under the name ``codegen.gradcheck`` imports it
    under (``finite_differences.check_spec``: "<module>_gradcheck"; the same source and name are
    one module): ``gradcheck(path, backend="numba")`` then finds the kernels the other tests
    compiled (cold, about a minute for specs/) instead of compiling them again.  A gradcheck
    that named its module otherwise would compile its own: slower, never less checked."""
    from codegen.importing import import_source
    from codegen.loader import load_spec_file

    spec = load_spec_file(str(path))
    return import_source(codegen.generate_source(spec, "numba"), spec.module + "_gradcheck", "numba")
