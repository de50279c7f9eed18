"""Without Numba or SciPy, ``--backend numba`` says what to install (exit 2), never "internal error".

Each test runs ``python -m codegen`` in a subprocess whose ``sitecustomize`` puts a finder first on
``sys.meta_path`` that refuses to import the blocked packages, as if they were not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """\
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def run_without(tmp_path: Path, blocked: set[str], *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    env = {k: v for k, v in os.environ.items() if k != "CODEGEN_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return subprocess.run([sys.executable, "-m", "codegen", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("blocked", [{"numba"}, {"scipy"}, {"numba", "scipy"}],
                         ids=["numba", "scipy", "both"])
@pytest.mark.parametrize("extra", [["--backend", "numba"], ["--backend", "all", "--gradcheck"],
                                   ["--backend", "numba", "--check"]],
                         ids=["numba", "all-gradcheck", "check"])
def test_missing_package_is_named_with_the_install_command(tmp_path, blocked, extra) -> None:
    out = tmp_path / "gen"
    proc = run_without(tmp_path, blocked, "specs/nn.yaml", "-o", str(out), *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    names = " and ".join(sorted(blocked))
    assert f"needs {names}, which " in proc.stderr
    assert f"python -m pip install {' '.join(sorted(blocked))}" in proc.stderr
    assert not out.exists()


def test_the_blocker_works_and_numpy_backend_needs_neither(tmp_path) -> None:
    out = tmp_path / "gen"
    proc = run_without(tmp_path, {"numba", "scipy"}, "specs/nn.yaml", "-o", str(out),
                       "--gradcheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "nn.py").is_file()
    site = tmp_path / "site"
    probe = subprocess.run([sys.executable, "-c", "import numba"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(site)})
    assert probe.returncode != 0 and "No module named 'numba'" in probe.stderr
