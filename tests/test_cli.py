"""Tests for the command line (DESIGN.md §2) and the modules it writes (§3).

Most tests call ``codegen.cli.main([...])`` in-process (fast); the ones whose point is the real
process (exit status, no traceback on stderr, hash seeds, working directory, the committed
``generated/``) run ``python -m codegen`` as a subprocess.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import black
import pytest
import yaml

from codegen import cli

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
# The module files that generating specs/ writes, sorted.
SPEC_MODULE_FILES = sorted(
    f"{(yaml.safe_load(p.read_text()) or {}).get('module', p.stem)}.py"
    for p in SPECS.glob("*.yaml")
)
GENERATED = REPO / "generated"
BLACK_MODE = black.Mode(line_length=99)
REGENERATE = "python -m codegen specs -o generated --backend all"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """CODEGEN_DEBUG would let internal errors raise; the tests want the user's view."""
    monkeypatch.delenv("CODEGEN_DEBUG", raising=False)


def run_main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: the repo importable, no debug tracebacks."""
    env = dict(os.environ)
    env.pop("CODEGEN_DEBUG", None)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    env.update(extra)
    return env


def run_cli(*args: object, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m codegen ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "codegen", *map(str, args)],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    """Write a dedented spec (or any text) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def py_files(directory: Path) -> list[Path]:
    """Every .py file under directory (recursively); [] when it does not exist."""
    return sorted(directory.rglob("*.py")) if directory.exists() else []


def error_lines(stderr: str, spec: Path) -> list[tuple[int, int, str]]:
    """(line, col, message) of every ``spec:line:col: error: message`` line of stderr."""
    pattern = re.compile(rf"^{re.escape(str(spec))}:(\d+):(\d+): error: (.+)$", re.M)
    return [(int(m[1]), int(m[2]), m[3]) for m in pattern.finditer(stderr)]


