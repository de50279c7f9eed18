"""Generated modules are the product users read: ruff- and mypy-clean, like hand-written code."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = sorted(str(p) for p in (ROOT / "generated").glob("*.py"))


def ruff() -> list[str]:
    """The command running this interpreter's ruff (found even when its bin/ is not on PATH)."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return ["ruff"]


def test_generated_modules_pass_ruff():
    result = subprocess.run(
        [*ruff(), "check", "--isolated", "--select", "E,F,W,B,UP", "--target-version", "py310",
         "--line-length", "99", *GENERATED],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One fresh mypy cache for this file's two runs: the second reads what the first learnt of
    NumPy's stubs and the standard library (several seconds) instead of analysing them again;
    the modules under test are checked in full by each (a cache starts empty every session)."""
    return tmp_path_factory.mktemp("mypy_cache")


def test_generated_modules_pass_mypy(mypy_cache):
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports",
         "--cache-dir", str(mypy_cache), "--python-version", "3.10", *GENERATED],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_modules_pass_ruff_default_rules():
    """The current ruff's default rule set too (ruff 0.17 added FURB136 and PLR0124 to it): a user
    running plain `ruff check` on their repository sees nothing in the generated modules."""
    result = subprocess.run([*ruff(), "check", "--isolated", *GENERATED],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_project_code_passes_ruff():
    """codegen/, tests/, examples/ and benchmarks/ with the project's selection (pyproject.toml)."""
    result = subprocess.run([*ruff(), "check", "codegen", "tests", "examples", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_project_code_passes_mypy(mypy_cache):
    """The package itself type-checks (configuration in pyproject.toml)."""
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(mypy_cache)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
