"""Emitter: renders the joint IR as Python source through the Jinja templates, then black.

The emitter makes strings and nothing else: which ops exist, which values are saved and what each
line computes were all decided by the planner and the passes.  A backend subclasses ``Emitter``
and overrides only what differs (the NumPy backend is the base).
"""

from __future__ import annotations


from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import jinja2

from . import __version__, annotate, text
from . import expr as E
from .format import format_module
from .ir import Arg, Const, DimSize, Op, Program
from .names import Names
from .ops import ATOM, HELPERS, OPS, UNARY, names
from .parse import Function
from .plan import Body, FunctionPlan, Node, Stmt
from .reserved import BODY_BUILTINS, inputs_const, template_names, templates_dir
from .shapes import fmt as fmt_shape


def _rearranges(subscripts: str) -> bool:
    """An einsum of one operand that sums no index (a permutation): a view in NumPy."""
    inputs, _, out = subscripts.partition("->")
    return "," not in inputs and set(inputs) == set(out)


@dataclass
class FunctionView:
    """Everything the template needs to lay out one spec function's four functions and types."""

    name: str
    doc: str  # docstring literal
    params: str  # "X, Y, W1"
    inputs_const: str  # module constant with the expected input shapes
    inputs_spec: str  # its value: (("X", ("N", "D")), ...)
    check: str  # "X, Y = _check_inputs(...)"
    grad_fields: list[str]
    saved_types: list[tuple[str, str]]
    grads_doc: str
    saved_doc: str
    forward_doc: str
    backward_doc: str
    vg_doc: str
    forward: list[Stmt]
    forward_return: str
    backward_prologue: list[str]
    backward: list[Stmt]
    backward_return: str
    vg_forward: list[Stmt]
    vg_backward: list[Stmt]
    vg_return: str
    # The locals each generated function returns, by the view's fields laid out as its body:
    # what the memory plan (a pass of compiler.py, for backends that want it) never frees.
    returns: list[tuple[tuple[str, ...], set[str]]] = field(default_factory=list)
    # Structured returns, for backends whose wrappers unpack a compiled kernel's tuple.
    fw_outputs: list[str] = field(default_factory=list)
    fw_saved: list[str] = field(default_factory=list)
    bw_saved: list[str] = field(default_factory=list)
    bw_grads: list[str] = field(default_factory=list)
    vg_outputs: list[str] = field(default_factory=list)
    vg_grads: list[str] = field(default_factory=list)
    scalars: set[str] = field(default_factory=set)  # outputs and wrt names of shape []
    cotangent_shape: str = "()"  # the first output's shape, from saved dims: "(saved.N,)"
    derivs: object = None  # f_jvp, f_jacobian, f_hvp, f_hessian (derivatives.DerivView)
    labels: bool = False  # integer or boolean inputs (their checks go into the module)


