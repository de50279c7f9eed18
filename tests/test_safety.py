"""Hardening against bad input, and the pull-request workflow.

1. Hostile specs: nothing from a spec but validated identifiers, numbers and escaped docs reaches
   generated code.  Each hostile spec either fails with a located ``path:line:col: error:`` (exit 2,
   nothing written) or yields a module whose AST holds only the expected definitions.
2. Output paths stay inside OUTDIR.
3. The generated module's runtime errors are ones a user understands, and non-contiguous inputs
   (transposed views, strided slices, Fortran order) give the same gradients as contiguous copies.
4. codegen never clobbers a file it did not generate (unless ``--force``), reports orphans under
   ``--check`` and removes them with ``--prune``; the pre-commit hook runs the same check.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import codegen
from codegen import cli
from codegen.emit_numba import kernels_module, runtime_version

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
GENERATED = REPO / "generated"
SENTINEL = "PWNED"

# Names a generated module may not mention at all (outside docstrings).
BANNED_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "input", "breakpoint", "os", "sys", "subprocess", "builtins",
    "importlib", "codegen", "pickle", "marshal", "ctypes", "shutil", "socket",
})


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEGEN_DEBUG", raising=False)


def mentions_orphan(text: str) -> bool:
    return re.search(r"orphan[: ]", text) is not None


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


# --------------------------------------------------------------------------- the AST audit


def docstring_nodes(tree: ast.Module) -> set[int]:
    """ids of the Constant nodes that are docstrings (of the module, classes and functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    out.add(id(body[0].value))
    return out


FIXED_ASSIGNMENTS = {
    "_DTYPE = np.dtype(np.float64)",
    "_DTYPE = np.dtype(np.float32)",
    f"_KERNELS = sys.modules.setdefault('{kernels_module()}', "
    f"types.ModuleType('{kernels_module()}'))",
}
FIXED_EXPRESSIONS = {"vars(_KERNELS).update(np=np, numba=numba, __builtins__=__builtins__)",
                     "vars(_KERNELS).update(_bits=_bits, _as_f64=_as_f64, _fma=_fma)"}
# decorators of the Numba backend's elementary-function helpers (numba_math.py.j2)
MATH_DECORATORS = {"numba.extending.intrinsic", "_scalar", "_elementwise"}
# A Numba module's import of the runtime beside it, and the check of its version.
RUNTIME_IMPORT = ("try:\n    _runtime = importlib.import_module('._codegen_numba_runtime', "
                  "__package__ or None)\nexcept (ImportError, TypeError):\n"
                  "    _runtime = importlib.import_module('_codegen_numba_runtime')")
RUNTIME_CHECK = (f"if _runtime._VERSION != '{runtime_version()}':\n    raise ImportError('the "
                 "Numba runtime beside this module (_codegen_numba_runtime.py) is from another "
                 "version of codegen: generate the module and the runtime again (python -m "
                 "codegen)')")


def _no_call(node: ast.AST) -> bool:
    return not any(isinstance(n, ast.Call) for n in ast.walk(node))


def assert_module_is_safe(source: str, functions: set[str], allowed: frozenset[str] = frozenset()) -> None:
    """The module holds only what codegen generates: nothing a spec could smuggle in.

    ``allowed``: spec identifiers that may legitimately appear as names (an input named ``os``
    is a parameter called ``os``: an identifier, validated, harmless).
    """
    tree = ast.parse(source)
    body = tree.body
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), "docstring"
    public = set()
    for node in body[1:]:
        if isinstance(node, ast.ImportFrom):
            assert node.module == "typing" and [a.name for a in node.names] == ["NamedTuple"]
            assert node.level == 0
        elif isinstance(node, ast.Import):
            assert [(a.name, a.asname) for a in node.names] in (
                [("numpy", "np")], [("numba", None)], [("sys", None)], [("types", None)])
        elif isinstance(node, ast.Assign):
            assert all(isinstance(t, ast.Name) and t.id.startswith("_") for t in node.targets)
            # constants: tuples of names and shapes; the dtype; the Numba kernels' namespace
            assert _no_call(node) or ast.unparse(node) in FIXED_ASSIGNMENTS, ast.unparse(node)
        elif isinstance(node, ast.AnnAssign):  # the input checks' memo of accepted shapes
            assert ast.unparse(node) == "_CHECKED: dict[tuple, None] = {}", ast.unparse(node)
        elif isinstance(node, ast.Expr) and ast.unparse(node) in FIXED_EXPRESSIONS:
            pass
        elif isinstance(node, (ast.Try, ast.If)):
            assert ast.unparse(node) in (RUNTIME_IMPORT, RUNTIME_CHECK), ast.unparse(node)
        elif isinstance(node, ast.FunctionDef):
            assert not node.decorator_list or all(
                isinstance(d, (ast.Attribute, ast.Call, ast.Name)) and "numba" in ast.unparse(d)
                or ast.unparse(d).startswith("nb.") or ast.unparse(d) in MATH_DECORATORS
                for d in node.decorator_list
            ), ast.unparse(node.decorator_list[0])
            if not node.name.startswith("_"):
                public.add(node.name)
        elif isinstance(node, ast.ClassDef):
            assert [ast.unparse(b) for b in node.bases] == ["NamedTuple"], node.name
            assert not node.decorator_list and not node.keywords
            for item in node.body[1:]:
                assert isinstance(item, ast.AnnAssign) and item.value is None, ast.unparse(item)
            public.add(node.name)
        else:
            raise AssertionError(f"unexpected top-level statement: {ast.unparse(node)[:200]}")
    suffixes = ("", "_forward", "_backward", "_value_and_grad", "_Grads", "_Saved")
    assert public == {f + s for f in functions for s in suffixes}, public
    docs = docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            assert node in body, "imports only at the top"
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.Lambda, ast.AsyncFunctionDef,
                               ast.Await, ast.Yield, ast.YieldFrom, ast.With, ast.Delete)):
            raise AssertionError(f"unexpected {type(node).__name__}")
        elif isinstance(node, ast.Name):
            assert node.id in allowed or (node.id not in BANNED_NAMES and SENTINEL not in node.id), node.id
        elif isinstance(node, ast.Attribute):
            assert SENTINEL not in node.attr, node.attr
            assert not node.attr.startswith("__") or ast.unparse(node) == "function.__code__", node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert SENTINEL not in node.name
        elif isinstance(node, ast.arg):
            assert SENTINEL not in node.arg
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SENTINEL in node.value:
                assert id(node) in docs, f"spec text outside a docstring: {node.value!r}"


