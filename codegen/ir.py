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

    def shape_of(self, arg: Arg) -> Shape:
        if isinstance(arg, str):
            return self.values[arg].shape
        return ()

    def producers(self) -> dict[str, Op]:
        return {op.out: op for op in self.ops}
