"""Steps → forward IR: each step is parsed with ``ast`` against the vocabulary and shape-checked."""

from __future__ import annotations

import ast
import difflib
import io
import math
import tokenize
from dataclasses import dataclass, field

from . import shapes
from .build import Builder, reuse_equal_ops
from .errors import SpecError, SpecWarning
from .ir import Arg, Const, Dim, DimSize, Op, Origin, Program
from .ops import CALLABLE, OPS, names
from .reserved import function_names, reserved_names
from .spec import FunctionSpec, Spec, StepSpec

MAX_DEPTH = 200
MAX_INLINED_OPS = 100_000  # a function's ops, calls inlined (each call may call twice, ...)
# The vocabulary's functions, and every name generated modules use (codegen/reserved.py).
# Functions a step may call that the parser writes with table ops (DESIGN 1b): name -> keywords.
SUGAR: dict[str, tuple[str, ...]] = {"clip": (), "min": ("axis", "keepdims"),
                                     "var": ("axis", "keepdims"), "std": ("axis", "keepdims")}
# The axes ops and einsum take tuples, axes or subscripts as arguments (_StepParser.structural).
STRUCTURAL = ("transpose", "swapaxes", "reshape", "concatenate", "stack", "einsum")
RESERVED = reserved_names() | frozenset(SUGAR) | frozenset(STRUCTURAL) | {"where", "eye"}
_COMPARISONS = {ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal"}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.MatMult: "matmul"}
_NODE_WORDS = {
    ast.Subscript: "subscripts (indexing)",
    ast.Compare: "comparisons",
    ast.Lambda: "lambdas",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "conditional expressions",
    ast.List: "list literals",
    ast.Tuple: "tuples",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.DictComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.Starred: "starred expressions",
    ast.NamedExpr: "':=' assignments",
    ast.JoinedStr: "f-strings",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
    ast.Slice: "slices",
}


# The elementwise functions, on numbers: a step such as `v * exp(1)` folds to `v * 2.718...`.
_SCALAR_FUNCTIONS = {name: op.scalar for name, op in OPS.items() if op.scalar is not None}


@dataclass
class Function:
    """A function's forward program and what its backward needs to know."""

    name: str
    doc: str
    spec: FunctionSpec
    program: Program  # forward ops only; values of inputs and steps keep their spec names as ids
    dims: tuple[str, ...]  # symbolic dims in order of first appearance in the inputs
    wrt: tuple[str, ...]
    # What compiles but is probably a mistake (dropped steps, zero gradients, a non-scalar loss).
    warnings: list[SpecWarning] = field(default_factory=list)
    calls: tuple[str, ...] = ()  # the functions of the spec its steps call (inlined)


def generated_names(spec: Spec) -> set[str]:
    """Module-level names the generated module defines (spec values may not shadow them)."""
    return {name for f in spec.functions for name in function_names(f.name)}


def parse_function(spec: Spec, fn: FunctionSpec) -> Function:
    """Parse and shape-check one function's steps into a forward program."""
    program = Program()
    builder = Builder(program, "forward")
    taken = generated_names(spec)
    dims: list[str] = []
    for inp in fn.inputs:
        _check_value_name(inp.name, taken, f"input '{inp.name}' of {fn.name}", inp.loc)
        for d in inp.shape:
            if isinstance(d, str) and d not in dims:
                dims.append(d)
        program.values[inp.name] = _value(inp.name, inp.shape, "input")
        program.values[inp.name].dtype = inp.dtype
        program.inputs.append(inp.name)
    calls: list[str] = []
    for step in fn.steps:
        parser = _StepParser(spec, fn, step, builder, taken)
        parser.calls = calls
        parser.run()
    names = set(program.values)
    for out in fn.outputs:
        if out.name not in names:
            raise SpecError(f"output '{out.name}' of {fn.name} is not an input or a step", out.loc)
        if program.values[out.name].dtype:
            raise SpecError(f"output '{out.name}' of {fn.name} is {_a(program.values[out.name].dtype)}"
                            " input: outputs are float arrays (the caller has the input already)",
                            out.loc)
        program.outputs.append(out.name)
    steps = list(program.ops)
    _drop_dead_steps(program)
    warnings = _warnings(fn, program, steps)
    _own_outputs(program, builder)
    _reuse_repeated(program)
    return Function(fn.name, fn.doc, fn, program, tuple(dims), tuple(w.name for w in fn.wrt),
                    warnings, tuple(dict.fromkeys(calls)))


def _reuse_repeated(program: Program) -> None:
    """A temporary that an earlier op of the steps computes already (``X - mu`` written in a
    variance and again in the normalisation) is that op's value: computed once, saved once,
    differentiated once.  The values the steps name are all kept, each on its step's line."""
    for dropped in reuse_equal_ops(program, lambda op: program.values[op.out].kind == "temp"):
        del program.values[dropped]


def quiet_called(functions: list[Function]) -> None:
    """A function that another calls is a building block (a layer), whose first output is a
    value of its callers: it gets no warning for not being a scalar loss."""
    called = {name for f in functions for name in f.calls}
    for f in functions:
        if f.name in called:
            f.warnings = [w for w in f.warnings
                          if not w.message.startswith(f"{f.name}: the first output")]


def _depends(program: Program, name: str) -> set[str]:
    """Every value ``name`` is computed from (itself included)."""
    live = {name}
    for op in reversed(program.ops):
        if op.out in live:
            live.update(a for a in op.args if isinstance(a, str))
    return live


def _warnings(fn: FunctionSpec, program: Program, before: list[Op]) -> list[SpecWarning]:
    """Silent mistakes made loud: a step no output uses, a wrt input its first output ignores,
    a first output that is not a scalar (its value_and_grad differentiates the sum)."""
    found = []
    first = fn.outputs[0].name
    kept = {op.out for op in program.ops} | set(program.inputs)
    read = {a for op in before for a in op.args if isinstance(a, str)}
    for step in fn.steps:
        target = step.text.partition("=")[0].strip()
        if target in kept or target in read or target not in program.values:
            continue  # kept, or dropped only because a dropped step reads it (reported there)
        found.append(SpecWarning(
            f"{fn.name}: step '{step.text}': no output depends on '{target}', so this step is "
            f"dropped; did you mean to add it to '{first}', or to "
            "list it in outputs?", step.loc))
    needed = _depends(program, first)
    for ref in fn.wrt:
        if ref.name in needed:
            continue
        default, loc = "", ref.loc
        if ref.loc == fn.loc:  # wrt not given: point at the input itself
            default = " (wrt defaults to every input)"
            loc = next(i.loc for i in fn.inputs if i.name == ref.name)
        found.append(SpecWarning(
            f"{fn.name}: wrt '{ref.name}'{default}: the first output '{first}' does not depend "
            f"on '{ref.name}', so its gradient is always zero; did you mean to use it in a step, "
            "or to leave it out of wrt?", loc))
    shape = program.values[first].shape
    # (not when the spec asks for its Jacobian or JVP: a vector output is then meant)
    if shape != () and not {"jvp", "jacobian"} & {d.name for d in fn.derivatives}:
        dims = "[" + ", ".join(str(d) for d in shape) + "]"
        found.append(SpecWarning(
            f"{fn.name}: the first output '{first}' has shape {dims}, not a scalar, so "
            f"{fn.name}_value_and_grad returns the gradients of sum({first}) (a cotangent of "
            f"ones); did you mean to put a scalar loss first in outputs? For another cotangent "
            f"call {fn.name}_backward(saved, g)", fn.outputs[0].loc))
    return found


# Forward ops whose result is the operand's memory (``Y = X``, ``Y = +X``, ``Y = X.T``).
_VIEWS = names(result="view")


def _own_outputs(program: Program, builder: Builder) -> None:
    """Outputs never alias an input or each other: one that is an input, or a view of one (or
    of an earlier output's array), becomes a copy.

    (A caller who writes into an output must not change its own inputs or another output; both
    backends return the same fresh arrays.)  ``Y = X`` becomes ``Y = X.copy()``; a transpose
    read by no other step gets a ``copy`` op after it, under the same step; anything else is
    copied at the end of the forward ops.
    """
    producer = {op.out: op for op in program.ops}
    read = {a for op in program.ops for a in op.args if isinstance(a, str)}

    def root(v: str) -> str:
        """The array whose memory ``v`` is (itself unless it is a view)."""
        while v in producer and producer[v].op in _VIEWS and isinstance(producer[v].args[0], str):
            v = producer[v].args[0]  # type: ignore[assignment]
        return v

    claimed: set[str] = set()  # the arrays earlier outputs are
    for i, out in enumerate(program.outputs):
        assert isinstance(out, str)
        base = root(out)
        if base not in program.inputs and base not in claimed:
            claimed.add(base)
            continue
        op = producer.get(out)
        if op is not None and op.op == "identity" and out not in read:  # Y = X: the step copies
            op.op = "copy"
        elif op is not None and op.op == "transpose" and out not in read:
            view = builder.new_value(program.values[out].shape, out, "temp")
            op.out = view
            program.ops.insert(program.ops.index(op) + 1,
                               Op("copy", (view,), (), out, op.phase, op.group, op.origin))
        else:
            with builder.at(Origin(f"output {out} (a copy: it would share memory)", 0), out):
                copied = builder.emit("copy", out)
            assert isinstance(copied, str)
            program.outputs[i] = copied
            program.values[copied].hint = out
        claimed.add(program.outputs[i])  # type: ignore[arg-type]


def _value(name: str, shape: tuple, kind: str):  # type: ignore[no-untyped-def]
    from .ir import Value

    return Value(name, tuple(shape), name, kind)


def _check_value_name(name: str, taken: set[str], what: str, loc) -> None:  # type: ignore[no-untyped-def]
    if name in RESERVED:
        raise SpecError(f"{what}: the name '{name}' is reserved (a vocabulary function or module)", loc)
    if name in taken:
        raise SpecError(f"{what}: the name '{name}' is reserved for the generated module", loc)


def _drop_dead_steps(program: Program) -> None:
    """Remove forward ops that no output depends on."""
    live = {o for o in program.outputs if isinstance(o, str)}
    kept: list[Op] = []
    for op in reversed(program.ops):
        if op.out in live:
            kept.append(op)
            live.update(a for a in op.args if isinstance(a, str))
    program.ops = kept[::-1]


# Reductions along an axis that can keep it (keepdims=True), for the hint after a broadcast error.
_KEEPDIMS = frozenset(name for name, (_, allowed) in CALLABLE.items() if "keepdims" in allowed)


class _StepParser:
    """Converts one step's expression tree to IR ops (a whitelist: anything else is a SpecError)."""

    def __init__(self, spec: Spec, fn: FunctionSpec, step: StepSpec, builder: Builder,
                 taken: set[str], call: _Call | None = None) -> None:
        self.spec, self.fn, self.step, self.b, self.taken = spec, fn, step, builder, taken
        self.inlined = call  # set while a step of a called function is inlined into a caller
        self.calls: list[str] = call.parser.calls if call else []  # functions called, in order
        if call is None:  # the function's own dims: a dim's name is its size
            self.dims: dict[str, Dim] = {d: d for i in fn.inputs for d in i.shape
                                         if isinstance(d, str)}
        else:
            self.dims = call.dims

    @property
    def root(self) -> FunctionSpec:
        """The function whose program this is (the caller, when a call is inlined)."""
        return self.inlined.root if self.inlined else self.fn

    def fail(self, message: str) -> SpecError:
        if self.inlined is not None:  # located at the caller's step, which names the call
            call = self.inlined
            return call.parser.fail(f"in {call.text}, {self.fn.name}'s step '{self.step.text}': "
                                    f"{message}")
        return SpecError(f"{self.fn.name}: step '{self.step.text}': {message}", self.step.loc)

    def lookup(self, name: str) -> Arg | None:
        """The value a name in a step stands for (an input or an earlier step), or None."""
        if self.inlined is not None:
            return self.inlined.env.get(name)
        value = self.b.program.values.get(name)
        return name if value is not None and value.kind in ("input", "step") else None

    def is_label(self, a: Arg) -> bool:
        return isinstance(a, str) and bool(self.b.program.values[a].dtype)

    def run(self) -> None:
        try:
            tree = ast.parse(self.step.text, mode="exec")
        except SyntaxError as e:
            raise self.fail(f"invalid syntax ({e.msg}, column {e.offset})") from None
        except (ValueError, RecursionError, MemoryError, OverflowError):
            raise self.fail("the step cannot be parsed (too deep or invalid characters)") from None
        self._check_ascii_names()
        body = tree.body
        if len(body) != 1 or not isinstance(body[0], ast.Assign):
            raise self.fail("a step must be one assignment 'name = expression'")
        node = body[0]
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise self.fail("a step assigns exactly one plain name, like 'Z = X @ W'")
        target = node.targets[0].id
        if self.inlined is not None:
            self.run_inlined(target, node.value)
            return
        self._check_target(target)
        origin = Origin(self.step.text, self.step.loc.line)
        with self.b.at(origin, target):
            try:
                result = self.expr(node.value, 0)
            except shapes.ShapeError as e:
                raise self.fail(str(e)) from None
            except RecursionError:
                raise self.fail("the expression is nested too deeply") from None
            program = self.b.program
            if isinstance(result, str) and program.values[result].kind == "temp" and \
                    program.ops and program.ops[-1].out == result:
                produced = program.ops[-1]
            else:  # a bare name or number: the step needs an op of its own
                self.b.emit("identity", result)
                produced = program.ops[-1]
        old = produced.out
        value = program.values.pop(old)
        value.id, value.hint, value.kind = target, target, "step"
        program.values[target] = value
        produced.out = target

    def run_inlined(self, target: str, node: ast.AST) -> None:
        """A step of a called function: its value is a temporary of the caller (named after the
        caller's target and the step's), its comment names the call and the step."""
        call = self.inlined
        assert call is not None
        if target in call.env:
            raise self.fail(f"'{target}' is already defined; names are assigned once")
        origin = Origin(f"{call.text}: {self.fn.name}: {self.step.text}", call.line)
        hint = f"{call.hint}_{target}"
        with self.b.at(origin, hint):
            try:
                result = self.expr(node, 0)
            except shapes.ShapeError as e:
                raise self.fail(str(e)) from None
        program = self.b.program
        if isinstance(result, str) and program.ops and program.ops[-1].out == result and \
                program.values[result].kind == "temp":
            program.values[result].hint = hint  # the step's value: H_Z for layer's Z in H = ...
        call.env[target] = result

    def _check_ascii_names(self) -> None:
        """Names in a step must be ASCII, as written: Python's parser NFKC-normalises identifiers
        (``ﬁ2 = 𝐗 * ﬁ`` would silently become ``fi2 = X * fi``), so the source text is checked."""
        text = self.step.text
        if text.isascii():
            return
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.string.isascii():
                    continue
                raise self.fail(f"the name '{tok.string}' (column {tok.start[1] + 1}) must use "
                                "only ASCII letters, digits and '_'")
        except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
            raise self.fail("names must use only ASCII letters, digits and '_'") from None

    def _check_target(self, target: str) -> None:
        what = f"{self.fn.name}: step '{self.step.text}'"
        if not target.isascii():
            raise self.fail(f"the name '{target}' must be ASCII")
        if target.startswith("_"):
            raise self.fail(f"names starting with '_' are reserved for generated code ('{target}')")
        _check_value_name(target, self.taken, what, self.step.loc)
        if target in self.b.program.values:
            kind = "an input" if target in self.b.program.inputs else "an earlier step"
            raise self.fail(f"'{target}' is already defined by {kind}; names are assigned once")

    def expr(self, node: ast.AST, depth: int) -> Arg:
        """Lower one expression node; shapes are checked as ops are emitted."""
        if depth > MAX_DEPTH:
            raise self.fail(f"the expression is nested more than {MAX_DEPTH} levels deep")
        d = depth + 1
        if isinstance(node, ast.Name):
            value = self.name(node.id)
            if self.is_label(value):
                kind = self.b.program.values[value].dtype  # type: ignore[index]
                use = (f"the condition of where({node.id}, a, b)" if kind == "bool" else
                       "the labels of take_along_axis(a, y, axis=1) or one_hot(y, K)")
                raise self.fail(f"'{node.id}' is {_a(kind)} input: it can only be {use}, or an "
                                "argument of a function whose input has its dtype")
            return value
        if isinstance(node, ast.Constant):
            return Const(self.number(node))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                inner = self.expr(node.operand, d)
                if isinstance(inner, Const):
                    return Const(-inner.value)
                return self.b.emit("neg", inner)
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, d)
            raise self.fail(f"operator '{_op_word(node.op)}' is not supported")
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                base = self.expr(node.left, d)
                exponent = self.exponent(node.right, d)
                if isinstance(base, Const):
                    return self.fold("pow", base.value, exponent)
                return self.b.emit("pow", base, exponent=exponent)
            name = _BINOPS.get(type(node.op))
            if name is None:
                raise self.fail(f"operator '{_op_word(node.op)}' is not supported")
            left, right = self.expr(node.left, d), self.expr(node.right, d)
            if isinstance(left, Const) and isinstance(right, Const) and name != "matmul":
                return self.fold(name, left.value, right.value)
            if name == "div" and isinstance(right, Const) and right.value == 0:
                raise self.fail("division by the constant zero")
            try:
                if name == "matmul" and isinstance(left, str) and isinstance(right, str):
                    vector = self.batch_vector_product(left, right)
                    if vector is not None:
                        return vector
                return self.b.emit(name, left, right)
            except shapes.ShapeError as e:
                raise self.fail(str(e) + self.keepdims_hint(left, right)) from None
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise self.fail(f"attribute access '.{node.attr}' is not supported (only '.T')")
            inner = self.expr(node.value, d)
            if len(self.b.shape(inner)) < 2:
                return inner  # NumPy: .T of a scalar or vector is itself
            return self.b.emit("transpose", inner)
        if isinstance(node, ast.Call):
            return self.call(node, d)
        if isinstance(node, ast.Compare):
            raise self.fail("a comparison gives a mask, which is only allowed as the condition of "
                            "where(): write where(a > b, x, y) (where(a > b, 1.0, 0.0) for a 0/1 "
                            "float)")
        word = _NODE_WORDS.get(type(node), f"'{type(node).__name__}' expressions")
        raise self.fail(f"{word} are not supported")

    def batch_vector_product(self, a: str, b: str) -> Arg | None:
        """``X @ v`` and ``v @ X`` with X a batch of matrices (rank 3 or 4) and v a vector, as
        NumPy's matmul means them, written as the einsum that says so (None: another pairing)."""
        sa, sb = self.b.shape(a), self.b.shape(b)
        ra, rb = len(sa), len(sb)
        if (ra >= 3 and rb == 1 or ra == 1 and rb >= 3) and sa[-1] != sb[-1 if ra >= 3 else -2]:
            inner = sb[-1 if ra >= 3 else -2]
            raise shapes.ShapeError(f"matrix product '@': inner dims differ: {sa[-1]} (from "
                                    f"{shapes.fmt(sa)}) vs {inner} (from {shapes.fmt(sb)})")
        if ra >= 3 and rb == 1:
            batch = "abcd"[:ra - 2]
            return self.b.emit("einsum", a, b, subscripts=f"{batch}mn,n->{batch}m")
        if ra == 1 and rb >= 3:
            batch = "abcd"[:rb - 2]
            return self.b.emit("einsum", a, b, subscripts=f"m,{batch}mn->{batch}n")
        return None

    def einsum(self, subscripts: str, xs: list[str]) -> Arg:
        """``einsum`` with NumPy's meaning: an index that is in one operand only and not in the
        output is summed over first (``sum(x, axis=...)``), so the contraction that remains has
        every index in two places; an einsum that only sums (and permutes) one operand is that."""
        ins, _, out = subscripts.partition("->")
        terms = ins.split(",")
        if len(terms) == len(xs):
            for k, (term, x) in enumerate(zip(terms, xs)):
                if len(term) != len(self.b.shape(x)) or len(set(term)) != len(term):
                    continue  # (the shape rule says what is wrong)
                others = "".join(t for j, t in enumerate(terms) if j != k) + out
                lone = tuple(i for i, c in enumerate(term) if c not in others)
                for axis in reversed(lone):  # (the last first: the others keep their numbers)
                    summed = self.b.emit("sum", xs[k], axis=axis, keepdims=False)
                    assert isinstance(summed, str)
                    xs[k] = summed
                if lone:
                    terms[k] = "".join(c for c in term if c in others)
            if len(xs) == 1 and terms[0] == out:
                return xs[0]
            subscripts = ",".join(terms) + "->" + out
        return self.b.emit("einsum", *xs, subscripts=subscripts)

    def name(self, name: str) -> Arg:
        """An input or earlier step by its name, or a dim's size (a dim's name in a step is its
        size at run time)."""
        value = self.lookup(name)
        if value is not None:  # an input or step of a dim's name is that value (as before dims
            return value  # were numbers: such specs keep their meaning)
        if name in self.dims:
            d = self.dims[name]
            return Const(d) if isinstance(d, int) else DimSize(d)
        if name in dict(self.spec.dims):
            raise self.fail(f"the dim '{name}' is in no input's shape of {self.fn.name}, so its "
                            "size is not known at run time; use a dim of the inputs")
        raise self.fail(f"unknown name '{name}' (not an input, an earlier step or a dim)")

    def label(self, node: ast.AST, fn: str) -> str:
        """The integer labels of take_along_axis or one_hot: an int64 input, by name."""
        example = "y: {shape: [N, 1], dtype: int64}"
        if not isinstance(node, ast.Name) or self.lookup(node.id) is None:
            raise self.fail(f"{fn}(): the labels must be an integer input, by name (declare it "
                            f"like {example})")
        value = self.lookup(node.id)
        dtype = self.b.program.values[value].dtype if isinstance(value, str) else ""
        if dtype != "int64":
            what = f"{_a(dtype)} input" if dtype else "a float value"
            raise self.fail(f"{fn}(): the labels '{node.id}' are {what}, not integers; declare "
                            f"the input as {example}")
        assert isinstance(value, str)
        return value

    def keepdims_hint(self, *args: Arg) -> str:
        """A hint when an operand that did not broadcast is a reduction along an axis."""
        for arg in args:
            if not isinstance(arg, str):
                continue
            made = next((op for op in reversed(self.b.program.ops) if op.out == arg), None)
            if made is None or made.op not in _KEEPDIMS or made.attr("axis") is None or \
                    made.attr("keepdims"):
                continue
            what = f"'{arg}'" if self.b.program.values[arg].kind != "temp" else f"{made.op}(...)"
            return (f"; {what} reduces along axis {made.attr('axis')} and drops it: did you mean "
                    f"{made.op}(..., axis={made.attr('axis')}, keepdims=True)?")
        return ""

    def fold(self, op: str, a: int | float, b: int | float) -> Const:
        """Constant arithmetic, done now; the result must be a finite real number."""
        try:
            value = {
                "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                "div": lambda: a / b, "pow": lambda: float(a) ** b,
            }[op]()
            if op == "pow" and isinstance(a, int) and isinstance(b, int) and b >= 0 \
                    and isinstance(value, float) and abs(value) <= 2**53:
                value = a**b  # as Python folds it: an integer (small, as its float shows)
        except ZeroDivisionError:
            raise self.fail("division by the constant zero") from None
        except OverflowError:
            raise self.fail("a constant expression overflows") from None
        if isinstance(value, complex) or not math.isfinite(value) or abs(value) > 2**53 and \
                isinstance(value, int):
            raise self.fail("a constant expression is not a finite real number")
        return Const(value)

    def fold_call(self, name: str, value: int | float) -> Const:
        """An elementwise function of a number, computed now (a Python float keeps the dtype)."""
        try:
            result = _SCALAR_FUNCTIONS[name](float(value))
        except (ValueError, OverflowError, ZeroDivisionError):
            raise self.fail(f"{name}({value}) is not a finite real number") from None
        if not math.isfinite(result):
            raise self.fail(f"{name}({value}) is not a finite real number")
        return Const(result)

    def number(self, node: ast.Constant) -> int | float:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"only numeric constants are allowed, not {type(v).__name__} {v!r:.40}")
        if isinstance(v, int) and abs(v) > 2**53:
            raise self.fail(f"the integer {str(v)[:20]}... is too large; write it as a float")
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail("numbers must be finite")
        return v

    def exponent(self, node: ast.AST, depth: int) -> int | float:
        """The exponent of ``**``: a number, or constant arithmetic folded to one (``2 ** -1``,
        ``1 / 3``, ``-(1 + 1)``, ``sqrt(2)``)."""
        if not _is_constant(node):
            raise self.fail("the exponent of '**' must be a number (array exponents are not supported)")
        value = self.expr(node, depth)
        assert isinstance(value, Const)
        return value.value

    def call(self, node: ast.Call, depth: int) -> Arg:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the vocabulary's functions can be called, like 'tanh(Z)'")
        name = node.func.id
        if name in ("take_along_axis", "one_hot"):
            return self.call_label(node, name, depth)
        callee = next((f for f in self.spec.functions if f.name == name), None)
        if callee is not None and name not in CALLABLE:
            return self.call_function(node, callee, depth)
        if name in SUGAR:
            return self.sugar(name, node, depth)
        if name == "where":
            return self.where(node, depth)
        if name == "eye":
            return self.eye(node)
        if name in STRUCTURAL:
            return self.structural(name, node, depth)
        if name not in CALLABLE:
            known = ", ".join(sorted(CALLABLE))
            candidates = sorted(CALLABLE) + [f.name for f in self.spec.functions]
            # letters swapped ('tahn') first: difflib alone would offer 'tan' before 'tanh'
            close = [c for c in candidates if sorted(c) == sorted(name)][:1] or (
                difflib.get_close_matches(name, candidates, n=1))
            hint = f"; did you mean '{close[0]}'?" if close else ""
            functions = ", ".join(f.name for f in self.spec.functions)
            raise self.fail(f"unknown function '{name}' (known: {known}; and this spec's "
                            f"functions: {functions}){hint}")
        arity, allowed = CALLABLE[name]
        if len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            what = "one array argument" if arity == 1 else f"{arity} array arguments"
            raise self.fail(f"{name}() takes exactly {what}")
        attrs: dict[str, object] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(f"'**' arguments are not supported in {name}()")
            if kw.arg not in allowed:
                extra = f" (allowed: {', '.join(allowed)})" if allowed else ""
                raise self.fail(f"{name}() got an unexpected keyword '{kw.arg}'{extra}")
            attrs[kw.arg] = self.keyword(name, kw)
        xs = [self.expr(a, depth) for a in node.args]
        x = xs[0]
        if name in ("maximum", "minimum") and all(isinstance(v, Const) for v in xs):
            pick = max if name == "maximum" else min
            return Const(pick(v.value for v in xs))  # type: ignore[union-attr]
        if isinstance(x, Const) and name in _SCALAR_FUNCTIONS and not attrs:
            return self.fold_call(name, x.value)
        if "axis" in attrs:
            attrs["axis"] = shapes.normalize_axis(attrs["axis"], len(self.b.shape(x)), f"{name}()")  # type: ignore[arg-type]
        if "keepdims" in allowed:
            attrs = {"axis": attrs.get("axis"), "keepdims": bool(attrs.get("keepdims", False))}
        elif "axis" in allowed:
            attrs = {"axis": attrs.get("axis")}
        return self.b.emit(name, *xs, **attrs)

    def call_label(self, node: ast.Call, name: str, depth: int) -> Arg:
        """``take_along_axis(a, y, axis=1)`` and ``one_hot(y, K)``."""
        label_of = f"{self.root.name}: {{}}"
        if any(isinstance(a, ast.Starred) for a in node.args) or \
                any(kw.arg is None for kw in node.keywords):
            raise self.fail(f"{name}(): '*' and '**' arguments are not supported")
        if name == "take_along_axis":
            if len(node.args) != 2 or [kw.arg for kw in node.keywords] != ["axis"]:
                raise self.fail("take_along_axis() takes an array, the labels and axis=, like "
                                "take_along_axis(a, y, axis=1)")
            axis = self.keyword(name, node.keywords[0])
            if axis is None:
                raise self.fail("take_along_axis(): axis must be an integer like axis=1")
            a = self.expr(node.args[0], depth)
            y = self.label(node.args[1], name)
            if self.is_label(a) or isinstance(a, (Const, DimSize)):
                raise self.fail("take_along_axis(): the first argument must be a float array")
            axis = shapes.normalize_axis(axis, len(self.b.shape(a)), "take_along_axis()")  # type: ignore[arg-type]
            return self.b.emit(name, a, y, axis=axis, label=label_of.format(y))
        if len(node.args) != 2 or node.keywords:
            raise self.fail("one_hot() takes the labels and the number of classes, like "
                            "one_hot(y, K) (K a dim's name or an integer)")
        y = self.label(node.args[0], name)
        k = node.args[1]
        if isinstance(k, ast.Constant) and type(k.value) is int and 0 < k.value <= 2**31:
            size: Dim = k.value
        elif isinstance(k, ast.Name) and k.id in self.dims and self.lookup(k.id) is None:
            size = self.dims[k.id]
        else:
            raise self.fail("one_hot(y, K): K must be a dim's name (of an input's shape) or a "
                            "positive integer")
        return self.b.emit(name, y, depth=size, label=label_of.format(y))

    def call_function(self, node: ast.Call, callee: FunctionSpec, depth: int) -> Arg:
        """``layer(X, W1, b1)``: the callee's steps inlined here, its dims bound afresh from the
        arguments' shapes; the value is its first output."""
        text = f"{callee.name}({', '.join(ast.unparse(a) for a in node.args)})"
        chain = [self.fn.name]
        call = self.inlined
        while call is not None:
            chain.insert(0, call.parser.fn.name)
            call = call.parser.inlined
        if callee.name in chain:
            path = " -> ".join(chain[chain.index(callee.name):] + [callee.name])
            raise self.fail(f"the call {text} is recursive ({path}); a function may call "
                            "only functions that do not call it back")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{text}: pass the arguments by position, in the order of "
                            f"{callee.name}'s inputs")
        if len(node.args) != len(callee.inputs):
            names = ", ".join(i.name for i in callee.inputs)
            raise self.fail(f"{text}: {callee.name} takes {len(callee.inputs)} arguments "
                            f"({names}), got {len(node.args)}")
        env: dict[str, Arg] = {}
        dims: dict[str, Dim] = {}
        for k, (inp, arg_node) in enumerate(zip(callee.inputs, node.args)):
            if inp.dtype:
                arg = self.label(arg_node, callee.name) if inp.dtype == "int64" else \
                    self.lookup(getattr(arg_node, "id", ""))
                if not isinstance(arg, str) or self.b.program.values[arg].dtype != inp.dtype:
                    raise self.fail(f"{text}: argument {k + 1} must be {_a(inp.dtype)} input "
                                    f"(for {callee.name}'s input {inp.name})")
            else:
                arg = self.expr(arg_node, depth)
            shape = self.b.shape(arg)
            where = f"{text}: argument {k + 1} ('{ast.unparse(arg_node)}') has shape " \
                    f"{shapes.fmt(shape)}, but {callee.name}'s input {inp.name} is " \
                    f"{shapes.fmt(inp.shape)}"
            if len(shape) != len(inp.shape):
                raise self.fail(where)
            for want, got in zip(inp.shape, shape):
                if isinstance(want, int):
                    if want != got:
                        raise self.fail(where)
                elif dims.setdefault(want, got) != got:
                    raise self.fail(f"{where}, and {want} is {dims[want]} from an earlier "
                                    "argument")
            env[inp.name] = arg
        if len(self.b.program.ops) > MAX_INLINED_OPS:  # calls that call twice, and so on
            raise self.fail(f"{text}: the function's calls inline more than {MAX_INLINED_OPS:,} "
                            "ops; call fewer functions (or each fewer times)")
        self.calls.append(callee.name)
        first = callee.outputs[0].name
        line = self.inlined.line if self.inlined else self.step.loc.line  # the caller's step
        state = _Call(self, text, self.b.hint, line, env, dims)
        for step in callee.steps:
            _StepParser(self.spec, callee, step, self.b, self.taken, state).run()
        if first not in env:
            raise self.fail(f"{text}: {callee.name}'s output '{first}' is not an input or a step")
        result = env[first]
        if self.is_label(result):
            raise self.fail(f"{text}: {callee.name}'s first output is an integer input")
        return result
    def condition(self, node: ast.AST, depth: int) -> Arg:
        """where's condition: one comparison of arrays (``a > b``), a bool input (a mask), or a
        value (nonzero: true)."""
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.fail("where(): chained comparisons are not supported; nest where() "
                                "calls instead")
            op = _COMPARISONS.get(type(node.ops[0]))
            if op is None:
                raise self.fail("where(): the condition compares with <, <=, > or >= (exact "
                                "float equality, == and !=, is not supported)")
            left = self.expr(node.left, depth + 1)
            right = self.expr(node.comparators[0], depth + 1)
            if isinstance(left, Const) and isinstance(right, Const):
                raise self.fail("where(): the condition compares two numbers; it must read an "
                                "array")
            return self.b.emit(op, left, right)
        if isinstance(node, ast.Name):  # a bool input is a mask (DESIGN 1b: m: {dtype: bool})
            value = self.name(node.id)
            if self.is_label(value) and self.b.program.values[value].dtype == "bool":  # type: ignore[index]
                return value
        cond = self.expr(node, depth + 1)
        if isinstance(cond, Const):
            raise self.fail("where(): the condition must read an array, like where(x > 0, x, 0)")
        return cond

    def where(self, node: ast.Call, depth: int) -> Arg:
        if len(node.args) != 3 or node.keywords or any(isinstance(a, ast.Starred)
                                                       for a in node.args):
            raise self.fail("where() takes exactly 3 arguments: where(condition, x, y)")
        c = self.condition(node.args[0], depth)
        a, b = self.expr(node.args[1], depth + 1), self.expr(node.args[2], depth + 1)
        if isinstance(a, Const) and isinstance(b, Const):  # an array of the module's dtype
            a = self.b.emit("full", a, shape=self.b.shape(c))
        return self.b.emit("where", c, a, b)

    def eye(self, node: ast.Call) -> Arg:
        """eye(D): the identity matrix [D, D], D a dim's name or a positive integer."""
        dims = {d for inp in self.fn.inputs for d in inp.shape if isinstance(d, str)}
        arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
        if isinstance(arg, ast.Name) and arg.id in dims:
            n: int | str = arg.id
        elif isinstance(arg, ast.Constant) and type(arg.value) is int and 0 < arg.value <= 2**20:
            n = arg.value
        else:
            known = ", ".join(sorted(dims)) or "none"
            raise self.fail(f"eye() takes one dim's name or a positive integer, like eye(N) "
                            f"(the dims of this function: {known})")
        return self.b.emit("eye", shape=(n, n))

    def sugar(self, name: str, node: ast.Call, depth: int) -> Arg:
        """clip, min, var and std, written with table ops: clip(x, lo, hi) is
        minimum(maximum(x, lo), hi) (so ties at lo or hi split the cotangent in halves);
        min(x) is -max(-x); var(x) is mean((x - mean(x, keepdims=True)) ** 2) (population,
        ddof=0); std(x) is sqrt(var(x)) (gradient 0 where the variance is 0, as sqrt's)."""
        arity = 3 if name == "clip" else 1
        allowed = SUGAR[name]
        if len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            what = "one array argument" if arity == 1 else "3 arguments: clip(x, lo, hi)"
            raise self.fail(f"{name}() takes exactly {what}")
        attrs: dict[str, object] = {}
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in allowed:
                extra = f" (allowed: {', '.join(allowed)})" if allowed else ""
                raise self.fail(f"{name}() got an unexpected keyword '{kw.arg}'{extra}")
            attrs[kw.arg] = self.keyword(name, kw)
        xs = [self.expr(a, depth + 1) for a in node.args]
        b = self.b
        if name == "clip":
            x, lo, hi = xs
            if all(isinstance(v, Const) for v in xs):
                return Const(min(max(x.value, lo.value), hi.value))  # type: ignore[union-attr]
            if isinstance(lo, Const) and isinstance(hi, Const) and lo.value > hi.value:
                raise self.fail(f"clip(): the lower bound {lo.value} is above the upper bound "
                                f"{hi.value}")
            inner = x if isinstance(x, Const) and isinstance(lo, Const) else b.emit("maximum", x, lo)
            return b.emit("minimum", inner, hi)
        x = xs[0]
        if isinstance(x, Const):
            raise self.fail(f"{name}() needs an array, not a number")
        axis = attrs.get("axis")
        if axis is not None:
            axis = shapes.normalize_axis(axis, len(b.shape(x)), f"{name}()")  # type: ignore[arg-type]
        keep = bool(attrs.get("keepdims", False))
        if name == "min":
            return b.emit("neg", b.emit("max", b.emit("neg", x), axis=axis, keepdims=keep))
        centred = b.emit("sub", x, b.emit("mean", x, axis=axis, keepdims=True))
        var = b.emit("mean", b.emit("square", centred), axis=axis, keepdims=keep)
        return var if name == "var" else b.emit("sqrt", var)
    def structural(self, name: str, node: ast.Call, depth: int) -> Arg:
        """transpose(a, (0, 2, 1)), swapaxes(a, 1, 2), reshape(a, (B, N * H)),
        concatenate((a, b), axis=1), stack((a, b), axis=0), einsum("ij,jk->ik", a, b)."""
        usage = {
            "transpose": "transpose(a) or transpose(a, (0, 2, 1))",
            "swapaxes": "swapaxes(a, 1, 2)",
            "reshape": "reshape(a, (B, N * H))",
            "concatenate": "concatenate((a, b), axis=1)",
            "stack": "stack((a, b), axis=0)",
            "einsum": 'einsum("bij,bjk->bik", a, b)',
        }[name]
        args, kws = node.args, {kw.arg: kw.value for kw in node.keywords}
        bad = self.fail(f"{name}() is written {usage}")
        if any(isinstance(a, ast.Starred) for a in args) or None in kws:
            raise bad
        if name in ("concatenate", "stack"):
            if len(args) != 1 or not isinstance(args[0], ast.Tuple) or not args[0].elts \
                    or set(kws) - {"axis"}:
                raise bad
            xs = [self.expr(e, depth) for e in args[0].elts]
            if any(not isinstance(x, str) for x in xs):
                raise self.fail(f"{name}() joins arrays, not numbers")
            rank = len(self.b.shape(xs[0])) + (name == "stack")
            axis = self.small_int(name, kws["axis"]) if "axis" in kws else 0
            axis = shapes.normalize_axis(axis, rank, f"{name}()")  # type: ignore[assignment]
            if len(xs) == 1:
                if name == "concatenate":
                    return self.b.emit("identity", xs[0])
            return self.b.emit(name, *xs, axis=axis)
        if kws:
            raise self.fail(f"{name}() takes no keywords; it is written {usage}")
        if name == "einsum":
            if len(args) < 2 or not isinstance(args[0], ast.Constant) or \
                    not isinstance(args[0].value, str):
                raise bad
            subscripts = args[0].value.replace(" ", "")
            ins, arrow, out = subscripts.partition("->")
            if not arrow or not all(t.isascii() and t.isalpha() or t == "" for t in ins.split(",")) \
                    or not (out.isascii() and out.isalpha() or out == ""):
                raise self.fail(f"einsum(): subscripts '{args[0].value[:40]}' must be letters "
                                "with an explicit output, like 'bij,bjk->bik'")
            xs = [self.expr(a, depth) for a in args[1:]]
            if any(not isinstance(x, str) for x in xs):
                raise self.fail("einsum() contracts arrays, not numbers")
            return self.einsum(subscripts, [x for x in xs if isinstance(x, str)])
        if not args:
            raise bad
        x = self.expr(args[0], depth)
        rank = len(self.b.shape(x))
        if name == "transpose":
            if len(args) == 1:
                axes = tuple(reversed(range(rank)))
            elif len(args) == 2 and isinstance(args[1], (ast.Tuple, ast.List)):
                axes = tuple(self.small_int(name, e) for e in args[1].elts)
                axes = tuple(a % rank if -rank <= a < rank else a for a in axes)
            else:
                raise bad
            return self.permute(x, axes)
        if name == "swapaxes":
            if len(args) != 3:
                raise bad
            i, j = (shapes.normalize_axis(self.small_int(name, a), rank, "swapaxes()")
                    for a in args[1:])
            axes = list(range(rank))  # type: ignore[assignment]
            axes[i], axes[j] = axes[j], axes[i]  # type: ignore[index]
            return self.permute(x, tuple(axes))
        # reshape
        if len(args) != 2 or not isinstance(args[1], (ast.Tuple, ast.List)):
            raise bad
        shape: tuple = tuple(self.dim_expr(e) for e in args[1].elts)
        if shapes.product_dim(list(self.b.shape(x))) == shapes.product_dim(list(shape)) \
                and tuple(self.b.shape(x)) == shape:
            return x
        return self.b.emit("reshape", x, shape=shape)

    def permute(self, x: Arg, axes: tuple[int, ...]) -> Arg:
        if not isinstance(x, str):
            return x
        rank = len(self.b.shape(x))
        if axes == tuple(range(rank)):
            return x
        if rank == 2:
            shapes.permute(self.b.shape(x), axes)
            return self.b.emit("transpose", x)
        return self.b.emit("permute", x, axes=axes)

    def small_int(self, fn: str, v: ast.AST,
                  must: str = "axes must be small integer literals like 1") -> int:
        sign = 1
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub):
            sign, v = -1, v.operand
        if isinstance(v, ast.Constant) and type(v.value) is int and abs(v.value) < 64:
            return sign * v.value
        raise self.fail(f"{fn}(): {must}")

    def dim_expr(self, node: ast.AST) -> object:
        """One entry of reshape's shape: a positive integer, a dim of the function's inputs, or a
        product of them (``N * H``)."""
        if isinstance(node, ast.Constant) and type(node.value) is int and 0 < node.value < 2**31:
            return node.value
        if isinstance(node, ast.Name):
            known = {d for i in self.fn.inputs for d in i.shape if isinstance(d, str)}
            if node.id not in known:
                raise self.fail(f"reshape(): '{node.id}' is not a dim of the inputs "
                                f"(dims: {', '.join(sorted(known)) or 'none'})")
            return node.id
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return shapes.product_dim([self.dim_expr(node.left), self.dim_expr(node.right)])  # type: ignore[list-item]
        raise self.fail("reshape(): each size is a positive integer, a dim or a product of "
                        "them, like (B, N * H)")

    def keyword(self, fn: str, kw: ast.keyword) -> object:
        v = kw.value
        if kw.arg == "keepdims":
            if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                return v.value
            raise self.fail(f"{fn}(): keepdims must be True or False")
        if isinstance(v, ast.Constant) and v.value is None:
            return None
        return self.small_int(fn, v, "axis must be a small integer literal like axis=0")


