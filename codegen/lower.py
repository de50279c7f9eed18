"""Lowering for loop backends: the max-shifted normalisations and einsum become primitive ops.

NumPy modules call small helpers (``_logsumexp``, ``_softmax``, ``_log_softmax``); a loop backend
instead computes them from ops it fuses: a max reduction, ``exp(x - m)``, a sum and a log.  The
rewrite keeps each op's output id, so the backward ops that read it are untouched.
"""

from __future__ import annotations

from . import shapes
from .build import Builder
from .ir import Arg, Op, Program
from .names import temp_hint
from .ops import names

LOWERED = names(lowered=True)


def lower(program: Program) -> Program:
    """A copy of ``program`` with logsumexp, softmax and log_softmax as primitive ops."""
    if not any(op.op in LOWERED for op in program.ops):
        return program
    out = Program(values=dict(program.values), ops=[], inputs=list(program.inputs),
                  outputs=list(program.outputs), grads=list(program.grads),
                  grad_origins=dict(program.grad_origins), edges=list(program.edges))
    b = Builder(out, "lowered")
    for op in program.ops:
        if op.op not in LOWERED:
            out.ops.append(op)
            continue
        b.phase, b.group, b.origin = op.phase, op.group, op.origin
        if op.op == "einsum":
            first = len(out.ops)
            b.hint = "einsum_" + program.values[op.out].hint  # (a reshape keeps its builder's hint)
            _einsum(b, op)
            for made in out.ops[first:]:  # temporaries named for what they hold (mul_A_T, ...)
                out.values[made.out].hint = temp_hint(made, out.values, {})
            last = out.ops[-1]
            del out.values[last.out]
            last.out = op.out
            continue
        x = op.args[0]
        axis = op.attr("axis")
        rank = len(program.values[x].shape) if isinstance(x, str) else 0
        xh = program.values[x].hint if isinstance(x, str) else "x"

        def emit(hint: str, name: str, *args: Arg, **attrs: object) -> Arg:
            """``b.emit``, the temporary named for what it holds (rowmax_Z, exp_Z_shifted)."""
            vid = b.emit(name, *args, **attrs)
            if isinstance(vid, str):
                out.values[vid].hint = hint or temp_hint(out.ops[-1], out.values, {})
            return vid

        # Keep the reduced axis so that it broadcasts against x, unless every axis is reduced:
        # a scalar broadcasts, and a loop backend has no 0-d arrays (a [1] array reshaped to
        # () is one, which neither max() nor the math helpers take).
        keep = axis is not None and rank > 1
        # the shift: the maximum, or 0 where it is not finite (as the NumPy module's helpers)
        # (``shift``: -inf over an empty axis, where a spec's max raises; NaN propagates)
        m = emit(f"shift_{xh}", "finite_or_zero",
                 emit("", "max", x, axis=axis, keepdims=keep, shift=True))
        e = emit(f"exp_{xh}_shifted", "exp", emit(f"{xh}_shifted", "sub", x, m))
        total = emit(f"sumexp_{xh}", "sum", e, axis=axis, keepdims=keep)
        if op.op == "softmax":
            result = emit("", "div", e, total)
        elif op.op == "log_softmax":
            result = emit("", "sub", emit(f"{xh}_shifted", "sub", x, m),
                          emit(f"log_sumexp_{xh}", "log", total))
        else:
            result = emit(f"logsumexp_{xh}", "add", emit(f"log_sumexp_{xh}", "log", total), m)
            shape = program.values[op.out].shape
            if keep and not op.attr("keepdims", False):  # drop the kept axis: [1, K] -> [K]
                result = emit("", "reshape", result, shape=shape)
            elif not keep and shape:  # the scalar, as the [1] or [1, 1] array keepdims asks
                result = emit("", "full", result, shape=shape)
        last = out.ops[-1]
        assert last.out == result
        del out.values[last.out]
        last.out = op.out
    return out


def _einsum(b: Builder, op: Op) -> None:
    """einsum as transposes, reshapes and matrix products (BLAS), one pair of operands at a time:
    each pair becomes [batch, free, contracted] @ [batch, contracted, free]."""
    ins, _, out = str(op.attr("subscripts")).partition("->")
    terms = ins.split(",")
    x, lx = op.args[0], terms[0]
    for k in range(1, len(terms)):
        y, ly = op.args[k], terms[k]
        keep = set(out) | set("".join(terms[k + 1:]))
        batch = [c for c in lx if c in ly and c in keep]
        contracted = [c for c in lx if c in ly and c not in keep]
        free_x = [c for c in lx if c not in ly]
        free_y = [c for c in ly if c not in lx]
        size = dict(zip(lx, b.shape(x))) | dict(zip(ly, b.shape(y)))

        def merged(letters: list[str]) -> object:
            return shapes.product_dim([size[c] for c in letters])

        lead = [merged(batch)] if batch else []
        xm = _arranged(b, x, lx, batch + free_x + contracted,
                       tuple(lead + [merged(free_x), merged(contracted)]))
        ym = _arranged(b, y, ly, batch + contracted + free_y,
                       tuple(lead + [merged(contracted), merged(free_y)]))
        z = b.emit("matmul", xm, ym)
        lz = batch + free_x + free_y
        x = _reshaped(b, z, tuple(size[c] for c in lz))
        lx = "".join(lz)
    final = tuple(lx.index(c) for c in out)
    if final != tuple(range(len(final))):
        b.emit("permute", x, axes=final)
    elif not b.program.ops or b.program.ops[-1].out != x:
        b.emit("identity", x)


def _reshaped(b: Builder, x: Arg, shape: tuple) -> Arg:
    return x if b.shape(x) == shape else b.emit("reshape", x, shape=shape)


def _arranged(b: Builder, x: Arg, letters: str, order: list[str], shape: tuple) -> Arg:
    axes = tuple(letters.index(c) for c in order)
    if axes != tuple(range(len(axes))):
        x = b.emit("permute", x, axes=axes)
    return _reshaped(b, x, shape)
