"""Silent mistakes are warnings: a step no output uses, a zero gradient, a non-scalar first output.

The command line prints each once on stderr as ``path:line:col: warning: ...`` and exits 0;
``--strict`` makes them errors (exit 2, nothing written).  The Python API issues them as
``codegen.SpecWarning`` with :func:`warnings.warn`.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import codegen
from codegen import cli

DROPPED = """\
functions:
  f:
    inputs: {X: [N, D], W: [D, K]}
    steps:
      - Z = X @ W
      - reg = sum(W ** 2)
      - loss = sum(Z ** 2)
    outputs: [loss]
"""
ZERO_GRAD = """\
functions:
  f:
    inputs: {X: [N, D], W: [D, K], b: [K]}
    wrt: [W, b]
    steps:
      - Z = X @ W
      - loss = sum(Z ** 2)
    outputs: [loss]
"""
ZERO_GRAD_DEFAULT_WRT = """\
functions:
  f:
    inputs: {X: [N, D], W: [D, K]}
    steps:
      - loss = sum(W ** 2)
    outputs: [loss]
"""
NON_SCALAR = """\
functions:
  f:
    inputs: {X: [N, D], W: [D, K]}
    wrt: [W]
    steps:
      - Z = tanh(X @ W)
      - loss = sum(Z ** 2)
    outputs: [Z, loss]
"""
CLEAN = """\
functions:
  f:
    inputs: {X: [N, D], W: [D, K]}
    wrt: [W]
    steps:
      - Z = tanh(X @ W)
      - loss = sum(Z ** 2)
    outputs: [loss, Z]
"""
CASES = {
    "dropped": (DROPPED, "6:9", "f: step 'reg = sum(W ** 2)': no output depends on 'reg', so this "
                "step is dropped; did you mean to add it to 'loss', or to list it in outputs?"),
    "zero_grad": (ZERO_GRAD, "4:14", "f: wrt 'b': the first output 'loss' does not depend on 'b', "
                  "so its gradient is always zero; did you mean to use it in a step, or to leave "
                  "it out of wrt?"),
    "zero_grad_default": (ZERO_GRAD_DEFAULT_WRT, "3:14", "f: wrt 'X' (wrt defaults to every "
                          "input): the first output 'loss' does not depend on 'X'"),
    "non_scalar": (NON_SCALAR, "8:15", "f: the first output 'Z' has shape [N, K], not a scalar, "
                   "so f_value_and_grad returns the gradients of sum(Z) (a cotangent of ones); "
                   "did you mean to put a scalar loss first in outputs?"),
}


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_warning_is_located_printed_once_and_exit_0(tmp_path, capsys, case) -> None:
    text, where, message = CASES[case]
    path = spec(tmp_path, text)
    rc, out, err = run(capsys, path, "-o", tmp_path / "gen", "--backend", "all")
    assert rc == 0, err
    prefix = f"{path}:{where}: warning: "
    assert err.count(prefix) == 1 and err.count("warning:") == 1, err
    assert prefix + message in err
    assert (tmp_path / "gen" / "w.py").is_file() and (tmp_path / "gen" / "w_numba.py").is_file()
    # --check prints it too, and still says whether files are up to date (exit 0)
    rc, out, err = run(capsys, path, "-o", tmp_path / "gen", "--backend", "all", "--check")
    assert rc == 0 and err.count(prefix) == 1 and "up to date" in out


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_makes_warnings_errors_and_writes_nothing(tmp_path, capsys, case) -> None:
    text, where, message = CASES[case]
    path = spec(tmp_path, text)
    rc, out, err = run(capsys, path, "-o", tmp_path / "gen", "--strict")
    assert rc == 2
    assert f"{path}:{where}: error: {message}" in err
    assert "nothing written" in err and not (tmp_path / "gen").exists()
    rc, out, err = run(capsys, path, "-o", tmp_path / "gen", "--strict", "--check")
    assert rc == 2 and not (tmp_path / "gen").exists()


def test_a_clean_spec_and_the_shipped_specs_warn_nothing(tmp_path, capsys) -> None:
    rc, _, err = run(capsys, spec(tmp_path, CLEAN), "-o", tmp_path / "gen", "--strict")
    assert rc == 0 and err == ""
    specs = Path(__file__).resolve().parents[1] / "specs"
    rc, _, err = run(capsys, specs, "-o", tmp_path / "gen2", "--strict", "--backend", "all")
    assert rc == 0 and err == ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_api_issues_spec_warnings(case) -> None:
    text, where, message = CASES[case]
    for call in (lambda: codegen.load_module(text, path="w.yaml"),
                 lambda: codegen.generate_source(text, path="w.yaml")):
        with pytest.warns(codegen.SpecWarning) as record:
            call()
        assert len(record) == 1
        assert str(record[0].message).startswith(f"w.yaml:{where}: warning: {message}")
        assert record[0].filename == __file__  # points at the caller, not inside codegen
    with warnings.catch_warnings():
        warnings.simplefilter("error", codegen.SpecWarning)
        with pytest.raises(codegen.SpecWarning):
            codegen.load_module(text, path="w.yaml")


def test_no_warning_for_a_clean_spec() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", codegen.SpecWarning)
        codegen.load_module(CLEAN, path="w.yaml")


def test_non_scalar_first_output_docstring_says_what_is_computed() -> None:
    with pytest.warns(codegen.SpecWarning):
        mod = codegen.load_module(NON_SCALAR, path="w.yaml")
    doc = " ".join(mod.f_value_and_grad.__doc__.split())
    assert "gradients of sum(Z) with respect to W" in doc
    assert "vector-Jacobian product with a cotangent of ones" in doc
    assert "gradients of Z " not in doc
    assert "Gradients of sum(Z)" in " ".join(mod.f_Grads.__doc__.split())
    # ... and it is true: the gradient of sum(Z), by finite differences
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    (_, _), grads = mod.f_value_and_grad(X, W)
    h, num = 1e-6, np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        plus, minus = W.copy(), W.copy()
        plus[idx] += h
        minus[idx] -= h
        num[idx] = (np.tanh(X @ plus).sum() - np.tanh(X @ minus).sum()) / (2 * h)
    np.testing.assert_allclose(grads.W, num, rtol=1e-6, atol=1e-8)


def test_scalar_first_output_docstring_unchanged() -> None:
    mod = codegen.load_module(textwrap.dedent(CLEAN), path="w.yaml")
    assert "gradients of loss with respect to W) in one pass." in " ".join(
        mod.f_value_and_grad.__doc__.split())