def load_file(path: Path, name: str):  # type: ignore[no-untyped-def]
    """Import a generated module from its file under a unique name."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(directory: Path) -> dict[str, bytes]:
    """Name -> bytes of every file directly in directory."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def generated_specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """specs/ generated once into a temporary directory (shared by read-only tests)."""
    out = tmp_path_factory.mktemp("gen") / "out"
    assert cli.main([str(SPECS), "-o", str(out), "--backend", "all"]) == 0
    return out


# --------------------------------------------------------------------------- 1. malformed specs

# (id, spec text, expected error line or None, words the message must contain)
BAD_SPECS = [
    (
        "yaml_syntax",
        """
        functions:
          f:
            inputs: {X: [N
            steps: []
        """,
        4,
        ["YAML"],
    ),
    (
        "duplicate_key",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = 2 * X]
            outputs: [Y]
          f:
            inputs: {X: [N]}
            steps: [Y = 3 * X]
            outputs: [Y]
        """,
        6,
        ["duplicate", "f"],
    ),
    (
        "unknown_top_key",
        """
        doc: A spec with a typo.
        modul: x
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = 2 * X]
            outputs: [Y]
        """,
        2,
        ["modul"],
    ),
    (
        "unknown_function_key",
        """
        functions:
          f:
            inputs: {X: [N]}
            step: [Y = 2 * X]
            outputs: [Y]
        """,
        4,
        ["step"],
    ),
    (
        "empty_functions",
        """
        functions: {}
        """,
        1,
        ["function"],
    ),
    (
        "keyword_input",
        """
        functions:
          f:
            inputs:
              X: [N]
              lambda: [N]
            steps:
              - Y = 2 * X
            outputs: [Y]
        """,
        5,
        ["lambda", "keyword"],
    ),
    (
        "not_an_assignment",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - X * 2
              - Y = 2 * X
            outputs: [Y]
        """,
        5,
        ["assignment"],
    ),
    (
        "unknown_call",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = frobnicate(X)
            outputs: [Y]
        """,
        5,
        ["frobnicate"],
    ),
    (
        "attribute",
        """
        functions:
          f:
            inputs: {X: [N, D]}
            steps:
              - Y = X.shape
            outputs: [Y]
        """,
        5,
        ["shape"],
    ),
    (
        "subscript",
        """
        functions:
          f:
            inputs: {X: [N, D]}
            steps:
              - Y = X[0]
            outputs: [Y]
        """,
        5,
        [],
    ),
    (
        "comparison",
        """
        functions:
          f:
            inputs: {X: [N], W: [N]}
            steps:
              - Y = X < W
            outputs: [Y]
        """,
        5,
        [],
    ),
    (
        "array_exponent",
        """
        functions:
          f:
            inputs: {X: [N], a: [N]}
            steps:
              - Y = X ** a
            outputs: [Y]
        """,
        5,
        ["exponent"],
    ),
    (
        "shape_mismatch",
        """
        functions:
          f:
            inputs:
              X: [N, D]
              W: [E, K]
            steps:
              - Y = X @ W
            outputs: [Y]
        """,
        7,
        [],
    ),  # the message must name D and E: checked below
    (
        "reassignment",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = 2 * X
              - Y = 3 * X
            outputs: [Y]
        """,
        6,
        ["Y"],
    ),
    (
        "unknown_output",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = 2 * X
            outputs: [Y, Zed]
        """,
        6,
        ["Zed"],
    ),
    (
        "wrt_not_an_input",
        """
        functions:
          f:
            inputs: {X: [N]}
            wrt: [Q]
            steps:
              - Y = 2 * X
            outputs: [Y]
        """,
        4,
        ["Q"],
    ),
    (
        "lambda",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - "Y = (lambda x: x)(X)"
            outputs: [Y]
        """,
        5,
        [],
    ),
    (
        "dunder_import",
        """
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - "Y = __import__('os')"
            outputs: [Y]
        """,
        5,
        ["__import__"],
    ),
    (
        "module_path",
        """
        module: ../evil
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = 2 * X
            outputs: [Y]
        """,
        1,
        ["evil"],
    ),
]
BAD_IDS = [case[0] for case in BAD_SPECS]


def bad_spec(tmp_path: Path, case_id: str) -> Path:
    """Write the malformed spec of that id as tmp_path/specs/bad_<id>.yaml."""
    text = next(case[1] for case in BAD_SPECS if case[0] == case_id)
    return write(tmp_path / "specs" / f"bad_{case_id}.yaml", text)


def test_enough_malformed_cases() -> None:
    assert len(BAD_SPECS) >= 14
    assert sum(line is not None for _, _, line, _ in BAD_SPECS) >= 6


@pytest.mark.parametrize("case_id, text, line, words", BAD_SPECS, ids=BAD_IDS)
def test_malformed_spec_is_a_located_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case_id: str,
    text: str,
    line: int | None,
    words: list[str],
) -> None:
    spec = bad_spec(tmp_path, case_id)
    out_dir = tmp_path / "out"
    rc, out, err = run_main(capsys, spec, "-o", out_dir)
    assert rc == 2, (rc, out, err)
    errors = error_lines(err, spec)
    assert len(errors) == 1, err
    got_line, got_col, message = errors[0]
    if line is not None:
        assert got_line == line, err
    assert got_col >= 1
    for word in words:
        assert word in message, err
    assert "Traceback" not in err and "Traceback" not in out
    assert py_files(tmp_path) == [], "a bad spec must write nothing"
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_shape_mismatch_names_both_dims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = bad_spec(tmp_path, "shape_mismatch")
    rc, _, err = run_main(capsys, spec, "-o", tmp_path / "out")
    assert rc == 2
    [(_, _, message)] = error_lines(err, spec)
    assert re.search(r"\bD\b", message) and re.search(r"\bE\b", message), message


def test_module_path_writes_nothing_anywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = bad_spec(tmp_path, "module_path")
    out_dir = tmp_path / "deep" / "out"
    rc, _, _ = run_main(capsys, spec, "-o", out_dir)
    assert rc == 2
    assert not list(tmp_path.rglob("evil*")), "module: ../evil must not escape the output dir"


@pytest.mark.parametrize("step", ["X @ W", "Y += X @ W"])
def test_non_assignment_step_is_reported_at_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str
) -> None:
    spec = write(
        tmp_path / "notassign.yaml",
        f"""
        functions:
          f:
            inputs:
              X: [N, D]
              W: [D, K]
            steps:
              - {step}
            outputs: [Y]
        """,
    )
    rc, _, err = run_main(capsys, spec, "-o", tmp_path / "out")
    assert rc == 2
    [(line, _, message)] = error_lines(err, spec)
    assert line == 7 and "assignment" in message, err


def test_good_and_bad_spec_together_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = bad_spec(tmp_path, "unknown_call")
    out_dir = tmp_path / "out"
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", bad, "-o", out_dir)
    assert rc == 2
    assert len(error_lines(err, bad)) == 1
    assert "Traceback" not in out + err
    assert py_files(out_dir) == []


def test_existing_outputs_untouched_by_a_failing_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "nn.py").write_text("# stale\n")
    bad = bad_spec(tmp_path, "reassignment")
    rc, _, _ = run_main(capsys, SPECS / "nn.yaml", bad, "-o", out_dir)
    assert rc == 2
    assert snapshot(out_dir) == {"nn.py": b"# stale\n"}


def test_all_bad_specs_in_one_process(tmp_path: Path) -> None:
    """The real process: every bad spec reported, no traceback, nothing written, even with good specs."""
    bad = [bad_spec(tmp_path, case_id) for case_id in BAD_IDS]
    out_dir = tmp_path / "out"
    proc = run_cli(SPECS, *bad, "-o", out_dir, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for spec, (_, _, line, _) in zip(bad, BAD_SPECS):
        errors = error_lines(proc.stderr, spec)
        assert len(errors) == 1, (spec.name, proc.stderr)
        if line is not None:
            assert errors[0][0] == line, (spec.name, proc.stderr)
    assert py_files(tmp_path) == []


def test_two_specs_with_the_same_module_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = """
        module: same
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = 2 * X]
            outputs: [Y]
        """
    a, b = write(tmp_path / "a.yaml", body), write(tmp_path / "b.yaml", body)
    rc, _, err = run_main(capsys, a, b, "-o", tmp_path / "out")
    assert rc == 2
    assert error_lines(err, a) or error_lines(err, b), err
    assert py_files(tmp_path) == []


def test_constant_overflow_is_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(
        tmp_path / "overflow.yaml",
        """
        dims: {N: 3}
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = sum(X * 10**400)
            outputs: [Y]
        """,
    )
    # 10**400 is not a float64: a spec error (like the literal 1000...0), not an internal error
    rc, out, err = run_main(capsys, spec, "-o", tmp_path / "out", "--gradcheck")
    assert rc == 2 and "internal error" not in err, (rc, out, err)
    [(line, _, _)] = error_lines(err, spec)
    assert line == 6
    assert py_files(tmp_path) == []


# --------------------------------------------------------------------------- docstrings


def test_doc_with_triple_quotes_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module_doc = 'Say """hello""" to the \\backslash\\ and to "quotes" in the middle.'
    function_doc = 'A function whose doc has """ in it.'
    spec = tmp_path / "quotes.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "doc": module_doc,
                "functions": {
                    "f": {
                        "doc": function_doc,
                        "inputs": {"X": ["N"]},
                        "steps": ["Y = 2 * X"],
                        "outputs": ["Y"],
                    }
                },
            }
        )
    )
    rc, out, err = run_main(capsys, spec, "-o", tmp_path / "out")
    assert rc == 0, err
    module = load_file(tmp_path / "out" / "quotes.py", "codegen_test_quotes")
    assert module.__doc__ == module_doc
    assert function_doc in module.f.__doc__