class Emitter:
    """The NumPy backend; other backends override the hooks below."""

    backend = "numpy"
    template = "module.py.j2"

    # --- what the pipeline runs for this backend (compiler.py reads these) ----------------------

    #: Delete dead arrays and compute into them (``memory.py``), ``sum(x ** 2)`` as ``np.vdot``:
    #: statements of array expressions (a compiled backend's kernels own their arrays).
    plan_memory = True
    #: f_jvp, f_jacobian, f_hvp, f_hessian (``derivatives:``) are written into its modules.
    writes_derivatives = True
    #: logsumexp, softmax and log_softmax as primitive ops (``lower.py``), for loop backends.
    lowers = False
    # a batch times a matrix as one product of the stacked rows ((X.reshape(B * N, D) @ W)...)
    flattens_batch_products = True
    #: Partition each body into loop groups (``fusion.py``), for loop backends.
    fuses = False
    #: value_and_grad's forward and backward as one body (one run of fused loops).
    fuses_value_and_grad = False
    #: At most this many ops per separately compiled function (None: one function per body).
    max_part_ops: int | None = None
    #: f_jacobian and f_hessian take their columns in blocks of basis vectors (one batched
    #: tangent program per block, ``batch.py``); without, they loop over unit vectors.
    blocks = True

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.np_dtype = f"np.{dtype}"
        self.used_dims: set[str] = set()  # dims the code rendered so far refers to
        # products of a batch [..., n, k] and a matrix [k, m] (by id of the op): the batch's
        # matrices stacked into the rows of one [-1, k] matrix, one BLAS call (as NumPy's matmul
        # would make one per matrix, each too small for BLAS's threads): ((batch dims, k), the
        # result's shape)
        self._flat: dict[int, tuple[tuple[tuple, object], tuple]] = {}
        self.module_names: set[str] = set()  # what the spec's functions bind at module level

    # --- expressions ----------------------------------------------------------------------------

    def render_op(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> tuple[str, int]:
        """Render one op given its operands as (expression, precedence)."""
        opdef = OPS[op.op]
        parts = []
        for i, (expr, prec) in enumerate(args):
            need = opdef.arg_prec[i] if i < len(opdef.arg_prec) else 0
            parts.append(f"({expr})" if prec < need else expr)
        fields = self.attr_fields(op, dim)
        if op.op in _LAPACK and op.phase == "forward":
            parts[0] = self.lapack_operand(parts[0])
        if op.op == "matmul" and id(op) in self._flat:  # a batch times a matrix: one product
            batch, k = self._flat[id(op)][0]
            count = E.as_expr(self.dim_ref(batch[0], dim))
            for d in batch[1:]:  # (not -1: a batch of empty rows has no inferable count)
                count = E.binop("*", count, E.as_expr(self.dim_ref(d, dim)))
            rows = E.call(f"{parts[0] if args[0][1] >= ATOM else '(' + parts[0] + ')'}.reshape",
                          count, E.as_expr(self.dim_ref(k, dim)))
            product = E.binop("@", E.Leaf(rows.render(), ATOM), E.Leaf(parts[1], ATOM))
            shape = self.shape_tuple(self._flat[id(op)][1], dim)
            return f"({product.render()}).reshape{shape}", ATOM
        if op.op == "pow":  # a tree: parentheses by precedence, simple operands hugged as black does
            return E.binop("**", E.Leaf(*args[0]), op.attr("exponent")).render(), opdef.prec  # type: ignore[arg-type]
        if "{args}" in opdef.fmt or "{tuple}" in opdef.fmt:  # any number of operands
            fields["args"] = ", ".join(parts)
            fields["tuple"] = "(" + fields["args"] + ("," if len(parts) == 1 else "") + ")"
        if op.op == "einsum" and _rearranges(str(op.attr("subscripts"))):
            # one operand and no index summed (ij->ji): np.einsum returns a view of the
            # operand, which np.asarray(order="C") keeps where it is contiguous (ji->ij of a
            # [1, n]); an einsum's result is the planner's to write into: a copy, always
            return opdef.fmt.replace("np.asarray(", "np.array(", 1).format(*parts, **fields), \
                opdef.prec
        return opdef.fmt.format(*parts, **fields), opdef.prec

    def lapack_operand(self, expr: str) -> str:
        """The operand of inv, det or logdet: checked finite (inf or NaN: LinAlgError, as where
        the linear algebra refuses them itself)."""
        return E.call("_finite", E.Leaf(expr, ATOM)).render()

    def types_number_division(self) -> bool:
        """Whether a division of two Python numbers (``1 / N``) is computed in the dtype: with
        N = 0 (an empty batch's mean) it is then inf as in NumPy, not ZeroDivisionError."""
        return True

    def attr_fields(self, op: Op, dim: dict[str, str]) -> dict[str, str]:
        axis = op.attr("axis")
        keepdims = op.attr("keepdims", False)
        shape = op.attr("shape")
        fields = {
            "axis_kw": "" if axis is None else f", axis={axis}",
            "axis": str(axis),
            "keepdims_kw": ", keepdims=True" if keepdims else "",
            "dtype": self.np_dtype,
            "exponent": "",
            "index": "",
            "shape": "",
            "n": "",
            "label": f'"{op.attr("label", "")}"',  # "f: y" (validated names): a string literal
            "depth": "",
        }
        depth = op.attr("depth")
        if isinstance(depth, (int, str)):
            fields["depth"] = self.dim_ref(depth, dim)
        exponent = op.attr("exponent")
        if isinstance(exponent, (int, float)):
            fields["exponent"] = text.number(exponent)
        axes = op.attr("axes")
        if isinstance(axes, tuple):
            fields["axes"] = E.tuple_([str(a) for a in axes]).render()
        subscripts = op.attr("subscripts")
        if isinstance(subscripts, str):  # letters, ',' and '->' only (checked by the parser)
            fields["subscripts"] = subscripts
        if op.op in ("slice_axis", "index_axis"):
            axis = int(op.attr("axis"))  # type: ignore[arg-type, call-overload]
            if op.op == "index_axis":
                at = str(op.attr("index"))
            else:
                start = [self.dim_ref(d, dim) for d in op.attr("start")]  # type: ignore[attr-defined]
                stop = [self.dim_ref(d, dim) for d in op.attr("stop")]  # type: ignore[attr-defined]
                at = " + ".join(start) + ":" + " + ".join(stop)
            fields["index"] = "[" + ", ".join([":"] * axis + [at]) + "]"
        if op.op == "expand_dims":
            fields["index"] = "[" + ", ".join([":"] * int(op.attr("axis")) + ["None"]) + "]"  # type: ignore[arg-type, call-overload]
        if isinstance(shape, tuple):
            fields["shape"] = self.shape_tuple(shape, dim)
            if shape:
                fields["n"] = self.dim_ref(shape[0], dim)
        return fields

    def shape_tuple(self, shape: tuple, dim: dict[str, str]) -> str:
        return E.tuple_([self.dim_ref(d, dim) for d in shape]).render()

    def arg_expr(self, a: Arg, names: Names, dim: dict[str, str],
                 inline: dict[str, tuple[str, int]], typed: bool = False) -> tuple[str, int]:
        """An operand's expression and precedence; ``typed`` gives constants the module dtype."""
        if typed:  # a number, a dim's size or a value computed from them alone
            if isinstance(a, Const):
                inner = E.as_expr(a.value)
            elif isinstance(a, DimSize):
                inner = E.as_expr(self.dim_ref(a.name, dim))
            else:
                inner = E.Leaf(*inline[a]) if a in inline else E.as_expr(names.of[a])
            return E.call(self.np_dtype, inner).render(), ATOM
        number = self.number_expr(a, dim)
        if number is not None:
            return number
        assert isinstance(a, str)
        return inline[a] if a in inline else (names.of[a], ATOM)

    def number_expr(self, a: Arg, dim: dict[str, str]) -> tuple[str, int] | None:
        """A constant or a dim's size as an expression and its precedence (None: a value)."""
        if isinstance(a, Const):
            s = text.number(a.value)
            return s, UNARY if s.startswith("-") else ATOM
        if isinstance(a, DimSize):
            ref = E.as_expr(self.dim_ref(a.name, dim))
            return ref.render(), ref.prec
        return None

    # --- statements -----------------------------------------------------------------------------

    def render_body(self, body: Body, names: Names, dim: dict[str, str]) -> list[Stmt]:
        """Statements for the body's ops; single-use temporaries inside one group are inlined."""
        ops, program, keep_named, numbers = body.ops, body.program, body.keep, body.numbers
        uses: dict[str, list[Op]] = {}
        last_use: dict[str, int] = {}
        for i, op in enumerate(ops):
            for a in op.args:
                if isinstance(a, str):
                    uses.setdefault(a, []).append(op)
                    last_use[a] = i
        for v in body.live_out | keep_named:  # read after the body (a gradient, an output): an
            last_use[v] = len(ops)  # accumulation must not take its name (and its array)
        inline: dict[str, tuple[str, int]] = {}
        reads: dict[str, set[str]] = {}  # the named values an inlined value's expression reads
        nodes: dict[str, Node] = {}  # the trees of the inlined values
        emitted: list[tuple[Op, str, str, Node]] = []
        for idx, op in enumerate(ops):
            value = program.values[op.out]
            typed = op.op == "broadcast_to"  # a broadcast constant must not be an int64 array
            args = [self.arg_expr(a, names, dim, inline,
                                  typed and (isinstance(a, (Const, DimSize)) or a in numbers))
                    for a in op.args]
            if op.op == "div" and _python_number(op.args[0], numbers) \
                    and _python_number(op.args[1], numbers) and not isinstance(op.args[1], Const) \
                    and self.types_number_division():
                args[0] = self.arg_expr(op.args[0], names, dim, inline, True)
            if op.op == "matmul" and self.flattens_batch_products:
                sa, sb = (program.shape_of(a) for a in op.args)
                if len(sa) >= 3 and len(sb) == 2:
                    self._flat[id(op)] = ((tuple(sa[:-1]), sa[-1]), value.shape)
            arg_nodes = [self.arg_node(a, e, program, names, nodes) for a, e in zip(op.args, args)]
            product_sum = self.render_sum_of_products(op, arg_nodes)
            expr = product_sum or self.render_op(op, args, dim)
            typed_here = (op.out in numbers and self.dtype != "float64"
                          and OPS[op.op].fmt.startswith(("np.", "_")))
            if typed_here:  # np.sqrt(D) is a float64 scalar, which would make arrays float64
                expr = (self.typed_number(expr[0]), ATOM)
            node = Node(expr[0], expr[1], op, arg_nodes, shape=value.shape,
                        render=self.renderer(op, product_sum, dim))
            users = uses.get(op.out, [])
            view = op.op in _VIEWS and all(prec == ATOM for _, prec in args)
            if (value.kind == "temp" and op.out not in keep_named and op.out not in names.of
                    and (view or (len(users) == 1 and users[0].group == op.group))):
                inline[op.out] = expr
                nodes[op.out] = node
                # it is read where its reader is (that line's, or a later one's where the reader
                # is inlined too): what it reads stays live until then (an accumulation before
                # that line must not take the array it reads)
                reads[op.out] = set().union(*[reads.get(a, {a}) for a in op.args
                                              if isinstance(a, str)])
                for a in reads[op.out]:
                    last_use[a] = max(last_use.get(a, -1), last_use.get(op.out, -1))
                continue
            target = self.target_name(op, program, names, last_use, idx)
            code = expr[0]
            if op.out in numbers and value.kind == "step" and not typed_here:  # a number: typed
                code = self.typed_number(code)
            if op.out in numbers:
                node.shape = ()
            emitted.append((op, E.assign(target, E.Leaf(code, 0)), target, node))
        producer = {op.out: op for op in ops}

        def expand(v: str) -> Op | None:
            return producer.get(v) if v in inline else None

        leaf = annotate.hint_leaf(program, names.of)
        self._final = annotate.last_of_groups(ops)
        stmts = self.annotate([(op, code, annotate.equation(op, target, leaf, expand))
                               for op, code, target, _ in emitted])
        for stmt, (_, _, target, node) in zip(stmts, emitted):
            stmt.target, stmt.node = target, node
        return stmts

    def renderer(self, op: Op, product_sum: tuple[str, int] | None, dim: dict[str, str]
                 ) -> Callable[[list[tuple[str, int]]], tuple[str, int]]:
        """How the memory plan renders ``op`` again on operands it rewrote (``product_sum``: its
        ``np.vdot`` or ``np.einsum`` form, which reads named arrays the plan never rewrites)."""
        return lambda operands: product_sum or self.render_op(op, operands, dim)

    def arg_node(self, a: Arg, expr: tuple[str, int], program: Program, names: Names,
                 nodes: dict[str, Node]) -> Node:
        """The tree of an operand: an inlined value's, or a leaf."""
        if isinstance(a, str) and a in nodes:
            return nodes[a]
        if isinstance(a, str) and a in program.values:
            return Node(expr[0], expr[1], name=names.of[a], shape=program.values[a].shape)
        return Node(expr[0], expr[1])

    def render_sum_of_products(self, op: Op, args: list[Node]) -> tuple[str, int] | None:
        """A sum of an elementwise product of two named arrays, without the product's temporary.

        ``sum(x ** 2)`` and ``sum(x * y)`` are ``np.vdot``: float64 only, where BLAS ``ddot`` is as
        accurate as pairwise summation (``sdot`` in float32 is not).  The sum over rows of
        ``x * y`` (a row vector's gradient) is ``np.einsum("ij,ij->j", x, y)``, over the leading
        axes of a batch ``np.einsum("ijk,ijk->k", x, y)``: NumPy adds rows one after the other
        there too, so the einsum is as accurate, and it is faster.
        """
        if not self.plan_memory or op.op != "sum" or op.attr("keepdims", False):
            return None
        prod = args[0]
        if prod.op is None or prod.shape is None:
            return None
        if prod.op.op == "pow" and prod.op.attr("exponent") == 2:
            x = y = prod.args[0]
        elif prod.op.op == "mul":
            x, y = prod.args
        else:
            return None
        if not all(v.name and v.expr == v.name and v.shape == prod.shape for v in (x, y)):
            return None
        axis = op.attr("axis")
        if axis is None and self.dtype == "float64":
            return E.call("np.vdot", x.name, y.name).render(), ATOM
        rank = len(prod.shape)
        axes = {axis} if isinstance(axis, int) else set(axis) if isinstance(axis, tuple) else None
        if axes is not None and rank <= 4 and rank - 1 not in {a % rank for a in axes}:
            # summed over leading axes only, the last one kept: NumPy's sum adds one row at a
            # time there too ("ijk,ijk->k" for the gradient of a row broadcast over a batch)
            ins = "ijkl"[:rank]
            out = "".join(c for i, c in enumerate(ins) if i not in {a % rank for a in axes})
            spec = E.Leaf(f'"{ins},{ins}->{out}"')
            return E.call("np.einsum", spec, x.name, y.name).render(), ATOM
        return None

    def body_namespace(self) -> str:
        """The namespace local that the body rendered last reads (the array-API module's ``xp``,
        ``_`` where it calls none; "" for a backend without one): f_jvp's and f_hvp's unpacking."""
        return ""

    def typed_number(self, expr: str) -> str:
        """A step computed from numbers alone, as a scalar of the module's dtype."""
        return E.call(self.np_dtype, E.Leaf(expr, 0)).render()

    def annotate(self, emitted: list[tuple[Op, str, str]]) -> list[Stmt]:
        """Comments: a spec step heads the block of lines it produced, once; every backward
        line names its rule and the equation it computes (``emitted``: op, code, equation)."""
        stmts = []
        block = None
        for op, code, eq in emitted:
            lines = []
            if annotate.block_key(op) != block:
                block = annotate.block_key(op)
                lines.append(annotate.step_header(op))
            if op.phase == "backward":
                lines.append("  " + annotate.rule_line(op, eq, op.out in self._final))
            stmts.append(Stmt(code, annotate.join(lines)))
        return stmts

    def target_name(self, op: Op, program: Program, names: Names, last_use: dict[str, int],
                    idx: int) -> str:
        """The local for ``op.out``; an accumulation reuses its running total's name."""
        if op.out in names.of:
            return names.of[op.out]
        hint = program.values[op.out].hint
        if op.op in ("add", "sub") and op.phase == "backward" and isinstance(op.args[0], str):
            prev = op.args[0]
            prev_name = names.of.get(prev)
            if (prev_name is not None and program.values[prev].kind == "temp"
                    and program.values[prev].hint == hint
                    and last_use.get(prev, -1) <= idx):
                names.of[op.out] = prev_name
                return prev_name
        return names.bind(op.out, hint)

    # --- functions ------------------------------------------------------------------------------

    def function_view(self, plan: FunctionPlan) -> FunctionView:
        """The template's view of one function: its bodies rendered as statements."""
        fn, vg, bw = plan.function, plan.vg, plan.bw
        spec_names = {v for v, val in fn.program.values.items() if val.kind in ("input", "step")}
        # locals never take a name the module binds or the body reads (codegen/reserved.py)
        base = Names(spec_names | {"np"} | template_names() | BODY_BUILTINS | self.module_names)
        for vid in spec_names:
            base.of[vid] = vid  # spec names are kept
        base.taken |= {"g", "saved"}  # dims never take the backward's parameter names
        dim = {d: base.fresh(d if d not in spec_names else f"{d}_size") for d in fn.dims}
        first = fn.program.outputs[0]
        assert isinstance(first, str)
        out_shape = fn.program.values[first].shape
        first_name = fn.program.values[first].hint  # (an output copied for being an input: its id)

        bw_saved, vg_saved = plan.bw_saved, plan.vg_saved
        keep_named = set(bw_saved) | set(vg_saved)
        # Forward temporaries that backward reads get names shared by every variant.
        for op in plan.forward.ops:
            if op.out in keep_named and op.out not in base.of:
                base.bind(op.out, vg.values[op.out].hint)

        params = ", ".join(fn.program.inputs)
        tupled = params + ("," if len(fn.program.inputs) == 1 else "")
        targets = f"({tupled})" if len(fn.program.inputs) == 1 else tupled
        const = inputs_const(fn.name)
        inputs_spec = "(" + ", ".join(
            f'("{name}", {self.shape_spec(fn.program.values[name].shape)}'
            + (f', "{fn.program.values[name].dtype}")' if fn.program.values[name].dtype else ")")
            for name in fn.program.inputs) + ("," if len(fn.program.inputs) == 1 else "") + ")"
        check = f'{targets} = _check_inputs("{fn.name}", ({tupled}), {const})'
        dim_lines = self.dim_lines(fn, dim)

        # f_backward first: the dims its code uses must be saved by f_forward
        bnames = base.fork()
        for vid, name in list(bnames.of.items()):
            if name in ("g", "saved"):  # the backward's parameters keep their contract names
                bnames.of[vid] = bnames.fresh(name)
        bnames.taken |= {"g", "saved"}
        bnames.of[plan.seed] = "g"
        self.used_dims = set()
        backward = self.render_body(plan.backward, bnames, dim)
        out_dims = {d for d in out_shape if isinstance(d, str)}
        saved_dims = [d for d in fn.dims if d in self.used_dims or d in out_dims]
        saved_locals = [bnames.of[v] for v in bw_saved] + [dim[d] for d in saved_dims]
        prologue = []
        if saved_locals:
            unpack = ", ".join(saved_locals)
            prologue.append(f"({unpack},) = saved" if len(saved_locals) == 1 else f"{unpack} = saved")
        prologue.append(f'g = _check_cotangent("{fn.name}", g, {self.shape_tuple(out_shape, dim)})')
        backward_return = self.grads_expr(fn, bw, bnames)

        # f_forward
        fnames = base.fork()
        saved_fields = [base.of[v] for v in bw_saved] + [dim[d] for d in saved_dims]
        self.used_dims = set()
        forward = self.render_body(plan.forward, fnames, dim)
        forward = dim_lines([d for d in fn.dims if d in self.used_dims or d in saved_dims]) + forward
        fields = ", ".join(f"{f}={f}" for f in saved_fields)
        forward_return = f"{self.outputs_expr(fn, fnames)}, {fn.name}_Saved({fields})"

        # f_value_and_grad: the forward of f_forward, then the backward with g = 1 folded in
        vnames = base.fork()
        self.used_dims = set()
        vg_fwd, *rest = [self.render_body(b, vnames, dim) for b in plan.value_and_grad]
        vg_bwd = rest[0] if rest else []
        vg_fwd = dim_lines([d for d in fn.dims if d in self.used_dims]) + vg_fwd
        vg_return = f"{self.outputs_expr(fn, vnames)}, {self.grads_expr(fn, vg, vnames)}"

        outputs = [o for o in fn.program.outputs if isinstance(o, str)]
        returns = [  # what each function returns (the memory plan keeps it)
            (("forward",), {fnames.of[o] for o in outputs} | set(saved_fields)),
            (("backward",), {bnames.of[g] for _, g in bw.grads if isinstance(g, str)}),
            (("vg_forward", "vg_backward"),
             {vnames.of[o] for o in outputs} | {vnames.of[g] for _, g in vg.grads if isinstance(g, str)}),
        ]

        outs = ", ".join(fn.program.values[o].hint for o in fn.program.outputs
                         if isinstance(o, str))
        wrt = ", ".join(fn.wrt)
        shape_text = fmt_shape(out_shape)
        ret = f"({outs})" if len(fn.program.outputs) > 1 else outs
        user_doc = fn.doc.strip() or f"{fn.name}, generated by codegen."
        saved_types = [(base.of[v], "np.ndarray") for v in bw_saved] + [(dim[d], "int") for d in saved_dims]

        def doc(body: str) -> str:
            return text.docstring(text.wrap_doc(body), "    ")

        return FunctionView(
            name=fn.name,
            doc=doc(f"{user_doc}\n\nReturns {ret}."),
            params=params,
            inputs_const=const,
            inputs_spec=inputs_spec,
            check=check,
            grad_fields=list(fn.wrt),
            saved_types=saved_types,
            grads_doc=doc(f"Gradients of {first_name} with respect to {wrt}: each has its input's shape."
                          if not out_shape else
                          f"Gradients of sum({first_name}) with respect to {wrt} (from {fn.name}_backward: "
                          f"of sum(g * {first_name}) for its cotangent g); each has its input's shape."),
            saved_doc=doc(f"What {fn.name}_backward needs from {fn.name}_forward."),
            forward_doc=doc(f"Forward pass of {fn.name}: returns ({ret}, saved) for {fn.name}_backward."),
            backward_doc=doc(
                f"Gradients of {first_name} with respect to {wrt}, given g = d(objective)/d{first_name} "
                f"(shape {shape_text}; a scalar broadcasts)."
            ),
            vg_doc=doc(f"({ret}, gradients of {first_name} with respect to {wrt}) in one pass." if not out_shape
                       else f"({ret}, gradients of sum({first_name}) with respect to {wrt}) in one pass: "
                            f"{first_name} is not a scalar, so this is the vector-Jacobian product with a "
                            f"cotangent of ones ({fn.name}_backward takes any cotangent)."),
            forward=forward,
            forward_return=forward_return,
            backward_prologue=prologue,
            backward=backward,
            backward_return=backward_return,
            vg_forward=vg_fwd,
            vg_backward=vg_bwd,
            vg_return=vg_return,
            returns=returns,
            fw_outputs=[fnames.of[o] for o in fn.program.outputs if isinstance(o, str)],
            fw_saved=saved_fields,
            bw_saved=saved_locals,
            bw_grads=[bnames.of[g] for _, g in bw.grads if isinstance(g, str)],
            vg_outputs=[vnames.of[o] for o in fn.program.outputs if isinstance(o, str)],
            vg_grads=[vnames.of[g] for _, g in vg.grads if isinstance(g, str)],
            scalars={v for v in list(fn.wrt) + [o for o in fn.program.outputs if isinstance(o, str)]
                     if fn.program.values[v].shape == ()},
            cotangent_shape=self.shape_tuple(out_shape, {d: f"saved.{dim[d]}" for d in dim}),
            labels=any(fn.program.values[name].dtype for name in fn.program.inputs),
        )

    def dim_ref(self, d: object, dim: dict[str, str]) -> str:
        """A dim's size in code: a literal, or the local bound to the symbolic dim (recorded)."""
        if isinstance(d, int):
            return str(d)
        if not str(d).isidentifier():  # a composite dim (a reshape's H*N, a concatenation's D+E)
            terms = [E.product([int(f) if f.isdigit() else self.dim_ref(f, dim)
                                for f in term.split("*")]) for term in str(d).split("+")]
            tree = terms[0]
            for t in terms[1:]:
                tree = E.add(tree, t)
            return tree  # type: ignore[return-value] # an Expr: str() renders it
        self.used_dims.add(str(d))
        return dim[str(d)]

    def dim_lines(self, fn: Function, dim: dict[str, str]):  # type: ignore[no-untyped-def]
        """A function that renders ``N = X.shape[0]`` lines for the dims a body needs."""

        def lines(needed: list[str]) -> list[Stmt]:
            out = []
            for d in needed:
                for name in fn.program.inputs:
                    shape = fn.program.values[name].shape
                    if d in shape:
                        out.append(Stmt(E.assign(dim[d], E.index(f"{name}.shape", shape.index(d)))))
                        break
            if out:
                out[0].comment = "sizes of the symbolic dims"
            return out

        return lines

    def shape_spec(self, shape: tuple) -> str:
        items = [str(d) if isinstance(d, int) else f'"{d}"' for d in shape]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def outputs_expr(self, fn: Function, names: Names) -> str:
        outs = [names.of[o] for o in fn.program.outputs if isinstance(o, str)]
        return outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"

    def grads_expr(self, fn: Function, program: Program, names: Names) -> str:
        items = []
        for w, g in program.grads:
            assert isinstance(g, str)
            items.append(f"{w}={names.of[g]}")
        return f"{fn.name}_Grads({', '.join(items)})"

    # --- module ---------------------------------------------------------------------------------

    def helpers(self, programs: list[Program]) -> list[str]:
        """Templates of the module-level helpers that the programs' ops call."""
        used = {OPS[op.op].helper or op.op for p in programs for op in p.ops}
        if "log_softmax" in used:
            used.add("logsumexp")  # _log_softmax calls _logsumexp
        if not used.isdisjoint(_LAPACK):
            used.add("finite")
        return [f"helpers/{name}.py.j2" for name in HELPERS + ("finite",) if name in used]

    def module(self, spec_path: str, sha256: str, module: str, doc: str,
               views: list[FunctionView], helpers: list[str]) -> str:
        """The whole module, formatted by black."""
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir())),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
        )
        source = env.get_template(self.template).render(
            version=__version__,
            spec_path=text.comment(spec_path),
            sha256=sha256,
            module=module,
            doc=text.docstring(text.wrap_doc(doc or f"Gradients generated by codegen for {module}."),
                               ""),
            dtype=self.dtype,
            np_dtype=self.np_dtype,
            functions=views,
            helpers=helpers,
            labels=any(v.labels for v in views),  # integer or boolean inputs: their checks
            **self.template_vars(),
        )
        return format_module(source)

    def template_vars(self) -> dict[str, object]:
        """Module-level values of the templates that a backend sets (``contiguous_inputs``: the
        checks hand compiled code C-contiguous arrays, and scalars for [] inputs)."""
        return {"contiguous_inputs": False}


def _python_number(a: Arg, numbers: set[str]) -> bool:
    """An operand that is a Python number in generated code (a constant, a dim's size, ...)."""
    return isinstance(a, (Const, DimSize)) or a in numbers


# Ops computed by LAPACK, whose input must be finite (Numba's np.linalg refuses inf and NaN).
_LAPACK = names(lapack=True)
# Free views of a named value: written inline wherever they are used, never given a name.
_VIEWS = names(inline=True)


def spec_label(spec_path: str, outdir: str | None) -> str:
    """How the header names the spec: relative to the output directory when there is one."""
    import os

    if outdir is None:
        return PurePosixPath(spec_path.replace(os.sep, "/")).name if spec_path else "<string>"
    rel = os.path.relpath(os.path.abspath(spec_path), os.path.abspath(outdir))
    return rel.replace(os.sep, "/")

