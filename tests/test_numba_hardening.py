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
from helpers import write_numba_runtime
from codegen.emit_numba import RUNTIME_FILENAME, runtime_source
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
    write_numba_runtime(folder)
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
m._runtime._PARALLEL_SIZE = 0  # every call runs the parallel compilation
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
    (tmp_path / RUNTIME_FILENAME).write_text(runtime_source())  # written beside it by codegen
    (tmp_path / "run.py").write_text(RUN_THREADS)
    proc = _run([str(tmp_path / "run.py"), str(tmp_path)],
                {"NUMBA_THREADING_LAYER": "workqueue"}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue", "0"]


def _roles(name: str) -> dict[str, str]:
    """A spec using ``name`` as a function, input, step (and output) or dim name."""
    head = "module: names\ndims: {N: 3}\nfunctions:\n"
    return {
        "function": head + f"  {name}:\n    inputs: {{X: [N]}}\n    steps: ['y = sum(tanh(X) * X)']\n"
                           "    outputs: [y]\n",
        "input": head + f"  f:\n    inputs: {{{name}: [N], W: [N]}}\n"
                        f"    steps: ['y = sum(tanh({name}) * W)']\n    outputs: [y]\n",
        "step": head + f"  f:\n    inputs: {{X: [N], W: [N]}}\n"
                       f"    steps: ['{name} = tanh(X) * W', 'y = sum({name} * X)']\n"
                       f"    outputs: [y, {name}]\n",
        "dim": f"module: names\ndims: {{{name}: 3}}\nfunctions:\n"
               f"  f:\n    inputs: {{X: [{name}], W: [{name}]}}\n"
               "    steps: ['y = sum(tanh(X) * W)']\n    outputs: [y]\n",
    }


def test_no_name_generated_modules_use_can_break_them():
    """Every name a template binds at module level, every builtin generated functions read and
    every name derived for a function, as a function, input, step and dim name: a located error,
    or modules (NumPy and Numba) that import and compute what the same spec with plain names
    computes."""
    import re

    from codegen import api, reserved
    from codegen.errors import SpecError

    names = sorted(reserved.template_names() | reserved.reserved_names()
                   | set(reserved.function_names("f")) | {"len", "zip", "isinstance", "tuple",
                                                          "g", "saved", "i", "j", "short",
                                                          "block", "X_Grads", "dX", "f_2"})
    accepted = []
    for name in names:
        for role, text in _roles(name).items():
            try:
                compiled = compile_spec(load_spec(text, "names.yaml"))
            except SpecError as error:
                located = re.match(r"names\.yaml:(\d+):(\d+): error: ", str(error))
                assert located, (name, role, str(error))  # at a line that writes the name
                assert name in text.splitlines()[int(located.group(1)) - 1], (name, role, error)
                continue
            accepted.append((name, role, compiled))
    # the names Python and the templates bind are refused wherever a spec could write them
    for name in reserved.reserved_names() | {n for n in reserved.template_names()}:
        assert not any(n == name for n, _, _ in accepted), name
    assert {n for n, _, _ in accepted} >= {"len", "g", "saved", "i", "short", "X_Grads"}
    # the accepted ones, as functions of modules (as few as clashes allow), against plain names
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal(3), rng.standard_normal(3)
    ref = codegen.load_module(_roles("plain")["input"].replace("plain", "X"))
    want_value, want_grads = ref.f_value_and_grad(X, W)
    batches: list[list[tuple[str, str, str, str]]] = []  # (name, role, function, body)
    for k, (name, role, compiled) in enumerate(accepted):
        call = name if role == "function" else f"h{k}"
        body = _roles(name)[role].split("functions:\n")[1].replace(
            f"  {compiled.functions[0].function.name}:", f"  {call}:", 1)
        if role == "dim":
            body = f"dims: {{{name}: 3}}\n" + body
        for batch in batches + [[]]:
            try:
                compile_spec(load_spec(_batch_text(batch + [(name, role, call, body)]), "n.yaml"))
            except SpecError:
                continue
            if not batch:
                batches.append(batch)
            batch.append((name, role, call, body))
            break
    assert len(batches) <= 3
    for n, batch in enumerate(batches):
        compiled = compile_spec(load_spec(_batch_text(batch), "names.yaml"))
        mods = [api.import_source(compiler.render(compiled, "numpy"), f"names{n}"),
                api.import_source(compiler.render(compiled, "numba"), f"names{n}", "numba")]
        for name, role, call, _ in batch:
            for mod in mods:
                if role == "function":
                    value, grads = getattr(mod, call + "_value_and_grad")(X)
                    assert np.isclose(value, np.sum(np.tanh(X) * X)), (name, role)
                    continue
                out, grads = getattr(mod, call + "_value_and_grad")(X, W)
                if role == "step":
                    assert np.isclose(out[0], np.sum(np.tanh(X) * W * X)), (name, role)
                else:
                    assert np.isclose(out, want_value), (name, role, mod)
                    np.testing.assert_allclose(grads[0], want_grads[0])


def _batch_text(batch) -> str:
    dims = {"N": 3}
    bodies = []
    for _, _, _, body in batch:
        if body.startswith("dims: "):
            head, body = body.split("\n", 1)
            dims[head[len("dims: {"):].split(":")[0]] = 3
        bodies.append(body.rstrip("\n"))
    dim_text = ", ".join(f"{d}: {v}" for d, v in dims.items())
    return "\n".join(["module: names", f"dims: {{{dim_text}}}", "functions:", *bodies]) + "\n"


def test_module_level_names_of_generated_modules_are_all_reserved():
    """What codegen/reserved.py reads from the templates is everything generated modules bind,
    and the generated functions read no builtin beyond BODY_BUILTINS."""
    import ast
    import builtins

    from codegen import reserved

    spec = """
module: allm
functions:
  f:
    inputs: {X: [M, N], W: [M, N], b: [N], s: []}
    steps:
      - A = tanh(X * W) + sin(X) + cos(X) + exp(X) + log(abs(X) + 1) + log1p(abs(X)) + sigmoid(X)
      - B = softmax(A, axis=1) + log_softmax(A, axis=1) + relu(A) + softplus(A) + sin(W)
      - c = logsumexp(A, axis=0) + sqrt(square(b)) + trace(outer(b, b))
      - loss = sum(softplus(A) ** 2) + sum(A * b) + sum(B) + sum(c) * s + mean(X) / s
    outputs: [loss]
"""
    compiled = compile_spec(load_spec(spec, "allm.yaml"))
    allowed = reserved.template_names() | set(reserved.function_names("f"))
    for backend, options in [("numpy", {}), ("numba", {}), ("numba", {"parallel": True}),
                             ("numba", {"fastmath": True})]:
        tree = ast.parse(compiler.render(compiled, backend, **options))
        bound = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        assert bound <= allowed, bound - allowed
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in allowed - reserved.template_names():
                local = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)} | {
                    n.id for n in ast.walk(node)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                        and isinstance(n.ctx, ast.Load) and n.id not in local}
                assert {n for n in read if hasattr(builtins, n)} <= reserved.BODY_BUILTINS


