"""Appending ops to a Program: shapes come from the rule table, so every op is shape-checked."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from .ir import Arg, Const, DimSize, Op, Origin, Program, Shape, Value
from .ops import OPS, names


class Builder:
    """Appends ops to a program under the current origin (spec step and rule) and statement group."""

    def __init__(self, program: Program, phase: str) -> None:
        self.program = program
        self.phase = phase
        self.origin = Origin("", 0)
        self.group = 0
        self.hint = "t"
        self._ids = 0
        self._temps = 0
        self._next_group = max((op.group for op in program.ops), default=0) + 1
        self.cotangent_hint = "g"  # name hint for the dense cotangent of the op being differentiated
        self.explained = ""  # a VJP may describe the case it applied (see ``explain``)

    @contextmanager
    def at(self, origin: Origin, hint: str, group: int | None = None) -> Iterator[None]:
        """Emit the ops of the block under a statement group (a new one unless given)."""
        saved = (self.origin, self.group, self.hint)
        self.origin, self.hint, self._temps = origin, hint, 0
        self.group = group if group is not None else self.next_group()
        try:
            yield
        finally:
            self.origin, self.group, self.hint = saved

    def next_group(self) -> int:
        """A statement group id not used before in this program."""
        self._next_group += 1
        return self._next_group - 1

    def explain(self, rule: str) -> None:
        """Called by a VJP to name the case of its rule that applies (e.g. an inner product)."""
        self.explained = rule

    def annotate(self, origin: Origin) -> None:
        """Replace the origin of every op emitted so far in the current group."""
        for op in reversed(self.program.ops):
            if op.group != self.group:
                break
            op.origin = origin

    def new_value(self, shape: Shape, hint: str, kind: str) -> str:
        """Register a fresh value and return its id."""
        self._ids += 1
        vid = f"%{self.phase[0]}{self._ids}"
        while vid in self.program.values:
            self._ids += 1
            vid = f"%{self.phase[0]}{self._ids}"
        self.program.values[vid] = Value(vid, shape, hint, kind)
        return vid

    def shape(self, arg: Arg) -> Shape:
        return self.program.shape_of(arg)

    def emit(self, op: str, *args: Arg, **attrs: object) -> Arg:
        """Append ``op(*args, **attrs)`` and return its value id (shape from the rule table)."""
        opdef = OPS[op]
        shape = opdef.shape([self.shape(a) for a in args], attrs)
        hint = self.hint
        if self.phase == "forward":  # temporaries of step Z are Z_1, Z_2, ... in creation order
            self._temps += 1
            hint = f"{self.hint}_{self._temps}"
        out = self.new_value(shape, hint, "temp")
        self.program.ops.append(
            Op(op, tuple(args), tuple(attrs.items()), out, self.phase, self.group, self.origin)
        )
        return out

    def dense(self, arg: Arg, shape: Shape) -> Arg:
        """The cotangent ``arg`` broadcast (as a view) to exactly ``shape``."""
        if self.shape(arg) == tuple(shape):
            return arg
        hint, self.hint = self.hint, self.cotangent_hint
        try:
            return self.emit("broadcast_to", arg, shape=tuple(shape))
        finally:
            self.hint = hint

    def size(self, dim: object) -> Arg:
        """A dim's size as an argument: a literal for ints, the bound local for symbolic dims."""
        return Const(dim) if isinstance(dim, int) else DimSize(str(dim))


# Fresh arrays made to be distinct stay distinct; free views recompute and read better inline.
NO_CSE = names(distinct=True) | names(inline=True)


def reuse_equal_ops(program: Program, reusable: Callable[[Op], bool]) -> dict[str, Arg]:
    """Drop each op equal to an earlier one (same op, operands and attributes) for which
    ``reusable`` holds: its readers read the earlier value.  Returns dropped value -> kept one."""
    seen: dict[tuple, str] = {}
    subst: dict[str, Arg] = {}
    keep: list[Op] = []
    for op in program.ops:
        if not subst.keys().isdisjoint(op.args):
            op.args = tuple(subst.get(x, x) if isinstance(x, str) else x for x in op.args)
        key = op.key()
        if key in seen and op.op not in NO_CSE and reusable(op):
            subst[op.out] = seen[key]
            continue
        seen.setdefault(key, op.out)
        keep.append(op)
    program.ops = keep
    return subst
