"""Generated modules are the product users read: ruff- and mypy-clean, like hand-written code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = sorted(str(p) for p in (ROOT / "generated").glob("*.py"))


def test_generated_modules_pass_ruff():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        ["ruff", "check", "--isolated", "--select", "E,F,W,B,UP", "--target-version", "py310",
         "--line-length", "99", *GENERATED],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_modules_pass_mypy(tmp_path):
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental",
         "--cache-dir", str(tmp_path), "--python-version", "3.10", *GENERATED],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
