"""The Numba backend: same API and numbers as the NumPy backend, fused loops, compiled kernels."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, spec_numba_module

import codegen
from codegen import emit_numba
from codegen.compiler import compile_spec
from codegen.finite_differences import example_dims, random_inputs
from codegen.loader import load_spec_file

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def _functions():
    for path in SPECS:
        spec = load_spec_file(str(path))
        for cf in compile_spec(spec).functions:
            yield pytest.param(path, cf.function.name, id=f"{spec.module}.{cf.function.name}")


_modules: dict = {}


def modules(path: Path):
    if path not in _modules:
        # (the Numba module under gradcheck's name: test_gradcheck_numba reuses its kernels)
        _modules[path] = (codegen.load_module(path), spec_numba_module(path))
    return _modules[path]


def _rounding(expected) -> float:
    """Absolute tolerance for a sum summed in another order: relative to the array's scale, since
    an entry that cancels (0.005 from terms of 0.4) keeps only the terms' absolute error."""
    return 1e-12 + 1e-10 * float(np.max(np.abs(expected), initial=0.0))


@pytest.mark.parametrize("path, name", list(_functions()))
def test_numba_matches_numpy(path, name):
    np_mod, nb_mod = modules(path)
    spec = load_spec_file(str(path))
    fn = next(cf.function for cf in compile_spec(spec).functions if cf.function.name == name)
    args = random_inputs(fn, example_dims(spec, fn), np.random.default_rng(1))
    out0, g0 = getattr(np_mod, name + "_value_and_grad")(*args)
    out1, g1 = getattr(nb_mod, name + "_value_and_grad")(*args)
    for a, b in zip(np.atleast_1d(out0) if len(fn.program.outputs) == 1 else out0,
                    np.atleast_1d(out1) if len(fn.program.outputs) == 1 else out1):
        assert_close(b, a, rtol=1e-10, atol=1e-12, what="outputs")
    assert type(g1).__name__ == type(g0).__name__ and g1._fields == g0._fields
    for field, a, b in zip(g0._fields, g0, g1):
        assert np.shape(b) == np.shape(a) and np.asarray(b).dtype == np.float64, field
        assert_close(b, a, rtol=1e-10, atol=_rounding(a), what=f"d{field}")
    # forward + backward with a random cotangent
    outs, saved = getattr(nb_mod, name + "_forward")(*args)
    first = outs[0] if len(fn.program.outputs) > 1 else outs
    g = np.random.default_rng(2).standard_normal(np.shape(first))
    gb1 = getattr(nb_mod, name + "_backward")(saved, g)
    _, saved0 = getattr(np_mod, name + "_forward")(*args)
    gb0 = getattr(np_mod, name + "_backward")(saved0, g)
    for field, a, b in zip(gb0._fields, gb0, gb1):
        assert_close(b, a, rtol=1e-10, atol=_rounding(a), what=f"d{field} with g")


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_gradcheck_numba(path):
    results = codegen.gradcheck(path, backend="numba")
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]


def test_float32_numba_stays_float32():
    text = (ROOT / "specs" / "nn.yaml").read_text().replace("dtype: float64", "dtype: float32")
    mod = codegen.load_module(text, backend="numba", path="nn32.yaml")
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in [(6, 4), (6, 3), (4, 5), (5,), (5, 3), (3,)]]
    (loss, Z2), grads = mod.mlp_mse_value_and_grad(*args)
    assert np.asarray(loss).dtype == np.float32 and Z2.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    with pytest.raises(ValueError, match="input X has dtype float64; expected float32"):
        mod.mlp_mse(*[a.astype(np.float64) for a in args])


def test_numba_validation_and_noncontiguous_inputs():
    _, nb = modules(ROOT / "specs" / "nn.yaml")
    np_mod, _ = modules(ROOT / "specs" / "nn.yaml")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 10))[:, ::2]  # a strided view: not contiguous
    Y, W1, b1 = rng.standard_normal((8, 3)), rng.standard_normal((16, 5)).T, rng.standard_normal(16)
    W2, b2 = rng.standard_normal((16, 3)), rng.standard_normal(3)
    assert not X.flags.c_contiguous and not W1.flags.c_contiguous
    contiguous = [np.ascontiguousarray(a) for a in (X, Y, W1, b1, W2, b2)]
    (l0, _), g0 = np_mod.mlp_mse_value_and_grad(X, Y, W1, b1, W2, b2)
    # the same shapes, contiguous then not, twice: the memo of checked inputs tells them apart
    for args in (contiguous, (X, Y, W1, b1, W2, b2)) * 2:
        (l1, _), g1 = nb.mlp_mse_value_and_grad(*args)
        assert_close(l1, l0)
        for a, b in zip(g0, g1):
            assert_close(b, a)
    # the kernel only ever saw C-contiguous arrays: one compiled signature
    assert len(nb._mlp_mse_value_and_grad.signatures) == 1
    with pytest.raises(ValueError, match=r"input W1 has shape \(4, 4\); expected \[D, H\]"):
        nb.mlp_mse(X, Y, np.zeros((4, 4)), b1, W2, b2)
    with pytest.raises(TypeError):
        nb.mlp_mse(X, Y)