def test_long_function_names_are_refused_where_the_spec_writes_them():
    """A 230-character function name passed generation and failed at the first call
    (OSError: File name too long, in Numba's cache)."""
    from codegen.errors import SpecError
    from codegen.loader import MAX_FUNCTION_NAME_CHARS

    for length, ok in ((MAX_FUNCTION_NAME_CHARS, True), (MAX_FUNCTION_NAME_CHARS + 1, False),
                       (230, False)):
        text = _roles("a" * length)["function"]
        if ok:
            compile_spec(load_spec(text, "long.yaml"))
            continue
        with pytest.raises(SpecError, match=rf"long\.yaml:4:3: error: function name .* is "
                                            rf"{length} characters long; the limit is 64"):
            load_spec(text, "long.yaml")


def test_longest_function_name_runs_from_numba_cache(tmp_path):
    """The longest accepted function name in the longest module name: Numba's cache files fit."""
    from codegen.loader import MAX_FUNCTION_NAME_CHARS, MAX_MODULE_CHARS

    module = "m" * MAX_MODULE_CHARS
    name = "f" * MAX_FUNCTION_NAME_CHARS
    text = _roles(name)["function"].replace("module: names", f"module: {module}")
    source = compiler.render(compile_spec(load_spec(text, "long.yaml")), "numba",
                             parallel=True)
    (tmp_path / f"{module}_numba.py").write_text(source)
    write_numba_runtime(tmp_path)
    script = (f"import sys, numpy as np\nsys.path.insert(0, {str(tmp_path)!r})\n"
              f"import {module}_numba as m\nm._runtime._PARALLEL_SIZE = 0\n"
              f"print(m.{name}(np.ones(3)))\n")
    proc = _run(["-c", script], {}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("module", ["llvmlite", "scipy", "numpy", "numba", "yaml", "json",
                                    "typing", "codegen", "importlib"])
def test_module_names_that_shadow_what_generated_code_imports_are_refused(module):
    """`module: llvmlite` was accepted, and its file shadowed Numba's own dependency."""
    from codegen.errors import SpecError

    text = _roles("f")["function"].replace("module: names", f"module: {module}")
    with pytest.raises(SpecError, match=rf"m\.yaml:1:9: error: module '{module}' would shadow"):
        load_spec(text, "m.yaml")


def test_shadowed_modules_follow_numbas_requirements():
    from importlib import metadata

    from codegen.loader import shadowed_modules

    required = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
                for r in metadata.requires("numba") or ()}
    assert {"llvmlite", "numpy"} <= required
    assert {"llvmlite", "numpy", "numba", "scipy", "yaml", "os"} <= shadowed_modules()
    assert "mymodel" not in shadowed_modules()
    load_spec(_roles("f")["function"].replace("module: names", "module: mymodel"), "m.yaml")


