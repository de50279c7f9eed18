"""Reverse-mode planner: one reverse sweep that appends cotangent ops to the forward program.

Like autodidax's ``eval_jaxpr_transposed``: walk the forward ops backwards (each op once every op
reading its value is done, depth first: ``backward_order``) with a map from value to cotangent,
call each op's VJP from the rule table for the operands that need a gradient, sum over
broadcast axes, and accumulate where a value fans out.  The planner owns the chain rule; the rules
own the calculus.  Nothing here renders code: the only strings made are the notes that each
backward op's origin carries for the comments (which rule, which broadcast was undone).
"""

from __future__ import annotations

import copy

from .build import Builder
from .ir import Arg, Const, Edge, Op, Origin, Program, Shape
from .names import temp_hint
from .ops import OPS, VARIADIC_VJPS
from .parse import Function
from .shapes import broadcastable_to, fmt

SEED = "%seed"


def differentiate(fn: Function, seed_is_one: bool) -> Program:
    """Joint program: the forward ops, then the backward ops for ``fn.wrt``.

    With ``seed_is_one`` the cotangent of the first output is the constant 1 (``value_and_grad``);
    otherwise it is the value ``%seed`` (the ``g`` argument of ``backward``), of the output's shape.
    """
    program = Program(
        values=dict(fn.program.values),
        ops=list(fn.program.ops),
        inputs=list(fn.program.inputs),
        outputs=list(fn.program.outputs),
    )
    b = Builder(program, "backward")
    first = program.outputs[0]
    assert isinstance(first, str)
    if seed_is_one:
        seed: Arg = Const(1)
    else:
        program.values[SEED] = copy.copy(program.values[first])
        program.values[SEED].id, program.values[SEED].kind = SEED, "seed"
        program.values[SEED].hint = "g"
        seed = SEED
    needed = _depends_on(program, set(fn.wrt))
    ct: dict[str, Arg] = {first: seed}
    name = program.values[first].hint
    made_by: dict[str, Origin] = {first: Origin("", 0, f"seed: d{name} = g")}
    uses = program.read_counts()
    named: set[str] = set()  # cotangents already named for a spec value
    # value -> (condition, branch): its cotangent is zero wherever a ``where`` did not choose the
    # branch it feeds (DESIGN 1b: a NaN or inf of the branch not taken never reaches a gradient)
    masks: dict[str, tuple[Arg, int]] = {}
    for op in backward_order(fn.program.ops):
        g = ct.pop(op.out, None)
        if g is None:
            continue
        opdef = OPS[op.op]
        passed: set[str] = set()  # the spec values whose cotangent is g itself (a sum's operands)
        for i, x in enumerate(op.args):
            if not isinstance(x, str) or x not in needed:
                continue
            vjp = opdef.vjps[i] if i < len(opdef.vjps) else None
            if op.op in VARIADIC_VJPS:  # any number of operands
                vjp = VARIADIC_VJPS[op.op](i)
            if vjp is None:
                continue
            rule = opdef.grads[i] if i < len(opdef.grads) else opdef.rule
            xv = program.values[x]
            origin = Origin(op.origin.step, op.origin.line, rule)
            with b.at(origin, "d" + xv.hint):
                start = len(program.ops)
                b.cotangent_hint, b.explained = "d" + program.values[op.out].hint, ""
                contrib = vjp(b, op, g)
                rule = b.explained or rule
                selected = _select_again(b, op, i, contrib, g, masks)
                if selected[0] != contrib and not opdef.select:
                    rule += "; 0 where where() chose the other branch"
                contrib, mask = selected
                rep = program.values[op.out].shape if opdef.elementwise else xv.shape
                if not opdef.elementwise and not broadcastable_to(b.shape(contrib), xv.shape):
                    rep = b.shape(contrib)  # a batched product against an unbatched operand
                contrib, note = unbroadcast(b, contrib, rep, xv.shape)
                program.edges.append(Edge(op.out, x, i, Origin(origin.step, origin.line, rule + note)))
                if (mask is None or tuple(rep) != tuple(xv.shape)
                        or not broadcastable_to(b.shape(mask[0]), xv.shape)
                        or (x in ct and masks.get(x) != mask)):
                    masks.pop(x, None)
                elif x not in ct:
                    masks[x] = mask
                if x in ct:  # fan-out: accumulate in the same statement block
                    contrib = b.emit("add", ct[x], contrib)
                    note += f"; accumulate (d{xv.hint}: {xv.hint} is used {uses[x]} times)"
                made_by[x] = Origin(origin.step, origin.line, rule + note)
                b.annotate(made_by[x])
                shown: dict[str, tuple[str, str]] = {}
                for part in program.ops[start:]:  # the parts of dx: named for what they hold
                    if part.out != contrib:
                        program.values[part.out].hint = temp_hint(part, program.values, shown)
            if contrib == g and xv.kind in ("input", "step"):
                passed.add(x)
            if isinstance(contrib, str) and xv.kind in ("input", "step") and contrib not in named:
                if (contrib == g and program.values[g].kind == "temp"
                        and program.values[g].shape == xv.shape):
                    # passed through unchanged (a sum's first operand): the cotangent of a spec
                    # value is named for it (dZ2), not for the temporary it came from
                    program.values[g].hint = "d" + xv.hint
                named.add(contrib)
            ct[x] = contrib
        if len(passed) > 1 and isinstance(g, str) and program.values[g].kind == "temp":
            # one array, the cotangent of several spec values (dX and dY of X + Y): named for
            # the value it is the cotangent of, not for one of them
            program.values[g].hint = "d" + program.values[op.out].hint
    for w in fn.wrt:
        shape = program.values[w].shape
        g = ct.get(w)
        origin = made_by.get(w, Origin("", 0, f"{w} does not affect {name}: zero gradient"))
        if g is None:
            with b.at(origin, "d" + w):
                g = b.emit("zeros", shape=shape)
        elif b.shape(g) != shape or isinstance(g, Const):
            # materialise the broadcast gradient in the statement that computed it
            producer = next((op for op in program.ops if op.out == g), None)
            with b.at(origin, "d" + w, producer.group if producer else None):
                g = b.emit("full", g, shape=shape)
        program.grads.append((w, g))
        program.grad_origins[w] = origin
    return program


