"""The rule table: each op once, with everything the pipeline knows about it.

An entry (``OpDef``) holds an op's shape rule, its NumPy rendering, its VJP written in IR ops and
the rule's text, the domain its finite-difference check draws inputs from, its memory facts (a
fresh array or a view; the ufunc call that computes it in place), how the loop backends fuse it
(elementwise, a reduction, or lowered to primitive ops first), and whether and how a spec may
call it.  The other modules read these fields; none keeps a list of op names of its own.
A backend whose rendering differs keeps a table keyed by op that overrides only what differs
(``emit_numba.NUMBA``).

Grouped by kind, as in HIPS autograd's ``numpy_vjps.py``: elementwise binary, elementwise unary,
linear algebra, reductions, and the layout ops that only the planner introduces.  A VJP is one
function per operand, ``vjp(b, op, g) -> contribution``, where ``b`` appends backward ops, ``op`` is
the forward op (``op.args``, ``op.out``) and ``g`` is the cotangent of ``op.out``.  Cotangents may be
*lazily broadcast* (a smaller shape that broadcasts to the value's shape); elementwise rules keep
them lazy, the others ask for ``b.dense(g, shape)``.  The planner un-broadcasts contributions.
Linear and bilinear ops get their VJPs from their structure (``linear``, ``bilinear``).

Adding an op: one ``_def`` (or ``_unary``) call below, one row in ``tests/test_ops.py``; a backend
whose NumPy form does not work (Numba per element) adds a row to its table.
``tests/test_op_table.py`` fails when an entry lacks something.
"""

from __future__ import annotations

import math as _math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Protocol

from . import shapes
from .ir import Arg, Const, Shape

if TYPE_CHECKING:
    from .ir import Op

# Python operator precedences used to parenthesise rendered expressions.
ATOM, POW, UNARY, MUL, ADD, CMP, ANY = 100, 90, 80, 70, 60, 40, 0

# Domains of an operand, for the inputs a finite-difference check draws (finite_differences.py).
REAL = "real"  # any finite number
POSITIVE = "positive"  # log, sqrt, a divisor: drawn in [0.5, 1.5]
POSITIVE_IF_FRACTIONAL = "positive if the exponent is fractional"  # x ** c
NONSINGULAR = "nonsingular"  # inv, det, logdet: a square matrix near the identity
DOMAINS = (REAL, POSITIVE, POSITIVE_IF_FRACTIONAL, NONSINGULAR)


class RuleBuilder(Protocol):
    """What a VJP may call to append backward ops (``build.Builder`` implements it)."""

    def emit(self, op: str, *args: Arg, **attrs: object) -> Arg: ...
    def shape(self, arg: Arg) -> Shape: ...
    def dense(self, arg: Arg, shape: Shape) -> Arg: ...
    def size(self, dim: object) -> Arg: ...
    def explain(self, rule: str) -> None: ...


VJP = Callable[[RuleBuilder, "Op", Arg], Arg]
# Forward mode: ``jvp(b, op, t) -> contribution`` for one operand, ``t`` its tangent (dense, of the
# operand's shape); the contribution broadcasts to the output's shape; None: zero (constant op).
JVP = Callable[[RuleBuilder, "Op", Arg], "Arg | None"]
ShapeRule = Callable[[list[Shape], dict], Shape]
# A block of tangents: ``batch(b, op, batched) -> out``, ``op`` with its operands in the batched
# program, ``batched[i]``: operand i has shape (k,) + its shape (k tangents); the result too.
BatchRule = Callable[[RuleBuilder, "Op", tuple[bool, ...]], Arg]
# How the memory plan computes an op into an existing array: (ufunc, position of the operands
# among its arguments, the other arguments), called with ``out=``.
UfuncCall = tuple[str, int, tuple[float, ...]]


@dataclass(frozen=True)
class OpDef:
    """One entry of the rule table."""

    name: str
    kind: str  # "binary" | "unary" | "linalg" | "reduce" | "layout"
    arity: int
    shape: ShapeRule
    # --- NumPy rendering (other backends override it by op in their own tables) ---
    fmt: str  # {0}, {1} are operands, other fields come from attrs (Emitter.attr_fields)
    prec: int  # precedence of the rendered expression
    arg_prec: tuple[int, ...]  # minimum precedence each operand needs without parentheses
    domain: tuple[str, ...]  # per operand, the inputs a finite-difference check draws (DOMAINS)
    # --- calculus ---
    rule: str = ""  # rule name for comments and the README, e.g. "right product"
    math: str = ""  # forward in math, e.g. "y = tanh(x)"
    grads: tuple[str, ...] = ()  # per operand, the derivative rule in math, e.g. "dx = dy * (1 - y*y)"
    vjps: tuple[VJP | None, ...] = ()  # per operand; None: not differentiable there
    elementwise: bool = False  # contributions represent arrays of the output's shape
    # --- memory (the NumPy memory plan, views for the passes and the emitters) ---
    result: str = "fresh"  # "fresh": a new array nothing else references; "view": the operand's memory
    inline: bool = False  # a free view (``X.T``): written inline wherever used, never named or CSE'd
    distinct: bool = False  # exists to be an array of its own (a gradient's): never merged by CSE
    ufunc: UfuncCall | None = None  # the call that computes it into ``out=`` (in place)
    augmented: str = ""  # the augmented assignment that computes it in place (``+`` for ``a += b``)
    commutative: bool = False
    helper: str = ""  # the module helper its NumPy rendering calls (templates/helpers/<helper>.py.j2)
    lapack: bool = False  # computed by LAPACK: its forward input must be finite (checked)
    # --- loop backends ---
    fusion: str = ""  # "elementwise" | "reduction": fused into loops (fusion.py); "": a statement
    lowered: bool = False  # replaced by primitive ops before fusion (lower.py)
    # --- the spec language ---
    labels: tuple[int, ...] = ()  # operands read only as integer labels (indices), never floats
    call: tuple[str, ...] | None = None  # keywords a spec's call accepts; None: a spec cannot call it
    scalar: Callable[[float], float] | None = None  # on a Python number: the parser folds f(1)
    # --- forward mode ---
    jvps: tuple[JVP, ...] = ()  # per operand, forward mode (registered below, by op group)
    jvp_rules: tuple[str, ...] = ()  # per operand, the JVP in math, for comments and --explain
    # operand 0 chooses, per element, operand 1 (true) or 2 (false): the planner re-selects the
    # contributions of elementwise ops that only a branch reads (planner.py, "where")
    select: bool = False
    # --- a block of tangents at once (f_jacobian, f_hessian: ``batch.py``) ---
    # The op on operands some of which carry a leading batch axis (one tangent per basis vector);
    # None: it has no batched form (its JVP programs fall back to a loop over basis vectors).
    batch: "BatchRule | None" = None

    @property
    def differentiable(self) -> bool:
        return any(v is not None for v in self.vjps)

    @property
    def callable(self) -> bool:
        """Whether a spec may call it by name (``tanh(Z)``)."""
        return self.call is not None


OPS: dict[str, OpDef] = {}


def _def(**kw: object) -> None:
    op = OpDef(**kw)  # type: ignore[arg-type]
    assert op.name not in OPS, op.name
    OPS[op.name] = op


def _same(shapes_: list[Shape], attrs: dict) -> Shape:
    return shapes_[0]


def _bcast(name: str) -> ShapeRule:
    return lambda s, attrs: shapes.broadcast(s[0], s[1], name)


def _attr_shape(shapes_: list[Shape], attrs: dict) -> Shape:
    return attrs["shape"]  # type: ignore[no-any-return]


# --- rules from structure (JAX's deflinear / defbilinear) ----------------------------------------


def linear(*signs: int) -> tuple[VJP, ...]:
    """VJPs of an elementwise op linear in each operand with coefficient +1 or -1
    (``a + b``, ``a - b``, ``-x``): the cotangent, or its negation."""
    return tuple((lambda b, op, g: g) if s > 0 else (lambda b, op, g: b.emit("neg", g))
                 for s in signs)


