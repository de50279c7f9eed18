"""The JSON Schema of the spec format (codegen/schema.py, shipped as codegen/spec.schema.json).

- it is a valid draft 2020-12 schema, shipped in the package and printed by ``--schema``;
- every spec in specs/ (and the README's example) validates;
- structurally malformed specs are rejected by the schema *and* by the loader;
- it is never stricter than the loader: whatever the loader accepts, the schema accepts.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import cli, loader, schema
from codegen.compiler import compile_spec
from codegen.errors import SpecError
from codegen.loader import load_spec

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "specs").glob("*.y*ml"))


@pytest.fixture(scope="module")
def validator():  # type: ignore[no-untyped-def]
    s = json.loads(schema.shipped_schema_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def errors_of(validator, data: object) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.message for e in validator.iter_errors(data)]


# --------------------------------------------------------------------------- the schema itself


def test_shipped_file_is_the_generated_schema() -> None:
    assert schema.shipped_schema_text() == schema.schema_json(), (
        "codegen/spec.schema.json is stale: run `python -m codegen --schema > "
        "codegen/spec.schema.json`"
    )


def test_schema_is_draft_2020_12() -> None:
    s = schema.build_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)


def test_schema_keys_are_the_loaders() -> None:
    s = schema.build_schema()
    assert tuple(s["properties"]) == loader.TOP_KEYS
    assert s["additionalProperties"] is False
    fn = s["$defs"]["function"]
    assert tuple(fn["properties"]) == loader.FUNCTION_KEYS
    assert fn["additionalProperties"] is False
    assert s["$defs"]["shape"]["maxItems"] == loader.MAX_RANK
    assert s["properties"]["dtype"]["enum"] == list(loader.DTYPES)


def test_schema_documents_every_property() -> None:
    """Editors show descriptions on hover and examples on completion."""
    s = schema.build_schema()
    props = dict(s["properties"]) | {
        f"function.{k}": v for k, v in s["$defs"]["function"]["properties"].items()
    }
    for name, prop in props.items():
        assert prop.get("description"), name
    for name in ("name", "dimName", "size", "shape", "step"):
        assert s["$defs"][name].get("description") and s["$defs"][name].get("examples"), name


def test_schema_is_deterministic() -> None:
    assert schema.schema_json() == schema.schema_json()
    assert json.loads(schema.schema_json()) == schema.build_schema()


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--schema"]) == 0
    out, err = capsys.readouterr()
    assert out == schema.shipped_schema_text()
    assert err == ""
    json.loads(out)


def test_schema_ships_as_package_data() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^"codegen" = \[.*"spec\.schema\.json".*\]', text, re.M), text


# --------------------------------------------------------------------------- good specs validate


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate(validator, path: Path) -> None:  # type: ignore[no-untyped-def]
    assert SPECS
    assert errors_of(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_readme_example_validates(validator) -> None:  # type: ignore[no-untyped-def]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    specs = [b for b in blocks if "functions:" in b and "steps:" in b]
    assert specs
    for block in specs:
        load_spec(block, "readme.yaml")
        assert errors_of(validator, yaml.safe_load(block)) == []


# --------------------------------------------------------------------------- bad specs are rejected

GOOD_FN = """
    f:
      inputs: {X: [N, D], w: [D]}
      steps:
        - y = X @ w
        - loss = sum(y ** 2)
      outputs: [loss]
"""


def one_fn(body: str, top: str = "") -> str:
    """A spec with top-level lines ``top`` and one function f whose body is ``body``."""
    return top + "functions:\n  f:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")


BASE = """
    inputs: {X: [N, D], w: [D]}
    steps: [y = X @ w, loss = sum(y ** 2)]
    outputs: [loss]
