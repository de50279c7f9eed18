"""The one IR shared by forward and backward: values with static shapes, ops in program order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

Dim = Union[int, str]
Shape = tuple[Dim, ...]


@dataclass(frozen=True, slots=True)
class Const:
    """A scalar numeric literal used as an op argument."""

    value: float | int


@dataclass(frozen=True, slots=True)
class DimSize:
    """The runtime size of a symbolic dim (rendered as the local bound to it)."""

    name: str


Arg = Union[str, Const, DimSize]  # a str names a Value


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an op comes from: its spec step, and for backward ops the derivative rule applied."""

    step: str  # the spec step text, e.g. "Z1 = X @ W1 + b1"
    line: int  # line of the step in the spec
    rule: str = ""  # e.g. "right product: dB = A.T @ dG"


@dataclass(frozen=True, slots=True)
class Edge:
    """One application of a derivative rule by the planner: the cotangent of ``out`` (a forward
    op's value) contributes to the cotangent of ``x``, its operand ``index``, as ``origin.rule``
    says.  The paths from an output to an input along edges are the terms of its gradient."""

    out: str
    x: str
    index: int
    origin: Origin


@dataclass(slots=True)
class Value:
    """An SSA value: its unique id, static shape, the name it prefers in generated code, and kind."""

    id: str
    shape: Shape
    hint: str
    kind: str  # "input" | "step" | "temp" | "grad" | "seed"
    dtype: str = ""  # "" for the spec's float dtype; "int64" or "bool" for such inputs


@dataclass(slots=True)
class Op:
    """One primitive op: ``out = op(*args, **attrs)``."""

    op: str
    args: tuple[Arg, ...]
    attrs: tuple[tuple[str, object], ...]
    out: str
    phase: str  # "forward" | "backward"
    group: int  # ops of one group render as one statement block (one step or one rule application)
    origin: Origin

    def attr(self, key: str, default: object = None) -> object:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def key(self) -> tuple:
        """Identity for common-subexpression elimination."""
        return (self.op, self.args, self.attrs)


@dataclass(slots=True)
class Program:
    """A straight-line program over values; forward ops first, then backward ops."""

    values: dict[str, Value] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[Arg] = field(default_factory=list)
    grads: list[tuple[str, Arg]] = field(default_factory=list)  # (wrt input name, gradient)
    grad_origins: dict[str, Origin] = field(default_factory=dict)  # the rule that made each gradient
    edges: list[Edge] = field(default_factory=list)  # the rule applications, in planner order

    def shape_of(self, arg: Arg) -> Shape:
        if isinstance(arg, str):
            return self.values[arg].shape
        return ()

    def producers(self) -> dict[str, Op]:
        return {op.out: op for op in self.ops}

    def read_counts(self, kept: int = 0) -> dict[str, int]:
        """How many ops read each value; each gradient and output counts as ``kept`` more."""
        counts: dict[str, int] = {}
        for a in [a for op in self.ops for a in op.args]:
            if isinstance(a, str):
                counts[a] = counts.get(a, 0) + 1
        for a in [g for _, g in self.grads] + list(self.outputs) if kept else []:
            if isinstance(a, str):
                counts[a] = counts.get(a, 0) + kept
        return counts


def _arg_text(a: Arg) -> str:
    if isinstance(a, Const):
        return repr(a.value)
    if isinstance(a, DimSize):
        return f"dim({a.name})"
    return a


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def dump(program: Program) -> str:
    """A readable, deterministic text form of the program (for golden tests and debugging).

    One line per op, ``out = op(args, attrs)  : shape 'hint'``, under a header line whenever the
    statement group changes (its phase, spec step and rule); then the outputs and gradients.
    """
    lines = [f"inputs: {', '.join(f'{i} {_shape_text(program.values[i].shape)}' for i in program.inputs)}"]
    group = None
    for op in program.ops:
        if (op.phase, op.group) != group:
            group = (op.phase, op.group)
            o = op.origin
            where = f"{o.step} (line {o.line})" if o.step else "(generated)"
            rule = f"  |  {o.rule}" if o.rule else ""
            lines.append(f"{op.phase} {op.group}: {where}{rule}")
        args = [_arg_text(a) for a in op.args] + [f"{k}={v!r}" for k, v in op.attrs]
        value = program.values[op.out]
        lines.append(f"  {op.out} = {op.op}({', '.join(args)})  : {_shape_text(value.shape)} "
                     f"{value.kind} '{value.hint}'")
    lines.append(f"outputs: {', '.join(_arg_text(o) for o in program.outputs)}")
    for w, g in program.grads:
        lines.append(f"grad {w} = {_arg_text(g)}")
    for e in program.edges:
        lines.append(f"edge {e.out} -> {e.x} (operand {e.index}): {e.origin.rule}")
    return "\n".join(lines) + "\n"