def check_outcome(rc: int, out: str, err: str, spec: Path, out_dir: Path, root: Path,
                  functions: set[str], allowed: frozenset[str] = frozenset()) -> str | None:
    """Exit 0 with a safe module, or exit 2 with a located error and nothing written."""
    assert rc in (0, 2), (rc, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    outside = {p for p in files_under(root) if p != spec and out_dir not in p.parents}
    assert outside == set(), f"files written outside OUTDIR: {outside}"
    if rc == 2:
        assert re.search(r"^.+:\d+:\d+: error: \S", err, re.M), err
        assert not out_dir.exists() or not any(out_dir.iterdir()), "nothing written on error"
        return None
    [module_file] = list(out_dir.iterdir())
    assert module_file.parent == out_dir and module_file.suffix == ".py"
    source = module_file.read_text(encoding="utf-8")
    assert_module_is_safe(source, functions, allowed)
    return source


def spec_text(doc: object = "ok", fdoc: object = "ok", step: str = "Y = 2 * X",
              module: str | None = None, fname: str = "f", inp: str = "X") -> str:
    data: dict = {}
    if module is not None:
        data["module"] = module
    data["doc"] = doc
    data["functions"] = {fname: {"doc": fdoc, "inputs": {inp: ["N"]},
                                 "steps": [step.replace("X", inp) if inp != "X" else step],
                                 "outputs": ["Y"]}}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=10_000)


# --------------------------------------------------------------------------- 1. hostile docs

