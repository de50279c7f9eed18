"""Forward-mode planner: push tangents through a program, appending IR ops (never strings).

The mirror of ``planner.py``: walk the ops in program order with a map from value to tangent
(its directional derivative along the given input tangents), call each op's JVP from the rule
table for the operands that have a tangent, and sum the contributions.  Values that do not depend
on a tangent input have no tangent (zero) and cost nothing.

Run over a forward program it gives ``f_jvp``; run over the *joint* forward+backward program
(``differentiate``) it differentiates the gradient itself: the tangents of the gradients are the
Hessian of the first output times the input tangents (``f_hvp``: forward over reverse).

- ``jvp_program``: forward ops, then the tangent ops; ``dout`` the first output's tangent;
- ``hvp_program``: the joint program of ``f_value_and_grad``, then the tangent ops; ``hv`` the
  tangents of the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .build import Builder
from .errors import SpecError
from .ir import Arg, Op, Origin, Program, Value
from .ops import OPS, VARIADIC_JVPS
from .parse import Function
from .passes import VIEW_OPS


@dataclass
class TangentProgram:
    """A program with tangent inputs: ``program`` computes ``results`` from the function's inputs
    and ``tangents`` (one value per ``wrt`` input, in ``wrt`` order)."""

    program: Program
    tangents: list[str]  # value ids of the tangent inputs
    results: list[Arg]  # dout (jvp), or the tangents of the gradients (hvp)
    rules: list[str] = field(default_factory=list)  # the JVP rules used, in program order


def tangent_hint(hint: str) -> str:
    """The name of a value's tangent in generated code: ``Z1`` -> ``Z1_dot``."""
    return f"{hint}_dot"


def push_tangents(program: Program, ops: list[Op], tangents: dict[str, Arg],
                  rules: list[str] | None = None) -> dict[str, Arg]:
    """Append to ``program`` the tangent ops of ``ops`` (in order); ``tangents`` maps values to
    their tangents (the inputs' to start with) and is extended in place.  Returns it."""
    b = Builder(program, "tangent")
    for op in ops:
        ts = [tangents.get(a) if isinstance(a, str) else None for a in op.args]
        if all(t is None for t in ts):
            continue  # constant along the direction: no tangent
        opdef = OPS[op.op]
        jvps, jvp_rules = list(opdef.jvps), list(opdef.jvp_rules)
        if op.op in VARIADIC_JVPS:  # any number of operands
            jvps = [VARIADIC_JVPS[op.op](i) for i in range(len(op.args))]
            jvp_rules = [opdef.jvp_rules[0]] * len(op.args)
        if len(jvps) < len(op.args):
            raise SpecError(f"op {op.op!r} has no forward-mode (JVP) rule")
        used = [jvp_rules[i] for i, t in enumerate(ts) if t is not None]
        rule = "; ".join(dict.fromkeys(used))
        out = program.values[op.out]
        origin = Origin(op.origin.step, op.origin.line, rule)
        total: Arg | None = None
        with b.at(origin, tangent_hint(out.hint)):
            b.cotangent_hint = tangent_hint(out.hint)
            for i, t in enumerate(ts):
                if t is None:
                    continue
                before = len(program.ops)
                contrib = jvps[i](b, op, t)
                if contrib is None:  # piecewise constant: zero
                    continue
                last = program.ops[-1]
                # a + (-b) is a - b, where this contribution's rule made the negation (not where
                # the contribution is an earlier value's tangent, which other ops may read)
                if (total is not None and len(program.ops) > before and last.out == contrib
                        and last.op == "neg"):
                    program.ops.pop()
                    total = b.emit("sub", total, last.args[0])
                else:
                    total = contrib if total is None else b.emit("add", total, contrib)
            if total is not None and b.shape(total) != out.shape:
                total = b.dense(total, out.shape)  # (a bias's tangent alone: broadcast)
        if total is not None:
            tangents[op.out] = total
            if rules is not None:
                rules.extend(r for r in used if r not in rules)
    return tangents


def _tangent_inputs(program: Program, fn: Function) -> tuple[list[str], dict[str, Arg]]:
    ids = []
    for w in fn.wrt:
        vid = f"%tangent_{w}"
        src = program.values[w]
        program.values[vid] = Value(vid, src.shape, tangent_hint(w), "input")
        ids.append(vid)
    return ids, dict(zip(fn.wrt, ids))


