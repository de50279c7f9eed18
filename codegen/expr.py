"""Expression trees for the code the emitters write, rendered with the fewest parentheses that
Python's precedence allows.

Emitters never paste rendered fragments into f-string arithmetic (``f"{a} / {n}"`` with ``n``
rendered as ``N * K`` reads ``a / N * K``): they build a tree of these nodes and render it.
A leaf is a name, a number, or a fragment rendered elsewhere together with its precedence
(``Leaf(text, prec)``: the op table's precedence-aware rendering, see ``ops.py``); ``as_expr``
accepts a bare string only when it is a name or a number, so a compound fragment cannot enter a
tree without its precedence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import text
from .ops import ADD, ATOM, CMP, MUL, POW, UNARY

COND = 10  # ``a if c else b``: below every operator
OR, AND, NOT = 20, 30, 35

# binary operator -> precedence (all left-associative but ``**``; comparisons chain)
BINARY = {"+": ADD, "-": ADD, "*": MUL, "/": MUL, "//": MUL, "%": MUL, "@": MUL, "**": POW,
          "<": CMP, ">": CMP, "<=": CMP, ">=": CMP, "==": CMP, "!=": CMP, "and": AND, "or": OR}

_ATOMIC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*|\d+(\.\d*)?(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?")
_SIMPLE = re.compile(r"-?(\d+(\.\d*)?(e[+-]?\d+)?|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)")


class Expr:
    """A node; ``prec`` is the precedence of its outermost operator."""

    prec: int = ATOM

    def render(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()


ExprLike = Expr | str | int | float


@dataclass(frozen=True)
class Leaf(Expr):
    """A name, a number or a fragment rendered with its precedence."""

    text: str
    prec: int = ATOM

    def render(self) -> str:
        return self.text


def as_expr(x: ExprLike) -> Expr:
    """A node for ``x``: a node, a number, or a string that is a (dotted) name or a literal."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool):
        return Leaf(str(x))
    if isinstance(x, (int, float)):
        s = text.number(x)
        return Leaf(s, UNARY if s.startswith("-") else ATOM)
    if not _ATOMIC.fullmatch(x):
        raise ValueError(f"not a name or a number: {x!r} (build a tree, or give its precedence)")
    return Leaf(x)


def _wrap(e: Expr, need: int) -> str:
    s = e.render()
    return f"({s})" if e.prec < need else s


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        return BINARY[self.op]

    def render(self) -> str:
        p = BINARY[self.op]
        if self.op == "**":  # right-associative; a unary operand on the left needs parentheses
            left, right = _wrap(self.left, p + 1), _wrap(self.right, UNARY)
            if _SIMPLE.fullmatch(left) and _SIMPLE.fullmatch(right):
                return f"{left}**{right}"  # as black writes simple operands
            return f"{left} ** {right}"
        if p == CMP:  # comparisons chain: neither side may be a comparison
            return f"{_wrap(self.left, p + 1)} {self.op} {_wrap(self.right, p + 1)}"
        return f"{_wrap(self.left, p)} {self.op} {_wrap(self.right, p + 1)}"


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" or "not"
    operand: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        return NOT if self.op == "not" else UNARY

    def render(self) -> str:
        if self.op == "not":
            return f"not {_wrap(self.operand, NOT)}"
        return f"{self.op}{_wrap(self.operand, POW)}"  # -(-x), not --x


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = ()

    def render(self) -> str:
        items = [a.render() for a in self.args] + [f"{k}={v.render()}" for k, v in self.kwargs]
        return f"{self.func}({', '.join(items)})"