HOSTILE_DOCS = [
    f'x"""\nimport os; os.system("{SENTINEL}")\n"""',
    f'x\\"""{SENTINEL}',
    f"x'''\n{SENTINEL}()\n'''",
    f"a\nimport {SENTINEL}\n",
    f"a\r\nimport {SENTINEL}",
    f"a\rimport {SENTINEL}",
    f"a\u2028import {SENTINEL}",
    f"a\u2029{SENTINEL}()",
    f"a\x85{SENTINEL}()",
    f"a\x0b{SENTINEL}\x0c",
    f"a\x00{SENTINEL}",
    f"a\x1b[31m{SENTINEL}",
    f"\\N{{{SENTINEL}}}",
    f"\\x{SENTINEL}\\u",
    "\\",
    f'{SENTINEL}"',
    f'{SENTINEL}\\"',
    f'"""{SENTINEL}"""',
    f"{{{{ {SENTINEL} }}}}{{% raw %}}",
    f"{{% for x in range(3) %}}{SENTINEL}{{% endfor %}}",
    f"\u202e{SENTINEL}\u2066 trojan source",
    f"{SENTINEL} \ufeff zero width \u200b",
    "",
    " ",
    "\n\n\n",
    "x" * 5000 + SENTINEL,
]


@pytest.mark.parametrize("doc", HOSTILE_DOCS, ids=range(len(HOSTILE_DOCS)))
@pytest.mark.parametrize("where", ["module", "function"])
def test_hostile_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: str,
                      where: str) -> None:
    spec = tmp_path / "hostile.yaml"
    text = spec_text(doc=doc) if where == "module" else spec_text(fdoc=doc)
    spec.write_text(text, encoding="utf-8")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir)
    source = check_outcome(rc, out, err, spec, out_dir, tmp_path, {"f"})
    if source is not None:  # the doc survives as a docstring (black may normalise whitespace)
        namespace: dict = {}
        exec(compile(source, "hostile.py", "exec"), namespace)  # noqa: S102 - audited above
        got = namespace["__doc__"] if where == "module" else namespace["f"].__doc__
        if doc.strip():
            assert " ".join(doc.split()) in " ".join(got.split()), (doc, got)


# --------------------------------------------------------------------------- steps with comments

HOSTILE_STEPS = [
    f"Y = 2 * X  # {SENTINEL}",
    f'Y = 2 * X  # """ + {SENTINEL}()',
    "Y = 2 * X  # \\",
    f"Y = 2 * X  # {{{{ {SENTINEL} }}}}",
    f"Y = 2 * X#\x1b{SENTINEL}",
    f"Y = 2 * X  # \u202e{SENTINEL}",
    f"Y = 2 * X  # \x00{SENTINEL}",
    f"Y = 2 * X  # \u2028{SENTINEL}()",
    f"Y = 2 * X  # \r{SENTINEL}()",
    f"Y = 2 * X ; import {SENTINEL}",
    f"Y = 2 * X\nimport {SENTINEL}",
    f"Y = __import__('{SENTINEL}')",
    "Y = X.__class__",
    f"Y = eval('{SENTINEL}')",
    f"Y = {SENTINEL}(X)",
    f"Y = np.{SENTINEL}(X)",
    f"Y = (lambda: {SENTINEL})()",
    f"Y = [X for {SENTINEL} in X]",
    f"Y = X if {SENTINEL} else X",
    f"Y = X[{SENTINEL}]",
    f"Y = f'{{{SENTINEL}}}'",
    f"Y = '{SENTINEL}'",
    "Y = X + 1e999",
    "Y = X * 10 ** 400",
    "Y = X ** X",
    "Y = X @ X @ X",
    "Y = sum(X, axis=5)",
    "Y = sum(X, axis=-3)",
    "Y = exp(" * 60 + "X" + ")" * 60,
    "Y = " + "-" * 500 + "X",
    "Y = " + " + ".join(["X"] * 400),
    "Y = ((((((((((((((((((((((((((((((X))))))))))))))))))))))))))))))",
]


@pytest.mark.parametrize("step", HOSTILE_STEPS, ids=range(len(HOSTILE_STEPS)))
def test_hostile_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str) -> None:
    spec = tmp_path / "steps.yaml"
    spec.write_text(spec_text(step=step), encoding="utf-8")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir)
    source = check_outcome(rc, out, err, spec, out_dir, tmp_path, {"f"})
    if source is not None:  # comments of the step are kept only as (escaped) comments
        for line in source.splitlines():
            if SENTINEL in line:
                assert line.lstrip().startswith(("#", '"""')) or line.strip() == SENTINEL, line


