"""Steps outside the vocabulary are spec errors that name the step and point at it."""

from __future__ import annotations

import re

import pytest

import codegen

SPEC = """functions:
  f:
    inputs: {{X: [N, D], W: [D, K], E: [E, K], v: [N], s: []}}
    steps:
      - 'Z = X @ W'
      - '{step}'
    outputs: [Z]
"""

CASES = [
    ("Y = X.shape", "attribute access '.shape' is not supported"),
    ("Y = X.__class__", "attribute access '.__class__'"),
    ("Y = X[0]", "subscripts (indexing) are not supported"),
    ("Y = X > 0", "only allowed as the condition of where()"),
    ("Y = (lambda q: q)(X)", "only the vocabulary's functions can be called"),
    ("Y = lambda q: q", "lambdas are not supported"),
    ("Y = __import__('os')", "unknown function '__import__'"),
    ("Y = eval('1')", "unknown function 'eval'"),
    ("Y = np.exp(X)", "only the vocabulary's functions can be called"),
    ("Y = X ** W", "the exponent of '**' must be a number"),
    ("Y = X % 2", "operator '%' is not supported"),
    ("Y = X // 2", "operator '//' is not supported"),
    ("Y = ~X", "operator '~' is not supported"),
    ("Y = X if s else W", "conditional expressions are not supported"),
    ("Y = [X, W]", "list literals are not supported"),
    ("Y = 'text'", "only numeric constants are allowed"),
    ("Y = True * X", "only numeric constants are allowed"),
    ("Y = 1e999 * X", "numbers must be finite"),
    ("Y = 1j * X", "only numeric constants are allowed"),
    ("Y = tahn(X)", "unknown function 'tahn' (known: "),
    ("Y = tahn(X)", "; did you mean 'tanh'?"),
    ("Y = logsumexpp(X, axis=1)", "did you mean 'logsumexp'?"),
    ("Y = X - logsumexp(X, axis=1)", "do not broadcast (dim D vs dim N); logsumexp(...) reduces "
     "along axis 1 and drops it: did you mean logsumexp(..., axis=1, keepdims=True)?"),
    ("Y = X / sum(X, axis=-1)", "did you mean sum(..., axis=1, keepdims=True)?"),
    ("Y = mean(X, axis=1) * X", "did you mean mean(..., axis=1, keepdims=True)?"),
    ("Y = Q + 1", "unknown name 'Q'"),
    ("Z = X * 2", "'Z' is already defined by an earlier step"),
    ("X = W * 2", "'X' is already defined by an input"),
    ("Y = X @ E", "inner dims differ: D (from [N, D]) vs E (from [E, K])"),
    ("Y = X + v", "do not broadcast"),
    ("Y = s @ X", "needs vector or matrix operands, got a scalar"),
    ("Y = sum(X, axis=2)", "axis 2 is out of range"),
    ("Y = sum(X, axis=s)", "axis must be a small integer literal"),
    ("Y = sum(X, keepdims=1)", "keepdims must be True or False"),
    ("Y = sum(X, dtype=1)", "unexpected keyword 'dtype'"),
    ("Y = tanh(X, 1)", "takes exactly one array argument"),
    ("Y = tanh(*X)", "takes exactly one array argument"),
    ("Y = sum(**X)", "takes exactly one array argument"),
    ("Y = sum(X, **X)", "'**' arguments are not supported"),
    ("Y, Q = X, W", "a step assigns exactly one plain name"),
    ("Y = Q = X", "a step assigns exactly one plain name"),
    ("Y += X", "a step must be one assignment"),
    ("import os", "a step must be one assignment"),
    ("Y = X; import os", "a step must be one assignment"),
    ("Y = (X", "invalid syntax"),
    ("sum = X * 2", "the name 'sum' is reserved"),
    ("np = X * 2", "the name 'np' is reserved"),
    ("f_forward = X * 2", "reserved for the generated module"),
    ("_y = X * 2", "names starting with '_' are reserved"),
    ("Y = 2 ** 5000", "overflows"),
    ("Y = X / 0 * 0 + 1 / 0", "division by the constant zero"),
    ("Y = " + "-" * 250 + "X", "nested more than 200 levels deep"),
    ("Y = " + "tanh(" * 250 + "X" + ")" * 250, "too many nested parentheses"),
    ("Y = " + "+".join(["X"] * 300), "nested more than 200 levels deep"),
]