@dataclass
class _Call:
    """A call of another function of the spec, being inlined: what its names stand for."""

    parser: _StepParser  # the caller's step
    text: str  # "layer(X, W1, b1)", for comments and errors
    hint: str  # the caller's target: the callee's temporaries are named after it
    line: int
    env: dict[str, Arg]  # the callee's inputs and steps -> values of the caller's program
    dims: dict[str, Dim]  # the callee's dims -> the caller's (bound from the arguments' shapes)

    @property
    def root(self) -> FunctionSpec:
        return self.parser.root


def _a(dtype: str) -> str:
    """'an int64', 'a bool'."""
    return ("an " if dtype[0] in "aeiou" else "a ") + dtype


def _is_constant(node: ast.AST, depth: int = 0) -> bool:
    """Whether ``node`` is arithmetic on numbers alone (which the parser folds to a number)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, (ast.USub, ast.UAdd)) and _is_constant(node.operand, depth + 1)
    if isinstance(node, ast.BinOp):
        return (isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow))
                and _is_constant(node.left, depth + 1) and _is_constant(node.right, depth + 1))
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id in _SCALAR_FUNCTIONS
                and len(node.args) == 1 and not node.keywords
                and _is_constant(node.args[0], depth + 1))
    return False


def _op_word(op: ast.AST) -> str:
    return {
        ast.Mod: "%", ast.FloorDiv: "//", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
        ast.BitAnd: "&", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
    }.get(type(op), type(op).__name__)
