"""The rule table: each op once, with its shape rule, its NumPy rendering and its VJP written in IR ops.

Grouped by kind, as in HIPS autograd's ``numpy_vjps.py``: elementwise binary, elementwise unary,
linear algebra, reductions, and the layout ops that only the planner introduces.  A VJP is one
function per operand, ``vjp(b, op, g) -> contribution``, where ``b`` appends backward ops, ``op`` is
the forward op (``op.args``, ``op.out``) and ``g`` is the cotangent of ``op.out``.  Cotangents may be
*lazily broadcast* (a smaller shape that broadcasts to the value's shape); elementwise rules keep
them lazy, the others ask for ``b.dense(g, shape)``.  The planner un-broadcasts contributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from . import shapes
from .ir import Arg, Const, Shape

if TYPE_CHECKING:
    from .ir import Op

# Python operator precedences used to parenthesise rendered expressions.
ATOM, POW, UNARY, MUL, ADD, CMP, ANY = 100, 90, 80, 70, 60, 40, 0


class Builder(Protocol):
    """What a VJP may call to append backward ops (implemented in ``build.py``)."""

    def emit(self, op: str, *args: Arg, **attrs: object) -> Arg: ...
    def shape(self, arg: Arg) -> Shape: ...
    def dense(self, arg: Arg, shape: Shape) -> Arg: ...
    def size(self, dim: object) -> Arg: ...
    def explain(self, rule: str) -> None: ...


VJP = Callable[[Builder, "Op", Arg], Arg]
ShapeRule = Callable[[list[Shape], dict], Shape]


@dataclass(frozen=True)
class OpDef:
    """One entry of the rule table."""

    name: str
    kind: str  # "binary" | "unary" | "linalg" | "reduce" | "layout"
    arity: int
    shape: ShapeRule
    fmt: str  # NumPy rendering; {0}, {1} are operands, other fields come from attrs
    prec: int  # precedence of the rendered expression
    arg_prec: tuple[int, ...]  # minimum precedence each operand needs without parentheses
    rule: str = ""  # rule name for comments and the README, e.g. "right product"
    math: str = ""  # forward in math, e.g. "y = tanh(x)"
    grads: tuple[str, ...] = ()  # per operand, the derivative rule in math, e.g. "dx = dy * (1 - y*y)"
    vjps: tuple[VJP | None, ...] = ()  # per operand; None: not differentiable there
    elementwise: bool = False  # contributions represent arrays of the output's shape

    @property
    def differentiable(self) -> bool:
        return any(v is not None for v in self.vjps)


OPS: dict[str, OpDef] = {}


def _def(**kw: object) -> None:
    op = OpDef(**kw)  # type: ignore[arg-type]
    OPS[op.name] = op


def _same(shapes_: list[Shape], attrs: dict) -> Shape:
    return shapes_[0]


def _bcast(name: str) -> ShapeRule:
    return lambda s, attrs: shapes.broadcast(s[0], s[1], name)


def _attr_shape(shapes_: list[Shape], attrs: dict) -> Shape:
    return attrs["shape"]  # type: ignore[no-any-return]


# --- elementwise binary (NumPy broadcasting; the planner sums over broadcast axes) ---------------

_def(name="add", kind="binary", arity=2, shape=_bcast("addition '+'"), fmt="{0} + {1}",
     prec=ADD, arg_prec=(ADD, ADD + 1), rule="addition", math="z = a + b",
     grads=("addition: da = dz", "addition: db = dz"), vjps=(lambda b, op, g: g, lambda b, op, g: g), elementwise=True)
_def(name="sub", kind="binary", arity=2, shape=_bcast("subtraction '-'"), fmt="{0} - {1}",
     prec=ADD, arg_prec=(ADD, ADD + 1), rule="subtraction", math="z = a - b",
     grads=("subtraction: da = dz", "subtraction: db = -dz"),
     vjps=(lambda b, op, g: g, lambda b, op, g: b.emit("neg", g)), elementwise=True)
_def(name="mul", kind="binary", arity=2, shape=_bcast("product '*'"), fmt="{0} * {1}",
     prec=MUL, arg_prec=(MUL, MUL + 1), rule="Hadamard product", math="z = a * b",
     grads=("Hadamard product: da = dz * b", "Hadamard product: db = a * dz"),
     vjps=(lambda b, op, g: b.emit("mul", g, op.args[1]),
           lambda b, op, g: b.emit("mul", op.args[0], g)), elementwise=True)
_def(name="div", kind="binary", arity=2, shape=_bcast("division '/'"), fmt="{0} / {1}",
     prec=MUL, arg_prec=(MUL, MUL + 1), rule="division", math="z = a / b",
     grads=("division: da = dz / b", "division: db = -dz * z / b"),
     vjps=(lambda b, op, g: b.emit("div", g, op.args[1]),
           lambda b, op, g: b.emit("neg", b.emit("div", b.emit("mul", g, op.out), op.args[1]))),
     elementwise=True)

# --- elementwise unary ---------------------------------------------------------------------------


def _unary(name: str, fmt: str, math: str, grad: str, vjp: VJP | None, arg_prec: int = ANY,
           prec: int = ATOM, rule: str = "") -> None:
    _def(name=name, kind="unary", arity=1, shape=_same, fmt=fmt, prec=prec, arg_prec=(arg_prec,),
         rule=rule or name, math=math, grads=(f"{rule or name}: {grad}",) if grad else (),
         vjps=(vjp,), elementwise=True)


def _pow_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    c = op.attr("exponent")
    assert isinstance(c, (int, float))
    if c == 0:  # x ** 0 is constant: dx = 0 (c * x ** -1 would be 0 * inf = NaN at x = 0)
        return b.emit("zeros", shape=b.shape(op.args[0]))
    if c == 2:
        return b.emit("mul", b.emit("mul", g, Const(2)), op.args[0])
    return b.emit("mul", b.emit("mul", g, Const(c)), b.emit("pow", op.args[0], exponent=c - 1))


_unary("neg", "-{0}", "y = -x", "dx = -dy", lambda b, op, g: b.emit("neg", g), arg_prec=POW,
       prec=UNARY, rule="negation")
_unary("pow", "{0} ** {exponent}", "y = x ** c", "dx = dy * c * x ** (c - 1)", _pow_vjp,
       arg_prec=POW + 1, prec=POW, rule="power")
_unary("exp", "np.exp({0})", "y = exp(x)", "dx = dy * y",
       lambda b, op, g: b.emit("mul", g, op.out))
_unary("log", "np.log({0})", "y = log(x)", "dx = dy / x",
       lambda b, op, g: b.emit("div", g, op.args[0]))
_unary("log1p", "np.log1p({0})", "y = log1p(x)", "dx = dy / (1 + x)",
       lambda b, op, g: b.emit("div", g, b.emit("add", Const(1), op.args[0])))
_unary("sqrt", "np.sqrt({0})", "y = sqrt(x)", "dx = dy / (2 * y), and 0 where y = 0",
       lambda b, op, g: b.emit("div", g, b.emit("mul", Const(2), b.emit("nonzero_or_inf", op.out))))
_unary("square", "np.square({0})", "y = x ** 2", "dx = dy * 2 * x",
       lambda b, op, g: b.emit("mul", b.emit("mul", g, Const(2)), op.args[0]))
_unary("abs", "np.abs({0})", "y = |x|", "dx = dy * sign(x)   (sign(0) = 0)",
       lambda b, op, g: b.emit("mul", g, b.emit("sign", op.args[0])))
_unary("tanh", "np.tanh({0})", "y = tanh(x)", "dx = dy * (1 - y * y)",
       lambda b, op, g: b.emit("mul", g, b.emit("sub", Const(1), b.emit("mul", op.out, op.out))))
# _sigmoid (helpers/sigmoid.py.j2): from exp(-|x|), no overflow, accurate for large negative x
_unary("sigmoid", "_sigmoid({0})", "y = 1 / (1 + exp(-x))", "dx = dy * y * (1 - y)",
       lambda b, op, g: b.emit("mul", g, b.emit("mul", op.out, b.emit("sub", Const(1), op.out))))
_unary("relu", "np.maximum({0}, 0)", "y = max(x, 0)", "dx = dy * (y > 0)   (relu'(0) = 0)",
       lambda b, op, g: b.emit("mul", g, b.emit("positive", op.out)))
_unary("softplus", "np.logaddexp(0, {0})", "y = log(1 + exp(x))",
       "dx = dy * sigmoid(x) = dy * exp(x - y)",
       lambda b, op, g: b.emit("mul", g, b.emit("exp", b.emit("sub", op.args[0], op.out))))
_unary("sin", "np.sin({0})", "y = sin(x)", "dx = dy * cos(x)",
       lambda b, op, g: b.emit("mul", g, b.emit("cos", op.args[0])))
_unary("cos", "np.cos({0})", "y = cos(x)", "dx = -dy * sin(x)",
       lambda b, op, g: b.emit("neg", b.emit("mul", g, b.emit("sin", op.args[0]))))
# Piecewise-constant helpers that only backward programs use; their derivative is zero.
_unary("sign", "np.sign({0})", "y = sign(x)", "", None)
# [x > 0] as a float of x's dtype (a boolean mask would break on negation once g = 1 is folded).
_unary("positive", "np.heaviside({0}, 0)", "y = [x > 0]", "", None)
# x where x > 0, else +inf: a divisor that turns the infinite slope of sqrt at 0 into 0, not NaN.
_unary("nonzero_or_inf", "np.where({0} > 0, {0}, np.inf)", "", "", None, arg_prec=CMP + 1)
# x where it is finite, else 0: the shift of a max-shifted normalisation, as the NumPy module's
# helpers take it (a loop backend's lowering of logsumexp, softmax, log_softmax).
_unary("finite_or_zero", "np.where(np.isfinite({0}), {0}, 0)", "", "", None)

# --- linear algebra ------------------------------------------------------------------------------


def _matmul_da(b: Builder, op: "Op", g: Arg) -> Arg:
    a, w = op.args
    ra, rw = len(b.shape(a)), len(b.shape(w))
    if ra == 1 and rw == 1:
        b.explain("inner product: da = dz * b")
        return b.emit("mul", g, w)
    g = b.dense(g, b.shape(op.out))
    if ra == 2 and rw == 1:
        b.explain("matrix-vector product: dA = outer(dz, b)")
        return b.emit("outer", g, w)
    if ra == 1:
        b.explain("vector-matrix product: da = B @ dz")
        return b.emit("matmul", w, g)
    return b.emit("matmul", g, b.emit("transpose", w))


def _matmul_db(b: Builder, op: "Op", g: Arg) -> Arg:
    a, w = op.args
    ra, rw = len(b.shape(a)), len(b.shape(w))
    if ra == 1 and rw == 1:
        b.explain("inner product: db = a * dz")
        return b.emit("mul", a, g)
    g = b.dense(g, b.shape(op.out))
    if ra == 1 and rw == 2:
        b.explain("vector-matrix product: dB = outer(a, dz)")
        return b.emit("outer", a, g)
    if rw == 1:
        b.explain("matrix-vector product: db = A.T @ dz")
    return b.emit("matmul", b.emit("transpose", a) if ra == 2 else a, g)


_def(name="matmul", kind="linalg", arity=2, shape=lambda s, attrs: shapes.matmul(s[0], s[1]),
     fmt="{0} @ {1}", prec=MUL, arg_prec=(MUL, MUL + 1), rule="matrix product", math="Z = A @ B",
     grads=("right product: dA = dZ @ B.T", "left product: dB = A.T @ dZ"),
     vjps=(_matmul_da, _matmul_db))
_def(name="transpose", kind="linalg", arity=1, shape=lambda s, attrs: shapes.transpose(s[0]),
     fmt="{0}.T", prec=ATOM, arg_prec=(ATOM,), rule="transpose", math="Y = X.T",
     grads=("transpose: dX = dY.T",),
     vjps=(lambda b, op, g: b.emit("transpose", b.dense(g, b.shape(op.out))),))


def _outer_shape(s: list[Shape], attrs: dict) -> Shape:
    if len(s[0]) != 1 or len(s[1]) != 1:
        raise shapes.ShapeError(
            f"outer product needs two vectors, got {shapes.fmt(s[0])} and {shapes.fmt(s[1])}")
    return (s[0][0], s[1][0])


_def(name="outer", kind="linalg", arity=2, shape=_outer_shape, fmt="np.outer({0}, {1})",
     prec=ATOM, arg_prec=(ANY, ANY), rule="outer product", math="Z = outer(u, v) = u v^T",
     grads=("outer product: du = dZ @ v", "outer product: dv = dZ.T @ u"),
     vjps=(lambda b, op, g: b.emit("matmul", b.dense(g, b.shape(op.out)), op.args[1]),
           lambda b, op, g: b.emit("matmul", op.args[0], b.dense(g, b.shape(op.out)))))

# --- reductions ----------------------------------------------------------------------------------


def _reduce_shape(s: list[Shape], attrs: dict) -> Shape:
    return shapes.reduce(s[0], attrs.get("axis"), bool(attrs.get("keepdims", False)))  # type: ignore[arg-type]


def _spread(b: Builder, op: "Op", g: Arg) -> Arg:
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


def _mean_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    shape = b.shape(op.args[0])
    axis = op.attr("axis")
    dims = shape if axis is None else (shape[axis],)  # type: ignore[index, call-overload]
    out = _spread(b, op, g)
    for d in dims:
        out = b.emit("div", out, b.size(d))
    return out


def _fmt_reduce(fn: str) -> str:
    return "np." + fn + "({0}{axis_kw}{keepdims_kw})"


_def(name="sum", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("sum"), prec=ATOM,
     arg_prec=(ANY,), rule="sum", math="s = sum(X, axis)",
     grads=("sum: dX = ds, broadcast over the summed axes",), vjps=(_spread,))
_def(name="mean", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("mean"), prec=ATOM,
     arg_prec=(ANY,), rule="mean", math="m = mean(X, axis)",
     grads=("mean: dX = dm / n, broadcast over the n averaged elements",),
     vjps=(_mean_vjp,))

_def(name="max", kind="reduce", arity=1, shape=_reduce_shape, fmt=_fmt_reduce("max"), prec=ATOM,
     arg_prec=(ANY,), rule="maximum (the shift of a stable logsumexp)", vjps=(None,))

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
     prec=ATOM, arg_prec=(ATOM,), rule="re-insert reduced axis", vjps=(None,))
_def(name="broadcast_to", kind="layout", arity=1, shape=_to_shape,
     fmt="np.broadcast_to({0}, {shape})", prec=ATOM, arg_prec=(ANY,),
     rule="broadcast (a read-only view, no copy)", vjps=(None,))
_def(name="full", kind="layout", arity=1, shape=_to_shape, fmt="np.full({shape}, {0}, dtype={dtype})",
     prec=ATOM, arg_prec=(ANY,), rule="materialise a broadcast gradient", vjps=(None,))
_def(name="reshape", kind="layout", arity=1, shape=_attr_shape, fmt="{0}.reshape({shape})",
     prec=ATOM, arg_prec=(ATOM,), rule="drop the kept axis", vjps=(None,))
_def(name="copy", kind="layout", arity=1, shape=_same, fmt="{0}.copy()", prec=ATOM,
     arg_prec=(ATOM,), rule="copy (the gradient would alias another array)",
     grads=("copy: dx = dy",), vjps=(lambda b, op, g: g,))
_def(name="zeros", kind="layout", arity=0, shape=_attr_shape, fmt="np.zeros({shape}, dtype={dtype})",
     prec=ATOM, arg_prec=(), rule="zero gradient (the output does not depend on it)", vjps=())

_def(name="identity", kind="layout", arity=1, shape=_same, fmt="{0}", prec=ANY, arg_prec=(ANY,),
     rule="identity", math="y = x", grads=("identity: dx = dy",), vjps=(lambda b, op, g: g,),
     elementwise=True)

# --- ML: normalisations along an axis, computed max-shifted (module helpers in templates/) ------


def _same_axis(s: list[Shape], attrs: dict) -> Shape:
    return s[0]


def _lse_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    y = _spread(b, op, op.out)  # the result with the reduced axis re-inserted
    return b.emit("mul", _spread(b, op, g), b.emit("exp", b.emit("sub", op.args[0], y)))


def _softmax_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    y, axis = op.out, op.attr("axis")
    g = b.dense(g, b.shape(y))
    inner = b.emit("sum", b.emit("mul", g, y), axis=axis, keepdims=True)
    return b.emit("mul", y, b.emit("sub", g, inner))


def _log_softmax_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    y, axis = op.out, op.attr("axis")
    g = b.dense(g, b.shape(y))
    total = b.emit("sum", g, axis=axis, keepdims=True)
    return b.emit("sub", g, b.emit("mul", b.emit("exp", y), total))


_def(name="logsumexp", kind="reduce", arity=1, shape=_reduce_shape,
     fmt="_logsumexp({0}{axis_kw}{keepdims_kw})", prec=ATOM, arg_prec=(ANY,), rule="logsumexp",
     math="y = log(sum(exp(x), axis))", grads=("logsumexp: dx = dy * exp(x - y)  (= dy * softmax(x))",),
     vjps=(_lse_vjp,))
_def(name="softmax", kind="reduce", arity=1, shape=_same_axis, fmt="_softmax({0}{axis_kw})",
     prec=ATOM, arg_prec=(ANY,), rule="softmax", math="y = exp(x) / sum(exp(x), axis)",
     grads=("softmax: dx = y * (dy - sum(dy * y, axis))",), vjps=(_softmax_vjp,))
_def(name="log_softmax", kind="reduce", arity=1, shape=_same_axis,
     fmt="_log_softmax({0}{axis_kw})", prec=ATOM, arg_prec=(ANY,), rule="log_softmax",
     math="y = x - logsumexp(x, axis)", grads=("log_softmax: dx = dy - exp(y) * sum(dy, axis)",),
     vjps=(_log_softmax_vjp,))

# --- matrix functions ----------------------------------------------------------------------------


def _square(what: str, out: str) -> ShapeRule:
    def rule(s: list[Shape], attrs: dict) -> Shape:
        a = s[0]
        if len(a) != 2 or a[0] != a[1]:
            raise shapes.ShapeError(f"{what} needs a square matrix [n, n], got {shapes.fmt(a)}")
        return () if out == "scalar" else a
    return rule


def _trace_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    return b.emit("mul", g, b.emit("eye", shape=b.shape(op.args[0])))


def _inv_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    yt = b.emit("transpose", op.out)
    return b.emit("neg", b.emit("matmul", b.emit("matmul", yt, b.dense(g, b.shape(op.out))), yt))


def _det_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    inv_t = b.emit("transpose", b.emit("inv", op.args[0]))
    return b.emit("mul", b.emit("mul", g, op.out), inv_t)


def _logdet_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    return b.emit("mul", g, b.emit("transpose", b.emit("inv", op.args[0])))


_def(name="trace", kind="linalg", arity=1, shape=_square("trace()", "scalar"),
     fmt="np.trace({0})", prec=ATOM, arg_prec=(ANY,), rule="trace", math="y = tr(X)",
     grads=("trace: dX = dy * I",), vjps=(_trace_vjp,))
_def(name="inv", kind="linalg", arity=1, shape=_square("inv()", "matrix"),
     fmt="np.linalg.inv({0})", prec=ATOM, arg_prec=(ANY,), rule="inverse", math="Y = X^-1",
     grads=("inverse: dX = -Y.T @ dY @ Y.T",), vjps=(_inv_vjp,))
_def(name="det", kind="linalg", arity=1, shape=_square("det()", "scalar"),
     fmt="np.linalg.det({0})", prec=ATOM, arg_prec=(ANY,), rule="determinant", math="y = det(X)",
     grads=("determinant: dX = dy * y * inv(X).T",), vjps=(_det_vjp,))
_def(name="logdet", kind="linalg", arity=1, shape=_square("logdet()", "scalar"),
     fmt="np.linalg.slogdet({0})[1]", prec=ATOM, arg_prec=(ANY,), rule="log-determinant",
     math="y = log|det(X)|", grads=("log-determinant: dX = dy * inv(X).T",), vjps=(_logdet_vjp,))
_def(name="eye", kind="layout", arity=0, shape=_attr_shape, fmt="np.eye({n}, dtype={dtype})",
     prec=ATOM, arg_prec=(), rule="identity matrix", vjps=())

# --- labels: integer arrays that index a float array (never differentiated themselves) --------
# Each label op reads its integer operand only as an index: ``INDEX_OPERANDS`` names those
# operands (the parser refuses an integer or boolean value anywhere else).  Every rendering checks
# the labels first and raises ValueError for one outside [0, depth) (helpers in templates/).
# Finite-difference domain: the float operand anywhere; the labels are fixed (not perturbed).


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


def _take_vjp(b: Builder, op: "Op", g: Arg) -> Arg:
    a, y = op.args
    return b.emit("put_along_axis", b.dense(g, b.shape(op.out)), y, axis=op.attr("axis"),
                  shape=b.shape(a))


_def(name="take_along_axis", kind="label", arity=2, shape=_take_shape,
     fmt="_take_along_axis({0}, {1}, {axis}, {label})", prec=ATOM, arg_prec=(ANY, ANY),
     rule="take along axis", math="z = take_along_axis(a, y, axis)",
     grads=("take along axis: da = zeros with dz added at the labels y (repeats add up)",),
     vjps=(_take_vjp, None))
_def(name="put_along_axis", kind="label", arity=2, shape=_attr_shape,
     fmt="_put_along_axis({0}, {1}, {axis}, {shape})", prec=ATOM, arg_prec=(ANY, ANY),
     rule="scatter-add along axis (np.add.at)", vjps=(None, None))


def _one_hot_shape(s: list[Shape], attrs: dict) -> Shape:
    from .loader import MAX_RANK

    if not s[0] or len(s[0]) >= MAX_RANK:
        axes = "1 axis" if MAX_RANK == 2 else f"1 to {MAX_RANK - 1} axes"
        raise shapes.ShapeError(
            f"one_hot: labels {shapes.fmt(s[0])} would give rank {len(s[0]) + 1}; labels need "
            f"{axes} (one_hot adds one of size K: y: [N] gives [N, K])")
    return tuple(s[0]) + (attrs["depth"],)


_def(name="one_hot", kind="label", arity=1, shape=_one_hot_shape,
     fmt="_one_hot({0}, {depth}, {label})", prec=ATOM, arg_prec=(ANY,), rule="one-hot labels",
     math="z[..., k] = (y == k)", vjps=(None,))
# op -> the operands that are integer labels
INDEX_OPERANDS: dict[str, tuple[int, ...]] = {"take_along_axis": (1,), "put_along_axis": (1,),
                                              "one_hot": (0,)}

# Ops a spec may call by name: (number of array arguments, keyword arguments accepted).
CALLABLE: dict[str, tuple[int, tuple[str, ...]]] = {
    **{name: (1, ()) for name, op in OPS.items()
       if op.kind == "unary" and name not in ("neg", "pow", "sign", "positive", "nonzero_or_inf",
                                                "finite_or_zero")},
    "sum": (1, ("axis", "keepdims")),
    "mean": (1, ("axis", "keepdims")),
    "logsumexp": (1, ("axis", "keepdims")),
    "softmax": (1, ("axis",)),
    "log_softmax": (1, ("axis",)),
    "trace": (1, ()),
    "inv": (1, ()),
    "det": (1, ()),
    "logdet": (1, ()),
    "outer": (2, ()),
    "take_along_axis": (2, ("axis",)),
    "one_hot": (2, ()),  # one_hot(y, K): K a dim's name or an integer
}
# Ops whose NumPy rendering calls a helper defined in the generated module (templates/helpers/).
HELPERS = ("logsumexp", "softmax", "log_softmax", "sigmoid", "labels")
# Ops whose rendering calls the labels helper (templates/helpers/labels.py.j2)
LABEL_OPS = frozenset({"take_along_axis", "put_along_axis", "one_hot"})
