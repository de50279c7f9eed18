"""Memory plan of the NumPy backend: dead arrays are deleted, and computed into when they can be.

The emitter renders one statement per named value and inlines single-use temporaries, so without
a plan every local stays bound until the function returns and every operator allocates a new
array.  This pass works on the rendered statements of one generated function (their targets and
the trees of their inlined expressions, ``plan.Node``) and changes how they are written, never what
they compute:

- **liveness**: after the statement that last reads an array local, ``del name`` (never an input,
  a returned value or a saved value: those are not bound by the body's statements or are kept);
- **in-place evaluation**: a statement whose expression is a chain of elementwise ufuncs is
  evaluated into one buffer, either an array that dies in this statement (``out=``) or the array
  its innermost fresh operand allocates (``Z = X @ W``, then ``Z += b``, ``np.tanh(Z, out=Z)``).

A buffer is written into only when this function allocated it (a ufunc's or product's result, never
an input, the cotangent ``g``, a saved value, a view or an alias), it has the statement's static
shape (so never a broadcast view: the result is as large as the buffer) and nothing reads it
afterwards.  Every in-place form computes the bits the expression computes: the same ufunc on the
same operands (``a + b`` and ``b + a`` are the same IEEE sum); only where the result is stored
changes.
"""

from __future__ import annotations

from . import expr as E
from .ops import ATOM, OPS, UfuncCall, names
from .plan import Node, Stmt

# Ops whose NumPy rendering always returns a new array that nothing else references.
FRESH = names(result="fresh")
# Ops computed into a buffer by a ufunc call with ``out=`` (the op table's ``ufunc``).
INPLACE = frozenset(name for name, op in OPS.items() if op.ufunc is not None)


def _is_array(shape: tuple | None) -> bool:
    return bool(shape)


def _emit(node: Node, outs: dict[int, str]) -> tuple[str, int]:
    """``node`` rendered again, the ops in ``outs`` (by id) stored into the array named there."""
    if node.op is None or not outs:
        return node.expr, node.prec
    args = [_emit(a, outs) for a in node.args]
    if id(node) in outs:
        return _out_form(node, args, outs[id(node)]), ATOM
    assert node.render is not None
    return node.render(args)


# Ops' ufunc calls: (function, the operands' position among its arguments, the other
# arguments); ``tests/test_memory.py`` checks them against the op table's renderings.
UFUNC_CALLS: dict[str, UfuncCall] = {name: OPS[name].ufunc for name in INPLACE}  # type: ignore[misc]


def _out_form(node: Node, args: list[tuple[str, int]], out: str) -> str:
    """``node``'s op written as a ufunc call on ``args`` that stores into ``out``."""
    assert node.op is not None
    op = node.op.op
    operands = [E.Leaf(*a) for a in args]
    func, at, others = UFUNC_CALLS[op]
    call_args: list[E.ExprLike] = list(others)
    call_args[at:at] = operands
    return E.call(func, *call_args, out=out).render()


def _step(node: Node, k: int, buf: str, outs: dict[int, str]) -> str:
    """One in-place statement: ``node`` computed into ``buf``, which holds its operand ``k``."""
    assert node.op is not None
    op = node.op.op
    args = [(buf, ATOM) if i == k else _emit(a, outs) for i, a in enumerate(node.args)]
    opdef = OPS[op]
    if opdef.augmented and (k == 0 or opdef.commutative):
        return E.assign(buf, E.Leaf(*args[1 - k]), opdef.augmented)
    return _out_form(node, args, buf)


def _paths(node: Node, shape: tuple, dead: set[str]) -> list[tuple[int, list[int]]]:
    """Ways to compute ``node`` in one buffer: (allocations saved, operand index per level).

    A path ends at a dead array (the buffer exists: every op on the path is saved) or at a fresh
    op whose own result becomes the buffer (it allocates once, the ops above it are saved).
    """
    if node.op is None:
        return [(0, [])] if node.name in dead and node.shape == shape else []
    if node.shape != shape or node.op.op not in FRESH:
        return []
    out: list[tuple[int, list[int]]] = [(0, [])]  # this op allocates the buffer
    if node.op.op in INPLACE:
        for k, a in enumerate(node.args):
            out.extend((saved + 1, [k] + rest) for saved, rest in _paths(a, shape, dead))
    return out


def _within(first: Node, everywhere: list[str], names: set[str]) -> bool:
    """Every read of ``names`` in the statement whose reads are ``everywhere`` happens while
    evaluating ``first`` (before it writes)."""
    inside = first.leaves()
    return all(inside.count(n) == everywhere.count(n) for n in names)