# --------------------------------------------------------------------------- names

HOSTILE_MODULES = [
    "../../x", "/abs", "a.b", "a/b", "a\\b", "con", "nul", "os", "sys", "numpy", "typing",
    "codegen", "numba", "__init__", "_private", "x y", "", "import", "None", "True", "ünï",
    "..", ".", "x.py", "a:b", "~", "$HOME", "x" * 300, "PWNED\n", "np", "NamedTuple", "f",
]


@pytest.mark.parametrize("module", HOSTILE_MODULES, ids=range(len(HOSTILE_MODULES)))
def test_hostile_module_names(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              module: str) -> None:
    root = tmp_path / "root"
    spec = root / "specs" / "m.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(spec_text(module=module), encoding="utf-8")
    out_dir = root / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir)
    check_outcome(rc, out, err, spec, out_dir, root, {"f"})
    if rc == 0:
        assert [p.name for p in out_dir.iterdir()] == [f"{module}.py"]
        assert module.isidentifier() and module.isascii()


HOSTILE_FUNCTIONS = [
    "eval", "exec", "print", "open", "__import__", "__class__", "_check_inputs", "_DTYPE", "np",
    "NamedTuple", "None", "class", "f_forward", "self", "g", "saved", "numpy", "typing", "ünï",
    "a-b", "os", "sys", "dims", "checked", "x" * 200, "f" * 2000,
]


@pytest.mark.parametrize("fname", HOSTILE_FUNCTIONS, ids=range(len(HOSTILE_FUNCTIONS)))
def test_hostile_function_names(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                fname: str) -> None:
    spec = tmp_path / "fn.yaml"
    spec.write_text(spec_text(fname=fname), encoding="utf-8")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir)
    source = check_outcome(rc, out, err, spec, out_dir, tmp_path, {fname}, frozenset({fname}))
    if source is not None:
        namespace: dict = {}
        exec(compile(source, "fn.py", "exec"), namespace)  # noqa: S102 - audited above
        y = namespace[fname](np.arange(3.0))
        np.testing.assert_array_equal(y, 2 * np.arange(3.0))


HOSTILE_INPUTS = [
    "np", "g", "saved", "dims", "checked", "_x", "__class__", "self", "f", "f_Grads", "Y",
    "shapes", "function", "values", "name", "x", "sum", "exp", "tanh", "N", "None", "ünï",
    "lambda", "_DTYPE", "NamedTuple", "numpy", "typing", "os", "eval", "print",
]


@pytest.mark.parametrize("inp", HOSTILE_INPUTS, ids=range(len(HOSTILE_INPUTS)))
def test_hostile_input_names(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             inp: str) -> None:
    spec = tmp_path / "inp.yaml"
    spec.write_text(spec_text(inp=inp), encoding="utf-8")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir)
    source = check_outcome(rc, out, err, spec, out_dir, tmp_path, {"f"}, frozenset({inp}))
    if source is not None:
        namespace: dict = {}
        exec(compile(source, "inp.py", "exec"), namespace)  # noqa: S102 - audited above
        x = np.arange(3.0)
        np.testing.assert_array_equal(namespace["f"](x), 2 * x)
        _, saved = namespace["f_forward"](x)
        (dx,) = namespace["f_backward"](saved, np.ones(3))
        np.testing.assert_array_equal(dx, np.full(3, 2.0))


