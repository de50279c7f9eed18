"""Lowering for loop backends: the max-shifted normalisations become primitive ops.

NumPy modules call small helpers (``_logsumexp``, ``_softmax``, ``_log_softmax``); a loop backend
instead computes them from ops it fuses: a max reduction, ``exp(x - m)``, a sum and a log.  The
rewrite keeps each op's output id, so the backward ops that read it are untouched.
"""

from __future__ import annotations

from .build import Builder
from .ir import Arg, Program
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
        m = emit(f"shift_{xh}", "finite_or_zero", emit("", "max", x, axis=axis, keepdims=keep))
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
