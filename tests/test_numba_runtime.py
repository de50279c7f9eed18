"""The Numba runtime module written beside the generated Numba modules (emit_numba.runtime_source):
written, checked and pruned with them, imported from a package or by name, and each Numba
module opens with its own functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import black
import pytest

from codegen import cli
from codegen.emit_numba import RUNTIME_FILENAME, runtime_source, runtime_version

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SEEDS = SPECS / "seeds.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_runtime_is_written_beside_the_numba_modules_and_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(capsys, SEEDS, "-o", out, "--backend", "numpy")[0] == 0
    assert not (out / RUNTIME_FILENAME).exists()  # only Numba modules need it
    rc, stdout, err = run(capsys, SEEDS, "-o", out, "--backend", "numba")
    assert rc == 0, err
    runtime = out / RUNTIME_FILENAME
    assert runtime.read_text() == runtime_source()
    assert cli.is_generated(runtime) and cli.generated_spec(runtime) == cli.RUNTIME_LABEL
    assert run(capsys, SEEDS, "-o", out, "--backend", "numba", "--check")[0] == 0
    runtime.write_text(runtime_source().replace("_VERSION = ", "_VERSION  = "))
    rc, stdout, _ = run(capsys, SEEDS, "-o", out, "--backend", "numba", "--check")
    assert rc == 1 and f"{runtime}: stale" in stdout
    runtime.unlink()
    rc, stdout, _ = run(capsys, SEEDS, "-o", out, "--backend", "numba", "--check")
    assert rc == 1 and f"{runtime}: missing" in stdout
    assert run(capsys, SEEDS, "-o", out, "--backend", "numba")[0] == 0
    assert runtime.read_text() == runtime_source()


def test_a_file_of_that_name_codegen_did_not_write_is_not_overwritten(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = out / RUNTIME_FILENAME
    mine.write_text("# my own module\n")
    rc, _, err = run(capsys, SEEDS, "-o", out, "--backend", "numba")
    assert rc == 2 and "refusing to overwrite" in err
    assert mine.read_text() == "# my own module\n"
    # the runtime's header in a file of another name is not codegen's either
    other = out / "runtime_copy.py"
    other.write_text(runtime_source())
    assert not cli.is_generated(other)


def test_runtime_is_pruned_with_the_last_numba_module(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("a", "b"):
        (specs / f"{name}.yaml").write_text(
            f"module: {name}\nfunctions:\n  f:\n    inputs: {{X: [N]}}\n"
            "    steps: [y = sum(X * X)]\n    outputs: [y]\n")
    out = tmp_path / "out"
    assert run(capsys, specs, "-o", out, "--backend", "all")[0] == 0
    runtime = out / RUNTIME_FILENAME
    (specs / "a.yaml").unlink()  # b's Numba module still imports the runtime
    rc, stdout, err = run(capsys, specs, "-o", out, "--backend", "numpy", "--prune")
    assert rc == 0, err
    assert not (out / "a_numba.py").exists() and (out / "b_numba.py").exists()
    assert runtime.exists()
    (specs / "b.yaml").unlink()
    (specs / "c.yaml").write_text((SPECS / "seeds.yaml").read_text().replace("module: seeds",
                                                                              "module: c"))
    rc, stdout, _ = run(capsys, specs, "-o", out, "--backend", "numpy", "--check")
    assert rc == 1 and f"orphan: {runtime} (no Numba module" in stdout
    rc, stdout, err = run(capsys, specs, "-o", out, "--backend", "numpy", "--prune")
    assert rc == 0, err
    assert not runtime.exists() and not (out / "b_numba.py").exists()
    assert f"removed orphan {runtime}" in stdout


def test_numba_module_opens_with_its_own_functions() -> None:
    source = (ROOT / "generated" / "seeds_numba.py").read_text()
    tree = ast.parse(source)
    first = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))
    assert first.name == "twice_sum_Grads" and first.lineno < 50, (first.name, first.lineno)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not defined & {"_exp", "_tanh", "_kernel", "_cached", "_run_checked", "_scalar"}
    assert f'_runtime._VERSION != "{runtime_version()}"' in source


def test_runtime_is_formatted_and_imports_no_codegen() -> None:
    source = runtime_source()
    assert black.format_str(source, mode=black.Mode(line_length=99)) == source
    assert "import codegen" not in source and "from codegen" not in source
    assert (ROOT / "generated" / RUNTIME_FILENAME).read_text() == source


IMPORTS = """\
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import pkg.seeds_numba as a  # from a package: the runtime relatively
sys.path.insert(0, sys.argv[1] + "/pkg")
import seeds_numba as b  # a top-level module: the runtime by name
assert a._runtime.__name__ == "pkg._codegen_numba_runtime", a._runtime.__name__
assert b._runtime.__name__ == "_codegen_numba_runtime", b._runtime.__name__
print(a.twice_sum(np.ones((2, 3))), b.twice_sum(np.ones((2, 3))))
"""

BY_PATH = """\
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("anything", sys.argv[1] + "/pkg/seeds_numba.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # its directory is not on sys.path: the runtime beside the file
assert module._runtime.__file__ == sys.argv[1] + "/pkg/_codegen_numba_runtime.py"
print(module.twice_sum(np.ones((2, 3))))
"""


def test_numba_module_imports_its_runtime_from_a_package_and_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numba")
    pkg = tmp_path / "pkg"
    assert run(capsys, SEEDS, "-o", pkg, "--backend", "numba")[0] == 0
    (pkg / "__init__.py").write_text("")
    proc = subprocess.run([sys.executable, "-c", IMPORTS, str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["12.0", "12.0"]
    assert list((pkg / "__pycache__").glob("seeds_numba.*.nbi"))  # cached beside the module
    proc = subprocess.run([sys.executable, "-c", BY_PATH, str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0 and proc.stdout.split() == ["12.0"], proc.stderr[-3000:]
    # a runtime of another version is refused with a message that says what to do
    (pkg / RUNTIME_FILENAME).write_text(runtime_source().replace(runtime_version(), "0" * 12))
    proc = subprocess.run([sys.executable, "-c", IMPORTS, str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode != 0 and "another version of codegen" in proc.stderr
