"""Tests for codegen.loader: valid specs load with correct fields/locations; bad ones give located SpecErrors."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import loader
from codegen.errors import Loc, SpecError
from codegen.loader import load_spec, load_spec_file
from codegen.spec import Spec

PATH = "specs/bad.yaml"

DESIGN_EXAMPLE = """\
# specs/nn.yaml  -> generated/nn.py (NumPy) and generated/nn_numba.py (Numba)
module: nn                    # optional, default: the file's stem
dtype: float64                # optional: float64 (default) or float32
doc: Small neural-network losses.
dims: {N: 64, D: 8, H: 16, K: 3}   # optional example sizes, used by --gradcheck and benchmarks
functions:
  mlp_mse:
    doc: Two-layer tanh perceptron with squared error.
    inputs:                   # name: shape; [] is a scalar; dims are ints or names
      X: [N, D]
      Y: [N, K]
      W1: [D, H]
      b1: [H]
      W2: [H, K]
      b2: [K]
    wrt: [W1, b1, W2, b2]     # inputs to differentiate; default: all inputs
    steps:                    # the forward computation, one assignment a line
      - Z1 = X @ W1 + b1
      - H1 = tanh(Z1)
      - Z2 = H1 @ W2 + b2
      - loss = sum((Z2 - Y) ** 2)
    outputs: [loss, Z2]       # the first is differentiated; the rest ride along
"""

MINIMAL = """\
functions:
  f:
    inputs:
      X: [N, 3]
      w: []
    steps:
      - Y = X * w
    outputs: [Y]