@pytest.mark.parametrize(
    "doc", ['Ends with """', 'Ends with a quote"', "Ends with a backslash \\"]
)
def test_doc_ending_with_quotes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: str
) -> None:
    spec = tmp_path / "endquotes.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "doc": doc,
                "functions": {
                    "f": {"inputs": {"X": ["N"]}, "steps": ["Y = 2 * X"], "outputs": ["Y"]}
                },
            }
        )
    )
    rc, _, err = run_main(capsys, spec, "-o", tmp_path / "out")
    assert rc == 0, err
    module = load_file(tmp_path / "out" / "endquotes.py", f"codegen_test_endquotes_{len(doc)}")
    assert module.__doc__ == doc


# --------------------------------------------------------------------------- 2. --check


def test_check_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    os.utime(out_dir / "nn.py", ns=(10**18, 10**18))
    before = snapshot(out_dir)
    rc, out, err = run_main(capsys, SPECS, "-o", out_dir, "--check")
    assert rc == 0, out + err
    assert snapshot(out_dir) == before
    assert (out_dir / "nn.py").stat().st_mtime_ns == 10**18


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    (out_dir / "nn.py").unlink()
    rc, out, err = run_main(capsys, SPECS, "-o", out_dir, "--check")
    assert rc == 1
    assert "nn.py" in out + err
    assert "seeds.py" not in out + err, "only the missing file is named"
    assert not (out_dir / "nn.py").exists(), "--check writes nothing"