CHECKED_SPEC = """
module: checked
dims: {N: 4, K: 3}
functions:
  f:
    inputs: {X: [N, K], v: [K], A: [K, K], s: [], c: [N, 2]}
    steps:
      - loss = sum(tanh(X * v) @ A) * s + sum(c)
    outputs: [loss]
"""


def test_calls_with_types_checked_before_skip_the_python_checks_and_nothing_else():
    from codegen import api

    nb = api.import_source(codegen.generate_source(CHECKED_SPEC, backend="numba"), "chk_nb", "numba")
    ref = codegen.load_module(CHECKED_SPEC)
    rng = np.random.default_rng(4)
    X, v, A, c = (rng.standard_normal(s) for s in ((4, 3), (3,), (3, 3), (4, 2)))
    kernel = nb._f_value_and_grad
    assert nb.f_value_and_grad.__code__.co_names.count("_check_inputs") == 1
    # the first call is checked; then the kernel's checked entry has its one compilation
    for s in (2.0, 2.0, 3, np.float64(2.5)):  # an int or a NumPy scalar for s: converted
        got, want = nb.f_value_and_grad(X, v, A, s, c), ref.f_value_and_grad(X, v, A, s, c)
        assert_close(got[0], want[0])
        for a, b in zip(got[1], want[1]):
            assert_close(a, b)
    assert kernel.checked.signatures == kernel.signatures and len(kernel.signatures) == 1
    # shapes the kernel compares: a symbolic dim across inputs, within one, and a number
    cases = [
        ((X, v[:2], A, 2.0, c), r"input v has shape \(2,\); expected \[K\] with K=3"),
        ((X, v, A[:, :2].copy(), 2.0, c), r"input A has shape \(3, 2\); expected \[K, K\]"),
        ((X, v, A, 2.0, np.zeros((4, 3))), r"input c has shape \(4, 3\); expected \[N, 2\]"),
        ((X[:3], v, A, 2.0, c), r"input c has shape \(4, 2\); expected \[N, 2\] with N=3"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match="f: " + message):
            nb.f_value_and_grad(*args)
        with pytest.raises(ValueError, match="f: the inputs' shapes are not the spec's"):
            kernel.checked(*args)
        with pytest.raises(ValueError, match=message):
            nb.f_forward(*args)
    # other types never reach a new compilation through the checked entry
    with pytest.raises(ValueError, match="input X has dtype float32; expected float64"):
        nb.f_value_and_grad(X.astype(np.float32), v, A, 2.0, c)
    with pytest.raises(TypeError, match="No matching definition"):
        kernel.checked(X.astype(np.float32), v, A, 2.0, c)
    strided = np.asfortranarray(A)  # copied to C order by the checks, every call
    assert_close(nb.f_value_and_grad(X, v, strided, 2.0, c)[0], ref.f(X, v, A, 2.0, c))
    assert len(kernel.signatures) == 1 and kernel.checked.signatures == kernel.signatures


def test_numba_kernels_are_compiled_fused_and_cached(tmp_path, monkeypatch):
    from helpers import write_numba_runtime

    src = codegen.generate_source(ROOT / "specs" / "nn.yaml", backend="numba")
    body = src[src.index("def _mlp_mse_value_and_grad"):src.index("def mlp_mse(")]
    runtime = emit_numba.runtime_source()
    assert 'numba.njit(cache=True, error_model="numpy", fastmath=fastmath)(kernel)' in runtime
    assert "_kernel = _runtime._kernel\n" in src
    assert "@_kernel\ndef _mlp_mse_value_and_grad" in src
    # bias+tanh, bias+loss fused with the loss's gradient, dtanh
    assert body.count("for i in range(N):") == 3
    assert "np.dot(X.T, dZ1)" in body  # BLAS, with the transpose as a view
    assert "np.sum(" not in body and "np.ones" not in body
    assert "import codegen" not in src
    path = tmp_path / "nn_numba.py"
    path.write_text(src)
    write_numba_runtime(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # imported by path: the runtime by name
    import importlib.util

    spec = importlib.util.spec_from_file_location("nn_numba_cache_test", path)
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules["nn_numba_cache_test"] = mod
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) for s in [(6, 4), (6, 3), (4, 5), (5,), (5, 3), (3,)]]
    mod.mlp_mse_value_and_grad(*args)
    kernel = mod._mlp_mse_value_and_grad
    assert kernel.signatures and kernel.nopython_signatures  # compiled in nopython mode
    cached = list((tmp_path / "__pycache__").glob("nn_numba.*.nbi"))
    assert cached, "cache=True wrote no index file"