def test_hostile_spec_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The spec path reaches the header comment: line breaks in it must not end the comment."""
    spec = tmp_path / f"a\nimport {SENTINEL}\n#\u2028x.yaml"
    spec.write_text(spec_text(module="ok"), encoding="utf-8")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, spec, "-o", out_dir, "--explain")
    assert rc == 0, err
    source = (out_dir / "ok.py").read_text()
    assert_module_is_safe(source, {"f"})
    assert source.splitlines()[0].startswith("# Generated by codegen")
    assert SENTINEL in source.splitlines()[0]  # escaped into the one header line
    md = (out_dir / "ok.md").read_text()
    assert md.splitlines()[0].startswith("<!-- Generated by codegen")
    assert md.splitlines()[0].endswith("-->") and md.count("-->") == 2
    # the header is still recognised as codegen's, and the spec as its owner
    rc, out, err = run(capsys, spec, "-o", out_dir, "--check", "--explain")
    assert rc == 0, out + err


def test_output_file_names_are_checked() -> None:
    out = Path("out")
    for bad in ("../x.py", ".hidden.py", "a/b.py"):
        with pytest.raises(cli.UsageError):
            cli._check_inside(out / bad if "/" not in bad else Path("out/a") / "b.py", out)
    cli._check_inside(out / "nn.py", out)


# --------------------------------------------------------------------------- 3. runtime errors


@pytest.fixture(scope="module")
def nn():  # type: ignore[no-untyped-def]
    return codegen.load_module(SPECS / "nn.yaml")


def mlp_inputs(rng: np.random.Generator, N: int = 6, D: int = 4, H: int = 5, K: int = 3):  # type: ignore[no-untyped-def]
    return dict(X=rng.normal(size=(N, D)), Y=rng.normal(size=(N, K)), W1=rng.normal(size=(D, H)),
                b1=rng.normal(size=H), W2=rng.normal(size=(H, K)), b2=rng.normal(size=K))


def test_wrong_number_of_arguments(nn) -> None:  # type: ignore[no-untyped-def]
    a = mlp_inputs(np.random.default_rng(0))
    for f in (nn.mlp_mse, nn.mlp_mse_value_and_grad, nn.mlp_mse_forward):
        with pytest.raises(TypeError):
            f(a["X"], a["Y"])
        with pytest.raises(TypeError):
            f(*a.values(), a["X"])
        with pytest.raises(TypeError):
            f(**a, Z=a["X"])
    with pytest.raises(TypeError):
        nn.mlp_mse_backward()


@pytest.mark.parametrize("name, bad, words", [
    ("W1", np.zeros((5, 5)), ["W1", "[D, H]", "(5, 5)"]),
    ("b1", np.zeros((1, 5)), ["b1", "[H]"]),
    ("b1", np.zeros(7), ["b1", "[H]", "H=5"]),
    ("Y", np.zeros((7, 3)), ["Y", "[N, K]", "N=6"]),
    ("X", np.zeros(4), ["X", "[N, D]"]),
    ("b2", np.float64(1.0), ["b2", "[K]"]),
])
def test_wrong_shapes_name_the_input(nn, name: str, bad: object, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    a = mlp_inputs(np.random.default_rng(0))
    a[name] = bad
    for f in (nn.mlp_mse, nn.mlp_mse_value_and_grad, nn.mlp_mse_forward):
        with pytest.raises(ValueError) as info:
            f(**a)
        for w in words:
            assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("bad", [
    # (integer and boolean arrays are converted: see test_runtime.py)
    np.zeros((6, 4), dtype=np.float32), np.zeros((6, 4), dtype=np.float16),
    np.zeros((6, 4), dtype=complex), [["a"] * 4] * 6, "text",
    object(),
])
def test_wrong_dtypes_name_the_input(nn, bad: object) -> None:  # type: ignore[no-untyped-def]
    a = mlp_inputs(np.random.default_rng(0))
    a["X"] = bad
    with pytest.raises(ValueError) as info:
        nn.mlp_mse_value_and_grad(**a)
    assert "input X" in str(info.value) and "float64" in str(info.value), str(info.value)


@pytest.mark.parametrize("bad", [None, 3.0, [1.0, 2.0], [[[1.0]]]])
def test_other_bad_values_name_the_input(nn, bad: object) -> None:  # type: ignore[no-untyped-def]
    a = mlp_inputs(np.random.default_rng(0))
    a["X"] = bad
    with pytest.raises(ValueError) as info:
        nn.mlp_mse_value_and_grad(**a)
    assert "input X" in str(info.value) and "[N, D]" in str(info.value), str(info.value)


def test_wrong_cotangent(nn) -> None:  # type: ignore[no-untyped-def]
    _, saved = nn.mlp_mse_forward(**mlp_inputs(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="g"):
        nn.mlp_mse_backward(saved, np.ones(3))
    with pytest.raises(ValueError, match="g"):
        nn.mlp_mse_backward(saved, np.array(1.0, dtype=np.float32))  # (a NumPy scalar converts)


def noncontiguous(x: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """A non-contiguous array equal to x."""
    if how == "transposed":
        return np.ascontiguousarray(x.T).T if x.ndim == 2 else noncontiguous(x, "strided", rng)
    if how == "strided":
        big = rng.normal(size=tuple(2 * s for s in x.shape))
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "negative_stride":
        flipped = np.ascontiguousarray(x[::-1, ::-1] if x.ndim == 2 else x[::-1])
        return flipped[::-1, ::-1] if x.ndim == 2 else flipped[::-1]
    raise ValueError(how)


@pytest.mark.parametrize("how", ["transposed", "strided", "fortran", "negative_stride"])
def test_noncontiguous_inputs_give_the_same_gradients(nn, how: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    a = mlp_inputs(rng)
    views = {k: noncontiguous(v, how, rng) for k, v in a.items()}
    if how != "fortran":
        assert not all(v.flags.c_contiguous for v in views.values())
    for k in a:
        np.testing.assert_array_equal(views[k], a[k])
    before = {k: v.copy() for k, v in views.items()}
    (loss, z2), grads = nn.mlp_mse_value_and_grad(**views)
    (loss_c, z2_c), grads_c = nn.mlp_mse_value_and_grad(**a)
    np.testing.assert_allclose(loss, loss_c, rtol=1e-12)
    np.testing.assert_allclose(z2, z2_c, rtol=1e-12, atol=1e-14)
    for g, gc in zip(grads, grads_c):
        np.testing.assert_allclose(g, gc, rtol=1e-12, atol=1e-14)
    # forward + backward with a non-contiguous cotangent too
    outs, saved = nn.mlp_mse_forward(**views)
    grads_b = nn.mlp_mse_backward(saved, 1.0)
    for g, gc in zip(grads_b, grads_c):
        np.testing.assert_allclose(g, gc, rtol=1e-12, atol=1e-14)
    for k in views:  # inputs are never modified
        np.testing.assert_array_equal(views[k], before[k])


def test_noncontiguous_cotangent() -> None:
    module = codegen.load_module(textwrap.dedent("""\
        functions:
          f:
            inputs: {A: [M, N], B: [N, K]}
            steps: [C = tanh(A @ B)]
            outputs: [C]
        """), path="nc.yaml")
    rng = np.random.default_rng(2)
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    G = rng.normal(size=(4, 5))
    _, saved = module.f_forward(np.asfortranarray(A), B.T.copy().T)
    ref = module.f_backward(module.f_forward(A, B)[1], G)
    for g_view in (np.asfortranarray(G), noncontiguous(G, "strided", rng), G.T.copy().T):
        got = module.f_backward(saved, g_view)
        for x, y in zip(got, ref):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_float32_module_rejects_float64_inputs() -> None:
    module = codegen.load_module(textwrap.dedent("""\
        dtype: float32
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = sum(X ** 2)]
            outputs: [Y]
        """), path="f32.yaml")
    with pytest.raises(ValueError, match=r"X.*float32"):
        module.f(np.ones(3))
    y, (dx,) = module.f_value_and_grad(np.ones(3, dtype=np.float32))
    assert dx.dtype == np.float32


# --------------------------------------------------------------------------- 4. never clobber

SMALL = """\
functions:
  f:
    inputs: {X: [N]}
    steps: [Y = 2 * X]
    outputs: [Y]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_refuses_to_overwrite_a_hand_written_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "specs" / "a.yaml", SMALL)
    b = write(tmp_path / "specs" / "b.yaml", SMALL)
    out_dir = tmp_path / "gen"
    write(out_dir / "b.py", "def mine():\n    return 42\n")
    rc, out, err = run(capsys, a, b, "-o", out_dir)
    assert rc == 2
    assert f"codegen: error: {out_dir / 'b.py'} exists and was not generated by codegen" in err
    assert "--force" in err and "nothing written" in err and "Traceback" not in err
    assert snapshot(out_dir) == {"b.py": b"def mine():\n    return 42\n"}, "all or nothing"
    # --check names it, writes nothing, exits 1
    rc, out, err = run(capsys, a, b, "-o", out_dir, "--check")
    assert rc == 1 and "b.py" in out and "--force" in out
    assert snapshot(out_dir) == {"b.py": b"def mine():\n    return 42\n"}
    # --force overwrites
    rc, out, err = run(capsys, a, b, "-o", out_dir, "--force")
    assert rc == 0, err
    assert sorted(snapshot(out_dir)) == ["a.py", "b.py"]
    assert (out_dir / "b.py").read_text().startswith("# Generated by codegen")


