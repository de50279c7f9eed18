"""Static shape algebra: broadcasting, matrix products and reductions over ranks 0-2 with symbolic dims."""

from __future__ import annotations

from .ir import Dim, Shape

MAX_RANK = 2  # the highest rank of an input or a value (the loader refuses more)


class ShapeError(Exception):
    """A shape rule failed; the message names the dims and the op (the caller adds the step)."""


def fmt(shape: Shape) -> str:
    """Render a shape the way specs write it: ``[N, 3]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast(a: Shape, b: Shape, what: str) -> Shape:
    """NumPy broadcasting of two shapes; only a literal 1 stretches, symbolic dims must match by name."""
    n = max(len(a), len(b))
    pa = (None,) * (n - len(a)) + tuple(a)
    pb = (None,) * (n - len(b)) + tuple(b)
    out: list[Dim] = []
    for da, db in zip(pa, pb):
        if da is None:
            out.append(db)  # type: ignore[arg-type]
        elif db is None or da == db:
            out.append(da)
        elif da == 1:
            out.append(db)
        elif db == 1:
            out.append(da)
        else:
            raise ShapeError(
                f"{what}: shapes {fmt(a)} and {fmt(b)} do not broadcast (dim {da} vs dim {db})"
            )
    return tuple(out)


def matmul(a: Shape, b: Shape) -> Shape:
    """Shape of ``a @ b`` for matrix/vector operands in any pairing."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeError("matrix product '@' needs vector or matrix operands, got a scalar; use '*'")
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError(
            f"matrix product '@': inner dims differ: {inner_a} (from {fmt(a)}) vs {inner_b} (from {fmt(b)})"
        )
    return tuple(a[:-1]) + (tuple(b[1:]) if len(b) == 2 else ())


def transpose(a: Shape) -> Shape:
    """Shape of ``a.T`` (reversed axes)."""
    return tuple(reversed(a))


def normalize_axis(axis: int | None, rank: int, what: str) -> int | None:
    """Turn a possibly negative axis into 0..rank-1; None stays None."""
    if axis is None:
        return None
    if not -rank <= axis < rank:
        raise ShapeError(f"{what}: axis {axis} is out of range for an operand of rank {rank}")
    return axis % rank


def reduce(a: Shape, axis: int | tuple[int, ...] | None, keepdims: bool) -> Shape:
    """Shape of a reduction over ``axis`` (None: every axis; a tuple: several)."""
    axes = range(len(a)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(a))
    return tuple(d for i, d in enumerate(a) if i not in axes)


def broadcastable_to(a: Shape, target: Shape) -> bool:
    """Whether ``a`` broadcasts to exactly ``target``."""
    if len(a) > len(target):
        return False
    return all(da == 1 or da == dt for da, dt in zip(reversed(a), reversed(target)))