def test_check_modified_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    seeds = out_dir / "seeds.py"
    edited = seeds.read_text() + "# a hand edit\n"
    seeds.write_text(edited)
    rc, out, err = run_main(capsys, SPECS, "-o", out_dir, "--check")
    assert rc == 1
    assert "seeds.py" in out + err
    assert "nn.py" not in (out + err).replace("seeds.py", ""), "only the stale file is named"
    assert seeds.read_text() == edited, "--check writes nothing"


def test_check_empty_output_dir_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "never"
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", out_dir, "--check")
    assert rc == 1
    assert "nn.py" in out + err
    assert not out_dir.exists()


def test_check_with_bad_spec_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = bad_spec(tmp_path, "comparison")
    rc, _, err = run_main(capsys, bad, "-o", tmp_path / "out", "--check")
    assert rc == 2 and error_lines(err, bad)


# --------------------------------------------------------------------------- 3. arguments, --gradcheck


def expected_gradients() -> set[tuple[str, str, str]]:
    """(module, function, wrt) for every gradient of every spec in specs/."""
    expected = set()
    for path in sorted(SPECS.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        module = spec.get("module", path.stem)
        for name, fn in spec["functions"].items():
            floats = [name for name, decl in fn["inputs"].items()  # default wrt: float inputs
                      if not (isinstance(decl, dict) and decl.get("dtype") in ("int64", "bool"))]
            for wrt in fn.get("wrt", floats):
                expected.add((module, name, wrt))
    return expected


def test_gradcheck_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capsys, SPECS, "-o", tmp_path / "out", "--gradcheck")
    assert rc == 0, out + err
    line = re.compile(r"^\s*(\w+)\.(\w+)\s+d(\w+)\s+([-+0-9.eE]+|inf|nan)\b.*$", re.M)
    rows = line.findall(out)
    got = [(m, f, w) for m, f, w, _ in rows]
    expected = expected_gradients()
    assert len(expected) >= 20
    assert sorted(got) == sorted(expected), "one line per gradient"
    for *_, error in rows:
        assert float(error) <= 1e-6
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(SPEC_MODULE_FILES)


