"""The README's quick start works as written: its blocks, run command by command in an empty directory.

The quick start lies between ``<!-- quickstart:start -->`` and ``<!-- quickstart:end -->``.  A
``yaml`` or ``python`` block whose first line is ``# PATH`` is a file to write; each line of a
``bash`` block is a command, run in order with ``python`` meaning this interpreter (whose installed
codegen is the one under test); a ``text`` block is the exact output of the command before it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START, END = "<!-- quickstart:start -->", "<!-- quickstart:end -->"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def quickstart_blocks(readme: str) -> list[tuple[str, str]]:
    """The (language, body) of each fenced block of the quick start, in order."""
    assert readme.count(START) == 1 and readme.count(END) == 1, "quick start markers missing"
    section = readme.split(START)[1].split(END)[0]
    return BLOCK.findall(section)


def commands(body: str) -> list[str]:
    """The commands of a bash block: one a line, blank lines and comment lines skipped."""
    return [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def python_on_path(tmp: Path) -> dict[str, str]:
    """An environment where ``python`` is this interpreter and the repo's codegen imports."""
    bindir = tmp / "bin"
    bindir.mkdir()
    shim = bindir / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("CODEGEN_DEBUG", "PYTHONPATH")}
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO)
    return env


def run_quickstart(readme: str, tmp: Path) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """Run the quick start in ``tmp/project``; fail at the first command or output that differs."""
    work = tmp / "project"
    work.mkdir()
    env = python_on_path(tmp)
    ran: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    for lang, body in quickstart_blocks(readme):
        first = body.splitlines()[0] if body else ""
        if lang in ("yaml", "python") and first.startswith("# "):
            path = work / first[2:].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        elif lang == "bash":
            for command in commands(body):
                proc = subprocess.run(["bash", "-c", command], cwd=work, env=env,
                                      capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, f"{command!r} failed:\n{proc.stdout}{proc.stderr}"
                ran.append((command, proc))
        elif lang == "text":
            assert ran, "an output block before any command"
            command, proc = ran[-1]
            assert proc.stdout == body, f"{command!r} printed {proc.stdout!r}, README says {body!r}"
        else:
            pytest.fail(f"quick start block of unknown kind {lang!r}: {first!r}")
    return ran


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    ran = run_quickstart(README.read_text(encoding="utf-8"), tmp_path)
    names = [c.split("#")[0].split() for c, _ in ran]
    assert ["python", "train.py"] in names
    assert any(n[:3] == ["python", "-m", "codegen"] for n in names)
    assert any("gradcheck: all" in p.stdout for _, p in ran)
    assert (tmp_path / "project" / "generated" / "linreg.py").is_file()


@pytest.mark.parametrize("break_it", [
    ("python -m codegen specs -o generated   ", "python -m codegen specz -o generated   "),
    ("- loss = mean(r ** 2)", "- loss = mean(r ** 2) + bogus"),
    ("import linreg  #", "import linreg_missing as linreg  #"),
    ("b = 0.30\n```", "b = 0.31\n```"),
])
def test_readme_quickstart_test_catches_a_wrong_readme(tmp_path: Path, break_it) -> None:
    readme = README.read_text(encoding="utf-8")
    old, new = break_it
    assert old in readme
    with pytest.raises(AssertionError):
        run_quickstart(readme.replace(old, new, 1), tmp_path)


def test_no_project_jargon_in_user_facing_text() -> None:
    """Readers never saw the project's seed texts: "seed 003's chain rule" says nothing to them."""
    jargon = re.compile(r"\bseed\s+\d{3}|\bseed texts?\b|\bseeds'", re.I)
    files = [README, *(REPO / "docs").glob("*.md"), *(REPO / "generated").iterdir(),
             *(REPO / "specs").glob("*.yaml"), *(REPO / "templates").rglob("*.j2"),
             *(REPO / "codegen").glob("*.py")]
    found = [f"{path.relative_to(REPO)}: {m.group(0)}" for path in files if path.is_file()
             for m in jargon.finditer(path.read_text(encoding="utf-8"))]
    assert not found, found