def _side_outs(root: Node, on_chain: set[int], free: set[str], reads: list[str]) -> dict[int, str]:
    """Elsewhere in the expression (off ``on_chain``), an elementwise op on a dead array of its
    shape that is still ``free`` writes into it: op id -> array."""
    outs: dict[int, str] = {}
    if not free:
        return outs
    # One out= per subtree: nested ones would save little and make lines that only black can
    # lay out (it took 3 of a 1000-step chain's 4 seconds to generate).
    inside: set[int] = set()
    for nd in reversed(root.nodes()):  # outermost first
        if id(nd) in on_chain or id(nd) in inside or nd.op is None or nd.op.op not in INPLACE:
            continue
        for a in nd.args:
            if (a.op is None and a.name in free and a.shape == nd.shape
                    and _within(nd, reads, {a.name})):
                outs[id(nd)] = a.name
                free = free - {a.name}
                inside.update(id(n) for n in nd.nodes())
                break
    return outs


def _plan(root: Node, target: str, dead: set[str], reads: list[str]) -> list[str] | None:
    """The lines that compute ``target = root`` (which reads ``reads``, ``root.leaves()``) with
    fewer allocations; None: as it is."""
    assert root.shape is not None
    best: tuple[int, list[tuple[Node, int]], Node] | None = None
    for saved, path in _paths(root, root.shape, dead):
        if saved == 0:
            continue
        node, chain = root, []
        for k in path:
            chain.append((node, k))
            node = node.args[k]
        # the first op to write the buffer: a fresh op (into the target) or the op on a dead array
        first = node if node.op is not None else chain[-1][0]
        if not _within(first, reads, {target, node.name} - {""}):
            continue
        if best is None or saved > best[0]:
            best = (saved, chain, node)
    chain = best[1] if best is not None else []
    used = {target} | ({best[2].name} if best is not None else set())
    outs = _side_outs(root, {id(nd) for nd, _ in chain}, dead - used, reads)
    if best is None:
        return [E.assign(target, E.Leaf(*_emit(root, outs)))] if outs else None
    _, chain, bottom = best
    chain = chain[::-1]  # innermost op first
    lines = []
    if bottom.op is not None:  # a fresh op allocates the buffer under the target's name
        lines.append(E.assign(target, E.Leaf(*_emit(bottom, outs))))
        buf = target
    else:
        buf = bottom.name
    for nd, k in chain:
        if buf != target:  # the first op writes into the dead array and binds the target to it
            args = [(buf, ATOM) if i == k else _emit(a, outs) for i, a in enumerate(nd.args)]
            lines.append(E.assign(target, E.Leaf(_out_form(nd, args, buf))))
            buf = target
        else:
            lines.append(_step(nd, k, buf, outs))
    return lines


def plan(parts: list[list[Stmt]], keep: set[str]) -> list[list[Stmt]]:
    """The statements of one function (in parts laid out one after the other), memory planned.

    ``keep``: locals that the function returns; their last binding is never deleted or reused.
    """
    stmts = [s for part in parts for s in part]
    reads = [s.node.leaves() if s.node is not None else [] for s in stmts]
    # Each binding (statement index of a target) ends at its last read before the next binding.
    last_read: dict[int, int] = {}  # binding statement -> last statement reading it
    final: dict[str, int] = {}  # name -> its last binding
    current: dict[str, int] = {}
    for i, s in enumerate(stmts):
        for n in reads[i]:
            if n in current:
                last_read[current[n]] = i
        if s.target:
            current[s.target] = i
            last_read.setdefault(i, i)
            final[s.target] = i
    shapes = {s.target: s.node.shape for s in stmts if s.target and s.node is not None}

    def kept(name: str, binding: int) -> bool:
        return name in keep and final.get(name) == binding

    owned: set[str] = set()  # locals whose current binding is an array only this body references
    current = {}
    out: list[list[Stmt]] = []
    done = 0
    for part in parts:
        new: list[Stmt] = []
        for s in part:
            i = done
            done += 1
            if s.node is None or not s.target:
                new.append(s)
                continue
            root, target = s.node, s.target
            dead = {n for n in set(reads[i]) if n in current and n in owned
                    and _is_array(shapes.get(n)) and last_read[current[n]] == i
                    and not kept(n, current[n])}
            planned = _plan(root, target, dead, reads[i]) if _is_array(root.shape) else None
            if planned is None:
                new.append(s)
            else:
                new.append(Stmt(planned[0], s.comment, target, s.node))
                new.extend(Stmt(line) for line in planned[1:])
            fresh = root.op is not None and root.op.op in FRESH
            if not fresh:  # a view or an alias: neither it nor what it reads is ours to write
                owned.difference_update(reads[i])
            current[target] = i
            if fresh:
                owned.add(target)
            else:
                owned.discard(target)
            gone = [n for n in dict.fromkeys(reads[i] + [target])
                    if final.get(n) == current.get(n) and last_read.get(current.get(n, -1)) == i
                    and _is_array(shapes.get(n)) and n not in keep]
            if gone:
                new.append(Stmt("del " + ", ".join(gone)))
        out.append(new)
    return out