"""


def spec(body: str) -> str:
    """Dedent a test spec."""
    return textwrap.dedent(body).lstrip("\n")


def func(*lines: str, inputs: str = "{X: [N]}", extra: str = "") -> str:
    """A one-function spec with the given steps and extra function keys."""
    steps = "".join(f"      - {line}\n" for line in lines) or "      - Y = X\n"
    return f"functions:\n  f:\n    inputs: {inputs}\n    steps:\n{steps}    outputs: [Y]\n{extra}"


def check_error(text: str, path: str = PATH) -> SpecError:
    """Load text, expecting a well-formed SpecError; return it."""
    with pytest.raises(SpecError) as info:
        load_spec(text, path)
    err = info.value
    assert re.match(rf"^{re.escape(path)}:\d+:\d+: error: \S", str(err)), str(err)
    assert isinstance(err.loc, Loc) and err.loc.path == path
    assert err.loc.line >= 1 and err.loc.col >= 1
    assert "\n" not in err.message
    return err


# --------------------------------------------------------------------------- malformed specs

# (id, text, (line, col) or None, regex the message must match)
BAD: list[tuple[str, str, tuple[int, int] | None, str]] = [
    ("empty-file", "", (1, 1), r"empty spec"),
    ("only-comment", "# nothing here\n", (1, 1), r"empty spec"),
    ("explicit-null-doc", "---\n", (1, 1), r"empty spec"),
    (
        "top-not-mapping",
        "- a\n- b\n",
        (1, 1),
        r"the spec must be a mapping.*got a list",
    ),
    ("top-scalar", "hello\n", (1, 1), r"the spec must be a mapping"),
    ("missing-functions", "module: m\n", (1, 1), r"missing required key 'functions'"),
    (
        "unknown-top-key",
        "module: m\nfunction: {}\n",
        (2, 1),
        r"unknown key 'function'.*allowed: module, dtype, doc, dims, derivatives, functions.*did you mean 'functions'",
    ),
    (
        "duplicate-top-key",
        "doc: a\nmodule: m\ndoc: b\n",
        (3, 1),
        r"duplicate key 'doc' .*\(first at line 1\)",
    ),
    (
        "duplicate-function",
        MINIMAL + "  f:\n    inputs: {}\n",
        (9, 3),
        r"duplicate key 'f' in functions \(first at line 2\)",
    ),
    (
        "duplicate-input",
        spec("""
        functions:
          f:
            inputs:
              X: [N]
              X: [M]
            steps: [Y = X]
            outputs: [Y]
        """),
        (5, 7),
        r"duplicate key 'X' in inputs of function 'f' \(first at line 4\)",
    ),
    (
        "duplicate-function-key",
        spec("""
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: [Y]
            steps: [Y = X]
        """),
        (6, 5),
        r"duplicate key 'steps' in function 'f'",
    ),
    (
        "duplicate-dim",
        "dims: {N: 3, N: 4}\n" + MINIMAL,
        (1, 14),
        r"duplicate key 'N' in dims",
    ),
    (
        "unknown-function-key",
        func(extra="    output: [Y]\n"),
        (7, 5),
        r"unknown key 'output' in function 'f'.*did you mean 'outputs'",
    ),
    ("functions-empty", "functions: {}\n", (1, 12), r"at least one function"),
    (
        "functions-list",
        "functions:\n  - f\n",
        (2, 3),
        r"functions must be a mapping.*got a list",
    ),
    ("functions-null", "functions:\n", (1, 11), r"functions must be a mapping.*null"),
    (
        "function-not-mapping",
        "functions:\n  f: 3\n",
        (2, 6),
        r"function 'f' must be a mapping.*integer 3",
    ),
    (
        "missing-inputs",
        "functions:\n  f:\n    steps: [Y = 1]\n    outputs: [Y]\n",
        (2, 3),
        r"function 'f' is missing required key 'inputs'",
    ),
    (
        "missing-steps",
        "functions:\n  f:\n    inputs: {X: [N]}\n    outputs: [X]\n",
        (2, 3),
        r"missing required key 'steps'",
    ),
    (
        "missing-outputs",
        "functions:\n  f:\n    inputs: {X: [N]}\n    steps: [Y = X]\n",
        (2, 3),
        r"missing required key 'outputs'",
    ),
    (
        "inputs-empty",
        func(inputs="{}"),
        (3, 13),
        r"inputs of function 'f' must not be empty",
    ),
    (
        "inputs-list",
        func(inputs="[X, Y]"),
        (3, 13),
        r"inputs of function 'f' must be a mapping",
    ),
    (
        "bad-function-name",
        "functions:\n  2f:\n    inputs: {X: [N]}\n",
        (2, 3),
        r"function name '2f' is not a valid Python identifier",
    ),
    (
        "keyword-function-name",
        "functions:\n  lambda:\n    inputs: {X: [N]}\n",
        (2, 3),
        r"function name 'lambda' is a Python keyword",
    ),
    (
        "underscore-function-name",
        "functions:\n  _f:\n    inputs: {X: [N]}\n",
        (2, 3),
        r"must not start with '_'",
    ),
    (
        "non-ascii-function-name",
        "functions:\n  fé:\n    inputs: {X: [N]}\n",
        (2, 3),
        r"ASCII",
    ),
    (
        "reserved-function-name",
        "functions:\n  np:\n    inputs: {X: [N]}\n",
        (2, 3),
        r"'np' is reserved",
    ),
    (
        "keyword-input",
        func(inputs="{class: [N]}"),
        (3, 14),
        r"input name 'class' in function 'f' is a Python keyword",
    ),
    (
        "input-bad-ident",
        func(inputs="{X-1: [N]}"),
        (3, 14),
        r"input name 'X-1' in function 'f' is not a valid Python identifier",
    ),
    (
        "input-is-function-name",
        func(inputs="{f: [N]}"),
        (3, 14),
        r"input 'f' has the same name as its function",
    ),
    (
        "input-bool-key",
        func(inputs="{on: [N]}"),
        (3, 14),
        r"'on'.*read by YAML as boolean.*quote it",
    ),
    (
        "input-int-key",
        func(inputs="{1: [N]}"),
        (3, 14),
        r"must be names, got integer 1",
    ),
    (
        "rank-5-shape",
        func(inputs="{X: [N, D, K, M, L]}"),
        (3, 30),
        r"has 5 dimensions; at most 4 are supported .ranks 0 to 4.; merge axes",
    ),
    (
        "shape-not-list",
        func(inputs="{X: N}"),
        (3, 17),
        r"shape of input 'X' of function 'f' must be a list",
    ),
    (
        "shape-bool",
        func(inputs="{X: [true]}"),
        (3, 18),
        r"dimension 1 of input 'X'.*got boolean",
    ),
    (
        "shape-zero",
        func(inputs="{X: [0]}"),
        (3, 18),
        r"must be a positive integer \(>= 1\), got 0",
    ),
    (
        "shape-float",
        func(inputs="{X: [N, 2.5]}"),
        (3, 21),
        r"dimension 2 .*got number 2.5",
    ),
    (
        "shape-keyword-dim",
        func(inputs="{X: [for]}"),
        (3, 18),
        r"dim name 'for'.*keyword",
    ),
    (
        "dims-bool",
        "dims: {N: true}\n" + MINIMAL,
        (1, 11),
        r"dim 'N' must be a positive integer, got boolean 'true'",
    ),
    (
        "dims-negative",
        "dims: {N: -4}\n" + MINIMAL,
        (1, 11),
        r"dim 'N' must be a positive integer \(>= 1\), got -4",
    ),
    (
        "dims-huge",
        "dims: {N: 100000000}\n" + MINIMAL,
        (1, 11),
        r"larger than the limit 10000000",
    ),
    (
        "dims-string",
        "dims: {N: many}\n" + MINIMAL,
        (1, 11),
        r"dim 'N' must be a positive integer, got string 'many'",
    ),
    ("dims-list", "dims: [N, D]\n" + MINIMAL, (1, 7), r"dims must be a mapping"),
    (
        "dims-keyword-name",
        "dims: {if: 3}\n" + MINIMAL,
        (1, 8),
        r"dim name 'if' in dims is a Python keyword",
    ),
    (
        "dtype-bad",
        "dtype: float16\n" + MINIMAL,
        (1, 8),
        r"dtype must be one of float64, float32, got string 'float16'",
    ),
    ("dtype-int", "dtype: 64\n" + MINIMAL, (1, 8), r"dtype must be one of"),
    ("doc-int", "doc: 42\n" + MINIMAL, (1, 6), r"doc must be a string, got integer 42"),
    ("doc-nul", 'doc: "a\\0b"\n' + MINIMAL, (1, 6), r"doc contains a NUL character"),
    (
        "function-doc-list",
        func(extra="    doc: [a]\n"),
        (7, 10),
        r"doc of function 'f' must be a string, got a list",
    ),
    (
        "module-path",
        "module: ../x\n" + MINIMAL,
        (1, 9),
        r"module '\.\./x' must be a plain module name",
    ),
    ("module-dotted", "module: a.b\n" + MINIMAL, (1, 9), r"not a path or dotted name"),
    (
        "module-keyword",
        "module: import\n" + MINIMAL,
        (1, 9),
        r"module 'import' is a Python keyword",
    ),
    ("module-int", "module: 3\n" + MINIMAL, (1, 9), r"module must be a string"),
    ("module-numpy", "module: numpy\n" + MINIMAL, (1, 9), r"would shadow"),
    ("module-non-ascii", "module: modülé\n" + MINIMAL, (1, 9), r"ASCII"),
    (
        "wrt-unknown",
        func(extra="    wrt: [X, Q]\n"),
        (7, 14),
        r"^wrt names 'Q', which is not an input of f$",
    ),
    (
        "wrt-empty",
        func(extra="    wrt: []\n"),
        (7, 10),
        r"wrt of function 'f' must not be empty",
    ),
    ("wrt-duplicate", func(extra="    wrt: [X, X]\n"), (7, 14), r"lists 'X' twice"),
    (
        "wrt-string",
        func(extra="    wrt: X\n"),
        (7, 10),
        r"wrt of function 'f' must be a list",
    ),
    (
        "outputs-unknown",
        spec("""
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: [Y, Z]
        """),
        (5, 18),
        r"output 'Z' of function 'f' is neither an input nor assigned by a step",
    ),
    (
        "outputs-duplicate",
        spec("""
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: [Y, Y]
        """),
        (5, 18),
        r"lists 'Y' twice \(first at line 5\)",
    ),
    (
        "outputs-empty",
        spec("""
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: []
        """),
        (5, 14),
        r"outputs of function 'f' must not be empty",
    ),
    (
        "step-int",
        func("3"),
        (5, 9),
        r"step must be a string like 'Z = X @ W'.*integer 3",
    ),
    ("step-bool", func("true"), (5, 9), r"step must be a string.*boolean"),
    (
        "step-mapping",
        func("Y = sum(X, axis: 0)"),
        (5, 9),
        r"step must be a string.*mapping.*quote",
    ),
    ("step-list", func("[Y, X]"), (5, 9), r"step must be a string.*list"),
    ("step-null", func("~"), (5, 9), r"step must be a string.*null"),
    (
        "steps-empty",
        "functions:\n  f:\n    inputs: {X: [N]}\n    steps: []\n    outputs: [X]\n",
        (4, 12),
        r"steps of function 'f' must not be empty",
    ),
    (
        "steps-string",
        "functions:\n  f:\n    inputs: {X: [N]}\n    steps: Y = X\n    outputs: [X]\n",
        (4, 12),
        r"steps of function 'f' must be a list",
    ),
    ("step-multiline", func('"Y = X\\nZ = Y"'), (5, 9), r"spans several lines"),
    (
        "step-too-long",
        func("Y = " + "+".join(["X"] * 1200)),
        (5, 9),
        r"characters long; the limit is 2000",
    ),
    ("step-blank", func('"   "'), (5, 9), r"empty step"),
    ("bad-yaml-flow", "functions: {f: [\n", None, r"invalid YAML"),
    (
        "bad-yaml-indent",
        "functions:\n  f:\n    inputs: {X: [N]}\n   steps: [a]\n",
        None,
        r"invalid YAML",
    ),
    ("bad-yaml-quote", 'doc: "unterminated\n', None, r"invalid YAML"),
    ("tab-indent", "functions:\n\tf:\n", (2, 1), r"tab character.*spaces"),
    ("control-char", "doc: a\x01b\n", (1, 7), r"character #x0001 is not allowed"),
    (
        "multiple-documents",
        MINIMAL + "---\n" + MINIMAL,
        (9, 1),
        r"multiple YAML documents",
    ),
    ("alias", "dims: &d {N: 3}\nfunctions: *d\n", (2, 12), r"YAML aliases"),
    ("merge-key", "dims:\n  <<: {N: 3}\n" + MINIMAL, (2, 3), r"merge keys"),
    (
        "python-tag",
        "doc: !!python/object/apply:os.system [ls]\n" + MINIMAL,
        (1, 6),
        r"unsupported YAML tag '!!python/object/apply:os.system'",
    ),
    ("custom-tag", "doc: !mine x\n" + MINIMAL, (1, 6), r"unsupported YAML tag '!mine'"),
    ("set-tag", "dims: !!set {N}\n" + MINIMAL, (1, 7), r"unsupported YAML tag '!!set'"),
    (
        "bad-explicit-int",
        "dims: {N: !!int abc}\n" + MINIMAL,
        (1, 11),
        r"invalid !!int value 'abc'",
    ),
    ("timestamp", "doc: 2024-01-01\n" + MINIMAL, (1, 6), r"read by YAML as a date"),
    (
        "complex-key",
        "functions:\n  ? [a, b]\n  : {}\n",
        (2, 5),
        r"keys of functions must be plain names",
    ),
    (
        "deep-nesting",
        "doc: " + "[" * 200 + "]" * 200 + "\n",
        (1, 69),
        r"nesting is deeper than 64",
    ),
    ("huge-file", "doc: x\n" + "#" * (1 << 20), (1, 1), r"too large.*1 MiB"),
    (
        "huge-int",
        "dims: {N: " + "9" * 5000 + "}\n",
        (1, 11),
        r"invalid !!int value|larger than the limit",
    ),
    ("lone-surrogate", "doc: \ud800\n", (1, 6), r"invalid Unicode character"),
    (
        "generated-name-clash",
        spec("""
        functions:
          f:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: [Y]
          f_forward:
            inputs: {X: [N]}
            steps: [Y = X]
            outputs: [Y]
        """),
        (6, 3),
        r"function 'f_forward' clashes with function 'f': both would generate 'f_forward'",
    ),
]


@pytest.mark.parametrize(
    "text, where, pattern", [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_malformed_spec(text: str, where: tuple[int, int] | None, pattern: str) -> None:
    err = check_error(text)
    assert re.search(pattern, err.message), err.message
    if where is not None:
        assert (err.loc.line, err.loc.col) == where, str(err)


def test_bad_case_ids_unique() -> None:
    ids = [case[0] for case in BAD]
    assert len(ids) == len(set(ids)) and len(ids) >= 25


def test_duplicate_key_message_exact() -> None:
    err = check_error("module: a\nmodule: b\nfunctions: {}\n")
    assert (
        str(err)
        == f"{PATH}:2:1: error: duplicate key 'module' in the spec (first at line 1)"
    )


def test_too_many_functions() -> None:
    body = "".join(
        f"  f{i}:\n    inputs: {{X: [N]}}\n    steps: [Y = X]\n    outputs: [Y]\n"
        for i in range(201)
    )
    err = check_error("functions:\n" + body)
    assert "limit is 200" in err.message
    assert (err.loc.line, err.loc.col) == (2 + 4 * 200, 3)


def test_function_limit_is_inclusive() -> None:
    body = "".join(
        f"  f{i}:\n    inputs: {{X: [N]}}\n    steps: [Y = X]\n    outputs: [Y]\n"
        for i in range(200)
    )
    assert len(load_spec("functions:\n" + body, "specs/many.yaml").functions) == 200


def test_too_many_steps() -> None:
    err = check_error(func(*[f"Y = X + {i}" for i in range(2001)]))
    assert "2001 steps; the limit is 2000" in err.message
    assert (err.loc.line, err.loc.col) == (5 + 2000, 9)


def test_step_length_limit_is_inclusive() -> None:
    step = "Y = X" + " + 1" * ((2000 - 5) // 4)
    assert len(step) <= 2000
    assert load_spec(func(step), "specs/ok.yaml").functions[0].steps[0].text == step


def test_default_module_must_be_identifier() -> None:
    err = check_error(MINIMAL, path="specs/my-spec.yaml")
    assert "set 'module:'" in err.message and "'my-spec'" in err.message
    assert str(err).startswith("specs/my-spec.yaml:1:1: error: ")


def test_pseudo_path_defaults_module_to_spec() -> None:
    assert load_spec(MINIMAL, "<string>").module == "spec"
    assert load_spec("module: m\n" + MINIMAL, "<string>").module == "m"


def test_default_module_keyword_stem() -> None:
    err = check_error(MINIMAL, path="specs/class.yaml")
    assert "set 'module:'" in err.message


def test_yaml_error_is_located() -> None:
    err = check_error("functions:\n  f: [1, 2\n  g: 3\n")
    assert err.loc.line >= 2


def test_spec_error_never_has_traceback_chain_of_other_types() -> None:
    err = check_error("functions: {f: [\n")
    assert err.__cause__ is None


# --------------------------------------------------------------------------- files


def test_load_spec_file_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec_file(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}:1:1: error: ")


def test_load_spec_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec_file(missing)
    assert str(info.value).startswith(f"{missing}:1:1: error: cannot read spec file")


def test_load_spec_file_undecodable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"doc: caf\xe9\n" + MINIMAL.encode())
    with pytest.raises(SpecError) as info:
        load_spec_file(bad)
    assert str(info.value).startswith(f"{bad}:1:1: error: spec is not valid UTF-8")


def test_load_spec_file_too_large(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(MINIMAL.encode() + b"#" * (1 << 20))
    with pytest.raises(SpecError) as info:
        load_spec_file(big)
    assert "too large" in info.value.message and info.value.loc == Loc(str(big), 1, 1)


def test_load_spec_file_ok(tmp_path: Path) -> None:
    path = tmp_path / "nn.yaml"
    path.write_bytes(DESIGN_EXAMPLE.encode("utf-8"))
    loaded = load_spec_file(path)
    assert loaded == load_spec(DESIGN_EXAMPLE, str(path))
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.path == str(path)


def test_load_spec_file_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    data = b"\xef\xbb\xbf" + MINIMAL.replace("\n", "\r\n").encode()
    path.write_bytes(data)
    loaded = load_spec_file(path)
    assert loaded.module == "crlf"
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.functions[0].steps[0].loc.line == 7


def test_load_spec_file_error_path_is_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("specs").mkdir()
    Path("specs/x.yaml").write_text("functions: {}\n")
    with pytest.raises(SpecError) as info:
        load_spec_file("specs/x.yaml")
    assert (
        str(info.value)
        == "specs/x.yaml:1:12: error: functions must define at least one function"
    )


# --------------------------------------------------------------------------- valid specs


def test_design_example_fields() -> None:
    s = load_spec(DESIGN_EXAMPLE, "specs/nn.yaml")
    assert s.path == "specs/nn.yaml"
    assert s.module == "nn"
    assert s.dtype == "float64"
    assert s.doc == "Small neural-network losses."
    assert s.dims == (("N", 64), ("D", 8), ("H", 16), ("K", 3))
    assert s.sha256 == hashlib.sha256(DESIGN_EXAMPLE.encode("utf-8")).hexdigest()
    assert s.loc == Loc("specs/nn.yaml", 2, 1)
    (f,) = s.functions
    assert f.name == "mlp_mse"
    assert f.loc == Loc("specs/nn.yaml", 7, 3)
    assert f.doc == "Two-layer tanh perceptron with squared error."
    assert [(i.name, i.shape) for i in f.inputs] == [
        ("X", ("N", "D")),
        ("Y", ("N", "K")),
        ("W1", ("D", "H")),
        ("b1", ("H",)),
        ("W2", ("H", "K")),
        ("b2", ("K",)),
    ]
    assert [i.loc.line for i in f.inputs] == [10, 11, 12, 13, 14, 15]
    assert all(i.loc.col == 7 for i in f.inputs)
    assert [(r.name, r.loc.line, r.loc.col) for r in f.wrt] == [
        ("W1", 16, 11),
        ("b1", 16, 15),
        ("W2", 16, 19),
        ("b2", 16, 23),
    ]
    assert [st.text for st in f.steps] == [
        "Z1 = X @ W1 + b1",
        "H1 = tanh(Z1)",
        "Z2 = H1 @ W2 + b2",
        "loss = sum((Z2 - Y) ** 2)",
    ]
    assert [(st.loc.line, st.loc.col) for st in f.steps] == [
        (18, 9),
        (19, 9),
        (20, 9),
        (21, 9),
    ]
    assert [(r.name, r.loc.line, r.loc.col) for r in f.outputs] == [
        ("loss", 22, 15),
        ("Z2", 22, 21),
    ]


def test_defaults() -> None:
    s = load_spec(MINIMAL, "specs/losses.yaml")
    assert isinstance(s, Spec)
    assert s.module == "losses"
    assert s.dtype == "float64"
    assert s.doc == ""
    assert s.dims == ()
    (f,) = s.functions
    assert f.doc == ""
    assert [i.shape for i in f.inputs] == [("N", 3), ()]
    assert [r.name for r in f.wrt] == ["X", "w"]
    assert all(r.loc == f.loc for r in f.wrt)  # default wrt points at the function key
    assert f.loc == Loc("specs/losses.yaml", 2, 3)


def test_explicit_values() -> None:
    text = spec("""
        module: mymod
        dtype: float32
        doc: |
          Line one.
          Line "two" with 'quotes' and \\backslash.
        dims: {N: 1, M: 10000000}
        functions:
          g:
            doc: "Docs may contain: colons"
            inputs:
              A: [M, 2]
              "B": [1]
            wrt: [B]
            steps:
              - "C = A @ B.T"
              - 'D = sum(C, axis: 0)' 
              - |
                  E = D * 2
            outputs: [E, D, A]
        """)
    s = load_spec(text, "whatever/path.yml")
    assert s.module == "mymod" and s.dtype == "float32"
    assert s.doc == "Line one.\nLine \"two\" with 'quotes' and \\backslash.\n"
    assert s.dims == (("N", 1), ("M", 10_000_000))
    (g,) = s.functions
    assert g.doc == "Docs may contain: colons"
    assert [(i.name, i.shape) for i in g.inputs] == [("A", ("M", 2)), ("B", (1,))]
    assert [r.name for r in g.wrt] == ["B"]
    assert [st.text for st in g.steps] == [
        "C = A @ B.T",
        "D = sum(C, axis: 0)",
        "E = D * 2",
    ]
    assert [r.name for r in g.outputs] == ["E", "D", "A"]


def test_output_may_be_input_and_target_is_before_first_equals() -> None:
    text = func("Y = X", extra="")
    text = text.replace("outputs: [Y]", "outputs: [Y, X]")
    s = load_spec(text, "specs/in_out.yaml")
    assert [r.name for r in s.functions[0].outputs] == ["Y", "X"]


def test_undeclared_symbolic_dim_is_fine() -> None:
    s = load_spec(
        "dims: {N: 4}\n" + MINIMAL.replace("[N, 3]", "[N, Q]"), "specs/q.yaml"
    )
    assert s.functions[0].inputs[0].shape == ("N", "Q")


def test_multiple_functions_keep_order() -> None:
    body = "".join(
        f"  f{i}:\n    inputs: {{X: [N]}}\n    steps: [Y = X]\n    outputs: [Y]\n"
        for i in (3, 1, 2)
    )
    s = load_spec("functions:\n" + body, "specs/order.yaml")
    assert [f.name for f in s.functions] == ["f3", "f1", "f2"]


def test_quoted_boolean_like_names_are_names() -> None:
    s = load_spec(
        func(inputs='{"on": [N]}').replace("Y = X", "Y = on"), "specs/on.yaml"
    )
    assert s.functions[0].inputs[0].name == "on"


def test_explicit_str_tag_allowed() -> None:
    s = load_spec("doc: !!str 42\n" + MINIMAL, "specs/tag.yaml")
    assert s.doc == "42"


def test_load_spec_is_deterministic() -> None:
    assert load_spec(DESIGN_EXAMPLE, "a/nn.yaml") == load_spec(
        DESIGN_EXAMPLE, "a/nn.yaml"
    )


def test_pure_python_loader_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = load_spec(DESIGN_EXAMPLE, "specs/nn.yaml")
    monkeypatch.setattr(loader, "_CLoader", None)
    assert load_spec(DESIGN_EXAMPLE, "specs/nn.yaml") == fast
    err = check_error("a: &x 1\nb: *x\n")
    assert (err.loc.line, err.loc.col) == (2, 4)
    err = check_error("functions:\n\tf: 1\n")
    assert (err.loc.line, err.loc.col) == (2, 1)


# --------------------------------------------------------------------------- property tests

YAML_TOKENS = list("abcXYZ_019 :-[]{},'\"#&*!|>?%@`\\\t\n=+.~<") + [
    "functions",
    "inputs",
    "steps",
    "outputs",
    "wrt",
    "dims",
    "module",
    "dtype",
    "doc",
    "\n  ",
    "\n    ",
    ": ",
    "- ",
    "---",
    "<<",
    "!!",
    "\x00",
    "é",
    "\ud800",
]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=80).map("".join)


FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_spec_or_error(text: str) -> None:
    """Loading arbitrary text yields a Spec or a well-formed SpecError, never anything else."""
    try:
        result = load_spec(text, "fuzz/x.yaml")
    except SpecError as err:
        assert re.match(r"^fuzz/x\.yaml:\d+:\d+: error: ", str(err)), str(err)
        assert not err.message.startswith(
            "could not load spec"
        ), err.message  # the last-resort path = a loader bug
    else:
        assert isinstance(result, Spec)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_never_crashes(text: str) -> None:
    assert_spec_or_error(text)


@FUZZ
@given(YAMLISH)
def test_yamlish_text_never_crashes(text: str) -> None:
    assert_spec_or_error(text)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=20),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(
        ["X", "N", "Y = X", "Y = X * 2", "f", "float32", "class", "_x", "", "a b"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "X",
                    "N",
                    "Y",
                    "f",
                    "inputs",
                    "steps",
                    "outputs",
                    "wrt",
                    "doc",
                    "dims",
                    "functions",
                ]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


SPEC_DICTS = st.fixed_dictionaries(
    {},
    optional={
        "module": SCALARS,
        "dtype": SCALARS,
        "doc": SCALARS,
        "dims": VALUES,
        "functions": st.dictionaries(
            st.sampled_from(["f", "g", "lambda", "f_forward"]),
            st.fixed_dictionaries(
                {},
                optional={
                    "inputs": st.dictionaries(
                        st.sampled_from(["X", "Y", "N", "f"]), VALUES, max_size=3
                    ),
                    "steps": VALUES,
                    "outputs": VALUES,
                    "wrt": VALUES,
                    "doc": SCALARS,
                },
            ),
            max_size=3,
        ),
    },
)


@FUZZ
@given(SPEC_DICTS)
def test_structured_random_specs_never_crash(data: dict) -> None:
    assert_spec_or_error(yaml.safe_dump(data, sort_keys=False))
