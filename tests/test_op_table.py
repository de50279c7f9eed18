"""The op table is complete: every entry has what every stage and backend needs, and its rule
text says what its VJP computes.

- Each entry's fields are coherent (a domain per operand, a rule text per differentiable
  operand, memory facts that agree with its rendering).
- Each op renders on each backend (NumPy's entry; the Numba table, which extends it) and each op
  is produced by some case of the op-table tests (``test_ops.CASES``), so ``test_ops.py`` and
  ``test_ops_numba.py`` / ``test_numba.py`` run every op on both backends.
- The rule text (``grads``) names the operands the VJP reads: each VJP is run on a builder with
  generic names (``A``, ``B``, ``Z``, ``dZ``) and its result rendered as math.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_ops import CASES, DIMS

from codegen import text
from codegen.build import Builder
from codegen.compiler import compile_spec
from codegen.emit import Emitter
from codegen.emit_numba import NUMBA, NumbaEmitter
from codegen.interpret import implementation
from codegen.ir import Arg, Const, DimSize, Op, Origin, Program, Value
from codegen.loader import load_spec
from codegen.lower import lower
from codegen.ops import CALLABLE, DOMAINS, LABEL_OPS, OPS, OpDef
from codegen.reserved import templates_dir

# --- fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPS))
def test_every_entry_is_complete(name):
    op = OPS[name]
    assert op.name == name
    assert len(op.domain) == op.arity and set(op.domain) <= set(DOMAINS), "domain per operand"
    assert len(op.arg_prec) == op.arity and op.fmt and op.rule
    assert len(op.vjps) in (0, op.arity)
    for i, vjp in enumerate(op.vjps):
        if vjp is not None:  # a differentiable operand has its rule in words and math
            assert i < len(op.grads) and re.match(r"[^:]+: d\w+ = ", op.grads[i]), op.grads
            assert op.math or op.kind == "layout", "the forward in math (README's rule table)"
    assert op.result in ("fresh", "view")
    assert not op.inline or op.result == "view", "an inline view is a view"
    assert op.fusion in ("", "elementwise", "reduction")
    if op.kind in ("unary", "binary"):
        assert op.fusion == "elementwise" and op.elementwise
    if op.lowered:
        assert not op.fusion, "a lowered op is gone before fusion"
    if op.callable:
        assert op.kind != "layout" and (op.differentiable or op.kind == "label")  # one_hot
        if op.kind == "unary":  # exp(1) is folded to a number
            assert op.scalar is not None
    if op.ufunc is not None:  # the memory plan's in-place call is the rendering's call
        func, at, others = op.ufunc
        if op.kind == "binary":
            assert op.fmt == "{0} %s {1}" % op.augmented
        else:
            from codegen import expr as E

            args: list = list(others)
            args.insert(at, E.Leaf("{0}"))
            assert E.call(func, *args).render() == op.fmt or op.fmt == "-{0}"
    assert not op.augmented or op.ufunc is not None


def test_the_numba_table_names_only_ops_and_overrides_something():
    helpers = (templates_dir() / "helpers" / "numba_math.py.j2").read_text(encoding="utf-8")
    for name, form in NUMBA.items():
        assert name in OPS
        assert form.element or form.math or form.statement or form.new_array, name
        for helper in form.math:  # the loop helpers it calls exist
            assert f"def _{helper}(" in helpers, helper
        assert not form.short or form.math


@pytest.mark.parametrize("name", [n for n, op in OPS.items() if op.helper])
def test_every_numpy_helper_exists(name):
    helper = OPS[name].helper
    template = (templates_dir() / "helpers" / f"{helper}.py.j2").read_text(encoding="utf-8")
    called = re.match(r"(_\w+)\(", OPS[name].fmt)  # the helper function its rendering calls
    assert called and f"def {called.group(1)}(" in template


@pytest.mark.parametrize("name", [n for n, op in OPS.items() if op.scalar is not None])
def test_the_parser_folds_a_number_as_the_op_computes_an_array(name):
    impl = implementation(name)
    assert impl is not None
    op = Op(name, ("x",), (), "y", "forward", 0, Origin("", 0))
    for x in (-1.5, 0.25, 0.75, 2.0):
        if OPS[name].domain == ("positive",) and x <= 0:
            continue
        assert OPS[name].scalar(x) == pytest.approx(float(impl(op, np.array(x))), rel=1e-14)


# --- rendering and coverage ---------------------------------------------------------------------


def _synthetic(name: str) -> tuple[Op, list[tuple[str, int]]]:
    attrs: dict[str, object] = {}
    if name == "pow":
        attrs = {"exponent": 3}
    elif OPS[name].kind == "reduce":
        attrs = {"axis": 1, "keepdims": False}
    elif name == "expand_dims":
        attrs = {"axis": 1}
    elif name in ("broadcast_to", "full", "reshape", "zeros", "eye"):
        attrs = {"shape": (3, 3)}
    elif name in ("take_along_axis", "put_along_axis"):
        attrs = {"axis": 1, "label": "f: y", "shape": (3, 3)}
    elif name == "one_hot":
        attrs = {"depth": 3, "label": "f: y"}
    elif name == "permute":
        attrs = {"axes": (0, 2, 1)}
    elif name in ("concatenate", "stack"):
        attrs = {"axis": 1}
    elif name == "slice_axis":
        attrs = {"axis": 1, "start": (2,), "stop": (2, 3)}
    elif name == "index_axis":
        attrs = {"axis": 1, "index": 0}
    elif name == "einsum":
        attrs = {"subscripts": "ij,jk->ik"}
    args = tuple("abc"[:OPS[name].arity])
    return (Op(name, args, tuple(attrs.items()), "y", "backward", 0, Origin("", 0)),
            [(a, 100) for a in args])


@pytest.mark.parametrize("name", list(OPS))
def test_every_op_renders_on_every_backend(name):
    op, args = _synthetic(name)
    numpy = Emitter("float64").render_op(op, args, {})[0]
    if name in LABEL_OPS:  # Numba's rendering reshapes by the program's shapes: test_labels.py
        assert numpy
        return
    numba = NumbaEmitter("float64")
    # (the program whose op it renders: a rendering may read its operands' shapes)
    numba.shapes = Program(values={a: Value(a, (2, 2), a, "input") for a in op.args
                                   if isinstance(a, str)})
    statement = numba.render_op(op, args, {})[0]
    assert numpy and statement
    if OPS[name].fusion == "elementwise":  # one element inside a loop
        assert numba.scalar_expr(op, args, {}, [])[0]


def test_every_elementwise_op_compiles_per_element_in_numba_as_numpy_computes_it():
    """Each loop body form (the Numba table's, else NumPy's) compiles in nopython mode and gives
    the value of NumPy's form (the math helpers have their own tests: tests/test_numba_math.py)."""
    numba = pytest.importorskip("numba")
    emitter = NumbaEmitter("float64")
    names = [n for n, op in OPS.items() if op.fusion == "elementwise" and not op.helper
             and not (n in NUMBA and NUMBA[n].math)]
    synthetic = [_synthetic(n) for n in names]
    body = "".join(f"    out[{k}] = {emitter.scalar_expr(op, args, {}, [])[0]}\n"
                   for k, (op, args) in enumerate(synthetic))
    env: dict = {"np": np}
    exec(f"def kernel(a, b, c, out):\n{body}", env)  # test-only: the rendered forms
    kernel = numba.njit(env["kernel"])
    for x in (-0.75, 0.0, 1.25):
        got = np.empty(len(names))
        kernel(x, 0.5, -1.5, got)
        for name, (op, args), value in zip(names, synthetic, got):
            numpy_form = Emitter("float64").render_op(op, args, {})[0]
            with np.errstate(all="ignore"):
                want = eval(numpy_form, {"np": np, "a": np.float64(x), "b": np.float64(0.5),
                                         "c": np.float64(-1.5)})
            assert value == pytest.approx(float(np.ravel(want)[0]), nan_ok=True), (name, x)


