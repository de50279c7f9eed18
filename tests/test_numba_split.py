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
from helpers import DEEP

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


# --- long loop bodies: calls of functions of bounded length (max_loop_lines) -----------------


def long_chain(steps: int, dims: str = "{M: 3, N: 4}", shape: str = "[M, N]",
               w_shape: str = "[N]", step: str = "{p} * w + {p} * {p} * 0.25") -> str:
    """A chain whose steps fuse into one loop nest (forward and backward: one body of about
    four lines per step)."""
    lines = ["module: long_chain", "dtype: float64", f"dims: {dims}", "functions:", "  chain:",
             f"    inputs: {{X: {shape}, w: {w_shape}}}",
             "    steps:"]
    prev = "X"
    for k in range(1, steps + 1):
        lines.append(f"      - a{k} = " + step.format(p=prev))
        prev = f"a{k}"
    lines += [f"      - loss = sum({prev} ** 2)", "    outputs: [loss]"]
    return "\n".join(lines) + "\n"


def loop_functions(source: str) -> list[ast.FunctionDef]:
    return [k for k in kernels(source) if "_lines" in k.name]


def test_a_long_loop_body_becomes_calls_of_functions_of_bounded_length():
    from codegen.emit_numba import MAX_LOOP_LINES

    assert MAX_LOOP_LINES is not None
    source = render(compile_spec(load_spec(long_chain(500), "long.yaml")), "numba", None)
    parts = loop_functions(source)
    vg = [k for k in parts if k.name.startswith("_chain_vg_lines")]
    assert len(vg) >= 3, [k.name for k in parts]
    assert max(statements(k) for k in parts) <= MAX_LOOP_LINES + 1  # (and the return)
    loops = [node for k in kernels(source) for node in ast.walk(k) if isinstance(node, ast.For)]
    assert loops and max(sum(isinstance(n, ast.stmt) for n in ast.walk(loop))
                         for loop in loops) < 100
    # the specs in specs/ keep their loops whole (their longest body is far shorter)
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].joinpath("specs").glob("*.yaml")):
        compiled = compile_spec(load_spec(path.read_text(), str(path)))
        assert not loop_functions(render(compiled, "numba", None)), path.name


# The chain and the loop-function bound of the next test: in CI a 40-step chain with functions
# of at most 50 lines (the loop body of about 160 lines becomes at least three calls, like
# the longer ones); HYPOTHESIS_PROFILE=deep runs issue 12's 500-step chain at the default bound
# (MAX_LOOP_LINES), about a minute of cold compiling.
LONG_RUN = (500, None) if DEEP else (40, 50)


def test_a_long_chain_runs_in_compiled_parts_with_the_numpy_values_and_gradients():
    """Issue 12: a long chain's first call compiles in time about linear in its length (the
    numbers: docs/numba.md); its loop runs as calls of functions compiled on their own."""
    steps, limit = LONG_RUN
    options = {} if limit is None else {"max_loop_lines": limit}
    compiled = compile_spec(load_spec(long_chain(steps), "long.yaml"))
    source = render(compiled, "numba", None, **options)
    names = [k.name for k in loop_functions(source) if k.name.startswith("_chain_vg_lines")]
    ref = import_source(render(compiled, "numpy"), "long_chain_ref")
    nb = import_source(source, "long_chain_parts", "numba")
    rng = np.random.default_rng(3)
    X, w = rng.uniform(-0.5, 0.5, (3, 4)), rng.uniform(0.5, 1.0, 4)
    value, grads = ref.chain_value_and_grad(X, w)
    got, got_grads = nb.chain_value_and_grad(X, w)
    np.testing.assert_allclose(got, value, rtol=1e-12)
    for a, b in zip(got_grads, grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)
    assert np.all(np.abs(grads[0]) > 0)  # (the chain neither vanishes nor blows up)
    # each part is a function Numba compiles on its own, which the kernel calls (its overloads
    # are empty when the calling kernel came from Numba's on-disk cache: not checked)
    from numba.core.dispatcher import Dispatcher

    namespace = vars(nb._runtime._KERNELS)
    assert len(names) >= 3 and all(isinstance(namespace[n], Dispatcher) for n in names)
    kernel = next(f for f in ast.parse(source).body
                  if isinstance(f, ast.FunctionDef) and f.name == "_chain_value_and_grad")
    called = {c.func.id for c in ast.walk(kernel)
              if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    assert set(names) <= called, set(names) - called


SHORT_LIMIT = 6  # lines per loop function: short specs split too, and compile quickly


@pytest.mark.parametrize("case, shapes", [
    # sin and cos: the loop body twice (the short argument reduction, and the long)
    ({"step": "sin({p}) * w + cos({p}) * 0.5"}, ((3, 4), (4,))),
    # scalars: no loop, the functions return every value they compute
    ({"shape": "[]", "w_shape": "[]", "dims": "{}"}, ((), ())),
    # a 1-D loop: the loss and a scalar weight's gradient are running sums the loop carries
    # from one element to the next
    ({"shape": "[N]", "w_shape": "[]", "dims": "{N: 5}"}, ((5,), ())),
], ids=["sin_cos", "scalars", "sums"])
def test_loop_functions_give_the_numpy_values_and_gradients(case, shapes):
    # 4 steps: every kernel's loop is at least two functions (values cross from each to the next)
    compiled = compile_spec(load_spec(long_chain(4, **case), "short.yaml"))
    source = render(compiled, "numba", None, max_loop_lines=SHORT_LIMIT)
    for kernel in ("fw", "bw", "vg"):
        assert len([k for k in loop_functions(source) if f"_{kernel}_lines" in k.name]) >= 2, kernel
    ref = import_source(render(compiled, "numpy"), "short_chain_ref")
    nb = import_source(source, f"short_chain_{len(source)}", "numba")
    rng = np.random.default_rng(4)
    X, w = rng.uniform(-0.5, 0.5, shapes[0]), rng.uniform(0.5, 1.0, shapes[1])
    value, grads = ref.chain_value_and_grad(X, w)
    got, got_grads = nb.chain_value_and_grad(X, w)
    np.testing.assert_allclose(got, value, rtol=1e-12)
    for a, b in zip(got_grads, grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15)
    out, saved = nb.chain_forward(X, w)
    np.testing.assert_allclose(out, value, rtol=1e-12)
    for a, b in zip(nb.chain_backward(saved, 1.5), grads):
        np.testing.assert_allclose(a, 1.5 * b, rtol=1e-10, atol=1e-15)