def fresh(program: Program, arg: Arg | None, shape: tuple, origin: Origin, hint: str,
          inputs: set[str]) -> Arg:
    """``arg`` as a fresh array the caller may keep: zeros for no tangent, a copy of a view or
    of an input, an array of ``shape`` for a broadcast."""
    b = Builder(program, "tangent")
    producer = {op.out: op for op in program.ops}
    with b.at(origin, hint):
        if arg is None:
            return b.emit("zeros", shape=shape)
        if not isinstance(arg, str) or b.shape(arg) != tuple(shape):
            return b.emit("full", arg, shape=shape)
        p = producer.get(arg)
        if arg in inputs or p is None or p.op in VIEW_OPS or p.phase != "tangent":
            return b.emit("copy", arg)
    return arg


def tidy(program: Program, results: list[Arg]) -> list[Arg]:
    """The passes' folding and common-subexpression elimination on the tangent ops only
    (``-(-x)``, ``x * 1``, a tangent computed twice); returns the results, renamed."""
    from .passes import cse, simplify

    tangent = {op.out for op in program.ops if op.phase == "tangent"}
    for op in program.ops:
        if op.out in tangent:
            op.phase = "backward"  # what the passes rewrite
    saved = program.grads
    program.grads = [(f"%result{i}", r) for i, r in enumerate(results)] + list(saved)
    simplify(program)
    cse(program)
    results = [r for _, r in program.grads[:len(results)]]
    program.grads = program.grads[len(results):]
    for op in program.ops:
        if op.out in tangent:
            op.phase = "tangent"
    return results


def prune(program: Program, roots: list[Arg]) -> None:
    """Drop tangent ops that no result reads (forward and backward ops stay as they are)."""
    live = {r for r in roots if isinstance(r, str)}
    keep: list[Op] = []
    for op in reversed(program.ops):
        if op.phase != "tangent" or op.out in live:
            keep.append(op)
            live.update(a for a in op.args if isinstance(a, str))
    program.ops = keep[::-1]


def _copy(program: Program) -> Program:
    return Program(values=dict(program.values), ops=list(program.ops),
                   inputs=list(program.inputs), outputs=list(program.outputs),
                   grads=list(program.grads), grad_origins=dict(program.grad_origins))


def jvp_program(fn: Function) -> TangentProgram:
    """The forward program with the tangent of every value pushed alongside."""
    program = _copy(fn.program)
    ids, tangents = _tangent_inputs(program, fn)
    rules: list[str] = []
    push_tangents(program, list(fn.program.ops), tangents, rules)
    first = program.outputs[0]
    assert isinstance(first, str)
    hint = program.values[first].hint
    origin = Origin("", 0, f"{hint} does not depend on {', '.join(fn.wrt)}: zero tangent"
                    if first not in tangents else f"the tangent of {hint}")
    t = tangents.get(first)
    if t is not None:  # folded first, so that the result is made fresh last
        prune(program, [t])
        (t,) = tidy(program, [t])
    dout = fresh(program, t, program.values[first].shape, origin, tangent_hint(hint), set(ids))
    prune(program, [dout])
    return TangentProgram(program, ids, [dout], rules)


def hvp_program(fn: Function, joint: Program) -> TangentProgram:
    """Forward over reverse: tangents pushed through ``joint`` (forward and backward ops, the
    seed g = 1 folded in); the tangents of the gradients are the Hessian-vector products."""
    program = _copy(joint)
    ids, tangents = _tangent_inputs(program, fn)
    rules: list[str] = []
    push_tangents(program, list(joint.ops), tangents, rules)
    ts = [tangents.get(g) if isinstance(g, str) else None for _, g in joint.grads]
    live = [t for t in ts if t is not None]
    prune(program, live)
    folded = iter(tidy(program, live))
    ts = [None if t is None else next(folded) for t in ts]
    results: list[Arg] = []
    for (w, g), t in zip(joint.grads, ts):
        origin = Origin("", 0, f"d{w} does not depend on {', '.join(fn.wrt)}: zero" if t is None
                        else f"(H v) for {w}: the tangent of d{w}")
        results.append(fresh(program, t, program.values[w].shape, origin, f"Hv_{w}", set(ids)))
    prune(program, results)
    return TangentProgram(program, ids, results, rules)
