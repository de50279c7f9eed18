"""Static shape algebra: broadcasting, matrix products, reductions and axes ops over ranks 0-4 with
symbolic dims (a reshape or concatenate may make a composite dim such as ``H*N`` or ``D+E``)."""

from __future__ import annotations

from .ir import Dim, Shape

MAX_RANK = 4  # the highest rank of an input or a value (the loader refuses more)


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
    if len(a) > 2 or len(b) > 2:
        return batched_matmul(a, b)
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


# --- ranks 3 and 4: batched products, axes ops, composite dims ------------------------------------

MAX_RANK = 4


def _check_rank(shape: Shape, what: str) -> Shape:
    if len(shape) > MAX_RANK:
        raise ShapeError(f"{what} would have rank {len(shape)}; ranks 0 to {MAX_RANK} are supported")
    return shape


def batched_matmul(a: Shape, b: Shape) -> Shape:
    """NumPy's matmul for operands of rank >= 2 with at least one of rank 3 or 4: the last two
    axes are matrices, the leading (batch) axes broadcast."""
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(
            f"matrix product '@' of a vector and a batch of matrices ({fmt(a)} @ {fmt(b)}) is not "
            "supported; make the vector a [1, k] or [k, 1] matrix")
    if a[-1] != b[-2]:
        raise ShapeError(f"matrix product '@': inner dims differ: {a[-1]} (from {fmt(a)}) vs "
                         f"{b[-2]} (from {fmt(b)})")
    batch = broadcast(tuple(a[:-2]), tuple(b[:-2]), "matrix product '@' (batch axes)")
    return _check_rank(batch + (a[-2], b[-1]), "matrix product '@'")


def dim_factors(d: Dim) -> tuple[int, list[str]]:
    """A dim as (integer factor, symbolic factors): ``"H*N"`` -> (1, ["H", "N"])."""
    if isinstance(d, int):
        return d, []
    const, names = 1, []
    for f in str(d).split("*"):
        if f.isdigit():
            const *= int(f)
        else:
            names.append(f)
    return const, names


def product_dim(dims: list[Dim]) -> Dim:
    """The dim of a product of dims, canonical (an int, a name, or ``"H*N"`` sorted)."""
    const, names = 1, []
    for d in dims:
        c, n = dim_factors(d)
        const *= c
        names += n
    if not names:
        return const
    names.sort()
    return "*".join(([str(const)] if const != 1 else []) + names)


def dim_names(d: Dim) -> list[str]:
    """The symbolic dims a (possibly composite) dim is made of."""
    if isinstance(d, int):
        return []
    return [f for f in str(d).replace("+", "*").split("*") if not f.isdigit()]


def dim_value(d: Dim, sizes: dict[str, int]) -> int:
    """A (possibly composite: ``H*N``, ``D+E``) dim's size given the symbolic dims' sizes."""
    if isinstance(d, int):
        return d
    total = 0
    for term in str(d).split("+"):
        value = 1
        for f in term.split("*"):
            value *= int(f) if f.isdigit() else sizes[f]
        total += value
    return total


def reshape(a: Shape, target: Shape) -> Shape:
    """Check that ``a`` and ``target`` have the same number of elements for every size of the
    symbolic dims (the same symbolic factors, the same integer product)."""
    ca, na = dim_factors(product_dim(list(a)))
    ct, nt = dim_factors(product_dim(list(target)))
    if ca != ct or sorted(na) != sorted(nt):
        raise ShapeError(f"reshape: {fmt(a)} cannot become {fmt(target)}: the sizes differ "
                         "(the products of the dims must be equal for every size of the dims)")
    return _check_rank(tuple(target), "reshape")


def permute(a: Shape, axes: tuple[int, ...]) -> Shape:
    if sorted(axes) != list(range(len(a))):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of the {len(a)} axes of "
                         f"an operand of shape {fmt(a)}")
    return tuple(a[i] for i in axes)


def concatenate(shapes_: list[Shape], axis: int) -> Shape:
    first = shapes_[0]
    for s in shapes_[1:]:
        if len(s) != len(first) or any(x != y for i, (x, y) in enumerate(zip(s, first))
                                       if i != axis):
            raise ShapeError(f"concatenate: shapes {', '.join(fmt(t) for t in shapes_)} differ "
                             f"outside axis {axis}")
    sizes = [s[axis] for s in shapes_]
    if all(isinstance(d, int) for d in sizes):
        total: Dim = sum(sizes)  # type: ignore[arg-type]
    else:
        total = "+".join(str(d) if "+" not in str(d) else str(d) for d in sizes)
    return tuple(first[:axis]) + (total,) + tuple(first[axis + 1:])


def stack(shapes_: list[Shape], axis: int) -> Shape:
    first = shapes_[0]
    if any(s != first for s in shapes_):
        raise ShapeError(f"stack: the operands' shapes {', '.join(fmt(t) for t in shapes_)} "
                         "differ")
    return _check_rank(tuple(first[:axis]) + (len(shapes_),) + tuple(first[axis:]), "stack")


def einsum(subscripts: str, shapes_: list[Shape]) -> Shape:
    """Shape of ``einsum(subscripts, *operands)`` with an explicit output; refuses what it does
    not support (repeated indices in one operand, an index only one operand sums over)."""
    ins, _, out = subscripts.partition("->")
    terms = ins.split(",")
    if len(terms) != len(shapes_):
        raise ShapeError(f"einsum: '{subscripts}' names {len(terms)} operands, got {len(shapes_)}")
    size: dict[str, Dim] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes_)):
        if len(term) != len(shape):
            raise ShapeError(f"einsum: operand {k + 1} has rank {len(shape)} ({fmt(shape)}) but "
                             f"its subscripts '{term}' name {len(term)} axes")
        if len(set(term)) != len(term):
            raise ShapeError(f"einsum: subscripts '{term}' repeat an index (diagonals and traces "
                             "are not supported); use diag(...) or trace(...)")
        for c, d in zip(term, shape):
            if size.setdefault(c, d) != d:
                raise ShapeError(f"einsum: index '{c}' is {size[c]} in one operand and {d} in "
                                 "another")
    if len(set(out)) != len(out):
        raise ShapeError(f"einsum: the output subscripts '{out}' repeat an index")
    for c in out:
        if c not in size:
            raise ShapeError(f"einsum: output index '{c}' is in no operand")
    for k, term in enumerate(terms):
        others = "".join(t for j, t in enumerate(terms) if j != k) + out
        lone = [c for c in term if c not in others]
        if lone:
            raise ShapeError(f"einsum: index '{lone[0]}' of operand {k + 1} is in no other operand "
                             "and not in the output; sum it first with sum(..., axis=...)")
    return _check_rank(tuple(size[c] for c in out), "einsum")
