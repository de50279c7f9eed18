"""Passes over the joint program.  Forward ops are never changed: the forward code mirrors the spec.

- ``simplify``: trivial folding (``x*1``, ``x+0``, ``--x``, constant arithmetic, the seed ``g = 1``);
- ``cse``: backward ops equal to an earlier op (forward or backward) reuse its value;
- ``factor_sums``: a backward sum of ``-x``, ``x * b`` or ``x / b`` (b constant along the summed
  axes) negates, multiplies or divides the reduced array instead of the whole one;
- ``transpose_products``: a backward product read only transposed, ``(A @ B)^T``, is computed as
  ``B^T @ A^T`` (a contiguous array where the transpose was a strided view);
- ``dce``: backward ops no gradient needs are removed;
- ``fresh_grads``: no returned gradient aliases an input, a forward value or another gradient;
- ``save_set``: the forward values and dims that the backward ops read.
"""

from __future__ import annotations

import math

from .build import Builder, reuse_equal_ops
from .ir import Arg, Const, DimSize, Op, Origin, Program
from .names import temp_hint
from .ops import OPS, names
from .planner import SEED


def optimize(program: Program) -> Program:
    """Run the passes in order; the result computes the same gradients with fewer ops."""
    simplify(program)
    cse(program)
    simplify(program)
    factor_sums(program)
    transpose_products(program)
    simplify(program)
    dce(program)
    fresh_grads(program)
    return program


def _rewrite(program: Program, subst: dict[str, Arg], keep: list[Op]) -> None:
    def s(a: Arg) -> Arg:
        while isinstance(a, str) and a in subst:
            a = subst[a]
        return a

    program.ops = keep
    for op in keep:
        if not subst.keys().isdisjoint(op.args):
            op.args = tuple(s(a) for a in op.args)
    program.grads = [(w, s(g)) for w, g in program.grads]
    program.outputs = [s(o) for o in program.outputs]


def _is(a: Arg, value: float) -> bool:
    return isinstance(a, Const) and a.value == value


def _const(value: float) -> Const | None:
    """A folded constant, or None when folding would produce a non-finite number."""
    return Const(value) if math.isfinite(value) else None


def _fold(op: Op, producers: dict[str, Op]) -> Arg | Op | None:
    """A replacement for a backward op (an argument, or a cheaper op), or None to keep it."""
    a = op.args
    both = len(a) > 1 and isinstance(a[0], Const) and isinstance(a[1], Const)
    if both and op.op in ("add", "sub", "mul"):
        x, y = a[0].value, a[1].value  # type: ignore[union-attr]
        return _const(x + y if op.op == "add" else x - y if op.op == "sub" else x * y)
    if op.op == "mul":
        if _is(a[0], 1):
            return a[1]
        if _is(a[1], 1):
            return a[0]
        if _is(a[0], -1) or _is(a[1], -1):
            other = a[1] if _is(a[0], -1) else a[0]
            return Op("neg", (other,), (), op.out, op.phase, op.group, op.origin)
    elif op.op == "div":
        if _is(a[1], 1):
            return a[0]
        if both and a[1].value != 0:  # type: ignore[union-attr]
            return _const(a[0].value / a[1].value)  # type: ignore[union-attr]
    elif op.op == "add":
        if _is(a[0], 0):
            return a[1]
        if _is(a[1], 0):
            return a[0]
        for k in (1, 0):  # x + (-y) is x - y, bit for bit: one pass and no array for -y
            operand = a[k]
            inner = producers.get(operand) if isinstance(operand, str) else None
            if inner is not None and inner.op == "neg" and inner.phase == "backward":
                return Op("sub", (a[1 - k], inner.args[0]), (), op.out, op.phase, op.group,
                          op.origin)
    elif op.op == "sub":
        if _is(a[1], 0):
            return a[0]
        if _is(a[0], 0):
            return Op("neg", (a[1],), (), op.out, op.phase, op.group, op.origin)
    elif op.op == "neg":
        if isinstance(a[0], Const):
            return Const(-a[0].value)
        inner = producers.get(a[0]) if isinstance(a[0], str) else None
        if inner is not None and inner.op == "neg":
            return inner.args[0]
        if inner is not None and inner.op == "mul" and inner.phase == "backward":
            x, y = inner.args  # -(c * y) is (-c) * y: one pass over memory, not two
            if isinstance(x, Const):
                return Op("mul", (Const(-x.value), y), (), op.out, op.phase, op.group, op.origin)
            if isinstance(y, Const):
                return Op("mul", (x, Const(-y.value)), (), op.out, op.phase, op.group, op.origin)
    elif op.op == "pow" and op.attr("exponent") == 1:
        return a[0]
    elif op.op == "identity":
        return a[0]
    elif op.op == "transpose":
        inner = producers.get(a[0]) if isinstance(a[0], str) else None
        if inner is not None and inner.op == "transpose":
            return inner.args[0]
    return None