def test_overwrites_its_own_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "specs" / "a.yaml", SMALL)
    out_dir = tmp_path / "gen"
    assert run(capsys, a, "-o", out_dir)[0] == 0
    target = out_dir / "a.py"
    target.write_text(target.read_text().replace("2 * X", "3 * X"))
    assert run(capsys, a, "-o", out_dir)[0] == 0
    assert "3 * X" not in target.read_text()


@pytest.mark.parametrize("first_line", [
    "", "#Generated by codegen", " # Generated by codegen 0.1.0", "\ufeff# Generated by codegen",
    "# generated by codegen", "// Generated by codegen",
])
def test_only_the_exact_header_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      first_line: str) -> None:
    a = write(tmp_path / "specs" / "a.yaml", SMALL)
    out_dir = tmp_path / "gen"
    write(out_dir / "a.py", first_line + "\nprint('mine')\n")
    rc, _, err = run(capsys, a, "-o", out_dir)
    assert rc == 2 and "a.py" in err


def test_unreadable_binary_target_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "specs" / "a.yaml", SMALL)
    out_dir = tmp_path / "gen"
    out_dir.mkdir()
    (out_dir / "a.py").write_bytes(b"\xff\xfe\x00binary")
    rc, _, err = run(capsys, a, "-o", out_dir)
    assert rc == 2 and "Traceback" not in err
    assert (out_dir / "a.py").read_bytes() == b"\xff\xfe\x00binary"


