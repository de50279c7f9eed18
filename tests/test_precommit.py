"""The README's pre-commit snippet works as copied: a local hook running the installed codegen.

The test reads the ``.pre-commit-config.yaml`` block from the README, checks it is a complete
``repo: local`` hook (no ``rev:`` that would need a tag), runs its ``entry`` the way pre-commit's
``language: system`` does (split like a shell, no file names) in a project, and follows the
command that a failing check prints to fix it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def readme_hook() -> dict:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)
              if b.startswith("# .pre-commit-config.yaml")]
    assert len(blocks) == 1, "one .pre-commit-config.yaml snippet in the README"
    config = yaml.safe_load(blocks[0])
    [repo] = config["repos"]
    assert repo["repo"] == "local" and "rev" not in repo
    [hook] = repo["hooks"]
    return hook


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a hook command; ``python`` is this interpreter (the environment codegen is installed in)."""
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    env = {k: v for k, v in os.environ.items() if k != "CODEGEN_DEBUG"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_readme_pre_commit_snippet_runs_and_names_the_fix(tmp_path: Path) -> None:
    hook = readme_hook()
    assert hook["language"] == "system" and hook["pass_filenames"] is False
    assert set(hook) <= {"id", "name", "entry", "language", "pass_filenames", "files", "args"}
    assert re.search(hook["files"], "specs/nn.yaml") and re.search(hook["files"], "generated/nn.py")
    entry = shlex.split(hook["entry"]) + list(hook.get("args", []))
    assert entry[:3] == ["python", "-m", "codegen"] and "--check" in entry

    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    shutil.copy(REPO / "specs" / "nn.yaml", project / "specs" / "nn.yaml")
    first = run(entry, project)  # nothing generated yet: the hook fails and says what to run
    assert first.returncode == 1, first.stdout + first.stderr
    assert "generated/nn.py: missing" in first.stdout
    fix = first.stdout.strip().splitlines()[-1]
    prefix = "codegen --check: to fix, run: "
    assert fix.startswith(prefix)
    command = shlex.split(fix[len(prefix):])
    assert command == [a for a in entry if a != "--check"]
    made = run(command, project)
    assert made.returncode == 0, made.stdout + made.stderr
    again = run(entry, project)
    assert again.returncode == 0 and "codegen --check: 1 file up to date" in again.stdout

    shutil.copy(REPO / "specs" / "matrix.yaml", project / "specs" / "matrix.yaml")
    assert run(command, project).returncode == 0
    (project / "specs" / "matrix.yaml").unlink()  # generated/matrix.py is now an orphan
    orphaned = run(entry, project)
    assert orphaned.returncode == 1
    fix = orphaned.stdout.strip().splitlines()[-1]
    assert fix == prefix + "python -m codegen specs -o generated --prune"
    assert run(shlex.split(fix[len(prefix):]), project).returncode == 0
    assert run(entry, project).returncode == 0
    assert not (project / "generated" / "matrix.py").exists()
    assert (project / "generated" / "nn.py").exists()


def test_fix_command_drops_check_and_keeps_every_other_argument() -> None:
    from codegen.cli import fix_command

    argv = ["specs/a b.yaml", "-o", "out", "--check", "--backend", "all", "--explain"]
    assert fix_command(argv, prune=False) == \
        "python -m codegen 'specs/a b.yaml' -o out --backend all --explain"
    assert fix_command(["specs", "--che", "-o", "g"], prune=True) == \
        "python -m codegen specs -o g --prune"