def simplify(program: Program) -> None:
    """Fold trivial backward ops away; shapes are unchanged because folded constants are scalars."""
    subst: dict[str, Arg] = {}
    keep: list[Op] = []
    producers: dict[str, Op] = {}
    numbers: set[str] = set()

    def s(x: Arg) -> Arg:
        while isinstance(x, str) and x in subst:
            x = subst[x]
        return x

    for op in program.ops:
        if not subst.keys().isdisjoint(op.args):
            op.args = tuple(s(x) for x in op.args)
        if op.phase == "backward":
            folded = _fold(op, producers)
            if isinstance(folded, Op):
                op = folded
            elif folded is not None:
                subst[op.out] = folded
                continue
            if op.op == "where" and all(not isinstance(x, str) or x in numbers
                                        for x in op.args[1:]):
                # both branches folded to numbers (where's VJP of -(y)'s cotangent -1, or of
                # -K * N, a broadcast's summed cotangent): NumPy's np.where(c, -1, 0) would be
                # an integer array; a full array of the dtype instead
                k = 2 if _is(op.args[1], 0) else 1  # (the branch that is not the zero)
                full = _full_of(program, op, op.args[k])
                producers[full.out] = full
                keep.append(full)
                op.args = tuple(full.out if i == k else x for i, x in enumerate(op.args))
        if op.op not in ("zeros", "eye", "full") and all(
                not isinstance(x, str) or x in numbers for x in op.args):
            numbers.add(op.out)  # computed from constants and dims alone (as constant_only)
        producers[op.out] = op
        keep.append(op)
    _rewrite(program, subst, keep)


def _full_of(program: Program, op: Op, value: Arg) -> Op:
    """``full(value, shape of op.out)``, a new backward op of ``op``'s statement."""
    shape = program.shape_of(op.out)
    out = Builder(program, "backward").new_value(shape, program.values[op.out].hint, "temp")
    return Op("full", (value,), (("shape", shape),), out, "backward", op.group, op.origin)


# Ops whose result shares memory with their operand.
VIEW_OPS = names(result="view")


def cse(program: Program) -> None:
    """Reuse the value of an identical earlier backward op instead of recomputing it."""
    _rewrite(program, reuse_equal_ops(program, lambda op: op.phase == "backward"), program.ops)


def _summed_axes(op: Op, rank: int) -> tuple[int, ...]:
    axis = op.attr("axis")
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(int(a) % rank for a in axes)  # type: ignore[call-overload]