def test_gradcheck_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(
        tmp_path / "blowup.yaml",
        """
        dims: {N: 3}
        functions:
          f:
            inputs: {X: [N]}
            steps:
              - Y = sum(sqrt(X - 10))
            outputs: [Y]
        """,
    )
    # inputs are drawn positive for sqrt, but X - 10 is negative: NaN gradients fail the check
    rc, out, _ = run_main(capsys, spec, "-o", tmp_path / "out", "--gradcheck")
    assert rc == 1, out
    assert re.search(r"blowup\.f\s+dX\b", out)


def test_directory_expands_to_spec_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = """
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = 2 * X]
            outputs: [Y]
        """
    specs = tmp_path / "specs"
    write(specs / "alpha.yaml", body)
    write(specs / "beta.yaml", body)
    write(specs / "gamma.yml", body)
    write(specs / "notes.txt", "not a spec: {[\n")
    write(specs / "README.md", "# not a spec\n")
    out_dir = tmp_path / "out"
    rc, out, err = run_main(capsys, specs, "-o", out_dir)
    assert rc == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["alpha.py", "beta.py", "gamma.py"]


def test_empty_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    rc, _, err = run_main(capsys, tmp_path / "empty", "-o", tmp_path / "out")
    assert rc == 2 and "empty" in err
    assert not (tmp_path / "out").exists()


def test_same_spec_twice_is_generated_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", SPECS, "-o", tmp_path / "out")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == SPEC_MODULE_FILES


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_spec.yaml"
    proc = run_cli(missing, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no_such_spec.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()


def test_backend_all_writes_both_modules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", tmp_path / "out", "--backend", "all")
    assert rc == 0, out + err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.py")) == [
        "_codegen_numba_runtime.py", "nn.py", "nn_numba.py", "nn_xp.py"]
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", tmp_path / "out2", "--backend", "numba")
    assert rc == 0, out + err
    assert sorted(p.name for p in (tmp_path / "out2").glob("*.py")) == [
        "_codegen_numba_runtime.py", "nn_numba.py"]


def test_numba_options_reach_the_decorator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", out_dir, "--backend", "numba",
                            "--numba-parallel", "--numba-fastmath")
    assert rc == 0, out + err
    src = (out_dir / "nn_numba.py").read_text()
    assert "_kernel = _runtime._kernel_fastmath\n" in src
    assert "_parallel_kernel = _runtime._parallel_kernel_fastmath\n" in src
    assert "numba.prange(" in src and "@_parallel_kernel" in src
    runtime = (out_dir / "_codegen_numba_runtime.py").read_text()  # (the same for any options)
    assert 'numba.njit(cache=True, error_model="numpy", fastmath=fastmath)(kernel)' in runtime
    assert 'error_model="numpy", fastmath=fastmath, parallel={"prange": True, **only_prange}' in runtime
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", out_dir, "--backend", "numba",
                            "--check")
    assert rc == 1, "default options differ from the written file: --check must say stale"