def test_readme_numba_excerpt_is_real_generated_code():
    readme = (ROOT / "docs" / "numba.md").read_text()
    excerpt = readme.split("```python\n@_kernel\ndef _mlp_mse_value_and_grad")[1]
    excerpt = excerpt.split("```")[0]
    generated = (ROOT / "generated" / "nn_numba.py").read_text()
    assert "@_kernel\ndef _mlp_mse_value_and_grad" + excerpt in generated


def test_numba_cache_works_under_any_import_name(tmp_path):
    """A kernel cached by one process loads in another that imports the file by another name."""
    import subprocess
    import sys

    from helpers import write_numba_runtime

    src = codegen.generate_source(ROOT / "specs" / "seeds.yaml", backend="numba")
    (tmp_path / "seeds_numba.py").write_text(src)
    write_numba_runtime(tmp_path)  # found by name: the script runs in tmp_path
    script = (
        "import importlib.util, sys, numpy as np\n"
        "name = sys.argv[1]\n"
        f"spec = importlib.util.spec_from_file_location(name, {str(tmp_path / 'seeds_numba.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules[name] = m\n"
        "spec.loader.exec_module(m)\n"
        "print(m.twice_sum(np.ones((2, 3))))\n"
    )
    for name in ("seeds_numba", "pkg_generated_seeds", "another.name"):
        proc = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "12.0"
    assert list((tmp_path / "__pycache__").glob("seeds_numba.*.nbi"))


def _one_case_per_op():
    from test_ops import CASES

    seen, picked = set(), []
    for case in CASES:
        op = case[0].split("-")[0]
        # every op, and every broadcasting pattern of the arithmetic ops
        key = case[0] if op in ("add", "sub", "mul", "div") and "matrix" in case[0] else op
        if key not in seen:
            seen.add(key)
            picked.append(case)
    return picked


@pytest.mark.parametrize("case", _one_case_per_op(), ids=lambda c: c[0])
def test_numba_ops_match_numpy(case):
    """Each op of the rule table, compiled by Numba, against the NumPy backend (the case's
    function of test_ops' shared module, whose kernels other files' tests reuse)."""
    from test_ops import _inputs, case_module, case_name

    _, expr, inputs, positive = case
    name = case_name(case[0]) + "_value_and_grad"
    np_mod, nb_mod = case_module("numpy"), case_module("numba")
    import zlib

    args = _inputs(inputs, positive, np.random.default_rng(zlib.crc32(case[0].encode())))
    y0, g0 = getattr(np_mod, name)(*args)
    y1, g1 = getattr(nb_mod, name)(*args)
    assert_close(y1, y0, rtol=1e-10, atol=1e-12, what="value")
    for field, a, b in zip(g0._fields, g0, g1):
        assert np.shape(b) == np.shape(a), field
        assert_close(b, a, rtol=1e-9, atol=1e-12, what=f"d{field}")


def _chain_spec(steps: int) -> str:
    lines = [f"      - a{k} = tanh(a{k - 1}) * w + a{k - 1} * 0.5" for k in range(2, steps + 1)]
    return "\n".join([
        "module: chain",
        "dims: {M: 7, N: 5}",
        "functions:",
        "  chain:",
        "    inputs: {X: [M, N], w: [N]}",
        "    wrt: [X, w]",
        "    steps:",
        "      - a1 = tanh(X) * w + X * 0.5",
        *lines,
        f"      - loss = sum(a{steps} ** 2)",
        "    outputs: [loss]",
    ]) + "\n"