def factor_sums(program: Program) -> None:
    """Move a factor out of a backward sum: ``sum(-x)`` is ``-sum(x)`` and, with ``b`` constant
    along the summed axes (a scalar, or size 1 there), ``sum(x * b)`` is ``sum(x) * b`` and
    ``sum(x / b)`` is ``sum(x) / b``.  The factor then costs a pass over the reduced array, not
    over the whole one, and the whole one needs no temporary (the division rule's ``db`` summed
    over a broadcast row, a subtraction's ``-dz`` summed over a broadcast axis).  Only where the
    product, quotient or negation is read by that sum alone; a negation moves out exactly, a
    product or quotient up to rounding."""
    uses = program.read_counts(kept=2)  # a gradient or an output is kept
    producers = program.producers()
    dropped: set[str] = set()
    builder = Builder(program, "backward")

    def factored(x: Arg, total: Op, out: str) -> list[Op] | None:
        """Ops computing ``sum(x)`` (``total``'s axes) into ``out`` with the factor outside."""
        if not isinstance(x, str):
            return None
        inner = producers.get(x)
        if inner is None or inner.phase != "backward" or uses.get(x) != 1 \
                or inner.op not in ("neg", "mul", "div"):
            return None
        full = program.values[x].shape
        axes = _summed_axes(total, len(full))
        y: Arg | None = None
        b: Arg | None = None
        k = 0
        if inner.op == "neg":
            y = inner.args[0]
        else:
            for k in ((0, 1) if inner.op == "mul" else (0,)):
                shape = program.shape_of(inner.args[1 - k])
                padded = (1,) * (len(full) - len(shape)) + tuple(shape)
                if program.shape_of(inner.args[k]) == full and all(padded[a] == 1 for a in axes):
                    y, b = inner.args[k], inner.args[1 - k]
                    break
            if y is None:
                return None
        assert y is not None
        attrs = total.attrs
        reduced = OPS["sum"].shape([full], dict(attrs))
        if b is not None:
            try:
                same = OPS[inner.op].shape([reduced, program.shape_of(b)], {}) == \
                    program.values[out].shape
            except Exception:  # (shapes that do not broadcast: left as they are)
                same = False
            if not same:
                return None
        plain = Op("sum", (y,), attrs, "", total.phase, total.group, total.origin)
        s = plain.out = builder.new_value(reduced, temp_hint(plain, program.values, {}), "temp")
        ops = factored(y, plain, s) or [plain]
        dropped.add(inner.out)
        args = (s,) if b is None else (s, b) if k == 0 else (b, s)
        return ops + [Op(inner.op, args, (), out, total.phase, total.group, total.origin)]

    keep: list[Op] = []
    for op in program.ops:
        if op.op == "sum" and op.phase == "backward":
            ops = factored(op.args[0], op, op.out)
            if ops is not None:
                keep.extend(ops)
                continue
        keep.append(op)
    program.ops = [op for op in keep if op.out not in dropped]


def _swaps_last_two(op: Op, program: Program) -> bool:
    """Whether ``op`` is a transpose of the last two axes (``.T`` of a matrix, or a permute)."""
    rank = len(program.values[op.out].shape)
    if op.op == "transpose":
        return rank == 2
    if op.op != "permute" or rank < 2:
        return False
    return op.attr("axes") == tuple(range(rank - 2)) + (rank - 1, rank - 2)


def transpose_products(program: Program) -> None:
    """``(A @ B)^T`` as ``B^T @ A^T`` where a backward product is read only by a transpose of its
    last two axes (the cotangent of ``swapaxes(K, 1, 2)`` in attention, ``dK = (Q^T @ dS)^T``):
    the result is a contiguous array, not a strided view that a reshape or a product must copy.
    An operand that is itself such a transpose is read untransposed."""
    uses = program.read_counts(kept=2)  # a gradient or an output is kept
    producers = program.producers()
    dropped: set[str] = set()
    keep: list[Op] = []
    b = Builder(program, "backward")
    for op in program.ops:
        inner = producers.get(op.args[0]) if op.args and isinstance(op.args[0], str) else None
        if (op.phase == "backward" and _swaps_last_two(op, program) and inner is not None
                and inner.op == "matmul" and inner.phase == "backward"
                and uses.get(inner.out) == 1
                and all(len(program.shape_of(a)) >= 2 for a in inner.args)):
            args = []
            for x in inner.args[::-1]:
                made = producers.get(x) if isinstance(x, str) else None
                if made is not None and _swaps_last_two(made, program):
                    args.append(made.args[0])  # (X^T)^T is X
                    continue
                rank = len(program.shape_of(x))
                t = Op("transpose", (x,), (), "", op.phase, op.group, op.origin) if rank == 2 \
                    else Op("permute", (x,), (("axes", tuple(range(rank - 2)) + (rank - 1, rank - 2)),),
                            "", op.phase, op.group, op.origin)
                shape = OPS[t.op].shape([program.shape_of(x)], dict(t.attrs))
                t.out = b.new_value(shape, temp_hint(t, program.values, {}), "temp")
                keep.append(t)
                args.append(t.out)
            keep.append(Op("matmul", tuple(args), (), op.out, op.phase, op.group, op.origin))
            dropped.add(inner.out)
            continue
        keep.append(op)
    program.ops = [op for op in keep if op.out not in dropped]