"""

# (id, spec text): structurally malformed; the schema and the loader must both reject them.
MALFORMED = [
    ("unknown_top_key", one_fn(BASE, "modul: nn\n")),
    ("unknown_function_key", one_fn(BASE + "    step: [y = X]\n")),
    ("missing_functions", "module: nn\ndims: {N: 3}\n"),
    ("functions_empty", "functions: {}\n"),
    ("functions_a_list", "functions: [f]\n"),
    ("function_not_a_mapping", "functions:\n  f: [X]\n"),
    ("missing_inputs", one_fn("steps: [y = 2]\noutputs: [y]\n")),
    ("missing_steps", one_fn("inputs: {X: [N]}\noutputs: [X]\n")),
    ("missing_outputs", one_fn("inputs: {X: [N]}\nsteps: [y = 2 * X]\n")),
    ("inputs_empty", one_fn("inputs: {}\nsteps: [y = 2]\noutputs: [y]\n")),
    ("inputs_a_list", one_fn("inputs: [X, Y]\nsteps: [y = X]\noutputs: [y]\n")),
    ("rank_5_shape", one_fn("inputs: {X: [N, D, K, M, L]}\nsteps: [y = sum(X)]\noutputs: [y]\n")),
    ("shape_not_a_list", one_fn("inputs: {X: N}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_float", one_fn("inputs: {X: [2.5]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_bool", one_fn("inputs: {X: [true]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_zero", one_fn("inputs: {X: [0]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_negative", one_fn("inputs: {X: [-3]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_nested", one_fn("inputs: {X: [[N]]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("shape_bad_dim_name", one_fn("inputs: {X: [2N]}\nsteps: [y = X]\noutputs: [y]\n")),
    ("step_number", one_fn("inputs: {X: [N]}\nsteps: [3]\noutputs: [X]\n")),
    ("step_mapping", one_fn("inputs: {X: [N]}\nsteps:\n  - y: X\noutputs: [X]\n")),
    ("step_list", one_fn("inputs: {X: [N]}\nsteps:\n  - [y = X]\noutputs: [X]\n")),
    ("step_null", one_fn("inputs: {X: [N]}\nsteps:\n  -\noutputs: [X]\n")),
    ("step_multiline", one_fn('inputs: {X: [N]}\nsteps: ["y = X\\nz = y"]\noutputs: [X]\n')),
    ("steps_empty", one_fn("inputs: {X: [N]}\nsteps: []\noutputs: [X]\n")),
    ("steps_a_string", one_fn("inputs: {X: [N]}\nsteps: y = X\noutputs: [y]\n")),
    ("outputs_empty", one_fn("inputs: {X: [N]}\nsteps: [y = X]\noutputs: []\n")),
    ("outputs_a_string", one_fn("inputs: {X: [N]}\nsteps: [y = X]\noutputs: y\n")),
    ("outputs_duplicate", one_fn("inputs: {X: [N]}\nsteps: [y = X]\noutputs: [y, y]\n")),
    ("wrt_empty", one_fn(BASE + "    wrt: []\n")),
    ("wrt_a_string", one_fn(BASE + "    wrt: w\n")),
    ("wrt_number", one_fn(BASE + "    wrt: [1]\n")),
    ("doc_number", one_fn(BASE + "    doc: 42\n")),
    ("doc_list", one_fn(BASE, "doc: [a, b]\n")),
    ("dtype_float16", one_fn(BASE, "dtype: float16\n")),
    ("dtype_number", one_fn(BASE, "dtype: 64\n")),
    ("module_number", one_fn(BASE, "module: 3\n")),
    ("module_path", one_fn(BASE, "module: ../../x\n")),
    ("module_absolute", one_fn(BASE, "module: /abs\n")),
    ("module_dotted", one_fn(BASE, "module: a.b\n")),
    ("module_keyword", one_fn(BASE, "module: class\n")),
    ("module_underscore", one_fn(BASE, "module: _private\n")),
    ("dims_negative", one_fn(BASE, "dims: {N: -4, D: 3}\n")),
    ("dims_zero", one_fn(BASE, "dims: {N: 0}\n")),
    ("dims_float", one_fn(BASE, "dims: {N: 2.5}\n")),
    ("dims_string", one_fn(BASE, "dims: {N: many}\n")),
    ("dims_a_list", one_fn(BASE, "dims: [N, D]\n")),
    ("dims_bad_name", one_fn(BASE, "dims: {_N: 3}\n")),
    ("dims_too_large", one_fn(BASE, f"dims: {{N: {loader.MAX_DIM + 1}}}\n")),
    ("function_name_keyword", "functions:\n  class:\n" + textwrap.indent(
        textwrap.dedent(BASE).strip("\n"), "    ")),
    ("function_name_underscore", "functions:\n  _f:\n" + textwrap.indent(
        textwrap.dedent(BASE).strip("\n"), "    ")),
    ("input_name_keyword", one_fn("inputs: {lambda: [N]}\nsteps: [y = 2]\noutputs: [y]\n")),
    ("input_name_reserved", one_fn("inputs: {np: [N]}\nsteps: [y = 2]\noutputs: [y]\n")),
    # the vocabulary's functions: one reserved list for the schema, the loader and the parser
    ("input_name_vocabulary", one_fn("inputs: {tanh: [N]}\nsteps: [y = 2]\noutputs: [y]\n")),
    ("function_name_vocabulary", "functions:\n  softmax:\n" + textwrap.indent(
        textwrap.dedent(BASE).strip("\n"), "    ")),
    ("dims_vocabulary_name", one_fn(BASE, "dims: {sum: 3}\n")),
    ("top_level_list", "- functions\n"),
    ("top_level_scalar", "just a string\n"),
]


def test_malformed_table_is_large_and_unique() -> None:
    ids = [i for i, _ in MALFORMED]
    assert len(ids) == len(set(ids)) >= 40


@pytest.mark.parametrize("text", [t for _, t in MALFORMED], ids=[i for i, _ in MALFORMED])
def test_malformed_rejected_by_schema_and_loader(validator, text: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(text)
    assert errors_of(validator, data), f"the schema accepts:\n{text}"
    with pytest.raises(SpecError) as info:
        load_spec(text, "bad.yaml")
    assert re.match(r"^bad\.yaml:\d+:\d+: error: ", str(info.value)), str(info.value)


# Steps that are not assignments: the schema rejects them, and so does codegen (at compile time).
NOT_ASSIGNMENTS = ["X @ w", "y == X", "= X", "2y = X", "y += X", "y: float = X", "import os"]


@pytest.mark.parametrize("step", NOT_ASSIGNMENTS)
def test_non_assignment_steps(validator, step: str) -> None:  # type: ignore[no-untyped-def]
    text = one_fn(f"inputs: {{X: [N]}}\nsteps: [{json.dumps(step)}]\noutputs: [X]\n")
    assert errors_of(validator, yaml.safe_load(text)), step
    with pytest.raises(SpecError):
        compile_spec(load_spec(text, "bad.yaml"))


# --------------------------------------------------------------------------- never stricter


NAMES = st.sampled_from(["X", "Y", "w", "b", "N", "loss", "f", "g2", "np", "class", "_x", "numpy"])
SHAPES = st.lists(
    st.one_of(st.sampled_from(["N", "D", "K"]), st.integers(-1, 4), st.just(True)), max_size=3
)
MODULES = st.sampled_from(["nn", "np", "os", "class", "a.b", "x1", "NamedTuple", "typing"])


@st.composite
def spec_data(draw: st.DrawFn) -> dict:
    """Mostly valid specs, with an occasional perturbation (so the loader accepts many)."""
    bad = draw(st.integers(0, 4)) == 0  # one spec in five gets random fields

    def maybe(valid: st.SearchStrategy, wild: st.SearchStrategy):  # type: ignore[no-untyped-def]
        return draw(wild if bad and draw(st.booleans()) else valid)

    functions = {}
    for fname in draw(st.lists(st.sampled_from(["f", "loss_fn", "g2"]), min_size=1,
                               max_size=2, unique=True)):
        names = draw(st.lists(st.sampled_from(["X", "w", "b", "Y"]), min_size=1, max_size=3,
                              unique=True))
        inputs = {n: maybe(st.lists(st.sampled_from(["N", "D", 1, 3]), max_size=2), SHAPES)
                  for n in names}
        inputs.update({maybe(st.nothing() | st.just(names[0]), NAMES): ["N"]} if bad else {})
        steps = [f"t{i} = {draw(st.sampled_from(names))} * 2" for i in range(draw(st.integers(1, 3)))]
        fn: dict = {"inputs": inputs, "steps": maybe(st.just(steps), st.lists(
            st.sampled_from(["y = X", "y", "  y=X ", "y = X  # note", 3, "(y) = X"]), max_size=2))}
        fn["outputs"] = maybe(st.just(["t0"]), st.lists(NAMES, max_size=2))
        if draw(st.booleans()):
            fn["wrt"] = maybe(st.just(names[:1]), st.lists(NAMES, max_size=2))
        if draw(st.booleans()):
            fn["doc"] = maybe(st.text(max_size=20), st.integers())
        functions[fname] = fn
    data: dict = {}
    if draw(st.booleans()):
        data["module"] = draw(MODULES)
    if draw(st.booleans()):
        data["dtype"] = maybe(st.sampled_from(["float64", "float32"]), st.just("float16"))
    if draw(st.booleans()):
        data["doc"] = draw(st.text(max_size=30))
    if draw(st.booleans()):
        data["dims"] = maybe(st.dictionaries(st.sampled_from(["N", "D"]), st.integers(1, 9)),
                             st.dictionaries(NAMES, st.integers(-2, 10), max_size=3))
    data["functions"] = functions
    return data


SHIPPED_VALIDATOR = jsonschema.Draft202012Validator(json.loads(schema.shipped_schema_text()))


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec_data())
def test_schema_accepts_whatever_the_loader_accepts(data: dict) -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        load_spec(text, "fuzz.yaml")
    except SpecError:
        return
    assert errors_of(SHIPPED_VALIDATOR, yaml.safe_load(text)) == [], text