def _programs(backend: str) -> list[Program]:
    programs = []
    for start in range(0, len(CASES), 100):  # (a spec has at most 200 functions)
        compiled = compile_spec(load_spec(_case_spec(CASES[start:start + 100]), "cases.yaml"))
        programs += [p for cf in compiled.functions for p in (cf.value_and_grad, cf.backward)]
    return [lower(p) for p in programs] if backend == "numba" else programs


def _case_spec(cases: list) -> str:
    lines = ["dims: {%s}" % ", ".join(f"{k}: {v}" for k, v in DIMS.items()), "functions:"]
    for k, (_, expr, inputs, _) in enumerate(cases):
        lines += [f"  c{k}:", "    inputs:"]
        lines += [f"      {name}: [{', '.join(map(str, shape))}]" for name, shape in inputs.items()]
        lines += ["    steps:", f"      - y = {expr}", "    outputs: [y]"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_op_table_tests_run_every_op_on_every_backend(backend):
    used = {op.op for p in _programs(backend) for op in p.ops}
    expected = {n for n, op in OPS.items() if not (op.lowered and backend == "numba")}
    expected -= {"max", "finite_or_zero", "reshape"} if backend == "numpy" else set()  # lowering's
    expected -= {"identity"}  # a step that names a value: two steps (below)
    expected -= LABEL_OPS  # integer inputs: tests/test_labels.py runs them on both backends
    missing = sorted(expected - used)
    assert not missing, f"add a case to tests/test_ops.py CASES that uses {missing}"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_identity_a_step_that_names_a_value(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    import codegen

    spec = ("functions:\n  f:\n    inputs: {a: [N]}\n    steps:\n      - h = a\n"
            "      - y = sum(h * h)\n    outputs: [y]\n")
    fn = compile_spec(load_spec(spec, "t.yaml")).functions[0].function
    assert [op.op for op in fn.program.ops][0] == "identity"
    mod = codegen.load_module(spec, backend=backend, path="t.yaml")
    a = np.array([0.5, -1.0, 2.0])
    y, grads = mod.f_value_and_grad(a)
    assert y == pytest.approx(np.sum(a * a)) and np.allclose(grads.a, 2 * a)


def test_every_callable_op_is_in_the_vocabulary_of_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name in CALLABLE:
        assert f"`{name}" in readme or f" {name}" in readme, name


# --- rule text against the VJP ------------------------------------------------------------------

# what a rendering of the VJP shows as math: helpers that only guard edge cases are left out
_TRANSPARENT = {"broadcast_to", "expand_dims", "full", "nonzero_or_inf", "positive", "identity"}


def _math(program: Program, arg: Arg, names: dict[str, str]) -> tuple[str, int]:
    """The value ``arg`` as math over the generic names (``dZ @ B.T``)."""
    if isinstance(arg, Const):
        return text.number(arg.value), 100
    if isinstance(arg, DimSize):
        return "n", 100
    if arg in names:
        return names[arg], 100
    op = next(o for o in program.ops if o.out == arg)
    if op.op in _TRANSPARENT:
        inner = _math(program, op.args[0], names)
        return (f"({inner[0]} > 0)", 100) if op.op == "positive" else inner
    if op.op == "eye":
        return "I", 100
    if op.op == "zeros":
        return "0", 100
    opdef: OpDef = OPS[op.op]
    parts = []
    for a, need in zip(op.args, opdef.arg_prec):
        s, prec = _math(program, a, names)
        parts.append(f"({s})" if prec < need else s)
    axis = op.attr("axis")
    fields = {"axis_kw": "" if axis is None else ", axis", "keepdims_kw": "",
              "exponent": text.number(op.attr("exponent", 0)), "index": "", "shape": "", "n": "",
              "dtype": "", "axes": "axes", "axis": "axis", "subscripts": "",
              "args": ", ".join(parts), "tuple": "(" + ", ".join(parts) + ")"}
    rendered = opdef.fmt.format(*parts, **fields).replace("np.linalg.", "").replace("np.", "")
    rendered = rendered.replace('"", ', "").replace(", optimize=True", "")  # einsum's operands
    return rendered.lstrip("_"), opdef.prec


_WORD = re.compile(r"\b[A-Za-z_]\w*\b(?!\s*\()")
_NOT_VALUES = {"T", "c", "axis"}  # an attribute, the exponent's letter, a keyword


def _operands(formula: str) -> set[str]:
    """The values a formula reads (not the functions it calls)."""
    formula = re.sub(r'\w+="[^"]*"', "", formula)  # (a keyword argument: order="C")
    return set(_WORD.findall(formula)) - _NOT_VALUES


def _formula(rule: str) -> str:
    """``dy * (1 - y * y)`` from ``tanh: dx = dy * (1 - y * y)``, without prose after a comma or
    two spaces; of alternatives ``a = b``, the last."""
    rhs = rule.split(": ", 1)[1].split(" = ", 1)[1]
    rhs = re.split(r", (?![^(]*\))", rhs)[0].split("  ")[0]  # (not a comma inside a call)
    return rhs.split(" = ")[-1]


def _names(op: OpDef) -> tuple[list[str], str]:
    """Generic names of the operands and the output, as the rule text writes them."""
    operands = []
    for i in range(op.arity):
        m = re.search(r": d(\w+) = ", op.grads[i]) if i < len(op.grads) else None
        operands.append(m.group(1) if m else f"x{i}")
    out = re.match(r"(\w+) = ", op.math)
    return operands, out.group(1) if out else "y"


def _shapes(name: str, ranks: tuple[int, ...] | None = None) -> list[tuple]:
    op = OPS[name]
    if name == "matmul":
        ra, rb = ranks or (2, 2)
        return [("M", "K")[2 - ra:], ("K", "N")[:rb]]
    if name == "outer":
        return [("M",), ("N",)]
    if name == "reshape":
        return [(3, 3)]
    if name == "permute":
        return [("M", "N", "K")]
    if name == "einsum":
        return [("M", "K"), ("K", "N")]
    if name in ("concatenate", "stack"):
        return [("M", "N")] * 2
    if op.kind == "linalg" and name != "transpose":
        return [("N", "N")]
    return [("M", "N")] * op.arity


def _run_vjp(name: str, i: int, ranks: tuple[int, ...] | None = None) -> tuple[str, str]:
    """(the VJP's result as math, the rule it explained or '') for operand ``i``."""
    opdef = OPS[name]
    operands, out = _names(opdef)
    program = Program()
    shapes = _shapes(name, ranks)
    for n, shape in zip(operands, shapes):
        program.values[n] = Value(n, shape, n, "input")
    op, _ = _synthetic(name)
    op = Op(name, tuple(operands), op.attrs if name != "expand_dims" else (), out, "forward", 0,
            Origin("", 0))
    shape = opdef.shape(list(shapes), dict(op.attrs))
    program.values[out] = Value(out, shape, out, "step")
    program.values["d" + out] = Value("d" + out, shape, "d" + out, "grad")
    b = Builder(program, "backward")
    result = opdef.vjps[i](b, op, "d" + out)
    names = {n: n for n in operands + [out, "d" + out]}
    return _math(program, result, names)[0], b.explained


# (label ops read integer operands whose shapes the generic builder cannot make: test_labels.py)
_RULES = [(n, i) for n, op in OPS.items() for i, v in enumerate(op.vjps)
          if v is not None and n not in LABEL_OPS]


@pytest.mark.parametrize("name,i", _RULES, ids=[f"{n}-{i}" for n, i in _RULES])
def test_the_rule_text_reads_what_the_vjp_reads(name, i):
    computed, _ = _run_vjp(name, i)
    written = _formula(OPS[name].grads[i])
    assert _operands(computed) == _operands(written), (computed, written)


# Rule texts written in another form of the same math than the VJP's rendering: a sign or a
# product regrouped, the exponent as its letter, dZ.T @ u for u @ dZ (u a vector).
_REGROUPED = {("div", 1), ("pow", 0), ("sigmoid", 0), ("cos", 0), ("outer", 1), ("inv", 0),
              ("erf", 0),  # 2/sqrt(pi) written as its value
              # the tie conventions (DESIGN 1b) stated in words and indicator brackets
              ("log_sigmoid", 0), ("maximum", 0), ("maximum", 1), ("minimum", 0), ("minimum", 1),
              ("max", 0),
              # the slices of the joined axis described in words (the rendering spells indices)
              ("reshape", 0), ("concatenate", 0), ("concatenate", 1), ("stack", 0), ("stack", 1),
              ("einsum", 0), ("einsum", 1)}  # (its rendering makes the result contiguous)


@pytest.mark.parametrize("name,i", _RULES, ids=[f"{n}-{i}" for n, i in _RULES])
def test_the_rule_text_is_the_vjp_rendered(name, i):
    """Most rule texts are, letter for letter, what the VJP computes; a new one should be."""
    computed, _ = _run_vjp(name, i)
    written = _formula(OPS[name].grads[i])
    same = computed.replace(" ", "") == written.replace(" ", "")
    assert same != ((name, i) in _REGROUPED), (computed, written)


@pytest.mark.parametrize("ranks", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("i", [0, 1])
def test_the_matrix_products_explained_cases_read_what_they_say(ranks, i):
    computed, explained = _run_vjp("matmul", i, ranks)
    if not explained:  # (the general rule applies)
        explained = OPS["matmul"].grads[i]
    lower_case = {s.lower() for s in _operands(computed)}
    assert lower_case == {s.lower() for s in _operands(_formula(explained))}, (computed, explained)