def test_long_chains_compile_in_time_linear_in_their_length():
    """A 2,000-step chain's first call had not compiled after 300 s: every partial sum of the
    shared weight's gradient (one per step) was assigned to one local, and Numba's SSA pass
    scans the block for each use of a name assigned many times (cubic in the chain's length).
    No local of a kernel is assigned more than twice; the numbers are the NumPy module's."""
    import ast
    from collections import Counter

    from test_numba import _chain_spec

    from helpers import assert_close

    # 40 steps (each step's partial sum was a 40-fold assigned local): test_numba's deep chain,
    # whose Numba module (the same source and name) that test has compiled in a full run
    text = _chain_spec(40)
    source = codegen.generate_source(text, backend="numba")
    tree = ast.parse(source)
    kernels = [node for node in tree.body if isinstance(node, ast.FunctionDef)
               and node.name.startswith("_chain_")]
    assert len(kernels) == 3
    for kernel in kernels:
        assigned = Counter(target.id for node in ast.walk(kernel) if isinstance(node, ast.Assign)
                           for target in node.targets if isinstance(target, ast.Name))
        assigned.update(node.target.id for node in ast.walk(kernel)
                        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name))
        assert max(assigned.values()) <= 2, (kernel.name, assigned.most_common(3))
    nb = codegen.load_module(text, backend="numba")
    ref = codegen.load_module(text)
    rng = np.random.default_rng(8)
    X, w = rng.standard_normal((7, 5)), rng.standard_normal(5)
    (l0, g0), (l1, g1) = ref.chain_value_and_grad(X, w), nb.chain_value_and_grad(X, w)
    assert_close(l1, l0)
    for a, b in zip(g0, g1):
        assert_close(b, a)
    loss, saved = nb.chain_forward(X, w)
    for a, b in zip(g0, nb.chain_backward(saved, 1.0)):
        assert_close(b, a)