def bilinear(left: Callable[[RuleBuilder, Arg, Arg], Arg],
             right: Callable[[RuleBuilder, Arg, Arg], Arg], dense: bool = False) -> tuple[VJP, VJP]:
    """VJPs of an op linear in each operand separately, ``z = f(a, b)``: ``left(b, g, b_value)``
    is da (the cotangent contracted with the other operand), ``right(b, a_value, g)`` is db.
    ``dense``: the rules read the cotangent as an array of the output's shape."""
    def cot(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        return b.dense(g, b.shape(op.out)) if dense else g
    return (lambda b, op, g: left(b, cot(b, op, g), op.args[1]),
            lambda b, op, g: right(b, op.args[0], cot(b, op, g)))


# --- elementwise binary (NumPy broadcasting; the planner sums over broadcast axes) ---------------


def _binary(name: str, sym: str, ufunc: str, what: str, rule: str, grads: tuple[str, str],
            vjps: tuple[VJP, ...], domain: tuple[str, str] = (REAL, REAL), prec: int = ADD,
            commutative: bool = False) -> None:
    _def(name=name, kind="binary", arity=2, shape=_bcast(what), fmt="{0} %s {1}" % sym,
         prec=prec, arg_prec=(prec, prec + 1), domain=domain, rule=rule, math=f"z = a {sym} b",
         grads=tuple(f"{rule}: {g}" for g in grads), vjps=vjps, elementwise=True,
         ufunc=(ufunc, 0, ()), augmented=sym, commutative=commutative, fusion="elementwise")


_binary("add", "+", "np.add", "addition '+'", "addition", ("da = dz", "db = dz"), linear(1, 1),
        commutative=True)
_binary("sub", "-", "np.subtract", "subtraction '-'", "subtraction", ("da = dz", "db = -dz"),
        linear(1, -1))
_binary("mul", "*", "np.multiply", "product '*'", "Hadamard product", ("da = dz * b", "db = a * dz"),
        bilinear(lambda b, g, y: b.emit("mul", g, y), lambda b, x, g: b.emit("mul", x, g)),
        prec=MUL, commutative=True)
_binary("div", "/", "np.divide", "division '/'", "division", ("da = dz / b", "db = -dz * z / b"),
        (lambda b, op, g: b.emit("div", g, op.args[1]),
         lambda b, op, g: b.emit("neg", b.emit("div", b.emit("mul", g, op.out), op.args[1]))),
        domain=(REAL, POSITIVE), prec=MUL)

# --- elementwise unary ---------------------------------------------------------------------------


def _unary(name: str, fmt: str, math: str, grad: str, vjp: VJP | None, *, domain: str,
           scalar: Callable[[float], float] | None = None, arg_prec: int = ANY, prec: int = ATOM,
           rule: str = "", ufunc: UfuncCall | None = None, call: bool = True,
           helper: str = "") -> None:
    """An elementwise function; ``call``: a spec may call it by name; ``ufunc``: its in-place
    call, by default ``np.<name>(x, out=...)`` when the rendering is exactly that call."""
    if ufunc is None and fmt == f"np.{name}({{0}})":
        ufunc = (f"np.{name}", 0, ())
    _def(name=name, kind="unary", arity=1, shape=_same, fmt=fmt, prec=prec, arg_prec=(arg_prec,),
         domain=(domain,), rule=rule or name, math=math,
         grads=(f"{rule or name}: {grad}",) if grad else (), vjps=(vjp,), elementwise=True,
         ufunc=ufunc, helper=helper, fusion="elementwise", call=() if call else None,
         scalar=scalar)


def _pow_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    c = op.attr("exponent")
    assert isinstance(c, (int, float))
    if c == 0:  # x ** 0 is constant: dx = 0 (c * x ** -1 would be 0 * inf = NaN at x = 0)
        return b.emit("zeros", shape=b.shape(op.args[0]))
    if c == 2:
        return b.emit("mul", b.emit("mul", g, Const(2)), op.args[0])
    return b.emit("mul", b.emit("mul", g, Const(c)), b.emit("pow", op.args[0], exponent=c - 1))


def _softplus(x: float) -> float:
    return max(x, 0.0) + _math.log1p(_math.exp(-abs(x)))


_unary("neg", "-{0}", "y = -x", "dx = -dy", linear(-1)[0], domain=REAL, arg_prec=POW,
       prec=UNARY, rule="negation", ufunc=("np.negative", 0, ()), call=False)
_unary("pow", "{0} ** {exponent}", "y = x ** c", "dx = dy * c * x ** (c - 1)", _pow_vjp,
       domain=POSITIVE_IF_FRACTIONAL, arg_prec=POW + 1, prec=POW, rule="power", call=False)
_unary("exp", "np.exp({0})", "y = exp(x)", "dx = dy * y",
       lambda b, op, g: b.emit("mul", g, op.out), domain=REAL, scalar=_math.exp)
_unary("expm1", "np.expm1({0})", "y = exp(x) - 1", "dx = dy * (y + 1)",
       lambda b, op, g: b.emit("mul", g, b.emit("add", op.out, Const(1))), domain=REAL,
       scalar=_math.expm1)
_unary("log", "np.log({0})", "y = log(x)", "dx = dy / x",
       lambda b, op, g: b.emit("div", g, op.args[0]), domain=POSITIVE, scalar=_math.log)
_unary("log1p", "np.log1p({0})", "y = log1p(x)", "dx = dy / (1 + x)",
       lambda b, op, g: b.emit("div", g, b.emit("add", Const(1), op.args[0])), domain=POSITIVE,
       scalar=_math.log1p)
_unary("sqrt", "np.sqrt({0})", "y = sqrt(x)", "dx = dy / (2 * y), and 0 where y = 0",
       lambda b, op, g: b.emit("div", g, b.emit("mul", Const(2), b.emit("nonzero_or_inf", op.out))),
       domain=POSITIVE, scalar=_math.sqrt)
_unary("square", "np.square({0})", "y = x ** 2", "dx = dy * 2 * x",
       lambda b, op, g: b.emit("mul", b.emit("mul", g, Const(2)), op.args[0]), domain=REAL,
       scalar=lambda x: x * x)
_unary("abs", "np.abs({0})", "y = |x|", "dx = dy * sign(x)   (sign(0) = 0)",
       lambda b, op, g: b.emit("mul", g, b.emit("sign", op.args[0])), domain=REAL, scalar=abs)
_unary("tanh", "np.tanh({0})", "y = tanh(x)", "dx = dy * (1 - y * y)",
       lambda b, op, g: b.emit("mul", g, b.emit("sub", Const(1), b.emit("mul", op.out, op.out))),
       domain=REAL, scalar=_math.tanh)
# _sigmoid (helpers/sigmoid.py.j2): from exp(-|x|), no overflow, accurate for large negative x
_unary("sigmoid", "_sigmoid({0})", "y = 1 / (1 + exp(-x))", "dx = dy * y * (1 - y)",
       lambda b, op, g: b.emit("mul", g, b.emit("mul", op.out, b.emit("sub", Const(1), op.out))),
       domain=REAL, scalar=lambda x: _math.exp(-_softplus(-x)), ufunc=("_sigmoid", 0, ()),
       helper="sigmoid")
_unary("relu", "np.maximum({0}, 0)", "y = max(x, 0)", "dx = dy * (y > 0)   (relu'(0) = 0)",
       lambda b, op, g: b.emit("mul", g, b.emit("positive", op.out)), domain=REAL,
       scalar=lambda x: max(x, 0.0), ufunc=("np.maximum", 0, (0,)))
_unary("softplus", "np.logaddexp(0, {0})", "y = log(1 + exp(x))",
       "dx = dy * sigmoid(x) = dy * exp(x - y)",
       lambda b, op, g: b.emit("mul", g, b.emit("exp", b.emit("sub", op.args[0], op.out))),
       domain=REAL, scalar=_softplus, ufunc=("np.logaddexp", 1, (0,)))
_unary("sin", "np.sin({0})", "y = sin(x)", "dx = dy * cos(x)",
       lambda b, op, g: b.emit("mul", g, b.emit("cos", op.args[0])), domain=REAL, scalar=_math.sin)
_unary("cos", "np.cos({0})", "y = cos(x)", "dx = -dy * sin(x)",
       lambda b, op, g: b.emit("neg", b.emit("mul", g, b.emit("sin", op.args[0]))), domain=REAL,
       scalar=_math.cos)
_unary("cosh", "np.cosh({0})", "y = cosh(x)", "dx = dy * sinh(x)",
       lambda b, op, g: b.emit("mul", g, b.emit("sinh", op.args[0])), domain=REAL,
       scalar=_math.cosh)
_unary("sinh", "np.sinh({0})", "y = sinh(x)", "dx = dy * cosh(x)",
       lambda b, op, g: b.emit("mul", g, b.emit("cosh", op.args[0])), domain=REAL,
       scalar=_math.sinh)
_unary("arctan", "np.arctan({0})", "y = arctan(x)", "dx = dy / (1 + x * x)",
       lambda b, op, g: b.emit("div", g, b.emit("add", Const(1), b.emit("mul", op.args[0],
                                                                         op.args[0]))),
       domain=REAL, scalar=_math.atan)
_unary("tan", "np.tan({0})", "y = tan(x)", "dx = dy * (1 + y * y)",
       lambda b, op, g: b.emit("mul", g, b.emit("add", Const(1), b.emit("mul", op.out, op.out))),
       domain=REAL, scalar=_math.tan)
# _erf (helpers/erf.py.j2): NumPy has no erf; math.erf per element (Numba: math.erf in the loop)
_unary("erf", "_erf({0})", "y = erf(x)",
       "dx = dy * 1.1283791670955126 * exp(-x * x)   (2 / sqrt(pi))",
       lambda b, op, g: b.emit("mul", g, b.emit("mul", Const(2 / _math.sqrt(_math.pi)), b.emit(
           "exp", b.emit("neg", b.emit("mul", op.args[0], op.args[0]))))),
       domain=REAL, scalar=_math.erf, helper="erf")
# log(sigmoid(x)) = -softplus(-x), never log(0); its slope sigmoid(-x) = 1 - exp(y) = -expm1(y)
_unary("log_sigmoid", "-np.logaddexp(0, -{0})", "y = log(sigmoid(x)) = -softplus(-x)",
       "dx = dy * sigmoid(-x) = -dy * expm1(y)",
       lambda b, op, g: b.emit("neg", b.emit("mul", g, b.emit("expm1", op.out))), domain=REAL,
       scalar=lambda x: -_softplus(-x), arg_prec=POW, prec=UNARY)
# Piecewise-constant helpers that only backward programs use; their derivative is zero.
_unary("sign", "np.sign({0})", "y = sign(x)", "", None, domain=REAL, call=False)
# [x > 0] as a float of x's dtype (a boolean mask would break on negation once g = 1 is folded).
_unary("positive", "np.heaviside({0}, 0)", "y = [x > 0]", "", None, domain=REAL, call=False,
       ufunc=("np.heaviside", 0, (0,)))
# x where x > 0, else +inf: a divisor that turns the infinite slope of sqrt at 0 into 0, not NaN.
_unary("nonzero_or_inf", "np.where({0} > 0, {0}, np.inf)", "", "", None, domain=REAL,
       arg_prec=CMP + 1, call=False)
# x where it is finite, else 0: the shift of a max-shifted normalisation, as the NumPy module's
# helpers take it (a loop backend's lowering of logsumexp, softmax, log_softmax).
_unary("finite_or_zero", "np.where(np.isfinite({0}), {0}, 0)", "", "", None, domain=REAL,
       call=False)

# --- selection (DESIGN 1b): comparisons as where's condition, maximum and minimum -------------


def _compare(name: str, sym: str) -> None:
    """A mask (not differentiable); the parser accepts it only as where's condition."""
    _def(name=name, kind="binary", arity=2, shape=_bcast(f"comparison '{sym}'"),
         fmt="{0} %s {1}" % sym, prec=CMP, arg_prec=(CMP + 1, CMP + 1), domain=(REAL, REAL),
         rule=f"comparison '{sym}'", math=f"c = a {sym} b", vjps=(None, None), elementwise=True,
         fusion="elementwise")


for _name, _sym in (("less", "<"), ("less_equal", "<="), ("greater", ">"), ("greater_equal", ">=")):
    _compare(_name, _sym)


def _chosen(which: int) -> VJP:
    """where's VJP for branch ``which`` (1: true, 2: false): the cotangent SELECTED where the
    branch was chosen, never multiplied by a mask (0 * inf would be NaN)."""
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        if isinstance(g, Const):  # a number: np.where(c, 1, 0) would be an integer array
            g = b.emit("full", g, shape=b.shape(op.out))
        args = (g, Const(0)) if which == 1 else (Const(0), g)
        return b.emit("where", op.args[0], *args)
    return vjp


def _where_shape(s: list[Shape], attrs: dict) -> Shape:
    return shapes.broadcast(shapes.broadcast(s[0], s[1], "where()"), s[2], "where()")


_def(name="where", kind="select", arity=3, shape=_where_shape, fmt="np.where({0}, {1}, {2})",
     prec=ATOM, arg_prec=(ANY, ANY, ANY), domain=(REAL, REAL, REAL), rule="where",
     math="z = where(c, a, b)",
     grads=("where: dc = 0   (a condition is not differentiable)",
            "where: da = where(c, dz, 0)", "where: db = where(c, 0, dz)"),
     vjps=(None, _chosen(1), _chosen(2)), elementwise=True, fusion="elementwise", call=(),
     select=True)
# [a > b] + [a == b] / 2 as a float of the operands' dtype: the share of a maximum's cotangent
_def(name="win_share", kind="binary", arity=2, shape=_bcast("maximum()"),
     fmt="np.heaviside({0} - {1}, 0.5)", prec=ATOM, arg_prec=(ADD, ADD + 1),
     domain=(REAL, REAL), rule="share at ties", vjps=(None, None), elementwise=True,
     fusion="elementwise")


def _share(first: int) -> VJP:
    """maximum's (first=0) or minimum's (first=1) VJP for operand 0; ties split dz in halves."""
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        a, c = op.args if first == 0 else op.args[::-1]
        return b.emit("mul", g, b.emit("win_share", a, c))
    return vjp


def _share_other(first: int) -> VJP:
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        a, c = op.args if first == 0 else op.args[::-1]
        return b.emit("mul", g, b.emit("win_share", c, a))
    return vjp


for _name, _first, _cmp in (("maximum", 0, ">"), ("minimum", 1, "<")):
    _def(name=_name, kind="binary", arity=2, shape=_bcast(f"{_name}()"),
         fmt="np.%s({0}, {1})" % _name, prec=ATOM, arg_prec=(ANY, ANY), domain=(REAL, REAL),
         rule=_name, math=f"z = {_name}(a, b)",
         grads=(f"{_name}: da = dz * ([a {_cmp} b] + [a == b] / 2)",
                f"{_name}: db = dz * ([b {_cmp} a] + [a == b] / 2)"),
         vjps=(_share(_first), _share_other(_first)), elementwise=True, fusion="elementwise",
         call=(), commutative=True)

# --- linear algebra ------------------------------------------------------------------------------


def _last_two_swapped(b: RuleBuilder, x: Arg) -> Arg:
    """``x`` with its last two axes swapped: ``X.T`` for a matrix, a view for a batch."""
    rank = len(b.shape(x))
    if rank == 2:
        return b.emit("transpose", x)
    return b.emit("permute", x, axes=tuple(range(rank - 2)) + (rank - 1, rank - 2))


def _rows_product(b: RuleBuilder, a: Arg, w: Arg, g: Arg) -> Arg:
    """dB of a batch of rows times one matrix: one BLAS call, the batch axes merged into rows."""
    ashape, gshape = b.shape(a), b.shape(g)
    rows = shapes.product_dim(list(ashape[:-1]))
    a2 = b.emit("reshape", a, shape=(rows, ashape[-1]))
    g2 = b.emit("reshape", g, shape=(rows, gshape[-1]))
    return b.emit("matmul", b.emit("transpose", a2), g2)


# The matrix product's rules by the operands' ranks (1: a vector, 2: a matrix, 3: a batch, for
# both ranks above 2): (rule text, or None for the entry's own; the contribution from the
# builder, A, B and the dense cotangent), for dA and for dB.  A vector against a batch is refused
# by the shape rule.
_MatmulRule = tuple["str | None", Callable[[RuleBuilder, Arg, Arg, Arg], Arg]]
_MATMUL: dict[tuple[int, int], tuple[_MatmulRule, _MatmulRule]] = {
    (1, 1): (("inner product: da = dz * b", lambda b, a, w, g: b.emit("mul", g, w)),
             ("inner product: db = a * dz", lambda b, a, w, g: b.emit("mul", a, g))),
    (2, 1): (("matrix-vector product: dA = outer(dz, b)", lambda b, a, w, g: b.emit("outer", g, w)),
             ("matrix-vector product: db = A.T @ dz",
              lambda b, a, w, g: b.emit("matmul", b.emit("transpose", a), g))),
    (1, 2): (("vector-matrix product: da = B @ dz", lambda b, a, w, g: b.emit("matmul", w, g)),
             ("vector-matrix product: dB = outer(a, dz)", lambda b, a, w, g: b.emit("outer", a, g))),
    (2, 2): ((None, lambda b, a, w, g: b.emit("matmul", g, b.emit("transpose", w))),
             (None, lambda b, a, w, g: b.emit("matmul", b.emit("transpose", a), g))),
    (3, 2): (("batched matrix product: dA = dZ @ swapaxes(B, -1, -2)",
              lambda b, a, w, g: b.emit("matmul", g, _last_two_swapped(b, w))),
             ("batched matrix product: dB = sum over the batch of swapaxes(A, -1, -2) @ dZ",
              _rows_product)),
    (2, 3): (("batched matrix product: dA = dZ @ swapaxes(B, -1, -2)",
              lambda b, a, w, g: b.emit("matmul", g, _last_two_swapped(b, w))),
             ("batched matrix product: dB = swapaxes(A, -1, -2) @ dZ",
              lambda b, a, w, g: b.emit("matmul", _last_two_swapped(b, a), g))),
}
_MATMUL[3, 3] = (_MATMUL[2, 3][0], _MATMUL[2, 3][1])


def _matmul_vjp(i: int) -> VJP:
    """dA (``i`` = 0) or dB (1) of ``Z = A @ B`` by the rule of the operands' ranks."""
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        a, w = op.args
        text, rule = _MATMUL[min(len(b.shape(a)), 3), min(len(b.shape(w)), 3)][i]
        if text is not None:
            b.explain(text)
        if b.shape(op.out):  # (an inner product's cotangent is a scalar already)
            g = b.dense(g, b.shape(op.out))
        return rule(b, a, w, g)
    return vjp


_def(name="matmul", kind="linalg", arity=2, shape=lambda s, attrs: shapes.matmul(s[0], s[1]),
     fmt="{0} @ {1}", prec=MUL, arg_prec=(MUL, MUL + 1), domain=(REAL, REAL),
     rule="matrix product", math="Z = A @ B",
     grads=("right product: dA = dZ @ B.T", "left product: dB = A.T @ dZ"),
     vjps=(_matmul_vjp(0), _matmul_vjp(1)))
_def(name="transpose", kind="linalg", arity=1, shape=lambda s, attrs: shapes.transpose(s[0]),
     fmt="{0}.T", prec=ATOM, arg_prec=(ATOM,), domain=(REAL,), rule="transpose", math="Y = X.T",
     grads=("transpose: dX = dY.T",),
     vjps=(lambda b, op, g: b.emit("transpose", b.dense(g, b.shape(op.out))),),
     result="view", inline=True)


def _outer_shape(s: list[Shape], attrs: dict) -> Shape:
    if len(s[0]) != 1 or len(s[1]) != 1:
        raise shapes.ShapeError(
            f"outer product needs two vectors, got {shapes.fmt(s[0])} and {shapes.fmt(s[1])}")
    return (s[0][0], s[1][0])


_def(name="outer", kind="linalg", arity=2, shape=_outer_shape, fmt="np.outer({0}, {1})",
     prec=ATOM, arg_prec=(ANY, ANY), domain=(REAL, REAL), rule="outer product",
     math="Z = outer(u, v) = u v^T",
     grads=("outer product: du = dZ @ v", "outer product: dv = dZ.T @ u"),
     vjps=bilinear(lambda b, g, v: b.emit("matmul", g, v), lambda b, u, g: b.emit("matmul", u, g),
                   dense=True),
     call=())

# --- reductions ----------------------------------------------------------------------------------


def _reduce_shape(s: list[Shape], attrs: dict) -> Shape:
    return shapes.reduce(s[0], attrs.get("axis"), bool(attrs.get("keepdims", False)))  # type: ignore[arg-type]


def _spread(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    """Cotangent of a reduction's output, re-aligned so that it broadcasts over the input."""
    axis, keepdims = op.attr("axis"), op.attr("keepdims", False)
    if axis is None or keepdims:
        return g
    out_rank, g_rank = len(b.shape(op.out)), len(b.shape(g))
    assert isinstance(axis, int)
    first = out_rank - g_rank  # output axis that g's first axis lines up with
    if first < axis:  # g has an axis left of the reduced one: re-insert the reduced axis
        return b.emit("expand_dims", g, axis=axis - first)
    return g


def _mean_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    shape = b.shape(op.args[0])
    axis = op.attr("axis")
    dims = shape if axis is None else (shape[axis],)  # type: ignore[index, call-overload]
    out = _spread(b, op, g)
    for d in dims:
        out = b.emit("div", out, b.size(d))
    return out


def _fmt_reduce(fn: str) -> str:
    return "np." + fn + "({0}{axis_kw}{keepdims_kw})"


AXIS_KEEPDIMS = ("axis", "keepdims")

# sum is linear: its VJP spreads the cotangent back over the summed axes (a lazy broadcast)
_def(name="sum", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("sum"), prec=ATOM,
     arg_prec=(ANY,), domain=(REAL,), rule="sum", math="s = sum(X, axis)",
     grads=("sum: dX = ds, broadcast over the summed axes",), vjps=(_spread,),
     fusion="reduction", call=AXIS_KEEPDIMS)
_def(name="mean", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("mean"), prec=ATOM,
     arg_prec=(ANY,), domain=(REAL,), rule="mean", math="m = mean(X, axis)",
     grads=("mean: dX = dm / n, broadcast over the n averaged elements",),
     vjps=(_mean_vjp,), fusion="reduction", call=AXIS_KEEPDIMS)

def _max_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    """The cotangent shared equally among the tied maxima (DESIGN 1b)."""
    x, axis = op.args[0], op.attr("axis")
    ties = b.emit("tie", x, _spread(b, op, op.out))
    count = b.emit("sum", ties, axis=axis, keepdims=True)
    return b.emit("mul", _spread(b, op, g), b.emit("div", ties, count))


# max(X): also the shift of a stable logsumexp (lower.py); min(X) is written -max(-X) (parse.py)
_def(name="max", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("max"), prec=ATOM,
     arg_prec=(ANY,), domain=(REAL,), rule="maximum", math="y = max(X, axis)",
     grads=("maximum: dX = dy * [X == y] / sum([X == y], axis)   (ties share dy equally)",),
     vjps=(_max_vjp,), fusion="reduction", call=AXIS_KEEPDIMS)
# [a == b] as a float of the module's dtype: the tied maxima
_def(name="tie", kind="binary", arity=2, shape=_bcast("tie"), fmt="({0} == {1}).astype({dtype})",
     prec=ATOM, arg_prec=(CMP + 1, CMP + 1), domain=(REAL, REAL), rule="tied maxima",
     vjps=(None, None), elementwise=True, fusion="elementwise")

# --- layout ops introduced by the planner (never written in specs) ------------------------------


def _expand_shape(s: list[Shape], attrs: dict) -> Shape:
    axis = attrs["axis"]
    return tuple(s[0][:axis]) + (1,) + tuple(s[0][axis:])  # type: ignore[index]


def _to_shape(s: list[Shape], attrs: dict) -> Shape:
    if not shapes.broadcastable_to(s[0], attrs["shape"]):
        raise shapes.ShapeError(
            f"cannot broadcast {shapes.fmt(s[0])} to {shapes.fmt(attrs['shape'])}")
    return attrs["shape"]  # type: ignore[no-any-return]


_def(name="expand_dims", kind="layout", arity=1, shape=_expand_shape, fmt="{0}{index}",
     prec=ATOM, arg_prec=(ATOM,), domain=(REAL,), rule="re-insert reduced axis", vjps=(None,),
     result="view", inline=True)
_def(name="broadcast_to", kind="layout", arity=1, shape=_to_shape,
     fmt="np.broadcast_to({0}, {shape})", prec=ATOM, arg_prec=(ANY,), domain=(REAL,),
     rule="broadcast (a read-only view, no copy)", vjps=(None,), result="view",
     fusion="elementwise")
_def(name="full", kind="layout", arity=1, shape=_to_shape, fmt="np.full({shape}, {0}, dtype={dtype})",
     prec=ATOM, arg_prec=(ANY,), domain=(REAL,), rule="materialise a broadcast gradient",
     vjps=(None,), distinct=True, fusion="elementwise")
_def(name="reshape", kind="linalg", arity=1,
     shape=lambda s, attrs: shapes.reshape(s[0], attrs["shape"]), fmt="{0}.reshape({shape})",
     prec=ATOM, arg_prec=(ATOM,), domain=(REAL,), rule="reshape", math="Y = reshape(X, shape)",
     grads=("reshape: dX = dY, reshaped to the shape of X",),
     vjps=(lambda b, op, g: b.emit("reshape", b.dense(g, b.shape(op.out)),
                                   shape=b.shape(op.args[0])),),
     result="view", call=())


def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(range(len(axes)), key=lambda i: axes[i]))


_def(name="permute", kind="linalg", arity=1,
     shape=lambda s, attrs: shapes.permute(s[0], attrs["axes"]),  # type: ignore[arg-type]
     fmt="np.transpose({0}, {axes})", prec=ATOM, arg_prec=(ANY,), domain=(REAL,),
     rule="transpose (axes)", math="Y = transpose(X, axes)",
     grads=("transpose (axes): dX = transpose(dY, axes), with the inverse permutation",),
     vjps=(lambda b, op, g: b.emit("permute", b.dense(g, b.shape(op.out)),
                                   axes=_inverse(op.attr("axes"))),),  # type: ignore[arg-type]
     result="view")  # a spec writes transpose(a, axes) or swapaxes(a, i, j) (parse.py)


def _concat_vjp(k: int) -> VJP:
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        axis = op.attr("axis")
        sizes = [b.shape(a)[axis] for a in op.args]  # type: ignore[index, call-overload]
        return b.emit("slice_axis", b.dense(g, b.shape(op.out)), axis=axis,
                      start=tuple(sizes[:k]), stop=tuple(sizes[:k + 1]))
    return vjp


def _stack_vjp(k: int) -> VJP:
    return lambda b, op, g: b.emit("index_axis", b.dense(g, b.shape(op.out)),
                                   axis=op.attr("axis"), index=k)


# concatenate and stack take any number of operands (``arity`` is the smallest); the
# VJP of operand k is its slice of the cotangent.
_def(name="concatenate", kind="linalg", arity=2,
     shape=lambda s, attrs: shapes.concatenate(s, attrs["axis"]),  # type: ignore[arg-type]
     fmt="np.concatenate({tuple}, axis={axis})", prec=ATOM, arg_prec=(ANY, ANY),
     domain=(REAL, REAL), rule="concatenate", math="Y = concatenate((A, B), axis)",
     grads=("concatenate: dA = dY[..., :a] (its slice along axis)",
            "concatenate: dB = dY[..., a:] (its slice along axis)"),
     vjps=(_concat_vjp(0), _concat_vjp(1)), call=("axis",))
_def(name="stack", kind="linalg", arity=2,
     shape=lambda s, attrs: shapes.stack(s, attrs["axis"]),  # type: ignore[arg-type]
     fmt="np.stack({tuple}, axis={axis})", prec=ATOM, arg_prec=(ANY, ANY),
     domain=(REAL, REAL), rule="stack", math="Y = stack((A, B), axis)",
     grads=("stack: dA = dY[..., 0] (along axis)", "stack: dB = dY[..., 1] (along axis)"),
     vjps=(_stack_vjp(0), _stack_vjp(1)), call=("axis",))


def _slice_shape(s: list[Shape], attrs: dict) -> Shape:
    out = list(s[0])  # start and stop: the sizes before the slice and up to its end (summed)
    out[attrs["axis"]] = attrs["stop"][-1]
    return tuple(out)


def _index_shape(s: list[Shape], attrs: dict) -> Shape:
    axis = attrs["axis"]
    return tuple(s[0][:axis]) + tuple(s[0][axis + 1:])


# The cotangents of concatenate's and stack's operands: views of the output's cotangent.
_def(name="slice_axis", kind="layout", arity=1, shape=_slice_shape, fmt="{0}{index}",
     prec=ATOM, arg_prec=(ATOM,), domain=(REAL,), rule="the slice of one operand", vjps=(None,),
     result="view")
_def(name="index_axis", kind="layout", arity=1, shape=_index_shape, fmt="{0}{index}",
     prec=ATOM, arg_prec=(ATOM,), domain=(REAL,), rule="the entry of one operand", vjps=(None,),
     result="view")


def _einsum_vjp(k: int) -> VJP:
    """d operand k = einsum of the cotangent with the other operands, into operand k's indices."""
    def vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
        subscripts = str(op.attr("subscripts"))
        ins, _, out = subscripts.partition("->")
        terms = ins.split(",")
        others = [t for j, t in enumerate(terms) if j != k]
        args = [a for j, a in enumerate(op.args) if j != k]
        if not out and not isinstance(g, str):  # a scalar output's seed, a number: a factor
            rest = args[0] if others == [terms[k]] else \
                b.emit("einsum", *args, subscripts=",".join(others) + "->" + terms[k])
            return rest if getattr(g, "value", None) == 1 else b.emit("mul", rest, g)
        g = b.dense(g, b.shape(op.out))
        return b.emit("einsum", *args, g, subscripts=",".join(others + [out]) + "->" + terms[k])
    return vjp


_def(name="einsum", kind="linalg", arity=2,
     shape=lambda s, attrs: shapes.einsum(str(attrs["subscripts"]), s),
     # (optimize=True may return a transposed view of its product: a gradient must be its own)
     fmt='np.asarray(np.einsum("{subscripts}", {args}, optimize=True), order="C")', prec=ATOM,
     arg_prec=(ANY, ANY),
     domain=(REAL, REAL), rule="einsum", math='Z = einsum("ij,jk->ik", A, B)',
     grads=("einsum: dA = einsum(B, dZ), into the indices of A",
            "einsum: dB = einsum(A, dZ), into the indices of B"),
     vjps=(_einsum_vjp(0), _einsum_vjp(1)), lowered=True, call=())
# einsum, concatenate and stack take any number of operands; the VJP of operand k:
VARIADIC_VJPS: dict[str, Callable[[int], VJP]] = {
    "einsum": _einsum_vjp, "concatenate": _concat_vjp, "stack": _stack_vjp}
_def(name="copy", kind="layout", arity=1, shape=_same, fmt="{0}.copy()", prec=ATOM,
     arg_prec=(ATOM,), domain=(REAL,), rule="copy (the gradient would alias another array)",
     grads=("copy: dx = dy",), vjps=linear(1), distinct=True, fusion="elementwise")
_def(name="zeros", kind="layout", arity=0, shape=_attr_shape, fmt="np.zeros({shape}, dtype={dtype})",
     prec=ATOM, arg_prec=(), domain=(), rule="zero gradient (the output does not depend on it)",
     vjps=(), distinct=True)

_def(name="identity", kind="layout", arity=1, shape=_same, fmt="{0}", prec=ANY, arg_prec=(ANY,),
     domain=(REAL,), rule="identity", math="y = x", grads=("identity: dx = dy",),
     vjps=linear(1), elementwise=True, result="view", fusion="elementwise")

# --- ML: normalisations along an axis, computed max-shifted (module helpers in templates/) ------


def _same_axis(s: list[Shape], attrs: dict) -> Shape:
    return s[0]


def _lse_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    y = _spread(b, op, op.out)  # the result with the reduced axis re-inserted
    return b.emit("mul", _spread(b, op, g), b.emit("exp", b.emit("sub", op.args[0], y)))


def _softmax_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    y, axis = op.out, op.attr("axis")
    g = b.dense(g, b.shape(y))
    inner = b.emit("sum", b.emit("mul", g, y), axis=axis, keepdims=True)
    return b.emit("mul", y, b.emit("sub", g, inner))


def _log_softmax_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    y, axis = op.out, op.attr("axis")
    g = b.dense(g, b.shape(y))
    total = b.emit("sum", g, axis=axis, keepdims=True)
    return b.emit("sub", g, b.emit("mul", b.emit("exp", y), total))


_def(name="logsumexp", kind="reduce", arity=1, shape=_reduce_shape,
     fmt="_logsumexp({0}{axis_kw}{keepdims_kw})", prec=ATOM, arg_prec=(ANY,), domain=(REAL,),
     rule="logsumexp", math="y = log(sum(exp(x), axis))",
     grads=("logsumexp: dx = dy * exp(x - y)  (= dy * softmax(x))",), vjps=(_lse_vjp,),
     helper="logsumexp", lowered=True, call=AXIS_KEEPDIMS)
_def(name="softmax", kind="reduce", arity=1, shape=_same_axis, fmt="_softmax({0}{axis_kw})",
     prec=ATOM, arg_prec=(ANY,), domain=(REAL,), rule="softmax",
     math="y = exp(x) / sum(exp(x), axis)",
     grads=("softmax: dx = y * (dy - sum(dy * y, axis))",), vjps=(_softmax_vjp,),
     helper="softmax", lowered=True, call=("axis",))
_def(name="log_softmax", kind="reduce", arity=1, shape=_same_axis,
     fmt="_log_softmax({0}{axis_kw})", prec=ATOM, arg_prec=(ANY,), domain=(REAL,),
     rule="log_softmax", math="y = x - logsumexp(x, axis)",
     grads=("log_softmax: dx = dy - exp(y) * sum(dy, axis)",), vjps=(_log_softmax_vjp,),
     helper="log_softmax", lowered=True, call=("axis",))

# --- matrix functions ----------------------------------------------------------------------------


def _square(what: str, out: str) -> ShapeRule:
    def rule(s: list[Shape], attrs: dict) -> Shape:
        a = s[0]
        if len(a) != 2 or a[0] != a[1]:
            raise shapes.ShapeError(f"{what} needs a square matrix [n, n], got {shapes.fmt(a)}")
        return () if out == "scalar" else a
    return rule


def _trace_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    return b.emit("mul", g, b.emit("eye", shape=b.shape(op.args[0])))


def _inv_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    yt = b.emit("transpose", op.out)
    return b.emit("neg", b.emit("matmul", b.emit("matmul", yt, b.dense(g, b.shape(op.out))), yt))


def _det_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    inv_t = b.emit("transpose", b.emit("inv", op.args[0]))
    return b.emit("mul", b.emit("mul", g, op.out), inv_t)


def _logdet_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    return b.emit("mul", g, b.emit("transpose", b.emit("inv", op.args[0])))


_def(name="trace", kind="linalg", arity=1, shape=_square("trace()", "scalar"),
     fmt="np.trace({0})", prec=ATOM, arg_prec=(ANY,), domain=(REAL,), rule="trace",
     math="y = tr(X)", grads=("trace: dX = dy * I",), vjps=(_trace_vjp,), call=())
_def(name="inv", kind="linalg", arity=1, shape=_square("inv()", "matrix"),
     fmt="np.linalg.inv({0})", prec=ATOM, arg_prec=(ANY,), domain=(NONSINGULAR,), rule="inverse",
     math="Y = X^-1", grads=("inverse: dX = -Y.T @ dY @ Y.T",), vjps=(_inv_vjp,), lapack=True,
     call=())
_def(name="det", kind="linalg", arity=1, shape=_square("det()", "scalar"),
     fmt="np.linalg.det({0})", prec=ATOM, arg_prec=(ANY,), domain=(NONSINGULAR,),
     rule="determinant", math="y = det(X)", grads=("determinant: dX = dy * y * inv(X).T",),
     vjps=(_det_vjp,), lapack=True, call=())
_def(name="logdet", kind="linalg", arity=1, shape=_square("logdet()", "scalar"),
     fmt="np.linalg.slogdet({0})[1]", prec=ATOM, arg_prec=(ANY,), domain=(NONSINGULAR,),
     rule="log-determinant", math="y = log|det(X)|",
     grads=("log-determinant: dX = dy * inv(X).T",), vjps=(_logdet_vjp,), lapack=True, call=())


def _diag_shape(s: list[Shape], attrs: dict) -> Shape:
    a = s[0]
    if len(a) == 1:
        return (a[0], a[0])
    if len(a) == 2 and a[0] == a[1]:
        return (a[0],)
    raise shapes.ShapeError(f"diag() takes a vector [n] (-> the matrix with it on the diagonal) "
                            f"or a square matrix [n, n] (-> its diagonal), got {shapes.fmt(a)}")


# diag is linear and its own adjoint's shape-flip: the VJP of v -> diag(v) is dA -> diag(dA)
# (NumPy's diagonal of a matrix is a read-only view: "view")
_def(name="diag", kind="linalg", arity=1, shape=_diag_shape, fmt="np.diag({0})", prec=ATOM,
     arg_prec=(ANY,), domain=(REAL,), rule="diagonal", math="y = diag(x)",
     grads=("diagonal: dx = diag(dy)",),
     vjps=(lambda b, op, g: b.emit("diag", b.dense(g, b.shape(op.out))),), result="view",
     call=())
_def(name="eye", kind="layout", arity=0, shape=_attr_shape, fmt="np.eye({n}, dtype={dtype})",
     prec=ATOM, arg_prec=(), domain=(), rule="identity matrix", vjps=())

# --- labels: integer arrays that index a float array (never differentiated themselves) --------
# Each label op reads its integer operand only as an index: the entry's ``labels`` names those
# operands (the parser refuses an integer or boolean value anywhere else).  Every rendering checks
# the labels first and raises ValueError for one outside [0, depth) (helpers in templates/).
# Finite-difference domain: the float operand anywhere; the labels are fixed (not perturbed): the
# checks draw them within [0, depth) by their dtype (``finite_differences.label_bound``).


def _take_shape(s: list[Shape], attrs: dict) -> Shape:
    a, y = s
    axis = attrs["axis"]
    assert isinstance(axis, int)
    if len(a) != len(y) or not a:
        raise shapes.ShapeError(
            f"take_along_axis: the labels {shapes.fmt(y)} need the rank of the array "
            f"{shapes.fmt(a)} (NumPy's take_along_axis), like y: [N, 1] for a: [N, K]")
    for k, (da, dy) in enumerate(zip(a, y)):
        if k != axis and da != dy:
            raise shapes.ShapeError(
                f"take_along_axis: the labels {shapes.fmt(y)} and the array {shapes.fmt(a)} "
                f"differ in dim {k + 1} ({dy} vs {da}); only the axis={axis} dim may differ")
    return y


def _take_vjp(b: RuleBuilder, op: "Op", g: Arg) -> Arg:
    a, y = op.args
    return b.emit("put_along_axis", b.dense(g, b.shape(op.out)), y, axis=op.attr("axis"),
                  shape=b.shape(a))


_def(name="take_along_axis", kind="label", arity=2, shape=_take_shape,
     fmt="_take_along_axis({0}, {1}, {axis}, {label})", prec=ATOM, arg_prec=(ANY, ANY),
     rule="take along axis", math="z = take_along_axis(a, y, axis)",
     grads=("take along axis: da = zeros with dz added at the labels y (repeats add up)",),
     vjps=(_take_vjp, None), domain=(REAL, REAL), helper="labels", call=("axis",), labels=(1,))
_def(name="put_along_axis", kind="label", arity=2, shape=_attr_shape,
     fmt="_put_along_axis({0}, {1}, {axis}, {shape})", prec=ATOM, arg_prec=(ANY, ANY),
     rule="scatter-add along axis (np.add.at)", math="z = zeros, z[labels y] += a",
     grads=("scatter-add along axis: da = take_along_axis(dz, y, axis)",),
     vjps=(lambda b, op, g: b.emit("take_along_axis", b.dense(g, b.shape(op.out)), op.args[1],
                                   axis=op.attr("axis"), label=op.attr("label", "")), None),
     domain=(REAL, REAL), helper="labels", labels=(1,))


def _one_hot_shape(s: list[Shape], attrs: dict) -> Shape:
    MAX_RANK = shapes.MAX_RANK
    if not s[0] or len(s[0]) >= MAX_RANK:
        axes = "1 axis" if MAX_RANK == 2 else f"1 to {MAX_RANK - 1} axes"
        raise shapes.ShapeError(
            f"one_hot: labels {shapes.fmt(s[0])} would give rank {len(s[0]) + 1}; labels need "
            f"{axes} (one_hot adds one of size K: y: [N] gives [N, K])")
    return tuple(s[0]) + (attrs["depth"],)


_def(name="one_hot", kind="label", arity=1, shape=_one_hot_shape,
     fmt="_one_hot({0}, {depth}, {label})", prec=ATOM, arg_prec=(ANY,), rule="one-hot labels",
     math="z[..., k] = (y == k)", vjps=(None,), domain=(REAL,), helper="labels", call=(), labels=(0,))

# --- views of the table for the modules that ask one question of it -------------------------------

# --- forward mode: a JVP beside each VJP ---------------------------------------------------------
# Registered here, by op group, so that the entries above stay as they are.  ``y_dot`` is the
# tangent (directional derivative) of y; the forward planner (``forward.py``) sums the
# contributions of the operands that have a tangent.  Second order (``f_hvp``) pushes tangents
# through the joint forward+backward program, so the planner's own ops need JVPs too.


def _jvp(name: str, *fns: JVP, rules: tuple[str, ...]) -> None:
    """Register the JVP of ``name``, one function (and one rule text) per operand."""
    OPS[name] = replace(OPS[name], jvps=tuple(fns), jvp_rules=rules)


def _substitute(i: int) -> JVP:
    """Operand ``i``'s contribution to a (bi)linear op: the op with its tangent in that place."""
    def jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
        args = list(op.args)
        args[i] = t
        return b.emit(op.op, *args, **dict(op.attrs))
    return jvp


def _linear(*names: str) -> None:
    """Ops linear in their one operand: the tangent goes through the op itself (from structure)."""
    for name in names:
        _jvp(name, _substitute(0), rules=(f"{OPS[name].rule} (linear): y_dot = {name}(x_dot)",))


def _bilinear(*names: str) -> None:
    """Ops linear in each operand (products): y_dot = op(a_dot, b) + op(a, b_dot), from structure."""
    for name in names:
        _jvp(name, _substitute(0), _substitute(1),
             rules=(f"{OPS[name].rule} (bilinear): z_dot = {name}(a_dot, b) + ...",
                    f"{OPS[name].rule} (bilinear): z_dot = ... + {name}(a, b_dot)"))


def _diagonal(*names: str) -> None:
    """Elementwise ops: their Jacobian is diagonal, hence symmetric, so the JVP is the VJP with the
    tangent in place of the cotangent (the rule table's own VJP functions, reused)."""
    for name in names:
        opdef = OPS[name]
        rules = []
        for g in opdef.grads:
            rule, _, math = g.partition(": ")
            lhs, _, rhs = math.partition(" = ")  # "dx = dy * (1 - y * y)"
            x = lhs[1:] + "_dot"  # the operand's tangent
            y = "z_dot" if opdef.arity == 2 else "y_dot"
            rhs = re.sub(r"\bd[yz]\b", x, rhs)
            rules.append(f"{rule} (diagonal Jacobian, JVP = VJP): {y} = {rhs}")
        _jvp(name, *opdef.vjps, rules=tuple(rules))  # type: ignore[arg-type]


def _zero(b: RuleBuilder, op: "Op", t: Arg) -> None:
    return None


def _constant(*names: str) -> None:
    """Piecewise-constant helpers: their derivative is zero (so relu'' = 0, sign' = 0)."""
    for name in names:
        _jvp(name, _zero, rules=(f"{OPS[name].rule}: piecewise constant, y_dot = 0",))


# elementwise binary
_jvp("add", lambda b, op, t: t, lambda b, op, t: t,
     rules=("addition: z_dot = a_dot + ...", "addition: z_dot = ... + b_dot"))
_jvp("sub", lambda b, op, t: t, lambda b, op, t: b.emit("neg", t),
     rules=("subtraction: z_dot = a_dot - ...", "subtraction: z_dot = ... - b_dot"))
_bilinear("mul")
_diagonal("div")
# elementwise unary
_linear("neg")
# every elementwise function with a VJP: so a new ``_unary`` entry needs nothing here
_diagonal(*sorted({"pow"} | {name for name, o in OPS.items() if o.kind == "unary" and not o.jvps
                             and o.vjps and o.vjps[0] is not None}))
_constant("sign", "positive")
# x where x > 0, else inf (a constant): its slope is 1 where x > 0, else 0
_jvp("nonzero_or_inf", lambda b, op, t: b.emit("mul", t, b.emit("positive", op.args[0])),
     rules=("nonzero_or_inf: y_dot = x_dot * [x > 0]",))
# the shift of a max-shifted normalisation (lowered programs only): its results do not depend on it
_jvp("finite_or_zero", lambda b, op, t: t,
     rules=("finite_or_zero: y_dot = x_dot (where x is finite)",))
# linear algebra
_bilinear("matmul", "outer")
_linear("transpose", "trace")
# reductions and the planner's layout ops: all linear
_linear("sum", "mean", "expand_dims", "broadcast_to", "full", "reshape", "copy", "identity")


def _lse_jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
    y = _spread(b, op, op.out)  # the result with the reduced axis re-inserted
    p = b.emit("exp", b.emit("sub", op.args[0], y))  # softmax(x)
    return b.emit("sum", b.emit("mul", t, p), axis=op.attr("axis"),
                  keepdims=op.attr("keepdims", False))


def _log_softmax_jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
    inner = b.emit("sum", b.emit("mul", b.emit("exp", op.out), t), axis=op.attr("axis"),
                   keepdims=True)
    return b.emit("sub", t, inner)


def _inv_jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
    return b.emit("neg", b.emit("matmul", b.emit("matmul", op.out, t), op.out))


def _logdet_jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
    return b.emit("sum", b.emit("mul", b.emit("transpose", b.emit("inv", op.args[0])), t))


_jvp("logsumexp", _lse_jvp, rules=("logsumexp: y_dot = sum(x_dot * exp(x - y), axis)",))
# softmax's Jacobian diag(y) - y y^T is symmetric: the JVP is the VJP
_jvp("softmax", _softmax_vjp, rules=("softmax: y_dot = y * (x_dot - sum(x_dot * y, axis))",))
_jvp("log_softmax", _log_softmax_jvp,
     rules=("log_softmax: y_dot = x_dot - sum(exp(y) * x_dot, axis)",))
_jvp("inv", _inv_jvp, rules=("inverse: Y_dot = -Y @ X_dot @ Y",))
_jvp("det", lambda b, op, t: b.emit("mul", op.out, _logdet_jvp(b, op, t)),
     rules=("determinant: y_dot = y * sum(inv(X).T * X_dot)",))
_jvp("logdet", _logdet_jvp, rules=("log-determinant: y_dot = sum(inv(X).T * X_dot)",))

# labels: linear in the float operand, constant in the labels
_jvp("take_along_axis", _substitute(0), _zero,
     rules=("take along axis (linear): z_dot = take_along_axis(a_dot, y, axis)", "labels: constant"))
_jvp("put_along_axis", _substitute(0), _zero,
     rules=("scatter-add along axis (linear): z_dot = put_along_axis(a_dot, y, axis)",
            "labels: constant"))
_jvp("one_hot", _zero, rules=("one-hot labels: constant, z_dot = 0",))

# selection: comparisons, ties and shares are piecewise constant; where's and maximum's
# Jacobians are diagonal per operand (the VJP with the tangent for the cotangent)
for _name in ("less", "less_equal", "greater", "greater_equal", "tie", "win_share"):
    _jvp(_name, _zero, _zero, rules=(f"{OPS[_name].rule}: piecewise constant, z_dot = 0",) * 2)
_jvp("where", _zero, *OPS["where"].vjps[1:],  # type: ignore[arg-type]
     rules=("where: the condition is constant", "where: z_dot = where(c, a_dot, 0) + ...",
            "where: z_dot = ... + where(c, 0, b_dot)"))
for _name in ("maximum", "minimum"):
    _jvp(_name, *OPS[_name].vjps,  # type: ignore[arg-type]
         rules=(f"{OPS[_name].rule} (diagonal Jacobian): z_dot = a_dot * share(a) + ...",
                f"{OPS[_name].rule} (diagonal Jacobian): z_dot = ... + b_dot * share(b)"))
_linear("diag")


def _max_jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
    """The tangent averaged over the tied maxima (the VJP's convention, transposed)."""
    x, axis = op.args[0], op.attr("axis")
    ties = b.emit("tie", x, _spread(b, op, op.out))
    count = b.emit("sum", ties, axis=axis, keepdims=True)
    return b.emit("sum", b.emit("mul", t, b.emit("div", ties, count)), axis=axis,
                  keepdims=op.attr("keepdims", False))


_jvp("max", _max_jvp, rules=("max: y_dot = sum(x_dot * [x == y] / count(x == y), axis)",))

# axes: linear; einsum: linear in each operand (the op with one operand's tangent in its place);
# concatenate and stack: the op with the tangent in its place and zeros for the other operands
_linear("permute", "slice_axis", "index_axis")


def _joined(i: int) -> JVP:
    """Operand ``i``'s contribution to concatenate or stack: its tangent joined with zeros."""
    def jvp(b: RuleBuilder, op: "Op", t: Arg) -> Arg:
        args = [t if k == i else b.emit("zeros", shape=b.shape(a)) for k, a in enumerate(op.args)]
        return b.emit(op.op, *args, **dict(op.attrs))
    return jvp


# the JVP of operand k of an op with any number of operands (as VARIADIC_VJPS)
VARIADIC_JVPS: dict[str, Callable[[int], JVP]] = {
    "einsum": _substitute, "concatenate": _joined, "stack": _joined}
for _name, _rule in (("einsum", "einsum (multilinear): Z_dot = sum over k of einsum with A_k_dot"),
                     ("concatenate", "concatenate (linear): Y_dot = concatenate of the tangents"),
                     ("stack", "stack (linear): Y_dot = stack of the tangents")):
    _jvp(_name, VARIADIC_JVPS[_name](0), VARIADIC_JVPS[_name](1), rules=(_rule, _rule))


# --- a block of tangents at once: the batched forms of the ops that tangents go through --------
# f_jacobian and f_hessian push k tangents (basis vectors) through one JVP or HVP program: every
# tangent carries a leading axis of size k, primal values keep their shapes (``batch.py``).  An
# elementwise op batches by NumPy's right-aligned broadcasting once its batched operands have
# ones inserted after the batch axis (``t[:, None]``); an op with axes shifts them by one; a
# product is rewritten to one that broadcasts the batch axis.  Nonlinear ops (inv, softmax, max,
# ...) never see a tangent (their JVPs apply them to primal values) and the label ops keep the
# loop (their helpers check the labels against the array's shape): no batched form.


def _batch_dim(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> object:
    return next(b.shape(a)[0] for a, f in zip(op.args, batched) if f)


def _unbatched_shape(b: RuleBuilder, a: Arg, batched: bool) -> Shape:
    shape = b.shape(a)
    return tuple(shape[1:]) if batched else shape


def _lift(b: RuleBuilder, a: Arg, rank: int) -> Arg:
    """A batched operand with ones inserted after its batch axis up to ``rank`` tangent axes
    (so that it broadcasts against primal operands of that rank)."""
    while len(b.shape(a)) - 1 < rank:
        a = b.emit("expand_dims", a, axis=1)
    return a


def _batch_elementwise(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """Elementwise ops (and broadcasts): the batched operands lifted to the output's rank."""
    attrs = dict(op.attrs)
    shape = op.attr("shape")
    if isinstance(shape, tuple):  # full, broadcast_to: to the batched shape
        rank = len(shape)
        attrs["shape"] = (_batch_dim(b, op, batched),) + shape
    else:
        rank = max(len(_unbatched_shape(b, a, f)) for a, f in zip(op.args, batched))
    args = [_lift(b, a, rank) if f else a for a, f in zip(op.args, batched)]
    return b.emit(op.op, *args, **attrs)


def _shift(axis: object) -> object:
    """An axis (or axes) of a tangent, counted past the batch axis."""
    if isinstance(axis, tuple):
        return tuple(_shift(a) for a in axis)
    assert isinstance(axis, int)
    return axis + 1 if axis >= 0 else axis


def _batch_axis(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """Ops along an axis of one operand (sum, mean, expand_dims, slices): the axis shifted by one;
    a reduction over every axis reduces over every axis but the batch axis."""
    (x,) = op.args
    axis = op.attr("axis")
    attrs = dict(op.attrs)
    attrs["axis"] = tuple(range(1, len(b.shape(x)))) if axis is None else _shift(axis)
    return b.emit(op.op, x, **attrs)


def _batch_joined(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """concatenate, stack: along the shifted axis, the primal operands broadcast over the batch."""
    k = _batch_dim(b, op, batched)
    args = [a if f else b.emit("broadcast_to", a, shape=(k,) + b.shape(a))
            for a, f in zip(op.args, batched)]
    return b.emit(op.op, *args, **{**dict(op.attrs), "axis": _shift(op.attr("axis"))})


def _batch_permute(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """transpose (all axes reversed) and permute: the batch axis stays first."""
    (x,) = op.args
    rank = len(b.shape(x)) - 1
    axes = op.attr("axes")
    if not isinstance(axes, tuple):  # X.T
        axes = tuple(range(rank - 1, -1, -1))
    return b.emit("permute", x, axes=(0,) + tuple(a + 1 for a in axes))


def _batch_reshape(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    shape = op.attr("shape")
    assert isinstance(shape, tuple)
    return b.emit("reshape", op.args[0], shape=(_batch_dim(b, op, batched),) + shape)


def _batch_matmul(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """A @ B with one operand batched: matmul broadcasts the batch axis between matrices (ones
    inserted to the other's batch rank); a batch of vectors is a matrix ((k, m) @ B, or
    (k, m) @ A.T for A @ v); a vector against a batch of matrices is an einsum."""
    if all(batched):
        raise shapes.ShapeError("matrix product of two batched tangents")
    a, w = op.args
    ra, rw = len(_unbatched_shape(b, a, batched[0])), len(_unbatched_shape(b, w, batched[1]))
    if ra >= 2 and rw >= 2:  # (k, ..., n, m) @ B or A @ (k, ..., m, p): the batch broadcasts
        if batched[0]:
            return b.emit("matmul", _lift(b, a, max(ra, rw)), w)
        return b.emit("matmul", a, _lift(b, w, max(ra, rw)))
    if ra > 2 or rw > 2:
        raise shapes.ShapeError("a vector against a batch of matrices")
    if batched[0] and ra == 1:  # the batch of vectors is a matrix: (k, m) @ B
        return b.emit("matmul", a, w)
    if batched[1] and rw == 1:  # A @ v for k vectors v: (k, m) @ A.T
        return b.emit("matmul", w, a if ra == 1 else b.emit("transpose", a))
    left = "m" if ra == 1 else "nm"  # (k, n, m) @ b, a @ (k, m, p)
    right = "m" if rw == 1 else "mp"
    terms = ["z" + t if f else t for t, f in zip((left, right), batched)]
    return b.emit("einsum", a, w, subscripts=",".join(terms) + "->z" + left[:-1] + right[1:])


def _batch_outer(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """outer(u, v) = u[:, None] * v, the batch axis in front."""
    u, v = op.args
    if batched[0]:
        u = b.emit("expand_dims", u, axis=2)
    else:
        u = b.emit("expand_dims", u, axis=1)
        v = _lift(b, v, 2) if batched[1] else v
    return b.emit("mul", u, v)


def _batch_einsum(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """einsum with an index of its own for the batch axis."""
    subscripts = str(op.attr("subscripts"))
    z = next(c for c in "zyxwvutsrqponmlkjihgfedcba" if c not in subscripts)
    ins, _, out = subscripts.partition("->")
    terms = [z + t if f else t for t, f in zip(ins.split(","), batched)]
    return b.emit("einsum", *op.args, subscripts=",".join(terms) + "->" + z + out)


def _batch_trace(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """tr(X) of each tangent: sum(X * I) over the matrix axes."""
    (x,) = op.args
    eye = b.emit("eye", shape=tuple(b.shape(x)[1:]))
    return b.emit("sum", b.emit("mul", x, eye), axis=(1, 2))


def _batch_diag(b: RuleBuilder, op: "Op", batched: tuple[bool, ...]) -> Arg:
    """diag of each tangent: v[:, :, None] * I (a vector's matrix) or sum(X * I, axis=2)."""
    (x,) = op.args
    n = b.shape(x)[-1]
    eye = b.emit("eye", shape=(n, n))
    if len(b.shape(x)) == 2:
        return b.emit("mul", b.emit("expand_dims", x, axis=2), eye)
    return b.emit("sum", b.emit("mul", x, eye), axis=2)


def _batches(rule: BatchRule, *names_: str) -> None:
    for name in names_:
        OPS[name] = replace(OPS[name], batch=rule)


_batches(_batch_elementwise, *sorted(
    {n for n, o in OPS.items() if o.elementwise} | {"full", "broadcast_to", "copy"}))
_batches(_batch_axis, "sum", "mean", "expand_dims", "slice_axis", "index_axis")
_batches(_batch_joined, "concatenate", "stack")
_batches(_batch_permute, "transpose", "permute")
_batches(_batch_reshape, "reshape")
_batches(_batch_matmul, "matmul")
_batches(_batch_outer, "outer")
_batches(_batch_einsum, "einsum")
_batches(_batch_trace, "trace")
_batches(_batch_diag, "diag")

# Ops a spec may call by name: (number of array arguments, keyword arguments accepted).
CALLABLE: dict[str, tuple[int, tuple[str, ...]]] = {
    name: (op.arity, op.call) for name, op in OPS.items() if op.call is not None}
CALLABLE["one_hot"] = (2, ())  # one_hot(y, K): its depth K (a dim's name or an integer) is an argument
# The helpers NumPy renderings call (templates/helpers/), in the order a module defines them:
# the normalisations first (_log_softmax calls _logsumexp), then the elementwise functions.
HELPERS = tuple(sorted(dict.fromkeys(op.helper for op in OPS.values() if op.helper),
                       key=lambda name: name in OPS and OPS[name].kind == "unary"))


def names(**where: object) -> frozenset[str]:
    """The ops whose fields have the given values: ``names(result="view")``."""
    return frozenset(name for name, op in OPS.items()
                     if all(getattr(op, k) == v for k, v in where.items()))


# Ops whose rendering calls the labels helpers (templates/helpers/labels*.py.j2)
LABEL_OPS = names(helper="labels")
