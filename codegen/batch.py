"""A block of tangents at once: f_jacobian's JVP columns and f_hessian's HVP columns.

``batch_program`` rewrites a tangent program (``forward.py``) so that every tangent value carries
a leading axis of size ``k``, one tangent per basis vector, while the primal values keep their
shapes: one pass of the program over a block of ``k`` basis vectors (a matrix) instead of ``k``
passes over one.  Each tangent op is replaced by its batched form from the rule table
(``OpDef.batch``: broadcasting for elementwise ops, shifted axes, a product that broadcasts the
batch axis); ops that read no tangent are kept as they are.  An op without a batched form (or a
batched value beyond the ranks the shape rules support) makes the whole program unbatched: the
caller keeps the loop over basis vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .build import Builder
from .forward import TangentProgram
from .ir import Arg, Program
from .ops import OPS
from .shapes import ShapeError


@dataclass
class Batched:
    """A tangent program over a block of tangents, or the reason it has none."""

    program: TangentProgram | None  # the tangent inputs and results have shape (dim,) + shape
    dim: str  # the block size's dim
    reason: str = ""  # why not (when program is None): the op without a batched form


def batch_program(tp: TangentProgram, dim: str) -> Batched:
    """``tp`` with its tangents batched along a leading axis of size ``dim`` (a fresh dim name)."""
    old = tp.program
    program = Program(values=dict(old.values), ops=[], inputs=list(old.inputs),
                      outputs=list(old.outputs), grads=list(old.grads),
                      grad_origins=dict(old.grad_origins))
    batched: set[str] = set()
    for t in tp.tangents:
        program.values[t] = replace(old.values[t], shape=(dim,) + tuple(old.values[t].shape))
        batched.add(t)
    renamed: dict[str, Arg] = {}
    b = Builder(program, "tangent")
    for op in old.ops:
        args = tuple(renamed.get(a, a) if isinstance(a, str) else a for a in op.args)
        flags = tuple(isinstance(a, str) and a in batched for a in args)
        if not any(flags):  # a primal value (or a tangent op on primal values): as it is
            program.ops.append(replace(op, args=args))
            continue
        rule = OPS[op.op].batch
        if rule is None:
            return Batched(None, dim, f"'{op.op}' has no batched form")
        with b.at(op.origin, old.values[op.out].hint, group=op.group):
            try:
                out = rule(b, replace(op, args=args), flags)
            except ShapeError as e:
                return Batched(None, dim, f"'{op.op}' has no batched form here ({e})")
        assert isinstance(out, str)
        renamed[op.out] = out
        batched.add(out)
    results: list[Arg] = []
    for r in tp.results:
        r = renamed.get(r, r) if isinstance(r, str) else r
        if not (isinstance(r, str) and r in batched):  # zero: the same for every tangent
            shape = (dim,) + tuple(program.shape_of(r))
            with b.at(program.ops[-1].origin, "zero", group=b.next_group()):
                r = b.emit("broadcast_to", r, shape=shape)
        results.append(r)
    return Batched(TangentProgram(program, list(tp.tangents), results, list(tp.rules)), dim)
