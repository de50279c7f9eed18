"""Comments of generated code: rules instantiated with the line's names, one step header per
block, temporaries named for what they hold (codegen/annotate.py, names.temp_hint, lower.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import codegen
from codegen.ops import OPS

ROOT = Path(__file__).resolve().parents[1]
GENERATED = sorted((ROOT / "generated").glob("[!_]*.py"))  # the modules, not the runtime

# Functions a rule equation may call (math notation, not names of the generated code).
# the op table's names (an equation may call any op) and the words equations use
MATH = set(OPS) | {"broadcast", "shift", "axis", "keepdims", "True", "False", "None", "I", "T"}

AFFINE = """
functions:
  affine:
    inputs: {A: [N, D], W: [D, K], B: [K]}
    steps: [Z = A @ W + B, S = sum(Z ** 2)]
    outputs: [S]
  quad:
    inputs: {X: [D, D], A: [D, D]}
    steps: [f = trace(X.T @ A @ X)]
    outputs: [f]
"""

RULE = re.compile(r"^ *# +→ (?:[^:]*: )?(\w+) = (.*)$")


def functions(src: str) -> dict[str, tuple[set[str], list[str]]]:
    """Each function: the names it binds (parameters, targets) and its source lines."""
    lines = src.splitlines()
    out = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.FunctionDef):
            bound = {a.arg for a in node.args.args}
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    bound.add(sub.id)
            out[node.name] = (bound, lines[node.lineno - 1:node.end_lineno])
    return out


def rule_comments(body: list[str]) -> list[tuple[int, str, str]]:
    """(line index, target, expression) of every one-line rule comment of a body."""
    found = []
    for k, line in enumerate(body):
        m = RULE.match(line)
        if m and not (k + 1 < len(body) and re.match(r"^ *# {5,}", body[k + 1])):  # not wrapped
            expr, _, note = m.group(2).partition("; ")
            # a value reads its own name only where a gradient accumulates (dX = dX + ...)
            assert m.group(1) not in re.findall(r"\w+", expr) or "accumulate" in note, line
            found.append((k, m.group(1), expr))
    return found


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_rule_equations_use_names_the_function_binds(path: Path) -> None:
    """Every name in a rule's equation is a local of the function (or the name a value kept in
    a kernel's registers stands for), never one of the rule's generic letters."""
    src = path.read_text()
    checked = 0
    for name, (bound, body) in functions(src).items():
        stands_for = {m.group(1) for line in body for m in [re.match(r"^ *# +→ [^:]*: (\w+) =", line)]
                      if m}
        for _, target, expr in rule_comments(body):
            words = set(re.findall(r"\b[A-Za-z_]\w*\b", expr)) - MATH
            # a forward value a fused kernel keeps in registers: a step or one of its parts
            steps = {m.group(1) for line in body for m in [re.match(r"^ *# +(\w+) = ", line)] if m}
            unknown = {w for w in words - bound - stands_for - steps
                       if re.sub(r"_\d+$", "", w) not in steps}
            assert not unknown, f"{path.name}:{name}: {target} = {expr}: {unknown} not bound"
            checked += 1
    assert checked


def test_rule_comment_names_the_line_it_heads() -> None:
    """In NumPy modules, the equation's target is what the line below it binds, and the spec's
    own B is never the rule's letter B (``right product: dA = dZ @ B.T`` was written before)."""
    src = codegen.generate_source(AFFINE)
    pairs = 0
    for name, (_, body) in functions(src).items():
        for k, target, expr in rule_comments(body):
            code = body[k + 1].strip()
            assert re.match(rf"{target}\b", code), f"{name}: {body[k]!r} above {code!r}"
            pairs += 1
    assert pairs
    backward = "\n".join(functions(src)["affine_backward"][1])
    assert re.search(r"→ right product: dA = \w+ @ W\.T", backward)
    assert "B.T" not in backward
    quad = "\n".join(functions(src)["quad_backward"][1])
    assert "dy * I" not in quad  # the rule's letters; the line computes df_.. from g and I
    assert re.search(r"→ trace: (\w+) = broadcast\(g, \[\]\) \* I\n +\1 = |→ trace: (\w+) = g \* I", quad)


