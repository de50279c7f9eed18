"""JSON Schema (draft 2020-12) of the spec format, for editors and other tools.

The schema describes the *structure* of a spec (keys, types, shapes, the form of a step); the
loader and the step parser remain the authority on everything else (the step vocabulary, shape
unification, names that clash).  Every spec the loader accepts validates against the schema; the
structural mistakes the schema rejects are rejected by the loader too (``tests/test_schema.py``).

The schema ships inside the package as ``codegen/spec.schema.json`` and is printed by
``python -m codegen --schema``.  The file is generated from :func:`build_schema`; after changing
this module run ``python -m codegen --schema > codegen/spec.schema.json`` (a test keeps them equal).
"""

from __future__ import annotations

import json
import keyword
from importlib import resources

from .loader import (
    DERIVATIVES,
    DTYPES,
    INPUT_DTYPES,
    MAX_DIM,
    MAX_FUNCTIONS,
    MAX_MODULE_CHARS,
    MAX_RANK,
    MAX_STEP_CHARS,
    MAX_STEPS,
    RESERVED_MODULES,
    RESERVED_NAMES,
)
from .ops import OPS

__all__ = ["SCHEMA_FILE", "build_schema", "schema_json", "shipped_schema_text"]

SCHEMA_FILE = "spec.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# A name the loader accepts: an ASCII identifier not starting with '_' (reserved for generated
# code), not a Python keyword, not a name the generated module binds itself.
NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_]*$"
# A step: one assignment `name = expression` (the expression is checked by the step parser).
STEP_PATTERN = r"^[\s(]*[A-Za-z][A-Za-z0-9_]*[\s)]*=(?!=)"
FORBIDDEN_NAMES = sorted(set(keyword.kwlist) | set(RESERVED_NAMES))
FORBIDDEN_MODULES = sorted(set(keyword.kwlist) | set(RESERVED_MODULES))

STEP_HELP = (
    "One assignment, `name = expression`, parsed with Python's `ast` (never eval). "
    "Arithmetic `+ - * /`, unary `-`, `** c` (c a number), `@`, `.T`; elementwise "
    f"`{' '.join(n for n, op in OPS.items() if op.kind == 'unary' and op.callable)}`; reductions "
    "`sum(a)`, `sum(a, axis=0)`, `mean(a, axis=1, keepdims=True)`; ML and matrix functions "
    "such as `logsumexp`, `softmax`, `log_softmax`, `trace`, `inv`, `det`, `logdet`, `outer`; "
    "numeric literals. Each name is assigned once."
)


def _name(description: str, examples: list[str]) -> dict:
    """A user-chosen name (input, dim, function, output)."""
    return {
        "type": "string",
        "pattern": NAME_PATTERN,
        "not": {"enum": FORBIDDEN_NAMES},
        "description": description,
        "examples": examples,
    }


def _name_list(description: str, examples: list[list[str]], item: dict) -> dict:
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": item,
        "description": description,
        "examples": examples,
    }


def _derivatives(description: str) -> dict:
    """A list of derivative kinds (DESIGN.md §3b)."""
    return {
        "type": "array",
        "uniqueItems": True,
        "items": {"enum": list(DERIVATIVES)},
        "description": description,
        "examples": [["jvp", "jacobian", "hvp", "hessian"]],
    }


