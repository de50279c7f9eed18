"""Comments for generated lines, derived from the IR ops each line computes.

A backward line is commented with the name of the derivative rule that produced it and the rule
*instantiated*: the equation the line computes, written over the IR ops it renders with the names
the generated code gives their operands (``left product: dW2 = H1.T @ dZ2``), so the comment
cannot disagree with the code, and no generic letter of the rule (``dA = dZ @ B.T``) is confused
with a spec name.  A spec step heads the block of lines it produced once.

Only the rule's *name* and the planner's note (un-broadcasting, accumulation) come from the
op's ``origin``; the formula is rendered here from the ops.  Every backend uses this module.
"""

from __future__ import annotations

from collections.abc import Callable

from . import text
from .ir import Arg, Const, DimSize, Op, Program
from .ops import ADD, ATOM, CMP, MUL, POW, UNARY
from .shapes import fmt as fmt_shape

ANY = 0
# Math rendering of an op: (format, precedence, each operand's minimum precedence).  Ops not
# listed render as a call of their name, ``name(x, axis=1)``.
_INFIX: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "add": ("{0} + {1}", ADD, (ADD, ADD + 1)),
    "sub": ("{0} - {1}", ADD, (ADD, ADD + 1)),
    "mul": ("{0} * {1}", MUL, (MUL, MUL + 1)),
    "div": ("{0} / {1}", MUL, (MUL, MUL + 1)),
    "matmul": ("{0} @ {1}", MUL, (MUL, MUL + 1)),
    "neg": ("-{0}", UNARY, (POW,)),
    "pow": ("{0} ** {exponent}", POW, (POW + 1,)),
    "transpose": ("{0}.T", ATOM, (ATOM,)),
    "expand_dims": ("{0}{index}", ATOM, (ATOM,)),
    "reshape": ("{0}.reshape({shape})", ATOM, (ATOM,)),
    "positive": ("({0} > 0)", ATOM, (CMP + 1,)),
    "eye": ("I", ATOM, ()),
    "zeros": ("0", ATOM, ()),
    "broadcast_to": ("broadcast({0}, {shape})", ATOM, (ANY,)),
    "full": ("broadcast({0}, {shape})", ATOM, (ANY,)),
    "logdet": ("logdet({0})", ATOM, (ANY,)),
}
_PASS = frozenset({"copy", "identity"})  # the operand itself
_CALL_ATTRS = ("axis", "keepdims")  # attributes a call-style rendering shows


def rule_parts(rule: str) -> tuple[str, str]:
    """The rule's name and the planner's note: ``("addition", "broadcast [K] to [N, K]: sum
    over rows")`` from ``"addition: db = dz; broadcast [K] to [N, K]: sum over rows"``."""
    head, _, note = rule.partition("; ")
    name, sep, _formula = head.partition(": ")
    return (name.strip() if sep else head.strip()), note.strip()


def math(op: Op, args: list[tuple[str, int]]) -> tuple[str, int]:
    """``op`` in math notation over operands given as (text, precedence)."""
    if op.op in _PASS and args:
        return args[0]
    form = _INFIX.get(op.op)
    if form is None:
        parts = [a for a, _ in args]
        for key in _CALL_ATTRS:
            value = op.attr(key)
            if value is not None and value is not False:
                parts.append(f"{key}={value}")
        return f"{op.op}({', '.join(parts)})", ATOM
    fmt, prec, need = form
    wrapped = [f"({a})" if p < (need[i] if i < len(need) else ANY) else a
               for i, (a, p) in enumerate(args)]
    shape = op.attr("shape")
    axis = op.attr("axis")
    exponent = op.attr("exponent")
    fields = {
        "shape": fmt_shape(shape) if isinstance(shape, tuple) else "",
        "index": "[" + ", ".join([":"] * axis + ["None"]) + "]" if isinstance(axis, int) else "",
        "exponent": text.number(exponent) if isinstance(exponent, (int, float)) else "",
    }
    return fmt.format(*wrapped, **fields), prec


def equation(op: Op, target: str, leaf: Callable[[str], str],
             expand: Callable[[str], Op | None]) -> str:
    """``target = <op over its operands>``; an operand ``expand`` gives an op for is written as
    that op's expression (recursively), any other as ``leaf(value id)``."""

    def render(a: Arg) -> tuple[str, int]:
        if isinstance(a, Const):
            s = text.number(a.value)
            return s, UNARY if s.startswith("-") else ATOM
        if isinstance(a, DimSize):  # a composite dim (a reshape's B*N, a concatenation's D+E)
            terms = [" * ".join(t.split("*")) for t in a.name.split("+")]
            return " + ".join(terms), ADD if len(terms) > 1 else MUL if "*" in a.name else ATOM
        producer = expand(a)
        if producer is not None:
            return math(producer, [render(x) for x in producer.args])
        return leaf(a), ATOM

    return f"{target} = {math(op, [render(a) for a in op.args])[0]}"


def rule_line(op: Op, eq: str, final: bool = True) -> str:
    """``→ left product: dW2 = H1.T @ dZ2``, and after a semicolon the planner's note (on the
    line that completes the rule application: ``final``)."""
    name, note = rule_parts(op.origin.rule)
    line = f"→ {name}: {eq}" if name else f"→ {eq}"
    return text.comment(f"{line}; {note}" if note and final else line)


def last_of_groups(ops: list[Op]) -> set[str]:
    """The values that complete their statement group (a rule application) in ``ops``."""
    return set({op.group: op.out for op in ops}.values())


def step_header(op: Op) -> str:
    """The spec step a block of lines comes from (``..., backward:`` for backward lines)."""
    step = op.origin.step
    if op.phase == "forward":
        return text.comment(step)
    return text.comment(f"{step}, backward:") if step else ""


def block_key(op: Op) -> tuple[str, str, int]:
    """Lines with the same key share one step header."""
    return (op.phase, op.origin.step, op.origin.line)


def hint_leaf(program: Program, names: dict[str, str]) -> Callable[[str], str]:
    """An operand's name: the local the code binds it to, else the name it stands for."""

    def leaf(a: str) -> str:
        return names.get(a) or program.values[a].hint

    return leaf


def join(lines: list[str]) -> str:
    """Comment lines as one statement comment (the templates write ``# `` before the first)."""
    return text.wrap_comment("\n    # ".join(line for line in lines if line))