def test_directory_and_symlink_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "specs" / "a.yaml", SMALL)
    b = write(tmp_path / "specs" / "b.yaml", SMALL)
    out_dir = tmp_path / "gen"
    (out_dir / "a.py").mkdir(parents=True)
    for extra in ([], ["--force"]):  # a directory is never replaced, not even with --force
        rc, _, err = run(capsys, a, b, "-o", out_dir, *extra)
        assert rc == 2 and "a.py is a directory" in err, err
        assert sorted(p.name for p in out_dir.iterdir()) == ["a.py"]
    (out_dir / "a.py").rmdir()
    victim = write(tmp_path / "elsewhere" / "victim.py", "precious\n")
    (out_dir / "a.py").symlink_to(victim)
    rc, _, err = run(capsys, a, b, "-o", out_dir)
    assert rc == 2 and "symbolic link" in err
    rc, _, err = run(capsys, a, b, "-o", out_dir, "--force")
    assert rc == 0, err
    assert victim.read_text() == "precious\n", "the link is replaced, never its target"
    assert not (out_dir / "a.py").is_symlink()


# --------------------------------------------------------------------------- orphans


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A copy of specs/ with generated/ (and the --explain reports) next to it."""
    shutil.copytree(SPECS, tmp_path / "specs")
    assert run(capsys, tmp_path / "specs", "-o", tmp_path / "generated", "--explain")[0] == 0
    return tmp_path


def test_single_spec_does_not_orphan_the_others(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in sorted((project / "specs").glob("*.yaml")):
        rc, out, err = run(capsys, spec, "-o", project / "generated", "--check")
        assert rc == 0 and not mentions_orphan(out + err), out + err
        rc, out, err = run(capsys, spec, "-o", project / "generated", "--prune")
        assert rc == 0 and not mentions_orphan(out + err), out + err
    assert len(list((project / "generated").glob("*.md"))) == len(
        list((project / "specs").glob("*.yaml")))


def test_committed_generated_single_spec_has_no_orphans(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m codegen specs/nn.yaml -o generated --check` must not flag generated/seeds.py."""
    rc, out, err = run(capsys, SPECS / "nn.yaml", "-o", GENERATED, "--check")
    assert not mentions_orphan(out + err), out + err