def build_schema() -> dict:
    """The schema as a JSON-compatible dict (deterministic: same code, same schema)."""
    size = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_DIM,
        "description": "A literal size (a positive integer).",
        "examples": [1, 3],
    }
    dim_name = _name("A symbolic dim (unified across the function).", ["N", "D"])
    shape = {
        "type": "array",
        "maxItems": MAX_RANK,
        "items": {"anyOf": [{"$ref": "#/$defs/size"}, {"$ref": "#/$defs/dimName"}]},
        "description": (
            f"The input's shape: at most {MAX_RANK} entries, each a positive integer or a dim "
            "name; [] is a scalar, [n] a vector, [m, n] a matrix, [b, m, n] a batch of matrices."
        ),
        "examples": [["N", "D"], ["K"], [], ["N", 1]],
    }
    step = {
        "type": "string",
        "pattern": STEP_PATTERN,
        "not": {"pattern": "[\\n\\r\\u000b\\u000c\\u0085\\u2028\\u2029]"},
        "maxLength": MAX_STEP_CHARS,
        "description": STEP_HELP,
        "examples": ["Z1 = X @ W1 + b1", "H1 = tanh(Z1)", "loss = sum((Z2 - Y) ** 2)"],
    }
    function = {
        "type": "object",
        "description": "One function: its inputs and their shapes, the forward steps, the outputs.",
        "required": ["inputs", "steps", "outputs"],
        "additionalProperties": False,
        "properties": {
            "doc": {
                "type": "string",
                "description": "The function's docstring in the generated module.",
                "examples": ["Two-layer tanh perceptron with squared error."],
            },
            "inputs": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"$ref": "#/$defs/name"},
                "additionalProperties": {"anyOf": [
                    {"$ref": "#/$defs/shape"},
                    {
                        "type": "object",
                        "required": ["shape"],
                        "additionalProperties": False,
                        "properties": {
                            "shape": {"$ref": "#/$defs/shape"},
                            "dtype": {"enum": ["float", *DTYPES, *INPUT_DTYPES]},
                        },
                        "description": (
                            "An input with a dtype: the spec's float dtype (the default), int64 "
                            "(labels) or bool (masks); integer and boolean inputs are never "
                            "differentiated."
                        ),
                        "examples": [{"shape": ["N", 1], "dtype": "int64"}],
                    },
                ]},
                "description": (
                    "Input name -> shape (or {shape, dtype}), in the order of the generated "
                    "function's parameters."
                ),
                "examples": [{"X": ["N", "D"], "W": ["D", "K"], "b": ["K"]}],
            },
            "wrt": _name_list(
                "Inputs to differentiate (default: every float input), in the order of the Grads "
                "fields.",
                [["W1", "b1", "W2", "b2"]],
                {"$ref": "#/$defs/name"},
            ),
            "derivatives": _derivatives(
                "Derivative kinds beyond the gradient: f_jvp (forward mode), f_jacobian "
                "(row-major d vec(y)/d vec(x)), f_hvp and f_hessian (need a scalar first output)."
            ),
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": {"$ref": "#/$defs/step"},
                "description": "The forward computation, one assignment a line, in order.",
                "examples": [["Z = X @ W + b", "loss = sum(Z ** 2)"]],
            },
            "outputs": _name_list(
                "Returned values (inputs or step targets); the first is differentiated.",
                [["loss"], ["loss", "Z2"]],
                {"$ref": "#/$defs/name"},
            ),
        },
        "defaultSnippets": [
            {
                "label": "function",
                "description": "A function with one input, one step and one output.",
                "body": {
                    "doc": "${1:What it computes.}",
                    "inputs": {"${2:X}": ["${3:N}", "${4:D}"]},
                    "steps": ["${5:loss} = ${6:sum(X ** 2)}"],
                    "outputs": ["${5:loss}"],
                },
            }
        ],
    }
    return {
        "$schema": DIALECT,
        "title": "codegen spec",
        "description": (
            "A forward computation that codegen compiles into a NumPy module with its gradient "
            "(python -m codegen SPEC -o OUTDIR)."
        ),
        "type": "object",
        "required": ["functions"],
        "additionalProperties": False,
        "properties": {
            "module": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "maxLength": MAX_MODULE_CHARS,
                "not": {"enum": FORBIDDEN_MODULES},
                "description": (
                    "The generated module's name (OUTDIR/<module>.py); default: the spec file's "
                    "stem. A plain Python identifier, not a path or dotted name."
                ),
                "examples": ["nn"],
            },
            "dtype": {
                "enum": list(DTYPES),
                "default": DTYPES[0],
                "description": "Floating-point type of every array the module computes.",
            },
            "doc": {
                "type": "string",
                "description": "The generated module's docstring.",
                "examples": ["Small neural-network losses."],
            },
            "dims": {
                "type": "object",
                "propertyNames": {"$ref": "#/$defs/dimName"},
                "additionalProperties": {"$ref": "#/$defs/size"},
                "description": (
                    "Example sizes of the symbolic dims, used by --gradcheck and by the memory "
                    "estimates of --explain."
                ),
                "examples": [{"N": 64, "D": 8, "H": 16, "K": 3}],
            },
            "derivatives": _derivatives(
                "The default derivative kinds of every function (a function's own "
                "`derivatives` replaces it)."
            ),
            "functions": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_FUNCTIONS,
                "propertyNames": {"$ref": "#/$defs/name"},
                "additionalProperties": {"$ref": "#/$defs/function"},
                "description": "Function name -> definition; each becomes f, f_forward, "
                "f_backward, f_value_and_grad and f_Grads in the generated module.",
            },
        },
        "$defs": {
            "name": _name("A name: an ASCII identifier not starting with '_'.", ["X", "loss"]),
            "dimName": dim_name,
            "size": size,
            "shape": shape,
            "step": step,
            "function": function,
        },
    }


def schema_json() -> str:
    """The schema as formatted JSON text (what ``--schema`` prints and the shipped file holds)."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=True) + "\n"


def shipped_schema_text() -> str:
    """The text of the schema file shipped in the package."""
    return resources.files("codegen").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")