def _select_again(b: Builder, op: Op, i: int, contrib: Arg, g: Arg,
                  masks: dict[str, tuple[Arg, int]]) -> tuple[Arg, tuple[Arg, int] | None]:
    """The contribution of ``op`` to operand ``i``, selected again where a ``where`` downstream
    did not choose the value, and the mask that operand's cotangent carries.

    ``where(x > 0, log(x), 0)`` at x = 0: the cotangent of ``log(x)`` is exactly 0 there, but
    log's rule ``dx = dy / x`` gives 0 / 0 = NaN; so the contribution of an elementwise op
    whose output only a branch reads is ``where(c, contribution, 0)`` (a select, never a
    product with a mask), and the mask passes on to its operand while shapes agree."""
    opdef = OPS[op.op]
    if opdef.select:
        return contrib, (op.args[0], i) if i in (1, 2) else None
    mask = masks.get(op.out)
    if mask is None or not opdef.elementwise:
        return contrib, None
    if contrib != g and not isinstance(contrib, Const):
        c, branch = mask
        args = (contrib, Const(0)) if branch == 1 else (Const(0), contrib)
        contrib = b.emit("where", c, *args)
    return contrib, mask


def unbroadcast(b: Builder, g: Arg, rep: Shape, target: Shape) -> tuple[Arg, str]:
    """Reduce ``g`` (which stands for an array of shape ``rep``) to a cotangent for ``target``.

    Axes along which ``target`` was broadcast are summed; where ``g`` itself is only lazily
    broadcast along such an axis, the sum is a multiplication by the axis length.  Returns the
    cotangent and a note for the reader ("" when nothing was done).
    """
    gshape = b.shape(g)
    n = len(rep)
    gpad: list[object] = [None] * (n - len(gshape)) + list(gshape)
    tpad: list[object] = [None] * (n - len(target)) + list(target)
    drop: list[int] = []
    keep: list[int] = []
    scale: list[object] = []
    for i in range(n):
        r, t, d = rep[i], tpad[i], gpad[i]
        if t is not None and t == r:
            continue  # not broadcast along this axis
        j = i - (n - len(gshape))  # g's own axis index
        if d is not None and d != 1:
            (drop if t is None else keep).append(j)
        else:
            if r != 1:
                scale.append(r)
            if d is not None and t is None:
                drop.append(j)  # a size-1 axis of g that target does not have
    if drop:  # axes the target lacks: sum them away (all of them: a plain total)
        axis = None if len(drop) == len(gshape) else drop[0] if len(drop) == 1 else tuple(drop)
        g = b.emit("sum", g, axis=axis, keepdims=False)
    if keep:
        shift = sum(1 for j in drop if j < keep[0])
        axes = tuple(j - shift for j in keep)
        g = b.emit("sum", g, axis=axes[0] if len(axes) == 1 else axes, keepdims=True)
    for d in scale:
        g = b.emit("mul", g, b.size(d))
    summed = [i for i in range(n) if (tpad[i] is None or tpad[i] != rep[i])]
    if not summed:
        return g, ""
    if len(rep) == 2 and summed == [0]:
        where = "rows"
    elif len(rep) == 2 and summed == [1]:
        where = "columns"
    else:
        where = "axes " + ", ".join(str(i) for i in summed)
    return g, f"; broadcast {fmt(target)} to {fmt(rep)}: sum over {where}"


