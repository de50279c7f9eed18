"""Random well-formed specs: generation succeeds, the module is black-stable, gradients are right."""

from __future__ import annotations

import random

import black
import numpy as np
from helpers import assert_close, numeric_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codegen
from codegen.format import LINE_LENGTH, _exploded, _format_chunks

LEAVES = {"a": (3, 4), "b": (4,), "c": (3, 1), "s": ()}
SAFE_UNARY = ["exp({})", "tanh({})", "sin({})", "cos({})", "sigmoid({})", "softplus({})",
              "square({})", "abs({} + 3)", "relu({} + 5)", "log(square({}) + 1)",
              "sqrt(square({}) + 1)", "log1p(square({}))", "-{}", "({}) ** 2", "({}) ** 3"]
BINARY = ["{} + {}", "{} - {}", "{} * {}", "{} / (square({}) + 1)"]
REDUCE = ["sum({} * a, axis=0, keepdims=True)", "mean({} - c, axis=1, keepdims=True)",
          "({}).T.T", "sum({}, keepdims=True)"]


def expressions():
    leaf = st.sampled_from(sorted(LEAVES) + ["0.5", "2"])
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(st.sampled_from(SAFE_UNARY), inner).map(lambda t: t[0].format(t[1])),
            st.tuples(st.sampled_from(BINARY), inner, inner).map(lambda t: t[0].format(t[1], t[2])),
            st.tuples(st.sampled_from(REDUCE), inner).map(lambda t: t[0].format(t[1])),
        ),
        max_leaves=8,
    )


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(exprs=st.lists(expressions(), min_size=1, max_size=3))
def test_random_specs_generate_black_stable_correct_gradients(exprs):
    steps = [f"t{i} = {e}" for i, e in enumerate(exprs)]
    total = " + ".join(f"sum(t{i})" for i in range(len(exprs)))
    steps.append(f"y = {total}")
    spec = "functions:\n  f:\n    inputs: {a: [M, N], b: [N], c: [M, 1], s: []}\n    steps:\n"
    spec += "".join(f"      - '{s}'\n" for s in steps) + "    outputs: [y]\n"
    for backend in ("numpy", "numba"):
        source = codegen.generate_source(spec, backend=backend)
        assert black.format_str(source, mode=black.Mode(line_length=LINE_LENGTH)) == source
    mod = codegen.load_module(spec)
    rng = np.random.default_rng(len(spec))
    args = [np.array(rng.standard_normal(shape) * 0.5) for shape in LEAVES.values()]
    with np.errstate(all="ignore"):
        y, grads = mod.f_value_and_grad(*args)
        if not np.isfinite(y) or abs(y) > 1e6:
            return  # e.g. exp(exp(...)): finite differences are meaningless there
        for i, name in enumerate(LEAVES):
            num = numeric_grad(lambda a: float(mod.f(*a)), args, i)
            assert_close(getattr(grads, name), num, rtol=2e-4, atol=2e-5, what=f"d{name}")


def _flat_list_lines(rng: random.Random) -> list[str]:
    """Statements of the forms ``format._exploded`` writes itself, of every length around the
    limit: names of 1 to 30 characters, 1 to 40 items, indents 0 to 8."""
    def name() -> str:
        return rng.choice(["_", "a", "dW", "x"]) + "".join(
            rng.choice("abcxyz_0123456789") for _ in range(rng.choice([0, 1, 3, 6, 12, 29])))

    lines = []
    for _ in range(400):
        ind = " " * rng.choice([0, 4, 8])
        names = ", ".join(name() for _ in range(rng.randint(1, 40)))
        kwargs = ", ".join(f"{name()}={name()}" for _ in range(rng.randint(1, 25)))
        rhs = rng.choice(["saved", "_f(X, w)", "_deep_chain_backward(g, *saved)", name() + "()"])
        first = rng.choice(["loss", "_DTYPE.type(loss)", name()])
        lines += [f"{ind}return {names}\n", f"{ind}def {name()}({names}):\n",
                  f"{ind}{names} = {rhs}\n", f"{ind}return {first}, {name()}({kwargs})\n"]
    return lines


def test_flat_lists_are_exploded_as_black_explodes_them():
    lines = _flat_list_lines(random.Random(0))
    mine = [_exploded(line) for line in lines]
    black_made = _format_chunks([(line, False) for line in lines])
    assert sum(m is not None for m in mine) > len(lines) // 4  # the fast path is exercised
    for line, m, b in zip(lines, mine, black_made, strict=True):
        assert m is None or m == b, line
