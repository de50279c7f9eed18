"""The plan: what the passes decided, as data that the emitters only print.

``compiler.py`` runs the stages in order (parse, differentiate, optimise, lower, fuse, plan
memory); each stage's result is kept here: the bodies of the generated functions with their ops
(``Body``), the fusion pass's loop groups (``Group``), the compiled functions a long kernel is
split into (``Body.parts``), and the statements an emitter rendered (``Stmt``, with the tree of
each expression, ``Node``, that the memory plan rewrites).  Nothing here renders anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .ir import Op, Program, Shape
from .ops import names

if TYPE_CHECKING:
    from .parse import Function

# Ops that reduce a loop's elements into a smaller array (they close a fused loop group).
REDUCTIONS = names(fusion="reduction")


@dataclass
class Group:
    """Ops rendered as one loop nest over ``shape`` (decided by ``fusion.py``)."""

    shape: Shape
    ops: list[Op] = field(default_factory=list)
    materialise: set[str] = field(default_factory=set)  # values written to arrays
    reduced: set[str] = field(default_factory=set)  # outputs of its reductions
    # A sum whose only use is to be added to an earlier sum's total adds into that total's
    # array instead (``into``: its output -> the total), and the addition becomes a second
    # name for the total (``aliases``: the addition's output -> the total).
    into: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def reductions(self) -> list[Op]:
        return [op for op in self.ops if op.op in REDUCTIONS]



@dataclass
class Body:
    """The ops of one generated function body, in order, and what the passes decided for it.

    ``keep``: values that must be named (read by another body or returned); ``live_out``: the
    values read after the body (``keep``, the program's outputs and gradients); ``numbers``:
    values computed from constants and dim sizes alone (Python numbers in generated code).
    For loop backends, ``items`` is the fusion pass's partition of ``ops`` into loop groups and
    plain ops, and ``parts`` splits ``items`` into runs compiled as functions of their own
    (a long kernel's compile time grows faster than its length); one part: not split.
    """

    program: Program
    ops: list[Op]
    keep: set[str]
    kernel: str = ""  # which generated function: "forward", "backward" or "value_and_grad"
    live_out: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    items: list[Op | Group] = field(default_factory=list)
    parts: list[list[Op | Group]] = field(default_factory=list)


@dataclass
class FunctionPlan:
    """One spec function, ready to print: its programs (lowered for loop backends) and bodies.

    ``value_and_grad`` is one body (forward and backward fused as one run) or two (its forward,
    as ``forward``'s, then its backward).
    """

    function: Function
    vg: Program
    bw: Program
    seed: str  # the id of the backward's cotangent argument
    bw_saved: list[str]  # forward values the backward reads, in forward order
    vg_saved: list[str]
    forward: Body
    backward: Body
    value_and_grad: list[Body]


def grad_values(program: Program) -> set[str]:
    """The values a function returns as gradients (they always get a name)."""
    return {g for _, g in program.grads if isinstance(g, str)}


@dataclass(slots=True)
class Node:
    """A rendered expression: a leaf (a local, a number, a dim) or an inlined op over nodes."""

    expr: str  # without outer parentheses
    prec: int
    op: Op | None = None  # None: a leaf
    args: list[Node] = field(default_factory=list)
    name: str = ""  # a leaf's local name, when it is a value of the program
    shape: tuple | None = None  # static shape of an array; None for numbers and dims
    render: Callable[[list[tuple[str, int]]], tuple[str, int]] | None = None  # op on operands

    def leaves(self) -> list[str]:
        """The locals this expression reads, in reading order, with repeats."""
        if self.op is None:
            return [self.name] if self.name else []
        return [n for a in self.args for n in a.leaves()]

    def nodes(self) -> list[Node]:
        """Its op nodes, operands first (the order they are evaluated in)."""
        return [n for a in self.args for n in a.nodes()] + ([self] if self.op is not None else [])


@dataclass(slots=True)
class Stmt:
    """One generated line (after black, maybe several) and the comment above it."""

    code: str
    comment: str = ""
    target: str = ""  # the local it binds, for the memory plan
    node: Node | None = None  # what it computes (the inlined expression tree)
    parallel: bool = False  # a loop nest over numba.prange (its kernel runs in parallel)
    frees: bool = False  # only frees memory (pointless as a function's last statement)