def test_missing_output_option(tmp_path: Path) -> None:
    proc = run_cli(SPECS / "nn.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "-o" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert py_files(tmp_path) == []


def test_output_path_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out"
    target.write_text("I am a file\n")
    rc, out, err = run_main(capsys, SPECS / "nn.yaml", "-o", target)
    assert rc == 2
    assert "Traceback" not in out + err
    assert target.read_text() == "I am a file\n"


# --------------------------------------------------------------------------- 4. determinism


def test_same_bytes_under_different_hash_seeds(tmp_path: Path) -> None:
    for seed in ("0", "4242"):
        proc = run_cli(SPECS, "-o", tmp_path / f"seed{seed}", PYTHONHASHSEED=seed)
        assert proc.returncode == 0, proc.stderr
    first, second = snapshot(tmp_path / "seed0"), snapshot(tmp_path / "seed4242")
    assert set(first) == set(SPEC_MODULE_FILES)
    assert first == second


def test_same_bytes_from_another_cwd(tmp_path: Path) -> None:
    # relative spec dir from the repo root, absolute output dir
    proc = run_cli("specs", "-o", tmp_path / "a", cwd=REPO, PYTHONHASHSEED="1")
    assert proc.returncode == 0, proc.stderr
    # absolute spec dir from elsewhere, relative output dir
    proc = run_cli(SPECS, "-o", "b", cwd=tmp_path, PYTHONHASHSEED="2")
    assert proc.returncode == 0, proc.stderr
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert set(first) == set(SPEC_MODULE_FILES)
    assert first == second


# --------------------------------------------------------------------------- 5. golden files


def test_committed_generated_is_fresh() -> None:
    proc = run_cli("specs", "-o", "generated", "--check", cwd=REPO)
    assert proc.returncode == 0, (
        f"generated/ is stale or incomplete; run `{REGENERATE}` and commit the result.\n"
        + proc.stdout
        + proc.stderr
    )


def test_committed_generated_has_no_strays() -> None:
    expected = {
        f"{yaml.safe_load(p.read_text()).get('module', p.stem)}{suffix}.py"
        for p in SPECS.glob("*.yaml") for suffix in ("", "_numba", "_xp")
    }
    expected.add("_codegen_numba_runtime.py")  # the runtime the Numba modules import
    actual = {p.name for p in GENERATED.glob("*.py") if p.name != "__init__.py"}
    assert actual == expected, f"generated/ does not match specs/; run `{REGENERATE}`"


# --------------------------------------------------------------------------- 6. atomic writes


def test_no_temp_files_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in out_dir.iterdir()) == SPEC_MODULE_FILES


def test_unchanged_files_are_not_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    old = 1_000_000_000 * 10**9  # 2001: any rewrite would change it
    for p in out_dir.iterdir():
        os.utime(p, ns=(old, old))
    nn_inode = (out_dir / "nn.py").stat().st_ino
    # spoil one file (keeping codegen's header, so it is still ours): only that one is rewritten
    header = (out_dir / "seeds.py").read_text().splitlines()[:3]
    (out_dir / "seeds.py").write_text("\n".join(header) + "\n# spoiled\n")
    os.utime(out_dir / "seeds.py", ns=(old, old))
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    assert (out_dir / "nn.py").stat().st_mtime_ns == old
    assert (out_dir / "nn.py").stat().st_ino == nn_inode
    assert (out_dir / "seeds.py").stat().st_mtime_ns != old
    assert "# spoiled" not in (out_dir / "seeds.py").read_text()
    # a third run changes nothing at all
    mtimes = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    assert run_main(capsys, SPECS, "-o", out_dir)[0] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- 7. generated modules


def module_sources(generated_specs: Path) -> list[tuple[str, str]]:
    """(label, source) of every freshly generated and every committed module."""
    fresh = [(f"fresh {p.name}", p.read_text()) for p in sorted(generated_specs.glob("[!_]*.py"))]
    committed = [(f"generated/{p.name}", p.read_text())
                 for p in sorted(GENERATED.glob("[!_]*.py"))]  # (not the Numba runtime)
    assert fresh and committed
    return fresh + committed


def test_generated_modules_do_not_import_codegen(generated_specs: Path) -> None:
    for label, src in module_sources(generated_specs):
        assert not re.search(r"^\s*(import\s+codegen|from\s+codegen)\b", src, re.M), label
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "codegen" for n in names), label


def test_generated_modules_import_without_codegen(
    generated_specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "codegen", None)  # any 'import codegen' now fails
    monkeypatch.syspath_prepend(str(generated_specs))  # the Numba modules import their runtime
    for path in sorted(generated_specs.glob("[!_]*.py")):
        module = load_file(path, f"codegen_test_gen_{path.stem}")
        spec_file = SPECS / f"{path.stem.removesuffix('_numba').removesuffix('_xp')}.yaml"
        first_function = next(iter(yaml.safe_load(spec_file.read_text())["functions"]))
        assert callable(getattr(module, first_function))


