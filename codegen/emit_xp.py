"""The array-API backend: the NumPy module's code written against the Python array API standard.

``OUTDIR/<module>_xp.py`` has the NumPy module's names, checks, docstrings and annotated lines;
each function takes its namespace ``xp`` from its inputs (``array_api_compat.array_namespace``)
and computes in that library: NumPy, CuPy, PyTorch, JAX, Dask (lazily), array-api-strict.  The
emitter overrides only what differs from the NumPy ``Emitter``:

- each op's rendering, from :data:`XP_RENDER` (keyed by op name, like sqlglot's ``TRANSFORMS``;
  an op missing there is an error at generation, never NumPy code in an array-API module);
- no memory plan (no ``out=``, no in-place update: JAX arrays are immutable and Dask's lazy);
- constants that must be arrays are made on the inputs' device, in the module's dtype;
- the input check also returns the namespace (``xp, (X, W) = _check_inputs(...)``).

The derivative kinds (DESIGN.md §3b): ``derivatives.derivative_view`` renders f_jvp's and
f_hvp's tangent programs with this emitter (laid out by ``templates/derivs_xp.py.j2``);
f_jacobian and f_hessian make unit vectors by comparison with ``xp.arange`` and stack the VJP
rows, JVP or HVP columns with ``xp.stack`` (``templates/helpers/xp_tangents.py.j2``): no item
assignment, which JAX lacks and Dask would compute.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import expr as E
from .emit import Emitter, FunctionView
from .ir import Arg, Const, DimSize, Op, Program
from .names import Names
from .ops import ADD, ATOM, CMP, MUL, OPS, UNARY
from .plan import Body, FunctionPlan, Stmt
from .reserved import inputs_const


@dataclass(frozen=True)
class XPRender:
    """How the array-API module writes one op (fields as in ``OpDef.fmt``, plus ``{device}``)."""

    fmt: str
    prec: int | None = None  # the rendered expression's precedence (default: the op's)
    arg_prec: tuple[int, ...] | None = None  # what each operand needs (default: the op's)


def _fn(name: str) -> XPRender:
    return XPRender(f"xp.{name}({{0}})")


def _reduce(name: str) -> XPRender:
    return XPRender(f"xp.{name}({{0}}{{axis_kw}}{{keepdims_kw}})")


# Each op the rule table defines, as the array-API module writes it.  ``xp`` is the namespace of
# the inputs; helpers (``_sigmoid`` ...) are in templates/helpers/xp_*.py.j2; ``_linalg`` looks
# a linear-algebra function up and names the op and the library when the library lacks it.
XP_RENDER: dict[str, XPRender] = {
    "add": XPRender("{0} + {1}"),
    "sub": XPRender("{0} - {1}"),
    "mul": XPRender("{0} * {1}"),
    "div": XPRender("{0} / {1}"),
    "neg": XPRender("-{0}"),
    "pow": XPRender("{0} ** {exponent}"),  # rendered as a tree by the base emitter
    **{name: _fn(name) for name in ("exp", "log", "log1p", "sqrt", "square", "abs", "tanh", "sin",
                                     "cos", "sign")},
    "sigmoid": XPRender("_sigmoid(xp, {0})"),
    "relu": XPRender("xp.maximum({0}, 0.0)"),
    "softplus": XPRender("_softplus(xp, {0})"),
    # [x > 0] as a float array (NumPy: np.heaviside(x, 0))
    "positive": XPRender("xp.astype({0} > 0, {dtype})", arg_prec=(CMP + 1,)),
    "nonzero_or_inf": XPRender("xp.where({0} > 0, {0}, xp.inf)"),
    "finite_or_zero": XPRender("xp.where(xp.isfinite({0}), {0}, 0.0)"),
    "matmul": XPRender("{0} @ {1}"),
    "transpose": XPRender("{0}.T"),  # matrices only; a vector's transpose is itself (render_op)
    # the standard's core has no outer(): a column times a row
    "outer": XPRender("{0}[:, None] * {1}[None, :]", prec=MUL, arg_prec=(ATOM, ATOM)),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "expand_dims": XPRender("{0}{index}"),
    "broadcast_to": XPRender("xp.broadcast_to({0}, {shape})"),
    # a broadcast gradient made a real array (xp.full takes only a Python scalar)
    "full": XPRender("xp.zeros({shape}, dtype={dtype}, device={device}) + {0}", prec=ADD,
                     arg_prec=(ADD + 1,)),
    "reshape": XPRender("xp.reshape({0}, {shape})"),
    "copy": XPRender("xp.asarray({0}, copy=True)"),
    "zeros": XPRender("xp.zeros({shape}, dtype={dtype}, device={device})"),
    "identity": XPRender("{0}"),
    "logsumexp": XPRender("_logsumexp(xp, {0}{axis_kw}{keepdims_kw})"),
    "softmax": XPRender("_softmax(xp, {0}{axis_kw})"),
    "log_softmax": XPRender("_log_softmax(xp, {0}{axis_kw})"),
    "trace": XPRender("_trace(xp, {0})"),
    "inv": XPRender("_inv(xp, {0})"),
    "det": XPRender("_det(xp, {0})"),
    "logdet": XPRender("_logdet(xp, {0})"),
    "eye": XPRender("xp.eye({n}, dtype={dtype}, device={device})"),
    **{name: _fn(name) for name in ("expm1", "cosh", "sinh")},
    "arctan": XPRender("xp.atan({0})"),
    "erf": XPRender("_erf(xp, {0})"),
    "log_sigmoid": XPRender("-_softplus(xp, -{0})", prec=UNARY, arg_prec=(UNARY,)),
    **{name: XPRender("{0} %s {1}" % sym, prec=CMP, arg_prec=(CMP + 1, CMP + 1))
       for name, sym in (("less", "<"), ("less_equal", "<="), ("greater", ">"),
                         ("greater_equal", ">="))},
    "tie": XPRender("xp.astype({0} == {1}, {dtype})"),
    # NumPy's heaviside(a - b, 0.5): 1 where a > b, 0.5 at ties (NaN stays NaN)
    "win_share": XPRender("_win_share(xp, {0}, {1})"),
    "where": XPRender("xp.where({0}, {1}, {2})"),
    "maximum": XPRender("xp.maximum({0}, {1})"),
    "minimum": XPRender("xp.minimum({0}, {1})"),
    "diag": XPRender("_diag(xp, {0})"),
    "permute": XPRender("xp.permute_dims({0}, {axes})"),
    "concatenate": XPRender("xp.concat({tuple}, axis={axis})"),
    "stack": XPRender("xp.stack({tuple}, axis={axis})"),
    "slice_axis": XPRender("{0}{index}"),
    "index_axis": XPRender("{0}{index}"),
    "einsum": XPRender('_einsum(xp, "{subscripts}", {args})'),
    "take_along_axis": XPRender("_take_along_axis(xp, {0}, {1}, {axis}, {label})"),
    "put_along_axis": XPRender("_put_along_axis(xp, {0}, {1}, {axis}, {shape})"),
    "one_hot": XPRender("_one_hot(xp, {0}, {depth}, {label}, {dtype})"),
}

# The standard's elementwise functions of one array, by NumPy's name where it differs: an op the
# rule table writes as ``np.<name>(x)`` of one of them needs no entry above (a new elementwise
# op is one rule-table entry for every backend).
_STANDARD_UNARY = {
    **{name: name for name in (
        "abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "ceil", "cos", "cosh", "exp",
        "expm1", "floor", "log", "log1p", "log2", "log10", "round", "sign", "sin", "sinh",
        "sqrt", "square", "tan", "tanh", "trunc")},
    **{"arc" + name[1:]: name for name in ("acos", "acosh", "asin", "asinh", "atan", "atanh")},
}
for _name, _opdef in OPS.items():
    _call = _opdef.fmt.removeprefix("np.").removesuffix("({0})")
    if _name not in XP_RENDER and _opdef.fmt == f"np.{_call}({{0}})" and _call in _STANDARD_UNARY:
        XP_RENDER[_name] = _fn(_STANDARD_UNARY[_call])

# Module-level helpers (templates/helpers/xp_<name>.py.j2) and the ops that call them.
XP_HELPERS: dict[str, tuple[str, ...]] = {
    "logsumexp": ("logsumexp", "log_softmax"),
    "softmax": ("softmax",),
    "log_softmax": ("log_softmax",),
    "sigmoid": ("sigmoid",),
    "softplus": ("softplus", "log_sigmoid"),
    "linalg": ("trace", "inv", "det", "logdet", "einsum"),
    "labels": ("take_along_axis", "put_along_axis", "one_hot"),
    "select": ("win_share", "diag", "erf"),
}


@dataclass
class XPFunctionView(FunctionView):
    """The NumPy view, and whether each function's body calls the namespace: the local ``xp``
    is bound only where it is read (``_`` elsewhere: ruff's RUF059)."""

    fw_ns: str = "xp"
    vg_ns: str = "xp"
    bw_ns: str = "xp"


class ArrayAPIEmitter(Emitter):
    """The array-API backend (``--backend array_api``, ``<module>_xp.py``)."""

    backend = "array_api"
    template = "module_xp.py.j2"
    # f_jvp, f_hvp: their tangent programs rendered by this emitter (templates/derivs_xp.py.j2);
    # f_jacobian, f_hessian: basis vectors made and results stacked with the namespace's own ops
    # (templates/helpers/xp_tangents.py.j2), never an item assignment
    writes_derivatives = True
    flattens_batch_products = False
    plan_memory = False  # no out=, no in-place update (JAX arrays are immutable, Dask's lazy)
    blocks = False  # f_jacobian and f_hessian loop over basis vectors with the namespace's ops

    def __init__(self, dtype: str) -> None:
        super().__init__(dtype)
        self.np_dtype = f"xp.{dtype}"  # the dtype as the code names it: the namespace's own
        self._anchor = ""  # an array of the body whose device new arrays are made on
        self._program: Program | None = None
        self._numbers: set[str] = set()  # values that are Python numbers in the body
        self._body = "fw"  # the body being rendered: fw, vg, bw, or "derivative" (f_jvp, f_hvp)
        self._uses_xp: set[str] = set()  # the bodies that call the namespace

    @property  # type: ignore[override]
    def module_names(self) -> set[str]:
        return self._module_names

    @module_names.setter
    def module_names(self, names: set[str]) -> None:
        self._module_names = set(names) | {"xp"}  # the namespace local: never an invented name

    # --- expressions ----------------------------------------------------------------------------

    def render_op(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> tuple[str, int]:
        spec = XP_RENDER.get(op.op)
        if spec is None:
            raise NotImplementedError(
                f"the array-API backend has no rendering for op '{op.op}' (add it to XP_RENDER in "
                "codegen/emit_xp.py)")
        opdef = OPS[op.op]
        if op.op == "pow":
            return super().render_op(op, args, dim)
        if op.op == "transpose" and self._rank(op.args[0]) < 2:
            return args[0]  # NumPy's .T of a vector or a scalar is itself; the standard's is an error
        arg_prec = spec.arg_prec or opdef.arg_prec
        if spec.fmt.startswith(("xp.", "_")):  # a function of the standard takes arrays only:
            # a number (a dim's size, sqrt(D)) becomes a 0-d array of the module's dtype
            args = [(self.as_array(E.Leaf(*arg)), ATOM) if self._is_number(a) else arg
                    for a, arg in zip(op.args, args)]
        parts = []
        for i, (expr, prec) in enumerate(args):
            need = arg_prec[i] if i < len(arg_prec) else 0
            parts.append(f"({expr})" if prec < need else expr)
        attrs = self.attr_fields(op, dim)
        attrs["args"] = ", ".join(parts)  # the operands of an op with any number of them
        attrs["tuple"] = "(" + attrs["args"] + ("," if len(parts) == 1 else "") + ")"
        if "{device}" in spec.fmt:
            attrs["device"] = self.device()
        if "xp" in spec.fmt:
            self._uses_xp.add(self._body)
        return spec.fmt.format(*parts, **attrs), opdef.prec if spec.prec is None else spec.prec

    def attr_fields(self, op: Op, dim: dict[str, str]) -> dict[str, str]:
        fields = super().attr_fields(op, dim)
        if op.op == "expand_dims":  # the standard indexes every axis: the rest by an ellipsis
            fields["index"] = "[" + ", ".join([":"] * int(op.attr("axis")) + ["None", "..."]) + "]"  # type: ignore[arg-type, call-overload]
        if op.op in ("slice_axis", "index_axis"):  # (likewise: dS[0] is dS[0, ...])
            fields["index"] = fields["index"][:-1] + ", ...]"
        return fields

    def _is_number(self, a: Arg) -> bool:
        """Whether ``a`` is a Python number in the generated code (a constant, a dim's size, or
        a value computed from those alone)."""
        return isinstance(a, (Const, DimSize)) or (isinstance(a, str) and a in self._numbers)

    def _rank(self, a: Arg) -> int:
        if isinstance(a, str) and self._program is not None and a in self.program_values():
            return len(self.program_values()[a].shape)
        return 0

    def program_values(self) -> dict:
        assert self._program is not None
        return self._program.values

    def device(self) -> str:
        """Where new arrays go: the device of an array the body already has."""
        return E.call("array_api_compat.device", self._anchor).render()

    def as_array(self, inner: E.Expr) -> str:
        """A Python number as a 0-d array of the module's dtype on the body's device."""
        self._uses_xp.add(self._body)
        return E.call("xp.asarray", inner, E.Leaf(f"dtype={self.np_dtype}"),
                      E.Leaf(f"device={self.device()}")).render()

    def arg_expr(self, a: Arg, names: Names, dim: dict[str, str],
                 inline: dict[str, tuple[str, int]], typed: bool = False) -> tuple[str, int]:
        if not typed:
            return super().arg_expr(a, names, dim, inline)
        inner = E.Leaf(*super().arg_expr(a, names, dim, inline))
        return self.as_array(inner), ATOM

    def typed_number(self, expr: str) -> str:
        return self.as_array(E.Leaf(expr, 0))

    def render_body(self, body: Body, names: Names, dim: dict[str, str]) -> list[Stmt]:
        self._program = body.program
        self._numbers = body.numbers
        # f_backward has g (an array of the library); the others have their first input
        self._anchor = "g" if body.kernel == "backward" else body.program.inputs[0]
        # (f_jvp's and f_hvp's bodies, rendered by derivatives.py, have no kernel name)
        self._body = {"backward": "bw", "value_and_grad": "vg", "forward": "fw"}.get(
            body.kernel, "derivative")
        if self._body == "derivative":
            self._uses_xp.discard(self._body)  # (each derivative body on its own)
        return super().render_body(body, names, dim)

    def body_namespace(self) -> str:
        return "xp" if self._body in self._uses_xp else "_"

    # --- functions ------------------------------------------------------------------------------

    def function_view(self, plan: FunctionPlan) -> FunctionView:
        fn = plan.function
        self._uses_xp = set()
        base = super().function_view(plan)
        view = XPFunctionView(**{f.name: getattr(base, f.name) for f in fields(base)})
        inputs = list(fn.program.inputs)
        tupled = ", ".join(inputs) + ("," if len(inputs) == 1 else "")
        # (the template writes `xp, (X, W) = ...`, or `_, (X, W) = ...` in a body that needs no xp)
        view.check = f'({tupled}) = _check_inputs("{fn.name}", ({tupled}), {inputs_const(fn.name)})'
        view.fw_ns, view.vg_ns, view.bw_ns = ("xp" if body in self._uses_xp else "_"
                                              for body in ("fw", "vg", "bw"))
        view.saved_types = [(name, "Any" if kind == "np.ndarray" else kind)
                            for name, kind in view.saved_types]
        return view

    # --- module ---------------------------------------------------------------------------------

    def helpers(self, programs: list[Program]) -> list[str]:
        used = {op.op for p in programs for op in p.ops}
        return [f"helpers/xp_{name}.py.j2" for name, ops in XP_HELPERS.items()
                if not used.isdisjoint(ops)]

    def module(self, spec_path: str, sha256: str, module: str, doc: str,
               views: list[FunctionView], helpers: list[str]) -> str:
        # the derivative kinds' helpers (derivatives.derivative_helpers names the NumPy module's)
        # as this module writes them: helpers/xp_<name>.py.j2
        missing = [h for h in helpers if not h.startswith("helpers/xp_") and h not in _XP_DERIVATIVE_HELPERS]
        if missing:
            raise NotImplementedError(
                f"the array-API backend has no version of {', '.join(missing)} (add "
                "helpers/xp_<name>.py.j2 and its entry in _XP_DERIVATIVE_HELPERS, codegen/emit_xp.py)")
        helpers = [_XP_DERIVATIVE_HELPERS.get(h, h) for h in helpers]
        return super().module(spec_path, sha256, module, doc, views, helpers)

    def template_vars(self) -> dict[str, object]:
        return {"xp_dtype": self.np_dtype}


# The helpers of f_jacobian and f_hessian, and the array-API module's version of each.
_XP_DERIVATIVE_HELPERS = {"helpers/tangents.py.j2": "helpers/xp_tangents.py.j2"}