def test_deleted_spec_leaves_orphans(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = project / "generated"
    (project / "specs" / "seeds.yaml").unlink()
    rc, out, _ = run(capsys, project / "specs", "-o", gen, "--check")
    assert rc == 1
    assert f"orphan: {gen / 'seeds.py'} (its spec ../specs/seeds.yaml no longer exists)" in out
    assert f"orphan: {gen / 'seeds.md'} (its spec ../specs/seeds.yaml no longer exists)" in out
    # generating without --prune keeps them (with a note); --prune removes them
    rc, out, err = run(capsys, project / "specs", "-o", gen)
    assert rc == 0 and "--prune" in err and (gen / "seeds.py").exists()
    rc, out, err = run(capsys, project / "specs", "-o", gen, "--prune")
    assert rc == 0 and "removed orphan" in out
    assert not (gen / "seeds.py").exists() and not (gen / "seeds.md").exists()
    assert run(capsys, project / "specs", "-o", gen, "--check")[0] == 0


def test_renamed_module_leaves_orphans(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = project / "generated"
    nn = project / "specs" / "nn.yaml"
    nn.write_text(nn.read_text().replace("module: nn\n", "module: nn2\n"))
    rc, out, _ = run(capsys, nn, "-o", gen, "--check")
    assert rc == 1
    assert "nn2.py: missing" in out
    assert (f"orphan: {gen / 'nn.py'} (its spec ../specs/nn.yaml no longer generates it; "
            "it now generates module 'nn2')") in out
    assert "seeds" not in out
    assert run(capsys, nn, "-o", gen, "--prune")[0] == 0
    assert not (gen / "nn.py").exists() and (gen / "nn2.py").exists()
    assert (gen / "seeds.py").exists()


def test_broken_spec_still_owns_its_files(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = project / "generated"
    (project / "specs" / "seeds.yaml").write_text("functions: [broken\n")
    rc, out, err = run(capsys, project / "specs" / "nn.yaml", "-o", gen, "--check")
    assert rc == 0 and not mentions_orphan(out + err)
    assert run(capsys, project / "specs" / "nn.yaml", "-o", gen, "--prune")[0] == 0
    assert (gen / "seeds.py").exists() and (gen / "seeds.md").exists()


def test_hand_written_files_are_never_orphans(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = project / "generated"
    write(gen / "helpers.py", "# helpers written by hand\n")
    write(gen / "NOTES.md", "Generated by codegen? No.\n")
    write(gen / "__init__.py", "")
    rc, out, _ = run(capsys, project / "specs", "-o", gen, "--check")
    assert rc == 0 and not mentions_orphan(out)
    assert run(capsys, project / "specs", "-o", gen, "--prune")[0] == 0
    assert {"helpers.py", "NOTES.md", "__init__.py"} <= {p.name for p in gen.iterdir()}


def test_reports_are_not_orphans_without_explain(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = project / "generated"
    rc, out, err = run(capsys, project / "specs", "-o", gen, "--prune")
    assert rc == 0 and not mentions_orphan(out + err)
    assert (gen / "nn.md").exists()


# --------------------------------------------------------------------------- pre-commit and CI


def test_pre_commit_hook_runs_the_check() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == "codegen-check"]
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    entry = shlex.split(hook["entry"])
    assert entry[0] == "codegen" and "--check" in entry
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^codegen = "codegen\.cli:main"$', pyproject, re.M)
    args = hook["args"]
    assert "-o" in args
    env = {k: v for k, v in os.environ.items() if k != "CODEGEN_DEBUG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "codegen", *entry[1:], *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


def test_readme_documents_the_workflow() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using codegen in CI and code review", 1)[1].split("\n## ", 1)[0]
    for needle in ("codegen-check", ".pre-commit-config.yaml", "yaml-language-server: $schema=",
                   "--check", "--prune", "--force", "--explain", "HYPOTHESIS_PROFILE=deep"):
        assert needle in section, needle
