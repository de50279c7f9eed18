"""Generated Numba modules that must import and run anywhere: read-only installs, hostile names,
long names, module names that shadow packages, long specs, threads (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import codegen
from codegen import compiler
from codegen.compiler import compile_spec
from codegen.loader import load_spec

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]

RUN_SEEDS = """\
import sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
import seeds_numba as m
print(m.twice_sum(np.ones((2, 3))))
"""


def _run(args, env_extra, cwd, prefix=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update(env_extra)
    return subprocess.run([*prefix, sys.executable, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def _write_seeds(folder: Path) -> None:
    folder.mkdir()
    src = codegen.generate_source(ROOT / "specs" / "seeds.yaml", backend="numba")
    (folder / "seeds_numba.py").write_text(src)
    (folder / "run.py").write_text(RUN_SEEDS)


def test_numba_module_imports_and_runs_with_no_writable_cache_directory(tmp_path):
    """Neither the module's directory nor any cache directory is writable: Numba has no cache
    locator (it raised RuntimeError at import); the kernels compile without the cache."""
    folder = tmp_path / "pkg"
    _write_seeds(folder)
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    (folder / "__pycache__").write_text("")  # the in-tree cache can never be created
    env = {"HOME": str(blocker), "XDG_CACHE_HOME": str(blocker / "cache")}
    proc = _run([str(folder / "run.py"), str(folder)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "12.0"
    assert "no locator" not in proc.stderr and "compiled without caching" in proc.stderr
    # NUMBA_CACHE_DIR unwritable too
    proc = _run([str(folder / "run.py"), str(folder)],
                {**env, "NUMBA_CACHE_DIR": str(blocker / "numba")}, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "12.0", proc.stderr


def _read_only_prefix() -> list[str] | None:
    """A command prefix under which chmod 0555 stops writes: none needed for a normal user; for
    root, setpriv without the capabilities that bypass file modes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "open('/proc/version').read()"],
                           capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_numba_module_in_a_read_only_directory_with_a_warm_cache(tmp_path):
    """A read-only install (chmod 0555) whose __pycache__ holds the kernels compiled before."""
    prefix = _read_only_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: file modes do not stop writes")
    folder = tmp_path / "pkg"
    _write_seeds(folder)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    warm = _run([str(folder / "run.py"), str(folder)], env, tmp_path)
    assert warm.returncode == 0 and warm.stdout.strip() == "12.0", warm.stderr
    assert list((folder / "__pycache__").glob("seeds_numba.*.nbi"))
    for path in (folder, folder / "__pycache__", home):
        path.chmod(0o555)
    try:
        probe = _run(["-c", f"open({str(folder / 'x')!r}, 'w')"], env, tmp_path, prefix)
        assert probe.returncode != 0, "the directory is still writable"
        proc = _run([str(folder / "run.py"), str(folder)], env, tmp_path, prefix)
    finally:
        for path in (folder, folder / "__pycache__", home):
            path.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "12.0"
    assert "RuntimeError" not in proc.stderr


PARALLEL_SPEC = """\
module: par
functions:
  f:
    inputs: {X: [M, N], W: [M, N], b: [N]}
    steps:
      - A = tanh(X * W) + sin(X)
      - loss = sum(softplus(A) ** 2) + sum(A * b)
    outputs: [loss]
"""

RUN_THREADS = """\
import sys, threading
import numpy as np
sys.path.insert(0, sys.argv[1])
import par_numba as m
m._PARALLEL_SIZE = 0  # every call runs the parallel compilation
rng = np.random.default_rng(0)
X, W, b = rng.standard_normal((96, 40)), rng.standard_normal((96, 40)), rng.standard_normal(40)
want = m.f(X, W, b)
bad = []
def work():
    for _ in range(40):
        loss, grads = m.f_value_and_grad(X, W, b)
        if loss != want:
            bad.append(loss)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import numba
print(numba.threading_layer(), len(bad))
"""


def test_parallel_kernels_called_from_threads_under_the_workqueue_layer(tmp_path):
    """NUMBA_THREADING_LAYER=workqueue aborted the process when threads ran parallel kernels at
    once: the kernels take turns there."""
    source = compiler.render(compile_spec(load_spec(PARALLEL_SPEC, "par.yaml")), "numba",
                             parallel=True)
    (tmp_path / "par_numba.py").write_text(source)
    (tmp_path / "run.py").write_text(RUN_THREADS)
    proc = _run([str(tmp_path / "run.py"), str(tmp_path)],
                {"NUMBA_THREADING_LAYER": "workqueue"}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue", "0"]