def test_generated_header(generated_specs: Path) -> None:
    for label, src in module_sources(generated_specs):
        first = src.splitlines()[0]
        assert first.startswith("#"), label
        assert "Generated by codegen" in first and "do not edit" in first, label
        stem = label.split()[-1].split("/")[-1].removesuffix(".py").removesuffix("_numba").removesuffix("_xp")
        assert f"{stem}.yaml" in first, (label, first)


def test_generated_modules_are_black_formatted(generated_specs: Path) -> None:
    for label, src in module_sources(generated_specs):
        assert black.format_str(src, mode=BLACK_MODE) == src, label


def backward_rule_comments(src: str) -> dict[str, dict[str, str]]:
    """For each ``*_backward`` function: assigned name -> the comment line right above it.

    Asserts on the way that every statement after the cotangent check has such a comment, or
    continues the commented statement above it in place (``dZ *= dH``, ``np.exp(dZ, out=dZ)``
    on the name that statement bound), or deletes dead arrays (``del dH``).
    """
    lines = src.splitlines()
    result: dict[str, dict[str, str]] = {}
    for fn in ast.parse(src).body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name.endswith("_backward")):
            continue
        body = fn.body
        starts = [
            i
            for i, s in enumerate(body)
            if isinstance(s, ast.Assign)
            and isinstance(s.value, ast.Call)
            and getattr(s.value.func, "id", "") == "_check_cotangent"
        ]
        assert starts, f"{fn.name}: no _check_cotangent call"
        comments: dict[str, str] = {}
        bound: set[str] = set()  # names the last commented statement bound
        for stmt in body[starts[0] + 1 :]:
            if isinstance(stmt, (ast.Return, ast.Delete)):
                continue
            k = stmt.lineno - 2
            block = []
            while k >= 0 and lines[k].strip().startswith("#"):  # a comment may be wrapped
                block.insert(0, lines[k].strip().lstrip("#").strip())
                k -= 1
            if not block and _continues_in_place(stmt, bound):
                continue
            above = "# " + " ".join(block)
            assert block and re.search(r"→\s*\S", above), (
                f"{fn.name}, line {stmt.lineno}: {lines[stmt.lineno - 1].strip()!r} "
                f"is not preceded by a rule comment (got {above!r})"
            )
            targets = getattr(stmt, "targets", []) + [getattr(stmt, "target", None)]
            bound = set()
            for target in filter(None, targets):
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        comments[node.id] = above
                        bound.add(node.id)
        assert comments, f"{fn.name}: no backward statements found"
        result[fn.name] = comments
    return result


def _continues_in_place(stmt: ast.stmt, bound: set[str]) -> bool:
    """``x op= ...`` or ``np.f(..., out=x)`` on a name the commented statement above bound."""
    if isinstance(stmt, ast.AugAssign):
        return isinstance(stmt.target, ast.Name) and stmt.target.id in bound
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        out = [kw.value for kw in stmt.value.keywords if kw.arg == "out"]
        return bool(out) and isinstance(out[0], ast.Name) and out[0].id in bound
    return False


def test_backward_lines_name_their_rule() -> None:
    src = (GENERATED / "nn.py").read_text()
    rules = backward_rule_comments(src)
    assert set(rules) >= {"one_layer_backward", "mlp_mse_backward", "linear_regression_backward"}
    mlp = rules["mlp_mse_backward"]
    assert "right product" in mlp["dH1"]
    assert "tanh" in mlp["dZ1"]
    assert "sum over rows" in mlp["db1"] and "sum over rows" in mlp["db2"]
    assert "left product" in mlp["dW1"] or "right product" in mlp["dW1"]
    assert any("sigmoid" in c for c in rules["one_layer_backward"].values())


def test_fresh_backward_lines_name_their_rule(generated_specs: Path) -> None:
    for path in sorted(generated_specs.glob("[!_]*.py")):
        if not path.name.endswith("_numba.py"):  # Numba kernels comment whole loop groups
            assert backward_rule_comments(path.read_text()), path.name
