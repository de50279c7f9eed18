"""Long kernels split into parts compiled on their own (issue 12), with ``max_part_ops``.

The split is a planning decision (``compiler.plan_function``: ``Body.parts``, at most
``max_part_ops`` IR ops each, ``fusion.fuse`` closing a loop group at that many ops); it is off
by default (measured slower on long chains: docs/numba.md), and the tests set a small bound so
that short specs split and compile quickly.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

from codegen.compiler import compile_spec, emitter_for, plan_function, render
from codegen.importing import import_source
from codegen.loader import load_spec
from codegen.plan import Group

pytest.importorskip("numba")

STEPS = 6
LIMIT = 24  # ops per part


def spec(steps: int = STEPS) -> str:
    """An elementwise chain (one long fused loop, sin's short reduction included) and a chain
    of products (plain statements, transposes read in place, between short loops)."""
    lines = ["module: split", "dtype: float64", "dims: {M: 5, N: 4}", "functions:",
             "  chain:", "    inputs: {X: [M, N], w: [N]}", "    steps:"]
    prev = "X"
    for k in range(1, steps + 1):
        other = f"sin({prev})" if k == steps else prev
        lines.append(f"      - a{k} = tanh({prev}) * w + {other} * 0.5")
        prev = f"a{k}"
    lines += [f"      - loss = sum({prev} ** 2)", "    outputs: [loss]",
              "  products:", "    inputs: {X: [M, N], W: [N, N]}", "    steps:"]
    prev = "X"
    for k in range(1, 7):
        lines.append(f"      - h{k} = tanh({prev} @ W)")
        prev = f"h{k}"
    lines += [f"      - loss = mean({prev} ** 2)", "    outputs: [loss]"]
    return "\n".join(lines) + "\n"


def ops_in(item) -> int:
    return len(item.ops) if isinstance(item, Group) else 1


def statements(function: ast.FunctionDef) -> int:
    return sum(isinstance(n, ast.stmt) for n in ast.walk(function)) - 1


def test_the_plan_splits_long_bodies_into_parts_of_bounded_size():
    compiled = compile_spec(load_spec(spec(), "split.yaml"))
    emitter = emitter_for("numba", "float64", max_part_ops=LIMIT)
    for cf in compiled.functions:
        plan = plan_function(cf, emitter)
        for body in [plan.forward, plan.backward, *plan.value_and_grad]:
            assert len(body.parts) > 1 or len(body.ops) <= LIMIT, (cf.function.name, body.kernel)
            assert [i for part in body.parts for i in part] == body.items  # in order, all
            for part in body.parts:
                assert sum(ops_in(item) for item in part) <= LIMIT
    unsplit = plan_function(compiled.functions[0], emitter_for("numba", "float64"))
    assert len(unsplit.value_and_grad[0].parts) == 1


def kernels(source: str) -> list[ast.FunctionDef]:
    return [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id in ("_kernel", "_part")
                    for d in n.decorator_list)]


def test_a_long_chain_becomes_functions_of_bounded_size():
    compiled = compile_spec(load_spec(spec(60), "split.yaml"))
    split = kernels(render(compiled, "numba", None, max_part_ops=LIMIT))
    whole = kernels(render(compiled, "numba", None))
    parts = [k for k in split if k.name.startswith("_chain_") and "_part" in k.name]
    assert len(parts) >= 30
    assert len({k.name for k in split}) == len(split)
    longest = max(statements(k) for k in split)
    longest_whole = max(statements(k) for k in whole)
    assert longest <= 60 and longest_whole > 200, (longest, longest_whole)


def test_split_module_gives_the_numpy_values_and_gradients():
    compiled = compile_spec(load_spec(spec(), "split.yaml"))
    source = render(compiled, "numba", None, max_part_ops=LIMIT)
    assert len([k for k in kernels(source) if "_part" in k.name]) >= 10
    ref = import_source(render(compiled, "numpy"), "split_ref")
    nb = import_source(source, "split_parts", "numba")
    rng = np.random.default_rng(1)
    X, w, W = rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal((4, 4)) * 0.5
    for name, args in (("chain", (X, w)), ("products", (X, W))):  # every kernel of each
        value, grads = getattr(ref, f"{name}_value_and_grad")(*args)
        got, got_grads = getattr(nb, f"{name}_value_and_grad")(*args)
        np.testing.assert_allclose(got, value, rtol=1e-12)
        for a, b in zip(got_grads, grads):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        out, saved = getattr(nb, f"{name}_forward")(*args)
        np.testing.assert_allclose(out, value, rtol=1e-12)
        for a, b in zip(getattr(nb, f"{name}_backward")(saved, 1.5), grads):
            np.testing.assert_allclose(a, 1.5 * b, rtol=1e-10, atol=1e-12)


TINY = """
module: split
dims: {M: 3, N: 2}
functions:
  chain:
    inputs: {X: [M, N], w: [N]}
    steps:
      - a1 = tanh(X) * w + X * 0.5
      - a2 = tanh(a1) * w + a1 * 0.5
      - loss = sum(a2 ** 2)
    outputs: [loss]
"""


def test_parts_of_two_modules_never_share_a_name():
    """Kernels of every generated module share one namespace (for Numba's cache): parts of two
    modules whose functions have the same name but other code get other names, and both run."""
    compiled = compile_spec(load_spec(TINY, "split.yaml"))
    other = compile_spec(load_spec(TINY.replace("* 0.5", "* 0.25"), "split.yaml"))
    ref = import_source(render(other, "numpy"), "split_ref_other")
    a = import_source(render(compiled, "numba", None, max_part_ops=10), "split_a", "numba")
    b = import_source(render(other, "numba", None, max_part_ops=10), "split_b", "numba")
    assert "_part" in str(kernels(render(other, "numba", None, max_part_ops=10))[0].name)
    rng = np.random.default_rng(2)
    X, w = rng.standard_normal((3, 2)), rng.standard_normal(2)
    a.chain_value_and_grad(X, w)  # compiled first: its parts are in the namespace
    np.testing.assert_allclose(b.chain_value_and_grad(X, w)[0],
                               ref.chain_value_and_grad(X, w)[0], rtol=1e-12)