def test_step_heads_its_backward_block_once() -> None:
    src = (ROOT / "generated" / "nn.py").read_text()
    body = "\n".join(functions(src)["mlp_mse_backward"][1])
    for step in ("Z2 = H1 @ W2 + b2", "Z1 = X @ W1 + b1"):
        assert body.count(f"# {step}") == 1, step  # three and two lines: one header each
    numba = (ROOT / "generated" / "nn_numba.py").read_text()
    kernel = "\n".join(functions(numba)["_mlp_mse_backward"][1])
    # once above the loop that sums db2, once above the two products after it
    assert kernel.count("Z2 = H1 @ W2 + b2") == 2


def test_no_temporary_is_named_t() -> None:
    for path in GENERATED:
        assert not re.search(r"\bt_\d+\b", path.read_text()), path.name
    numba = (ROOT / "generated" / "nn_numba.py").read_text()
    kernel = "\n".join(functions(numba)["_softmax_regression_value_and_grad"][1])
    for name in ("rowmax_Z", "shift_Z", "sumexp_Z"):
        assert re.search(rf"^ +{name} = ", kernel, re.M), name


def test_temporary_names_never_take_a_spec_name() -> None:
    spec = """
functions:
  f:
    inputs: {Z: [N, K], rowmax_Z: [N, K]}
    steps:
      - shift_Z = rowmax_Z * 2
      - loss = sum(log_softmax(Z, axis=1) * shift_Z)
    outputs: [loss]
"""
    src = codegen.generate_source(spec, backend="numba")
    for name, (_, body) in functions(src).items():
        text = "\n".join(body)
        assert len(re.findall(r"^ +shift_Z = ", text, re.M)) <= 1, name  # the step's own
        assert not re.search(r"^ +rowmax_Z = ", text, re.M), name  # an input: never bound
    assert re.search(r"^ +rowmax_Z_2 = ", src, re.M) and re.search(r"^ +shift_Z_2 = ", src, re.M)


def test_a_composite_dim_in_a_rule_keeps_its_precedence() -> None:
    """A mean over a reshape's B*N axis or a concatenation's D+E axis divides by the whole size:
    the comment reads ``g / (B * N)``, as the code computes (it read ``g / B*N``, g N / B)."""
    src = codegen.generate_source("""
dims: {B: 2, N: 3, D: 4, E: 2}
functions:
  f:
    inputs: {X: [B, N, D], Y: [B, N, E]}
    steps:
      - R = reshape(X, (B * N, D))
      - C = concatenate((X, Y), axis=2)
      - loss = sum(mean(R * R, axis=0)) + sum(mean(C, axis=2))
    outputs: [loss]
""", path="composite.yaml")
    rules = {m.group(2) for line in src.splitlines() if (m := RULE.match(line))}
    assert {"g / (B * N)", "g / (D + E)", "1 / (B * N)", "1 / (D + E)"} <= rules, sorted(rules)


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_the_backward_runs_step_by_step_in_reverse_order(spec: Path) -> None:
    """In every f_backward and f_value_and_grad of the shipped specs, each step's backward ops
    are one block, and the blocks come in reverse order of the steps (a branch of a step was
    finished after an earlier step's block, under a second header); and in the NumPy module's
    text each step heads one backward block per function."""
    from codegen.compiler import compile_spec
    from codegen.loader import load_spec_file

    compiled = compile_spec(load_spec_file(spec))
    for cf in compiled.functions:
        for program in (cf.value_and_grad, cf.backward):
            runs: list[tuple[int, str]] = []
            for op in program.ops:
                key = (op.origin.line, op.origin.step)
                if op.phase == "backward" and op.origin.step and (not runs or runs[-1] != key):
                    runs.append(key)
            assert len(runs) == len(set(runs)), (cf.function.name, runs)
            lines = [line for line, _ in runs]
            assert lines == sorted(lines, reverse=True), (cf.function.name, runs)
    path = ROOT / "generated" / f"{compiled.spec.module}.py"
    for name, (_, lines) in functions(path.read_text()).items():
        if name.endswith(("_backward", "_value_and_grad")):
            heads = [line.strip() for line in lines if line.strip().endswith(", backward:")]
            assert len(heads) == len(set(heads)), (name, heads)


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_a_forward_value_reshaped_for_a_rule_is_named_for_it(path: Path) -> None:
    """``hn_rows = hn.reshape((B * N, D))`` in a batched product's rule, not ``dWv = ...``: a name
    starting with d is a cotangent, and ``dWk = dWv.T @ dKt`` misled a reader."""
    for line in path.read_text().splitlines():
        m = re.fullmatch(r" +(\w+) = (\w+)\.reshape\(\([^()]*\)\)", line)
        if m and not m.group(2).startswith("d"):
            assert not m.group(1).startswith("d"), line