def test_deep_chain_is_one_loop_nest_with_fan_out_summed_in_place():
    """A 40-step chain: forward and backward of value_and_grad in one loop nest; the gradient of
    the shared w is added into one array (no per-step arrays, no accumulation loops), which
    keeps a 200-step chain compilable."""
    text = _chain_spec(40)
    src = codegen.generate_source(text, backend="numba")
    body = src[src.index("def _chain_value_and_grad"):src.index("def chain(")]
    assert body.count("for i in range(") == 1 and body.count("np.empty(") == 1  # dX only
    # the 40 steps' terms of dw add up in a local, stored once per element
    # (each partial sum a local of its own: see test_numba_hardening's compile-time test)
    assert body.count(" = dw_e") == 39 and body.count("dw[j] += dw_e_40") == 1
    assert body.count("np.zeros(") == 2  # dw, loss_cols
    backward = src[src.index("def _chain_backward"):src.index("def _chain_value_and_grad")]
    assert backward.count("for i in range(") == 1 and backward.count("dw[j] += ") == 1
    np_mod = codegen.load_module(text)
    nb = codegen.load_module(text, backend="numba")
    rng = np.random.default_rng(5)
    X, w = rng.standard_normal((7, 5)), rng.standard_normal(5)
    l0, g0 = np_mod.chain_value_and_grad(X, w)
    l1, g1 = nb.chain_value_and_grad(X, w)
    assert_close(l1, l0)
    for a, b in zip(g0, g1):
        assert_close(b, a)
    loss, saved = nb.chain_forward(X, w)
    for a, b in zip(g0, nb.chain_backward(saved, 1.0)):
        assert_close(b, a)


def test_numba_matches_numpy_on_random_specs():
    """Differential fuzzing of the Numba backend's fusion, in-place accumulation and buffer
    reuse: random well-shaped specs (the fuzz suite's generator), both backends, same numbers."""
    from hypothesis import given, settings
    from test_fuzz import PROFILE, typed_specs

    from codegen.api import import_source
    from codegen.compiler import render
    from codegen.errors import SpecError
    from codegen.loader import load_spec

    budget = {"dev": 4, "ci": 8, "deep": 200}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 8)

    @settings(PROFILE, max_examples=budget)
    @given(typed_specs())
    def check(text: str) -> None:
        try:
            compiled = compile_spec(load_spec(text, "fuzz.yaml"))
        except SpecError:
            return
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        ref = import_source(render(compiled, "numpy", None), f"fz{digest}")
        nb = import_source(render(compiled, "numba", None), f"fz{digest}", backend="numba")
        dtype = np.dtype(compiled.spec.dtype)
        rtol = 1e-4 if dtype == np.float32 else 1e-9
        for cf in compiled.functions:
            fn = cf.function
            rng = np.random.default_rng(1)
            sizes = dict(compiled.spec.dims)
            args = [rng.uniform(0.5, 1.5, size=tuple(sizes[d] if isinstance(d, str) else d
                                                     for d in fn.program.values[n].shape))
                    .astype(dtype) for n in fn.program.inputs]
            results = []
            for mod in (ref, nb):
                with np.errstate(all="ignore"):
                    try:
                        outs, grads = getattr(mod, f"{fn.name}_value_and_grad")(*args)
                        _, saved = getattr(mod, f"{fn.name}_forward")(*args)
                        grads_b = getattr(mod, f"{fn.name}_backward")(saved, 1.0)
                    except np.linalg.LinAlgError:
                        return
                results.append([*(outs if isinstance(outs, tuple) else (outs,)), *grads,
                                *grads_b])
            for a, b in zip(*results):
                np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol, equal_nan=True,
                                           err_msg=text)

    check()


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


def test_parallel_kernels_match_numpy_and_do_not_depend_on_the_thread_count():
    """--numba-parallel: prange over blocks of rows, each block with its own column sums, so the
    loop vectorises and the sum is the same whatever the number of threads."""
    import numba

    from codegen import api, compiler
    from codegen.loader import load_spec

    source = compiler.render(compile_spec(load_spec(PARALLEL_SPEC, "par.yaml")), "numba",
                             parallel=True)
    assert "for block in numba.prange((M + 31) // 32):" in source
    assert "loss_3_cols = np.zeros(((M + 31) // 32, N), dtype=np.float64)" in source
    assert "db_blocks[block, j] += " in source and "db = db_blocks.sum(axis=0)" in source
    par = api.import_source(source, "par_parallel", "numba")
    ref = codegen.load_module(PARALLEL_SPEC)
    rng = np.random.default_rng(6)
    M, N = 70, 33  # not a whole number of blocks
    X, W, b = rng.standard_normal((M, N)), rng.standard_normal((M, N)), rng.standard_normal(N)
    want = ref.f_value_and_grad(X, W, b)
    threads = numba.get_num_threads()
    results = []
    try:
        # the parallel compilation with 1 and with all threads, then the serial one (for
        # inputs below _PARALLEL_SIZE elements)
        for n, size in [(n, 0) for n in sorted({1, threads})] + [(threads, 10**12)]:
            numba.set_num_threads(n)
            par._runtime._PARALLEL_SIZE = size  # (the runtime's, shared by the modules)
            results.append(par.f_value_and_grad(X, W, b))
            results.append(par.f_backward(par.f_forward(X, W, b)[1], 1.0))
    finally:
        numba.set_num_threads(threads)
        par._runtime._PARALLEL_SIZE = 1_000_000
    assert par._f_value_and_grad.parallel.signatures and par._f_value_and_grad.serial.signatures
    for (loss, grads) in results[::2]:
        assert_close(loss, want[0])
        for got, ref_grad in zip(grads, want[1]):
            assert_close(got, ref_grad)
    for grads in results[1::2]:
        for got, ref_grad in zip(grads, want[1]):
            assert_close(got, ref_grad)
    first = results[0]
    for loss, grads in results[2::2]:  # bit for bit, whatever the thread count, or none
        assert loss == first[0]
        for a, c in zip(grads, first[1]):
            np.testing.assert_array_equal(a, c)


