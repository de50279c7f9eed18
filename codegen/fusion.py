"""Fusion pass: partitions a straight-line run of ops into loop groups for the Numba backend.

A group is a maximal contiguous run of elementwise ops over one loop shape, closed by the
reductions that consume them (sums that un-broadcast, the loss's total, ...).  Inside a group
every value is a scalar of the loop body; a value is *materialised* (written to an array) only
when something outside the group reads it.  A reduction's result is complete only after the
loop, so an op that reads one starts a new group.  The emitter renders each group as one loop
nest and every other op as a plain statement; it decides nothing.
"""

from __future__ import annotations

from .ir import Op, Program, Shape
from .ops import OPS
from .plan import REDUCTIONS, Group

__all__ = ["REDUCTIONS", "Group", "fuse", "is_elementwise"]


def is_elementwise(op: Op) -> bool:
    """Whether ``op`` computes each output element from the same element of its operands (a
    materialising broadcast counts: it copies)."""
    return OPS[op.op].fusion == "elementwise"


def fuse(ops: list[Op], program: Program, live_out: set[str],
         max_ops: int | None = None) -> list[Op | Group]:
    """Partition ``ops`` (in order) into groups and plain ops; ``live_out``: read after ``ops``;
    ``max_ops``: at most that many ops per group (a longer run becomes several loops, the
    values crossing between them written to arrays)."""
    items: list[Op | Group] = []
    current: Group | None = None
    produced_in: dict[str, Group] = {}
    uses: dict[str, int] = {}
    for op in ops:
        for a in op.args:
            if isinstance(a, str):
                uses[a] = uses.get(a, 0) + 1
    sums: dict[str, str] = {}  # output of a sum -> the total whose array holds it

    def close() -> None:
        nonlocal current
        if current is not None:
            items.append(current)
            current = None

    for op in ops:
        if current is not None:
            pair = _accumulation(op, current, sums, uses, live_out, program)
            if pair is not None:
                part, total = pair
                current.into[part] = total
                current.aliases[op.out] = total
                current.reduced.add(op.out)  # complete only after the loop, like the sum
                produced_in[op.out] = current
                sums[op.out] = total
                continue
        shape = _loop_shape(op, program)
        if shape is None:
            close()
            items.append(op)
            continue
        reads_pending = any(
            isinstance(a, str) and produced_in.get(a) is current and current is not None
            and _is_reduction_out(a, current) for a in op.args)
        full = current is not None and max_ops is not None and len(current.ops) >= max_ops
        if current is None or current.shape != shape or reads_pending or full:
            close()
            current = Group(shape)
        current.ops.append(op)
        if op.op in REDUCTIONS:
            current.reduced.add(op.out)
        if op.op == "sum":
            sums[op.out] = op.out
        produced_in[op.out] = current
    close()
    _mark_materialised(items, live_out)
    return items


def _accumulation(op: Op, group: Group, sums: dict[str, str], uses: dict[str, int],
                  live_out: set[str], program: Program) -> tuple[str, str] | None:
    """(part, total) when ``op`` adds a sum of ``group`` to another sum that nothing else
    reads (fan-out accumulation of an un-broadcast gradient), else None.

    The total must come first in the loop: the part's line adds into the total's array (or
    running sums), which the total's own line creates. Of two sums of one loop, the later one
    is the part (a column broadcast twice in one chain adds a later sum to an earlier one in
    either order)."""
    if op.op != "add" or len(op.args) != 2 or not all(isinstance(a, str) for a in op.args):
        return None
    a, b = op.args
    shape = program.values[op.out].shape
    at = {o.out: k for k, o in enumerate(group.ops)}
    for part, other in ((b, a), (a, b)):
        if (part in group.reduced and part in sums and sums[part] == part and other in sums
                and other != part and part not in group.into
                and program.values[part].shape == shape == program.values[other].shape
                and uses.get(part) == 1 and uses.get(other) == 1
                and part not in live_out and other not in live_out
                and at.get(sums[other], -1) < at[part]):
            return part, sums[other]
    return None


def _loop_shape(op: Op, program: Program) -> Shape | None:
    """The iteration space of a fusable op, or None when the op is not fusable."""
    if is_elementwise(op):
        return program.values[op.out].shape
    if op.op in REDUCTIONS and isinstance(op.args[0], str):
        return program.values[op.args[0]].shape
    return None


def _is_reduction_out(value: str, group: Group) -> bool:
    return value in group.reduced


def _mark_materialised(items: list[Op | Group], live_out: set[str]) -> None:
    """A group's value becomes an array when read outside its group (or after the run)."""
    owner: dict[str, Group] = {}
    for item in items:
        if isinstance(item, Group):
            for op in item.ops:
                owner[op.out] = item
            item.materialise = {op.out for op in item.reductions} | {
                op.out for op in item.ops if op.out in live_out}
    for item in items:
        ops = [item] if isinstance(item, Op) else item.ops
        for op in ops:
            for a in op.args:
                if not isinstance(a, str):
                    continue
                group = owner.get(a)
                if group is not None and group is not item:
                    group.materialise.add(a)