@pytest.mark.parametrize("step, message", CASES, ids=[c[0][:40] for c in CASES])
def test_step_errors(step, message):
    text = SPEC.format(step=step.replace("'", "''"))
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="s.yaml")
    err = info.value
    assert message in err.message
    assert err.loc is not None and (err.loc.line, err.loc.col) == (6, 9), str(err)
    assert str(err).startswith("s.yaml:6:9: error: f: step ")


def test_constant_exponents_are_folded_and_others_refused():
    """``z ** 2 ** -1`` is ``z ** 0.5``: constant arithmetic in an exponent is folded like any
    other (it was refused); integers stay integers (``z ** (2 * 3)`` is ``z**6``)."""
    src = codegen.generate_source(
        "functions:\n  f:\n    inputs: {z: [N]}\n    steps:\n"
        "      - y = z ** 2 ** -1 + z ** (2 * 3) + z ** -(1 / 4)\n    outputs: [y]\n")
    assert "z**0.5" in src and "z**6" in src and "z**-0.25" in src
    for step, message in [("y = z ** z", "the exponent of '**' must be a number"),
                          ("y = z ** sum(z)", "the exponent of '**' must be a number"),
                          ("y = z ** (1 / 0)", "division by the constant zero"),
                          ("y = z ** 10 ** 400", "overflows")]:
        with pytest.raises(codegen.SpecError, match=re.escape(message)):
            codegen.generate_source("functions:\n  f:\n    inputs: {z: [N]}\n    steps:\n"
                                    f"      - {step}\n    outputs: [y]\n")


def test_unknown_function_far_from_any_gets_no_guess():
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(SPEC.format(step="Y = frobnicate(X)"), path="s.yaml")
    assert "unknown function 'frobnicate'" in info.value.message
    assert "did you mean" not in info.value.message


def test_keepdims_hint_names_an_earlier_step():
    text = SPEC.replace("outputs: [Z]", "outputs: [Y]").format(step="lse = logsumexp(Z, axis=1)")
    text = text.replace("    outputs:", "      - Y = Z - lse\n    outputs:")
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="s.yaml")
    assert (info.value.loc.line, info.value.loc.col) == (7, 9)
    assert info.value.message.endswith(
        "'lse' reduces along axis 1 and drops it: did you mean logsumexp(..., axis=1, "
        "keepdims=True)?")


@pytest.mark.filterwarnings("ignore::codegen.SpecWarning")
def test_no_keepdims_hint_for_other_broadcast_errors():
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(SPEC.format(step="Y = X + v"), path="s.yaml")
    assert "keepdims" not in info.value.message
    ok = SPEC.format(step="Y = X - logsumexp(X, axis=1, keepdims=True)")
    assert "def f(" in codegen.generate_source(ok.replace("[Z]", "[Y]"), path="s.yaml")


@pytest.mark.parametrize("name", ["np", "numpy", "NamedTuple"])
def test_reserved_step_name_that_is_also_an_output_points_at_the_step(name):
    text = SPEC.format(step=f"{name} = X * 2").replace("outputs: [Z]", f"outputs: [{name}]")
    with pytest.raises(codegen.SpecError) as info:
        codegen.generate_source(text, path="s.yaml")
    err = info.value
    assert (err.loc.line, err.loc.col) == (6, 9), str(err)
    assert f"step '{name} = X * 2': the name '{name}' is reserved" in err.message