@dataclass(frozen=True)
class Postfix(Expr):
    """An atom followed by a subscript or an attribute (parenthesised unless it is an atom)."""

    base: Expr

    def render(self) -> str:
        return _wrap(self.base, ATOM) + self.suffix()

    def suffix(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Index(Postfix):
    items: tuple[Expr, ...]

    def suffix(self) -> str:
        return f"[{', '.join(i.render() for i in self.items)}]"


@dataclass(frozen=True)
class Attr(Postfix):
    name: str

    def suffix(self) -> str:
        return f".{self.name}"


@dataclass(frozen=True)
class Cond(Expr):
    body: Expr
    test: Expr
    orelse: Expr
    prec: int = COND

    def render(self) -> str:
        return (f"{_wrap(self.body, COND + 1)} if {_wrap(self.test, COND + 1)} "
                f"else {_wrap(self.orelse, COND)}")


@dataclass(frozen=True)
class Tuple(Expr):
    items: tuple[Expr, ...]

    def render(self) -> str:
        inner = ", ".join(i.render() for i in self.items)
        return f"({inner},)" if len(self.items) == 1 else f"({inner})"


# --- builders -------------------------------------------------------------------------------------


def binop(op: str, a: ExprLike, b: ExprLike) -> Expr:
    return BinOp(op, as_expr(a), as_expr(b))


def add(a: ExprLike, b: ExprLike) -> Expr:
    return binop("+", a, b)


def sub(a: ExprLike, b: ExprLike) -> Expr:
    return binop("-", a, b)


def mul(a: ExprLike, b: ExprLike) -> Expr:
    return binop("*", a, b)


def div(a: ExprLike, b: ExprLike) -> Expr:
    return binop("/", a, b)


def floordiv(a: ExprLike, b: ExprLike) -> Expr:
    return binop("//", a, b)


def product(items: Sequence[ExprLike]) -> Expr:
    """``a * b * c``; the number 1 for no items."""
    if not items:
        return as_expr(1)
    out = as_expr(items[0])
    for item in items[1:]:
        out = mul(out, item)
    return out


def call(func: str, *args: ExprLike, **kwargs: ExprLike) -> Expr:
    return Call(func, tuple(as_expr(a) for a in args),
                tuple((k, as_expr(v)) for k, v in kwargs.items()))


def index(base: ExprLike, *items: ExprLike) -> Expr:
    return Index(as_expr(base), tuple(as_expr(i) for i in items))


def tuple_(items: Sequence[ExprLike]) -> Expr:
    return Tuple(tuple(as_expr(i) for i in items))


def any_of(items: Sequence[ExprLike]) -> Expr:
    """``a or b or c`` (left to right)."""
    out = as_expr(items[0])
    for item in items[1:]:
        out = binop("or", out, item)
    return out


def all_of(items: Sequence[ExprLike]) -> Expr:
    out = as_expr(items[0])
    for item in items[1:]:
        out = binop("and", out, item)
    return out


def assign(target: ExprLike, value: ExprLike, aug: str = "") -> str:
    """The statement ``target = value`` (or ``target op= value``): a whole expression on the
    right needs no parentheses."""
    return f"{as_expr(target).render()} {aug}= {as_expr(value).render()}"


def substitute(e: Expr, names: dict[str, Expr]) -> Expr:
    """``e`` with the leaves named in ``names`` replaced."""
    if isinstance(e, Leaf):
        return names.get(e.text, e)
    if isinstance(e, BinOp):
        return BinOp(e.op, substitute(e.left, names), substitute(e.right, names))
    if isinstance(e, Unary):
        return Unary(e.op, substitute(e.operand, names))
    if isinstance(e, Call):
        return Call(e.func, tuple(substitute(a, names) for a in e.args),
                    tuple((k, substitute(v, names)) for k, v in e.kwargs))
    if isinstance(e, Index):
        return Index(substitute(e.base, names), tuple(substitute(i, names) for i in e.items))
    if isinstance(e, Attr):
        return Attr(substitute(e.base, names), e.name)
    if isinstance(e, Cond):
        return Cond(substitute(e.body, names), substitute(e.test, names),
                    substitute(e.orelse, names))
    if isinstance(e, Tuple):
        return Tuple(tuple(substitute(i, names) for i in e.items))
    raise TypeError(type(e).__name__)
