"""Local names for generated code: spec names are kept, generated names never collide."""

from __future__ import annotations

import keyword
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ir import Op, Value


class Names:
    """Allocates unique local names in one generated function's scope."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken: set[str] = set(taken or ())
        self.of: dict[str, str] = {}  # value id -> local name
        self._next: dict[str, int] = {}  # base name -> next suffix to try

    def fork(self) -> "Names":
        """A child scope that starts with this scope's names."""
        child = Names(self.taken)
        child.of = dict(self.of)
        child._next = dict(self._next)
        return child

    def snapshot(self) -> tuple[set[str], dict[str, str], dict[str, int]]:
        """This scope's state, to ``restore`` it (to render one piece of code twice)."""
        return set(self.taken), dict(self.of), dict(self._next)

    def restore(self, state: tuple[set[str], dict[str, str], dict[str, int]]) -> None:
        self.taken, self.of, self._next = set(state[0]), dict(state[1]), dict(state[2])

    def fresh(self, hint: str) -> str:
        """A name based on ``hint`` that is not yet taken (``hint``, ``hint_2``, ...)."""
        base = hint if hint.isidentifier() and not keyword.iskeyword(hint) else "t"
        name, k = base, self._next.get(base, 1)
        if name in self.taken:
            k = max(k, 2)
            name = f"{base}_{k}"
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self._next[base] = k + 1
        self.taken.add(name)
        return name

    def bind(self, vid: str, hint: str) -> str:
        """Give value ``vid`` a fresh local name (once)."""
        if vid not in self.of:
            self.of[vid] = self.fresh(hint)
        return self.of[vid]


# What a temporary holds, by the op that computes it (default: the op's name).
_LABELS = {"finite_or_zero": "shift", "nonzero_or_inf": "divisor", "positive": "step",
           "matmul": "prod"}
_REDUCTIONS = frozenset({"sum", "max", "mean", "logsumexp"})
# Ops that only present their operand differently (a view, a broadcast): they keep their name,
# and a name composed from one reads through it to its operand's.
TRANSPARENT = frozenset({"transpose", "expand_dims", "broadcast_to", "reshape", "copy",
                         "identity"})
_LONG = 20  # a composed name longer than this names the value it derives from instead


_SHOWN_AS = {"reshape": "reshaped", "expand_dims": "expanded", "broadcast_to": "broadcast"}


def _primal(vid: str, values: dict[str, "Value"]) -> bool:
    """Whether a value is the function's own (an input, a step, a forward temporary: ids of
    forward ops start ``%f``), not a cotangent or a tangent."""
    return values[vid].kind in ("input", "step") or vid.startswith("%f")


def temp_hint(op: "Op", values: dict[str, "Value"], shown: dict[str, tuple[str, str]]) -> str:
    """A name for a temporary that says what it holds: the op and its first operand
    (``exp_Z``, ``rowsum_dZ``, ``mul_H1``, ``sub_mul_H1``).  ``shown`` maps each temporary
    named so far to (the name its uses compose with, the value it derives from), and is
    updated; a transparent op keeps its hint."""
    first = next((a for a in op.args if isinstance(a, str)), None)
    if op.op in TRANSPARENT:
        if first is None:
            return values[op.out].hint
        shown[op.out] = shown.get(first, (values[first].hint, values[first].hint))
        if op.op == "transpose":  # a transpose of W2 is W2_T
            return f"{values[first].hint}_T"
        if _primal(first, values) and op.op != "identity":
            # a forward value presented for a rule (a batch's rows, hn_rows): named for it, not
            # for the cotangent the rule computes
            rows = op.op == "reshape" and len(values[op.out].shape) == 2 < len(values[first].shape)
            return f"{values[first].hint}_{'rows' if rows else _SHOWN_AS.get(op.op, op.op)}"
        return values[op.out].hint  # a broadcast cotangent keeps the cotangent's name
    if first is None:
        return _LABELS.get(op.op, op.op)
    name, root = shown.get(first, (values[first].hint, values[first].hint))
    label = _LABELS.get(op.op, op.op)
    axis = op.attr("axis")
    if op.op in _REDUCTIONS and len(values[first].shape) == 2 and axis in (0, 1):
        label = ("col" if axis == 0 else "row") + label
    hint = f"{label}_{name}"
    if len(hint) > _LONG:
        hint = f"{label}_{root}"
    shown[op.out] = (hint, root)
    return hint