def backward_order(ops: list[Op]) -> list[Op]:
    """The forward ops in the order their VJPs run: each after every op that reads its value.

    Step by step, the last first (a step's backward is one block, and the blocks are in reverse
    order of the steps: an op is read only by its own step's ops and later ones), and within a
    step depth first: once an op's cotangent is complete, its operands' producers go next, the
    left operand first, but a branch that leads back to an earlier step last.  So the backward
    of ``tanh(a) * w + a * 0.5`` finishes ``tanh(a) * w`` (whose cotangent becomes ``da``)
    before ``a * 0.5`` adds to it, and no second array for ``da`` is started while the first
    branch still needs its own.
    """
    producer = {op.out: i for i, op in enumerate(ops)}
    readers: dict[str, int] = {}
    for op in ops:
        for a in dict.fromkeys(a for a in op.args if isinstance(a, str)):
            readers[a] = readers.get(a, 0) + 1
    step: list[int] = []  # each op's step: a run of ops from one spec step (inlined calls too)
    for i, op in enumerate(ops):
        key = (op.origin.step, op.origin.line)
        if i == 0 or key != (ops[i - 1].origin.step, ops[i - 1].origin.line):
            step.append(step[-1] + 1 if step else 0)
        else:
            step.append(step[-1])
    # whether an op's operands reach, through its step's ops, a value of an earlier step: such a
    # branch goes last within its step, so that the next step's backward follows it directly
    # (the loop backends fuse its loops with the next step's)
    leads_back: list[bool] = []
    for i, op in enumerate(ops):
        leads_back.append(any(isinstance(a, str) and a in producer and (
            step[producer[a]] != step[i] or leads_back[producer[a]]) for a in op.args))
    ready: dict[int, list[int]] = {}  # per step, its ops whose readers are done (the last pops first)
    for i, op in enumerate(ops):
        if not readers.get(op.out):
            ready.setdefault(step[i], []).append(i)
    order: list[Op] = []
    for k in sorted(set(step), reverse=True):
        stack = ready.setdefault(k, [])
        while stack:
            op = ops[stack.pop()]
            order.append(op)
            operands = [a for a in dict.fromkeys(op.args) if isinstance(a, str) and a in producer]
            operands.sort(key=lambda a: leads_back[producer[a]] or step[producer[a]] != k)
            for a in reversed(operands):
                readers[a] -= 1
                if readers[a] == 0:
                    ready.setdefault(step[producer[a]], []).append(producer[a])
    assert len(order) == len(ops)
    return order


def _depends_on(program: Program, wrt: set[str]) -> set[str]:
    """Values that depend on any ``wrt`` input (only their cotangents are needed)."""
    needed = set(wrt)
    for op in program.ops:
        if any(isinstance(a, str) and a in needed for a in op.args):
            needed.add(op.out)
    return needed
