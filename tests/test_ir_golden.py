"""Golden dumps of the joint IR (``ir.dump``), after the planner and after the passes, for a few
specs: a change to the planner or a pass shows here as a readable diff, before it reaches the
generated code.  Regenerate with ``CODEGEN_UPDATE_GOLDEN=1 pytest tests/test_ir_golden.py`` and
review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codegen.ir import dump
from codegen.loader import load_spec, load_spec_file
from codegen.parse import parse_function
from codegen.passes import optimize
from codegen.planner import differentiate

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "ir"
UPDATE = os.environ.get("CODEGEN_UPDATE_GOLDEN") == "1"

# A fan-out (x read by two steps, W by one) and every kind of broadcast the planner undoes:
# a row vector, a column [N, 1], a scalar, and a mean over one axis.
BROADCAST = """\
dims: {N: 4, K: 3}
functions:
  broadcast:
    inputs: {X: [N, K], b: [K], c: [N, 1], s: []}
    wrt: [X, b, c, s]
    steps:
      - Z = X * b + c - s
      - h = tanh(Z) * X
      - loss = sum(mean(h ** 2, axis=0))
    outputs: [loss]
"""

CASES = {  # name: (spec file or text, function)
    "nn.mlp_mse": ("specs/nn.yaml", "mlp_mse"),
    "nn.softmax_regression": ("specs/nn.yaml", "softmax_regression"),
    "matrix.trace_quadratic": ("specs/matrix.yaml", "trace_quadratic"),
    "broadcast": (BROADCAST, "broadcast"),
}


def _function(source: str, name: str):  # type: ignore[no-untyped-def]
    spec = (load_spec_file(ROOT / source) if source.endswith(".yaml")
            else load_spec(source, "broadcast.yaml"))
    return parse_function(spec, next(f for f in spec.functions if f.name == name))


def _check(path: Path, text: str) -> None:
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{path.name} was missing: written, review and commit it")
        return
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"the IR differs from {path.relative_to(ROOT)}; if the change is intended, run "
        "CODEGEN_UPDATE_GOLDEN=1 pytest tests/test_ir_golden.py and review the diff")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed_is_one", [False, True], ids=["backward", "value_and_grad"])
def test_joint_program_matches_golden(case: str, seed_is_one: bool) -> None:
    source, name = CASES[case]
    fn = _function(source, name)
    program = differentiate(fn, seed_is_one)
    variant = "value_and_grad" if seed_is_one else "backward"
    _check(GOLDEN / f"{case}.{variant}.planner.txt", dump(program))
    _check(GOLDEN / f"{case}.{variant}.passes.txt", dump(optimize(program)))


def test_dump_is_deterministic_and_names_every_value() -> None:
    fn = _function(*CASES["nn.mlp_mse"])
    text = dump(optimize(differentiate(fn, False)))
    assert text == dump(optimize(differentiate(_function(*CASES["nn.mlp_mse"]), False)))
    program = optimize(differentiate(fn, False))
    for op in program.ops:
        assert f"  {op.out} = {op.op}(" in text
    for w, _ in program.grads:
        assert f"grad {w} = " in text