def test_kernels_namespace_is_one_per_version_of_the_helpers(tmp_path, monkeypatch):
    """Modules generated by different versions of codegen (their helpers may differ) must not
    share the namespace their kernels are compiled in."""
    import shutil

    from codegen import emit_numba

    name = emit_numba.kernels_module()
    src = emit_numba.runtime_source()
    assert f'"{name}", types.ModuleType("{name}")' in src
    version = emit_numba.runtime_version()
    module = codegen.generate_source(ROOT / "specs" / "nn.yaml", backend="numba")
    assert f'_runtime._VERSION != "{version}"' in module  # a module asks for its runtime
    copy = tmp_path / "templates"
    shutil.copytree(emit_numba.templates_dir(), copy)
    helpers = copy / "helpers" / "numba_math.py.j2"
    helpers.write_text(helpers.read_text() + "\n# a later version\n")
    monkeypatch.setattr(emit_numba, "templates_dir", lambda: copy)
    assert emit_numba.kernels_module() != name
    assert emit_numba.runtime_version() != version


@pytest.mark.parametrize("steps", [
    ["A = tanh(X * W)", "r = sum(A, axis=1)", "c = mean(A, axis=0)",
     "loss = sum(r * r) + sum(c * c) + sum(sum(A * b, keepdims=True))"],
    ["A = X * W + b", "m = logsumexp(A, axis=0)", "loss = sum(m) + sum(exp(A))"],
])
def test_parallel_reductions_of_every_kind_match_numpy(steps, monkeypatch):
    """Row sums (each row its own element), column sums and means (partial sums per block),
    keepdims, and the max of a logsumexp over rows (serial loops) under --numba-parallel."""
    from codegen import api, compiler
    from codegen.loader import load_spec

    text = ("module: red\nfunctions:\n  f:\n    inputs: {X: [M, N], W: [M, N], b: [N]}\n"
            "    steps:\n" + "".join(f"      - {step}\n" for step in steps)
            + "    outputs: [loss]\n")
    source = compiler.render(compile_spec(load_spec(text, "red.yaml")), "numba", parallel=True)
    par = api.import_source(source, f"red_parallel_{len(steps[0])}", "numba")
    monkeypatch.setattr(par._runtime, "_PARALLEL_SIZE", 0)
    ref = codegen.load_module(text)
    rng = np.random.default_rng(7)
    M, N = 67, 9
    args = rng.standard_normal((M, N)), rng.standard_normal((M, N)), rng.standard_normal(N)
    (l0, g0), (l1, g1) = ref.f_value_and_grad(*args), par.f_value_and_grad(*args)
    assert_close(l1, l0)
    for a, c in zip(g0, g1):
        assert_close(c, a)


def test_parallel_chain_adds_every_step_into_one_row_of_partial_sums_per_block():
    """--numba-parallel on a chain: the fan-out sums of the shared w (one per step) share one
    array of per-block partial sums, not one each."""
    from codegen import compiler
    from codegen.loader import load_spec

    source = compiler.render(compile_spec(load_spec(_chain_spec(12), "chain.yaml")), "numba",
                             parallel=True)
    vg = source[source.index("def _chain_value_and_grad"):source.index("def chain(")]
    assert vg.count("_blocks = np.zeros(") == 1 and vg.count("dw = dw_blocks.sum(axis=0)") == 1
    assert vg.count("for block in numba.prange(") == 1