def dce(program: Program) -> None:
    """Drop backward ops whose values no gradient reads."""
    live = {g for _, g in program.grads if isinstance(g, str)}
    keep: list[Op] = []
    for op in reversed(program.ops):
        if op.phase == "forward" or op.out in live:
            keep.append(op)
            live.update(a for a in op.args if isinstance(a, str))
    program.ops = keep[::-1]


def fresh_grads(program: Program) -> None:
    """Each gradient is a fresh array: folded constants are materialised, aliases are copied.

    The seed counts as another array: a gradient that is ``g`` itself (an input that is the first
    output, or ``Y = X + b``'s dX) would be the caller's cotangent, or a read-only broadcast of a
    scalar ``g``.
    """
    forward = set(program.inputs) | {op.out for op in program.ops if op.phase == "forward"}
    forward.add(SEED)
    views = {op.out for op in program.ops if op.op in VIEW_OPS}
    scalars = constant_only(program)
    seen: set[str] = set()
    b = Builder(program, "backward")
    grads = []
    for w, g in program.grads:
        o = program.grad_origins.get(w, Origin("", 0, ""))
        if not isinstance(g, str) or g in scalars:  # a number, not an array of the dtype
            shape = program.values[w].shape
            with b.at(Origin(o.step, o.line, f"{o.rule}; d{w} is a constant: materialise it"), "d" + w):
                g = b.emit("full", g, shape=shape)
        elif g in forward or g in seen or g in views:
            what = "a view of another array" if g in views else "another array"
            with b.at(Origin(o.step, o.line, f"{o.rule}; copied, d{w} would be {what}"), "d" + w):
                g = b.emit("copy", g)
        if isinstance(g, str):
            seen.add(g)
        grads.append((w, g))
    program.grads = grads


def constant_only(program: Program) -> set[str]:
    """Values computed from constants and dim sizes alone: Python numbers in generated code."""
    out: set[str] = set()
    for op in program.ops:
        if op.op in ("zeros", "eye", "full"):
            continue
        for a in op.args:
            if isinstance(a, str) and a not in out:
                break  # reads an array
        else:
            out.add(op.out)
    return out


def backward_reads(program: Program) -> tuple[list[str], list[str]]:
    """Forward values (in program order) and symbolic dims that the backward ops read."""
    forward_order = list(program.inputs) + [op.out for op in program.ops if op.phase == "forward"]
    read: set[str] = set()
    dims: list[str] = []

    def add_dim(d: object) -> None:
        if isinstance(d, str) and d not in dims:
            dims.append(d)

    for op in program.ops:
        if op.phase != "backward":
            continue
        for a in op.args:
            if isinstance(a, str):
                read.add(a)
            elif isinstance(a, DimSize):
                add_dim(a.name)
        shape = op.attr("shape")
        if isinstance(shape, tuple):
            for d in shape:
                add_dim(d)
    for _, g in program.grads:
        if isinstance(g, str):
            read.add(g)
    return [v for v in forward_order if v in read], dims
