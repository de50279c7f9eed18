"""The Numba backend: the NumPy emitter, overriding only what differs.

Kernels are ``@numba.njit(cache=True)`` functions in nopython mode.  The fusion pass
(``fusion.py``, run by ``compiler.py``) decides the loop groups; this emitter renders each group
as one explicit loop nest (elementwise chains and the reductions that close them: one pass over memory), every other
op as a statement (matrix products go to BLAS through ``np.dot``; transposes stay views).
Python wrappers around the kernels check inputs exactly as the NumPy module does.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import jinja2

from . import __version__, annotate, text
from . import expr as E
from .emit import Emitter, FunctionView, templates_dir
from .format import format_module
from .ir import Arg, Op, Program
from .names import Names
from .ops import ATOM, LABEL_OPS, OPS, names
from .parse import Function
from .plan import REDUCTIONS, Body, FunctionPlan, Group, Stmt

Render = Callable[..., "E.Expr | None"]  # (op, *operand trees) -> tree, or None: NumPy's


@dataclass(frozen=True)
class NumbaForm:
    """How the Numba backend renders an op where the NumPy rendering (the op table's) differs."""

    # one element inside a loop, a tree over the operands' elements
    element: Render | None = None
    # the helpers of helpers/numba_math.py.j2 it calls: the first is ``_<op>`` itself, a loop
    # version of an elementary function (Numba would call libm once per element for np.exp)
    math: tuple[str, ...] = ()
    short: bool = False  # its helper also takes the loop's switch ``short`` (sin, cos)
    statement: Render | None = None  # as a statement on whole arrays
    new_array: bool = False  # a statement's result is a new array the kernel owns (a buffer)


def _half_power(op: Op, x: E.Expr) -> E.Expr | None:
    """NumPy's x ** 0.5 is sqrt (NaN at -inf, where Numba's power gives inf)."""
    return E.call("np.sqrt", x) if op.attr("exponent") == 0.5 else None


def _heaviside_half(d: E.Expr) -> E.Expr:
    return E.Cond(E.as_expr(1.0), E.binop(">", d, 0), E.Cond(
        E.as_expr(0.5), E.binop("==", d, 0), E.Cond(E.as_expr(0.0), E.binop("<", d, 0), d)))


def _same_element(op: Op, x: E.Expr) -> E.Expr:
    return x


# The Numba table: it extends the op table's NumPy renderings, overriding only what differs.
NUMBA: dict[str, NumbaForm] = {
    "pow": NumbaForm(element=_half_power, statement=_half_power),
    "exp": NumbaForm(math=("exp",)),
    "log": NumbaForm(math=("log", "log_poly")),
    "log1p": NumbaForm(math=("log1p", "log_poly")),
    "tanh": NumbaForm(math=("tanh", "exp")),
    "sigmoid": NumbaForm(math=("sigmoid", "exp")),
    "softplus": NumbaForm(math=("softplus", "exp", "log1p", "log_poly")),
    "sin": NumbaForm(math=("sin",), short=True),
    "cos": NumbaForm(math=("cos",), short=True),
    "erf": NumbaForm(math=("erf",)),
    "log_sigmoid": NumbaForm(math=("log_sigmoid", "softplus", "exp", "log1p", "log_poly")),
    "relu": NumbaForm(element=lambda op, x: E.call("max", x, 0.0)),
    # NaN stays NaN, as in np.heaviside
    "positive": NumbaForm(element=lambda op, x: E.Cond(E.as_expr(1.0), E.binop(">", x, 0),
                                                       E.binop("*", x, 0.0))),
    "nonzero_or_inf": NumbaForm(element=lambda op, x: E.Cond(x, E.binop(">", x, 0),
                                                             E.as_expr("np.inf"))),
    "finite_or_zero": NumbaForm(element=lambda op, x: E.Cond(
        x, E.binop("<", E.call("abs", x), E.as_expr("np.inf")), E.as_expr(0.0))),
    "where": NumbaForm(element=lambda op, c, a, b: E.Cond(a, c, b)),
    # as np.heaviside(a - b, 0.5): 1, 0.5 or 0 by the sign of a - b, NaN where it is NaN
    "win_share": NumbaForm(element=lambda op, a, b: _heaviside_half(E.binop("-", a, b))),
    "tie": NumbaForm(element=lambda op, a, b: E.Cond(E.as_expr(1.0), E.binop("==", a, b),
                                                      E.as_expr(0.0))),
    "full": NumbaForm(element=_same_element),
    "broadcast_to": NumbaForm(element=_same_element),
    "copy": NumbaForm(element=_same_element),
    "identity": NumbaForm(element=_same_element),
    "matmul": NumbaForm(statement=lambda op, a, b: E.Call("np.dot", (a, b)), new_array=True),
    "outer": NumbaForm(new_array=True),
    "inv": NumbaForm(new_array=True),
}
assert NUMBA.keys() <= OPS.keys(), sorted(NUMBA.keys() - OPS.keys())
_PLAIN = NumbaForm()  # an op rendered as NumPy renders it

def _simple(x: E.Expr) -> bool:
    """A local or an array element (by its node, not its text): read several times for free."""
    def name(e: E.Expr) -> bool:
        return isinstance(e, E.Leaf) and (e.text.isidentifier() or e.text.isdigit())
    return name(x) or isinstance(x, E.Index) and name(x.base) and all(map(name, x.items))

def _batch_transpose(op: Op, program: Program) -> bool:
    """``swapaxes(x, 1, 2)`` of a batch of matrices [n, i, j]."""
    return (op.op == "permute" and op.attr("axes") == (0, 2, 1)
            and isinstance(op.args[0], str) and len(program.shape_of(op.out)) == 3)


def _reverses_axes(op: Op, program: Program) -> bool:
    """A transpose, or a permutation reversing every axis: rendered as the view ``x.T``."""
    if op.op == "transpose":
        return True
    rank = len(program.shape_of(op.out))
    return op.op == "permute" and rank >= 2 and op.attr("axes") == tuple(range(rank))[::-1]

# Ops rendered as statements whose result is a view of their operand's buffer.
_VIEW_OPS = names(result="view")

# Helpers that compute two values from one argument (NumbaEmitter.shared_calls), and what each
# calls.
_SHARED_MATH = {"sincos": ("sincos",),
                "softplus_sigmoid": ("softplus_sigmoid", "exp", "log1p", "log_poly")}


# Numba frees a dead array at the end of its block of code, not after its last use: the partial
# sums of a loop would stay alive through the products that follow it.
_FREE = "  # frees the partial sums now"
_BLOCK = 32  # rows per block of a prange loop that sums (one row of column sums per block)
# At most this many IR ops per compiled function (a longer kernel is split into parts, a longer
# run of fused ops into several loops), or None: never split. Off by default: measured on long
# elementwise chains (benchmarks/compile_time.py, docs/numba.md), a split compiles slower than
# the one fused loop, since every value crossing between parts becomes an array (about 0.1 s
# of compile time each) where the fused loop keeps it in a register.
MAX_PART_OPS: int | None = None
# At most this many lines in the body of one loop nest: a longer body runs as calls of
# functions compiled on their own, each of at most this many of its lines (``chunk_body``), or
# None: never. Numba and LLVM compile one long loop body in time that grows faster than its
# length (benchmarks/compile_time.py, docs/numba.md); the bodies of the specs in specs/ are
# far shorter (the transformer's longest has about 90 lines, benchmarks/specs/deep_chain.yaml's
# 803), a 250-step chain's about 1,000.
MAX_LOOP_LINES: int | None = 1000


RUNTIME_FILENAME = "_codegen_numba_runtime.py"  # beside the modules (no module starts with _)
_RUNTIME_TEMPLATES = ("numba_runtime.py.j2", "helpers/numba_math.py.j2",
                      "helpers/labels_numba.py.j2", "helpers/numba_batched.py.j2")


def runtime_version() -> str:
    """The version of the Numba runtime: a digest of its templates.  A module checks that the
    runtime beside it has its version, and embeds it, so that a changed runtime changes every
    module (and Numba's cache of their kernels, keyed by the module's file)."""
    root = templates_dir()
    digest = hashlib.sha256()
    for name in _RUNTIME_TEMPLATES:
        digest.update((root / name).read_text(encoding="utf-8").replace("\r\n", "\n").encode())
    return digest.hexdigest()[:12]


def kernels_module() -> str:
    """The name the kernels' namespace is registered under: one per version of the runtime,
    so that modules generated by different versions of codegen, whose helpers may differ, do
    not share one."""
    return f"_codegen_numba_kernels_{runtime_version()}"


def runtime_source() -> str:
    """The Numba runtime module (``RUNTIME_FILENAME``), black-formatted: the same for every
    spec, written beside the Numba modules."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    math = sorted({name for form in NUMBA.values() for name in form.math}
                  | {name for names in _SHARED_MATH.values() for name in names})
    source = env.get_template("numba_runtime.py.j2").render(
        version=__version__, runtime_version=runtime_version(), kernels_module=kernels_module(),
        math=math)
    return format_module(source)


_KERNEL_ABBREVIATION = {"forward": "fw", "backward": "bw", "value_and_grad": "vg"}


@dataclass
class Part:
    """A run of a long kernel's statements, compiled as a kernel of its own."""

    name: str
    params: list[str]
    body: list[Stmt]
    returns: str  # "a", "a, b" or "None"


def _drop_trailing_frees(stmts: list[Stmt]) -> list[Stmt]:
    """Without the statements at the end that only free memory: the return frees it anyway."""
    end = len(stmts)
    while end and stmts[end - 1].frees:
        end -= 1
    return stmts[:end]


def _tuple(items: list[str]) -> str:
    """A tuple display as black writes it: ``(a,)`` for one item, ``a, b`` otherwise."""
    return f"({items[0]},)" if len(items) == 1 else ", ".join(items)


@dataclass
class NumbaFunctionView(FunctionView):
    """The NumPy view, and what the wrappers around the compiled kernels need."""

    parts: list[Part] = dataclasses.field(default_factory=list)  # long kernels' parts
    wrap_outputs: str = ""  # the outputs as a wrapper returns them (scalars given the dtype)
    saved_kwargs: str = ""  # "X=X, H1=H1"
    wrapper_grads: list[str] = dataclasses.field(default_factory=list)  # a wrapper's grad locals
    wrap_grads: str = ""  # "f_Grads(W=dW, b=_DTYPE.type(db))"
    fw_decorator: str = ""  # each kernel's decorator
    bw_decorator: str = ""
    vg_decorator: str = ""
    masked_guard: str = ""  # a test for masked arrays among the array inputs


class NumbaEmitter(Emitter):
    """Renders kernels with explicit fused loops, and NumPy-compatible wrappers."""

    backend = "numba"
    template = "module_numba.py.j2"
    plan_memory = False  # kernels own their arrays
    lowers = True
    flattens_batch_products = False
    fuses = True
    fuses_value_and_grad = True
    blocks = False  # kernels compiled per vector: the columns are one compiled loop instead

    def __init__(self, dtype: str, parallel: bool = False, fastmath: bool = False,
                 max_part_ops: int | None = MAX_PART_OPS,
                 max_loop_lines: int | None = MAX_LOOP_LINES) -> None:
        super().__init__(dtype)
        self.parallel = parallel
        self.fastmath = fastmath
        self.max_part_ops = max_part_ops
        self.max_loop_lines = max_loop_lines
        self.kernel = ""  # the kernel being rendered (forward, backward, value_and_grad)
        self.parts: list[Part] = []  # the current function's kernels' parts
        self.split = False  # some kernel of the module has parts
        self.function_name = ""
        self.called: set[str] = set()  # the runtime's functions the kernels call (_exp, ...)

    def function_view(self, plan: FunctionPlan) -> NumbaFunctionView:
        self._loop_index: dict[int, list[str]] = {}
        fn = plan.function
        self.parts, self.function_name = [], fn.name
        base = super().function_view(plan)
        view = NumbaFunctionView(**{f.name: getattr(base, f.name)
                                    for f in dataclasses.fields(FunctionView)})
        view.parts = self.parts
        self.split = self.split or bool(self.parts)

        def cast(local: str, name: str) -> str:
            return E.call("_DTYPE.type", local).render() if name in view.scalars else local

        outputs = [o for o in fn.program.outputs if isinstance(o, str)]
        outs = [cast(local, o) for local, o in zip(view.fw_outputs, outputs)]
        view.wrap_outputs = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        view.saved_kwargs = ", ".join(f"{f}={f}" for f in view.fw_saved)
        view.fw_saved = [f for f in view.fw_saved if f not in view.fw_outputs]  # returned once
        view.wrapper_grads = view.vg_grads
        fields = ", ".join(f"{w}={cast(local, w)}" for w, local in zip(fn.wrt, view.vg_grads))
        view.wrap_grads = f"{fn.name}_Grads({fields})"
        # Numba takes a masked array for its data: the wrappers send it to the checks (refused)
        view.masked_guard = " or ".join(
            f"type({name}) is _MASKED" for name in fn.program.inputs
            if fn.program.values[name].shape)
        check = self.shape_check(fn)
        view.forward[:0] = check
        view.vg_forward[:0] = check
        view.fw_decorator = self.decorator(view.forward)
        view.bw_decorator = self.decorator(view.backward)
        view.vg_decorator = self.decorator(view.vg_forward + view.vg_backward)
        return view

    def shape_check(self, fn: Function) -> list[Stmt]:
        """The kernel's own comparison of its inputs' shapes with the spec's (the wrapper calls
        it without checking inputs whose types it has seen: see ``_run_checked``)."""
        first: dict[str, E.Expr] = {}
        differ: list[E.Expr] = []
        for name in fn.program.inputs:
            for axis, d in enumerate(fn.program.values[name].shape):
                size = E.index(f"{name}.shape", axis)
                if isinstance(d, int):
                    differ.append(E.binop("!=", size, d))
                elif d in first:
                    differ.append(E.binop("!=", size, first[d]))
                else:
                    first[d] = size
        if not differ:
            return []
        message = f"{fn.name}: the inputs' shapes are not the spec's"
        return [Stmt(f"if {E.any_of(differ)}:\n    raise ValueError({message!r})",
                     "the spec's shapes (if not, the wrapper's checks name the input that differs)")]

    def template_vars(self) -> dict[str, object]:
        chosen = [name for name, on in (("parallel", self.parallel), ("fastmath", self.fastmath))
                  if on]
        return {"contiguous_inputs": True,  # kernels take C-contiguous arrays, scalars for []
                "runtime_version": runtime_version(),
                "called": sorted(self.called),
                "fastmath": self.fastmath,
                "parallel": self.parallel,
                "split": self.split,
                "options": f" ({', '.join(chosen)})" if chosen else "",
                "tuple": _tuple}

    def typed_number(self, expr: str) -> str:
        return expr  # the wrapper returns scalars in the dtype

    def lapack_operand(self, expr: str) -> str:
        return expr  # Numba's np.linalg refuses inf and NaN itself

    def types_number_division(self) -> bool:
        return False  # error_model="numpy": 1 / 0 is inf in a kernel

    def helpers(self, programs: list[Program]) -> list[str]:
        return []  # the normalisations are lowered to loops; the runtime has the math helpers

    def decorator(self, body: list[Stmt]) -> str:
        """``@_parallel_kernel`` for a kernel with a prange loop, else ``@_kernel``."""
        parallel = any(s.parallel for s in body)
        return "@_parallel_kernel" if parallel else "@_kernel"

    # --- plain ops ------------------------------------------------------------------------------

    def render_op(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> tuple[str, int]:
        if op.op in LABEL_OPS:
            return self.render_label(op, args, dim).render(), ATOM
        if op.op == "stack" and not self.shapes.shape_of(op.args[0]):
            # stacked 0-d values: a kernel holds a float or a 0-d array for one, and Numba's
            # np.stack takes arrays only
            args = [(E.call("np.asarray", E.Leaf(*a)).render(), ATOM) for a in args]
        if op.op == "reshape":  # Numba reshapes contiguous arrays only
            args = [(E.call("np.ascontiguousarray", E.Leaf(*args[0])).render(), ATOM)]
        form = NUMBA.get(op.op, _PLAIN).statement
        tree = form(op, *(E.Leaf(*a) for a in args)) if form is not None else None
        if tree is not None:
            return tree.render(), tree.prec
        return super().render_op(op, args, dim)

    def render_label(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> E.Expr:
        """take_along_axis, its gradient and one_hot: the labels helpers' loops over arrays
        reshaped to [P, K, Q], K the labelled axis (helpers/labels_numba.py.j2)."""
        shape_of = self.shapes.shape_of
        dtype = E.as_expr(self.np_dtype)

        def reshape(x: E.Expr, shape: E.Expr) -> E.Expr:
            return E.Call(E.Attr(x, "reshape").render(), (shape,))

        def three(shape: tuple) -> E.Expr:
            """A shape as [P, n, Q] around the axis."""
            axis = int(op.attr("axis"))  # type: ignore[call-overload]
            return E.tuple_([self.product(shape[:axis], dim), self.dim_ref(shape[axis], dim),
                             self.product(shape[axis + 1:], dim)])

        def flat(x: tuple[str, int], shape: tuple) -> E.Expr:
            """``x`` as [P, n, Q] (a contiguous copy only where it is not contiguous)."""
            return reshape(E.call("np.ascontiguousarray", E.Leaf(*x)), three(shape))

        label = E.Leaf(f'"{op.attr("label", "")}"')
        if op.op == "take_along_axis":
            a, y = (shape_of(x) for x in op.args)
            self.called.update({"_take_along_axis", "_label_error"})
            taken = E.call("_take_along_axis", flat(args[0], a), flat(args[1], y), label)
            return reshape(taken, self.shape_expr(y, dim))
        if op.op == "put_along_axis":
            g, out = shape_of(op.args[0]), op.attr("shape")
            assert isinstance(out, tuple)
            zeros = E.call("np.zeros", three(out), dtype=dtype)
            self.called.add("_put_along_axis")
            added = E.call("_put_along_axis", flat(args[0], g), flat(args[1], g), zeros)
            return reshape(added, self.shape_expr(out, dim))
        y = shape_of(op.args[0])
        size = self.product(y, dim)
        depth = self.dim_ref(op.attr("depth"), dim)
        zeros = E.call("np.zeros", E.tuple_([size, depth]), dtype=dtype)
        labels = reshape(E.call("np.ascontiguousarray", E.Leaf(*args[0])), E.tuple_([size]))
        self.called.update({"_one_hot", "_label_error"})
        hot = E.call("_one_hot", labels, zeros, label)
        return reshape(hot, self.shape_expr(y + (op.attr("depth"),), dim))

    def product(self, dims: tuple, dim: dict[str, str]) -> E.Expr:
        """The product of dims (1 for none)."""
        return E.product([self.dim_ref(d, dim) for d in dims]) if dims else E.as_expr(1)

    # --- statements -----------------------------------------------------------------------------

    def render_body(self, body: Body, names: Names, dim: dict[str, str]) -> list[Stmt]:
        """The body's loop groups (the fusion pass's) as loop nests, other ops as statements."""
        ops, program, live_out, items = body.ops, body.program, body.live_out, body.items
        self.kernel = body.kernel
        self.shapes = program  # (the labels' renderings read their operands' shapes)
        stmts: list[Stmt] = []
        self.views: dict[str, str] = {}  # transposes of named arrays, written inline
        # A view (a transpose, expand_dims or reshape statement) shares its array's buffer: a
        # read of the view reads the array, and a view that is returned or saved keeps the
        # array alive to the end, so no later loop writes into it.
        root: dict[str, str] = {}
        for item in items:
            if isinstance(item, Op) and item.op in _VIEW_OPS and isinstance(item.args[0], str):
                root[item.out] = root.get(item.args[0], item.args[0])
        last_read: dict[str, int] = {}
        for n, item in enumerate(items):
            for op in ([item] if isinstance(item, Op) else item.ops):
                for a in op.args:
                    if isinstance(a, str):
                        last_read[a] = n
                        last_read[root.get(a, a)] = n
        kept = live_out | {root[v] for v in live_out if v in root}
        owned: set[str] = set()  # arrays this function allocated (not inputs, not views)
        # arrays a returned transpose views: never dead (a loop writing into one would change it)
        producer = {op.out: op for op in ops}
        pinned: set[str] = set()
        for op in ops:
            a = op.out
            while a in producer and producer[a].op == "transpose" and op.out in live_out:
                base = producer[a].args[0]
                if not isinstance(base, str):
                    break
                a = base
                pinned.add(a)
        rendered: list[tuple[list[Stmt], set[str]]] = []  # per item: statements, dims used
        block = None  # the spec step the last statement's comment named
        self._producers = producer
        self._final = annotate.last_of_groups(ops)
        # batches of transposes that only batched products read: they read the base array
        # transposed (``_batched_dot``'s flags), so the view needs no statement of its own
        users: dict[str, list[Op]] = {}
        for item in items:
            for op in ([item] if isinstance(item, Op) else item.ops):
                for a in op.args:
                    if isinstance(a, str):
                        users.setdefault(a, []).append(op)
        standalone = {id(item) for item in items if isinstance(item, Op)}
        absorbed: set[str] = set()
        for op in reversed(ops):  # (a transpose of a transpose: both absorbed)
            if _batch_transpose(op, program) and op.out not in live_out and users.get(op.out) \
                    and all(u.out in absorbed or (u.op == "matmul" and id(u) in standalone
                                                  and len(program.values[u.out].shape) == 3
                                                  and tuple(program.shape_of(op.out)[:-2])
                                                  == tuple(program.values[u.out].shape[:-2]))
                            for u in users[op.out]):  # (a broadcast batch is not absorbed)
                absorbed.add(op.out)

        def expand(v: str) -> Op | None:
            return producer.get(v) if v in self.views or v in absorbed else None

        leaf = annotate.hint_leaf(program, names.of)
        for n, item in enumerate(items):
            outer_dims, self.used_dims = self.used_dims, set()
            stmts = []
            if isinstance(item, Group):
                dead = {a for a, last in last_read.items()
                        if last == n and a in owned and a not in kept and a not in pinned}
                stmts.extend(self.render_group(item, program, names, dim, dead))
                block = None  # the loop's comment names its own steps
                owned |= {op.out for op in item.ops if op.op not in REDUCTIONS}
            elif item.out in absorbed:
                pass  # no statement: the products read its base
            elif (_reverses_axes(item, program) and isinstance(item.args[0], str)
                  and item.out not in live_out and item.args[0] not in self.views):
                self.views[item.out] = item.args[0]  # x.T: Numba types it F-contiguous
            else:
                args = [(E.Attr(E.as_expr(names.of[self.views[a]]), "T").render(), ATOM)
                        if isinstance(a, str) and a in self.views
                        else ("", ATOM) if a in absorbed  # (batched_matmul reads its base)
                        else self.arg_expr(a, names, dim, {}) for a in item.args]
                if item.op == "matmul":
                    args = self.dot_operands(item, program, args)
                if item.op == "matmul" and any(len(program.shape_of(a)) > 2 for a in item.args):
                    expr = self.batched_matmul(item, program, args, dim, names)
                else:
                    expr = E.Leaf(*self.render_op(item, args, dim))
                target = names.bind(item.out, program.values[item.out].hint)
                lines = []
                if annotate.block_key(item) != block:
                    block = annotate.block_key(item)
                    lines.append(annotate.step_header(item))
                if item.phase == "backward":
                    eq = annotate.equation(item, target, leaf, expand)
                    lines.append("  " + annotate.rule_line(item, eq, item.out in self._final))
                stmts.append(Stmt(E.assign(target, expr), annotate.join(lines)))
                if NUMBA.get(item.op, _PLAIN).new_array:
                    owned.add(item.out)
            rendered.append((stmts, self.used_dims))
            self.used_dims = outer_dims | self.used_dims
        if len(body.parts) > 1:
            return self.call_parts(body, rendered, names, dim)
        return _drop_trailing_frees([s for stmts, _ in rendered for s in stmts])

    # --- long kernels: parts compiled on their own ----------------------------------------------

    def call_parts(self, body: Body, rendered: list[tuple[list[Stmt], set[str]]], names: Names,
                   dim: dict[str, str]) -> list[Stmt]:
        """The kernel's body as calls of its parts (``body.parts``, the split ``compiler.py``
        planned), each a kernel of its own (``self.parts``): it takes the locals it reads
        before writing them and the dims it uses, and returns the locals it writes that a later
        part reads or the kernel returns. Arrays pass by reference; nothing is copied."""
        at = {id(item): n for n, item in enumerate(body.items)}
        io = []
        for part in body.parts:
            reads: list[str] = []
            writes: list[str] = []
            dims: set[str] = set()
            for item in part:
                r, w = self.item_io(item, names)
                reads.extend(x for x in r if x not in writes and x not in reads)
                writes.extend(x for x in w if x not in writes)
                dims |= rendered[at[id(item)]][1]
            io.append((reads, writes, dims))
        live = {names.of[v] for v in body.live_out if v in names.of}
        read_after: list[set[str]] = [set() for _ in body.parts]
        for k in range(len(body.parts) - 2, -1, -1):
            read_after[k] = read_after[k + 1] | set(io[k + 1][0])
        calls = []
        for k, (part, (reads, writes, dims)) in enumerate(zip(body.parts, io)):
            params = reads + [local for d, local in dim.items() if d in dims]
            returns = [w for w in writes if w in live or w in read_after[k]]
            stmts = _drop_trailing_frees([s for item in part for s in rendered[at[id(item)]][0]])
            value = returns[0] if len(returns) == 1 else ", ".join(returns) or "None"
            digest = hashlib.sha256(repr((runtime_version(), self.fastmath, self.dtype,
                                          params, value, [(s.comment, s.code) for s in stmts])
                                         ).encode()).hexdigest()[:8]
            name = f"_{self.function_name}_{_KERNEL_ABBREVIATION[body.kernel]}_part{k + 1}_{digest}"
            self.parts.append(Part(name, params, stmts, value))
            call = E.call(name, *params)
            code = E.assign(E.Leaf(", ".join(returns), E.COND), call) if returns else call.render()
            calls.append(Stmt(code, f"part {k + 1} of {len(body.parts)}, compiled on its own"
                              if k == 0 else ""))
        return calls

    def chunk_body(self, body: list[str], in_loop: bool) -> list[str]:
        """A loop body longer than ``max_loop_lines`` lines as calls of functions of at most
        that many of its lines each, compiled on their own (``self.parts``); others unchanged.

        Numba and LLVM compile one long loop body in time that grows faster than its length
        (a 2,000-step chain's single fused loop took 4x the time of a 1,000-step one); calls
        of functions of bounded length grow about linearly. The values between them stay
        scalars: a function takes the locals its lines read before writing them (values of
        the steps before it, the loop's indices, the arrays it reads or adds into) and
        returns the locals it writes that a later line reads, and the running sums the loop
        carries from one element to the next. Without a loop (``in_loop`` False: a group of
        scalars, whose values later statements read) it returns every local it writes."""
        limit = self.max_loop_lines
        if limit is None or len(body) <= limit or not self.kernel:  # (not f_jvp's, ...)
            return body
        modules = {"np", "numba", "math"}
        parsed = []  # per line: (names it reads, names it writes)
        for line in body:
            tree = ast.parse(line).body[0]
            called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            reads = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                     and isinstance(n.ctx, ast.Load) and id(n) not in called
                     and n.id not in modules]
            writes: list[str] = []
            if isinstance(tree, (ast.Assign, ast.AugAssign)):
                targets = tree.targets if isinstance(tree, ast.Assign) else [tree.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                            writes.append(n.id)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                            reads.append(n.id)  # an array written into, its indices
                if isinstance(tree, ast.AugAssign) and isinstance(tree.target, ast.Name):
                    reads.append(tree.target.id)
            parsed.append((list(dict.fromkeys(reads)), writes))
        # a local the body reads before writing it: from before the loop, or the loop carries it
        carried: set[str] = set()
        seen: set[str] = set()
        for reads, writes in parsed:
            carried |= {r for r in reads if r not in seen}
            seen |= set(writes)
        last_read: dict[str, int] = {}
        for at, (reads, _) in enumerate(parsed):
            for r in reads:
                last_read[r] = at
        out = []
        for start in range(0, len(body), limit):
            end = min(start + limit, len(body))
            params: list[str] = []
            written: list[str] = []
            for reads, writes in parsed[start:end]:
                params += [r for r in reads if r not in written and r not in params]
                written += [w for w in writes if w not in written]
            returns = [w for w in written if not in_loop or w in carried
                       or last_read.get(w, -1) >= end]
            lines = [Stmt(line) for line in body[start:end]]
            value = _tuple(returns) if len(returns) > 1 else (returns[0] if returns else "None")
            digest = hashlib.sha256(repr((runtime_version(), self.fastmath, self.dtype, params,
                                          value, body[start:end])).encode()).hexdigest()[:8]
            name = (f"_{self.function_name}_{_KERNEL_ABBREVIATION[self.kernel]}"
                    f"_lines{start + 1}_{digest}")
            self.parts.append(Part(name, params, lines, value if len(returns) != 1 else returns[0]))
            call = E.call(name, *params)
            out.append(E.assign(E.Leaf(", ".join(returns), E.COND), call) if returns
                       else call.render())
        return out

    def item_io(self, item: Op | Group, names: Names) -> tuple[list[str], list[str]]:
        """The locals an item of a body reads (in order) and writes."""

        def name(a: str) -> str:
            return names.of[self.views.get(a, a)]

        if isinstance(item, Op):
            if item.out in self.views:  # a transpose read in place (its array is read)
                return [], []
            return [name(a) for a in item.args if isinstance(a, str)], [names.of[item.out]]
        outs = {op.out for op in item.ops}
        totals = list(dict.fromkeys(item.into.values()))
        reads = [name(a) for op in item.ops for a in op.args if isinstance(a, str) and a not in outs]
        reads += [names.of[t] for t in totals if t not in outs]  # sums added into them
        written = [op.out for op in item.ops if op.out not in item.into
                   and (op.out in item.materialise or op.op in REDUCTIONS)]
        writes = [names.of[v] for v in written + totals + list(item.aliases) if v in names.of]
        return list(dict.fromkeys(reads)), list(dict.fromkeys(writes))

    def dot_operands(self, op: Op, program: Program, args: list[tuple[str, int]]
                     ) -> list[tuple[str, int]]:
        """The operands of ``np.dot``, each C- or F-contiguous (Numba's BLAS call wants one or
        the other; on a strided view it warns and runs its own slower loops): a view other than
        a transpose (an axis permutation, a slice) is copied with np.ascontiguousarray.  A batch
        operand is made contiguous by ``batched_matmul`` itself."""
        out = list(args)
        ranks = [len(program.shape_of(a)) for a in op.args]
        for k, a in enumerate(op.args):
            direct = ranks[k] <= 2 and (k == 1 or ranks[1] <= 2)  # passed to np.dot as it is
            if not isinstance(a, str) or not direct:
                continue
            base = self.views.get(a, a)  # x.T of a contiguous x is contiguous
            made = self._producers.get(base)
            if made is not None and made.op in _VIEW_OPS and made.op != "reshape":
                out[k] = (E.call("np.ascontiguousarray", E.Leaf(*args[k])).render(), ATOM)
        return out

    def batched_matmul(self, op: Op, program: Program, args: list[tuple[str, int]],
                       dim: dict[str, str], bound: Names | None = None) -> E.Expr:
        """``a @ b`` with a batch of matrices on BLAS (Numba's np.dot takes matrices only).

        A batch times a matrix is one np.dot of the batch merged into the rows; otherwise both
        operands become contiguous [batch, n, k] arrays (a broadcast batch axis copied) and
        ``_batched_dot`` calls np.dot once per matrix; an operand that is a batch of transposes
        (``swapaxes(K, 1, 2)``) is passed untransposed with a flag, and read as transposed views
        of its matrices (no copy)."""
        (sa, sb), out = (program.shape_of(a) for a in op.args), program.values[op.out].shape
        a: E.Expr = E.Leaf(*args[0])
        b: E.Expr = E.Leaf(*args[1])
        shape = self.shape_expr(out, dim)
        if len(sb) == 2:
            rows = E.call("np.ascontiguousarray", a)
            rows = E.call(f"{rows.render()}.reshape", E.tuple_([-1, self.dim_ref(sa[-1], dim)]))
            return E.call(f"{E.call('np.dot', rows, b).render()}.reshape", shape)
        batch = out[:-2]

        flags = [False, False]
        for k, v in enumerate(op.args):  # a batch of transposes: its base, read transposed
            base, flag = v, False
            while len(batch) == 1 and isinstance(base, str) and base in self._producers \
                    and _batch_transpose(self._producers[base], program):
                base, flag = self._producers[base].args[0], not flag
            if base != v and bound is not None and base in bound.of \
                    and tuple(program.shape_of(base)[:-2]) == tuple(batch):
                flags[k] = flag
                local = E.as_expr(bound.of[base])
                a, b = (local, b) if k == 0 else (a, local)
                sa, sb = (program.shape_of(base), sb) if k == 0 else (sa, program.shape_of(base))

        def stacked(x: E.Expr, s: tuple) -> E.Expr:
            if tuple(s[:-2]) != tuple(batch):
                x = E.call("np.broadcast_to", x, self.shape_expr(tuple(batch) + tuple(s[-2:]), dim))
            x = E.call("np.ascontiguousarray", x)
            if len(batch) == 1:
                return x
            return E.call(f"{x.render()}.reshape", E.tuple_(
                [-1, self.dim_ref(s[-2], dim), self.dim_ref(s[-1], dim)]))

        self.called.add("_batched_dot")
        product = E.call("_batched_dot", stacked(a, sa), stacked(b, sb),
                         *(E.as_expr(str(f)) for f in flags))
        if len(batch) == 1:
            return product
        return E.call(f"{product.render()}.reshape", shape)

    def render_group(self, group: Group, program: Program, names: Names,
                     dim: dict[str, str], dead: set[str]) -> list[Stmt]:
        """One loop nest: allocations, the loop with one line per kept value, then finishing.

        ``dead``: arrays of this function that nothing reads after this group; a value the
        group writes may take over the buffer of one it reads element by element.

        When sin or cos read arrays, the loop body is rendered twice from the same names, with
        their ``short`` argument True and False (the loop runs the first when a check of the
        arrays before the loop allows it)."""
        index = [self._index(names, k) for k in range(len(group.shape))]
        start = names.snapshot()
        before, body, after, switch, block, rows_at = self.group_lines(
            group, program, names, dim, dead, index, "True")
        body_else: list[str] = []
        if switch:
            names.restore(start)
            # (the same names, so the same row lines: the first rendering's are kept)
            _, body_else, _, _, _, _ = self.group_lines(group, program, names, dim, dead, index,
                                                        "False")
            body_else = self.chunk_body(body_else, bool(index))
        body = self.chunk_body(body, bool(index))
        return self.loop(group, group.shape, index, before, body, after, dim, switch, block,
                         body_else, rows_at)

    def group_lines(self, group: Group, program: Program, names: Names, dim: dict[str, str],
                    dead: set[str], index: list[str], flag: str
                    ) -> tuple[list[str | Stmt], list[str], list[str | Stmt], str, str,
                               dict[int, tuple[list[str | Stmt], list[str | Stmt]]]]:
        """A loop nest's lines before the loop, in its body and after it, the local of the
        check that sin's and cos's arrays allow the short reduction ("" if none), and the
        index of the blocks of a prange loop ("" if none), and the lines around the loops over
        some axes (a row's reduction in a local: axis -> lines before that loop, lines after
        it); ``flag``: what sin and cos pass as ``short`` for those arrays.

        Every line is built from expression trees (``expr.py``): a loop body line is a
        (target, augmented operator, value) triple until it is rendered."""
        shape = group.shape
        self._comment_names = names
        self._comment_program = program
        members = {op.out for op in group.ops}
        uses: dict[str, int] = {}
        for op in group.ops:
            for a in op.args:
                if isinstance(a, str) and a in members:
                    uses[a] = uses.get(a, 0) + 1
        reuse = self.reuse(group, program, uses, dead)
        prange = self.parallel and self.parallel_safe(group)
        block = ""  # under prange, the index of a block of _BLOCK rows, when sums need one
        block_sums: dict[str, str] = {}  # a sum's array -> its partial sums per block (prange)
        before: list[str | Stmt] = []
        body: list[tuple[E.Expr, str, E.Expr]] = []  # (target, "" or "+", value)
        after: list[str | Stmt] = []
        scalar: dict[str, tuple[str, int]] = {}  # value -> expression inside the loop
        dtype = E.as_expr(self.np_dtype)

        def read(a: Arg) -> tuple[str, int]:
            number = self.number_expr(a, dim)
            if number is not None:
                return number
            assert isinstance(a, str)
            if a in scalar:
                return scalar[a]
            if a in self.views:  # X.T[i, j] is X[j, i]
                at = self.element_index(program.values[a].shape, shape, index)
                return E.index(names.of[self.views[a]], *at[::-1]).render(), ATOM
            return self.element(names.of[a], program.values[a].shape, shape, index), ATOM

        def leaf(a: Arg) -> E.Expr:
            return E.Leaf(*read(a))

        trig_arrays: list[str] = []  # arrays read by sin and cos: checked before the loop
        switch = ""  # their check's local, named on first use

        def short(a: Arg) -> str:
            """What sin's or cos's argument passes as ``short``: the loop's switch for an
            array read from memory; an argument computed in the loop takes the long way."""
            nonlocal switch
            if not index or not isinstance(a, str) or a in members or not program.values[a].shape:
                return "False"
            arr = names.of[self.views.get(a, a)]
            if arr not in trig_arrays:
                trig_arrays.append(arr)
            switch = switch or names.fresh("short")
            return flag

        shared = self.shared_calls(group, program)
        paired: dict[str, str] = {}  # value -> the local a shared call assigned it to
        # A reduction over trailing axes of the loop only (each row's sum, mean or max into an
        # element of its own) runs in a local, set before the loop over its first reduced axis
        # and stored after that loop: a running sum kept in memory (mu[i, j, 0] += ...) is a
        # chain of stores and loads that also keeps the other lines of the loop from
        # vectorising (layer normalisation's kernel ran 2.2x slower).
        rows_at: dict[int, tuple[list[str | Stmt], list[str | Stmt]]] = {}  # axis -> lines
        into = set(group.into.values())
        for op in group.ops:
            value = program.values[op.out]
            if op.out in shared and op.out not in paired:
                helper, x_arg, parts = shared[op.out]
                args = [leaf(x_arg)] + ([E.as_expr(short(x_arg))] if helper == "sincos" else [])
                locals_ = [names.fresh(f"{stem}_e") for _, stem in parts]
                body.append((E.Leaf(", ".join(locals_), E.COND), "",
                             E.Call(f"_{helper}", tuple(args))))
                self.called.add(f"_{helper}")
                paired.update((out, local) for (out, _), local in zip(parts, locals_))
            if op.op in REDUCTIONS:
                total = group.into.get(op.out)
                acc = names.of[total] if total else names.bind(op.out, value.hint)
                x = leaf(op.args[0])
                out_index = self.reduced_index(op, shape, index)
                target = E.index(acc, *out_index) if out_index else E.as_expr(acc)
                # a full sum in a nest keeps one running sum per column (below)
                columns = op.op != "max" and not value.shape and len(shape) > 1
                rows = prange and self.sums_rows(op, shape)  # (parallel_safe: over axis 0)
                if prange and (columns or rows) and not block:
                    block = names.fresh("block")
                blocks = (E.floordiv(E.add(self.dim_ref(shape[0], dim), _BLOCK - 1), _BLOCK)
                          if block else E.as_expr(0))  # (read only under prange, with a block)
                if rows:  # a sum over rows under prange: a row of partial sums per block
                    if acc not in block_sums:  # (sums that add into one total share them)
                        block_sums[acc] = names.fresh(f"{acc}_blocks")
                        part = block_sums[acc]
                        width = self.dim_ref(shape[-1], dim)
                        before.append(E.assign(part, E.call("np.zeros", E.tuple_([blocks, width]),
                                                            dtype=dtype)))
                        whole = E.call(f"{part}.sum", axis=0)
                        after.append(E.assign(acc, whole, "+" if total else ""))
                        after.append(Stmt(E.assign(part, E.call("np.empty", E.tuple_([0, 0]),
                                                                dtype=dtype)) + _FREE, frees=True))
                        if op.op == "mean" and not total:
                            after.append(E.assign(acc, self.count(op, program, dim), "/"))
                    body.append((E.index(block_sums[acc], block, index[-1]), "+", x))
                    continue
                first = self.trailing_axes(op, shape)
                if first and not total and op.out not in into and not columns:
                    local = names.fresh(f"{acc}_acc")
                    init_lines, store_lines = rows_at.setdefault(first, ([], []))
                    init_lines.append(E.assign(local, E.Unary("-", E.as_expr("np.inf"))
                                               if op.op == "max" else E.as_expr(0.0)))
                    store_lines.append(E.assign(target, local))
                    target = E.as_expr(local)
                if columns:
                    # one running sum per column: the inner loop's lanes are independent, so
                    # it vectorises without reordering any addition (no fastmath needed);
                    # under prange, one row of them per block of rows
                    cols = names.fresh(f"{acc}_cols")
                    width = self.dim_ref(shape[-1], dim)
                    size = E.tuple_([blocks, width] if prange else [width])
                    before.append(E.assign(cols, E.call("np.zeros", size, dtype="np.float64")))
                    at = [block, index[-1]] if prange else [index[-1]]
                    body.append((E.index(cols, *at), "+", x))
                    after.append(E.assign(acc, E.call(f"{cols}.sum"), "+" if total else ""))
                    empty = E.tuple_([0, 0]) if prange else E.as_expr(0)
                    after.append(Stmt(E.assign(cols, E.call("np.empty", empty)) + _FREE,
                                      frees=True))
                elif op.op == "max" and op.attr("shift"):
                    # a normalisation's shift: a NaN makes the whole slice NaN whatever it is
                    body.append((target, "", E.call("max", target, x)))
                elif op.op == "max":
                    # NaN propagates as in np.max (max() skips a NaN after the first element;
                    # np.maximum propagates it too but runs about 2.5 times slower here)
                    if not _simple(x):  # (read three times)
                        tmp = names.fresh(f"{value.hint}_x")
                        body.append((E.as_expr(tmp), "", x))
                        x = E.as_expr(tmp)
                    body.append((target, "", E.Cond(E.call("max", target, x),
                                                    E.binop("==", x, x), x)))
                    check = self.empty_max_check(op, shape, dim)
                    if check is not None:
                        before.insert(0, check)  # before any allocation
                else:
                    body.append((target, "+", x))
                init = E.Unary("-", E.as_expr("np.inf")) if op.op == "max" else E.as_expr(0.0)
                if total:  # adds into an earlier sum's array
                    continue
                if value.shape:
                    full = self.shape_expr(value.shape, dim)
                    before.append(E.assign(acc, E.call("np.full", full, init, dtype=dtype)
                                           if op.op == "max" else
                                           E.call("np.zeros", full, dtype=dtype)))
                elif not columns:
                    before.append(E.assign(acc, init))
                if op.op == "mean":
                    n = self.count(op, program, dim)
                    after.append(E.assign(acc, n, "/") if value.shape
                                 else E.assign(acc, E.div(acc, n)))
                continue
            if op.out in paired:  # already a local of the loop body
                expr = (paired[op.out], ATOM)
            else:
                extra = ([E.as_expr(short(op.args[0]))]
                         if NUMBA.get(op.op, _PLAIN).short and not self.fastmath else [])
                expr = self.scalar_expr(op, [read(a) for a in op.args], dim, extra)
            if op.out in group.materialise:
                arr = names.bind(op.out, value.hint)
                if op.out in reuse:
                    old = names.of[reuse[op.out]]
                    before.append(E.assign(arr, old) + f"  # in place of {old}: not read after this loop")
                elif index:  # a scalar group's values are plain locals
                    before.append(E.assign(arr, E.call("np.empty", self.shape_expr(value.shape, dim),
                                                       dtype=dtype)))
                elem = E.index(arr, *index) if index else E.as_expr(arr)
                if uses.get(op.out, 0) and op.out not in paired:
                    tmp = names.fresh(f"{arr}_e")
                    body.append((E.as_expr(tmp), "", E.Leaf(*expr)))
                    body.append((elem, "", E.as_expr(tmp)))
                    scalar[op.out] = (tmp, ATOM)
                else:
                    body.append((elem, "", E.Leaf(*expr)))
                    if op.out in paired:
                        scalar[op.out] = expr
            elif uses.get(op.out, 0) > 1 and op.out not in paired:
                tmp = names.fresh(f"{value.hint}_e")
                body.append((E.as_expr(tmp), "", E.Leaf(*expr)))
                scalar[op.out] = (tmp, ATOM)
            else:
                scalar[op.out] = expr
        for alias, total in group.aliases.items():
            if alias in names.of:  # named before (a saved value): the name must be bound too
                after.append(E.assign(names.of[alias], names.of[total]))
            else:  # a second name for the total, which nothing binds
                names.of[alias] = names.of[total]
        lines = [E.assign(t, v, aug) for t, aug, v in self.gather_sums(body, names)]
        if trig_arrays:
            self.called.add("_short_reduction")
            before.append(E.assign(switch, E.all_of([E.call("_short_reduction", a)
                                                     for a in trig_arrays])))
        return before, lines, after, switch, block, rows_at

    def trailing_axes(self, op: Op, shape: tuple) -> int:
        """The first of the loop axes a reduction reduces when they are the last ones, from
        the second on (a row's reduction: its accumulator can live in a local); else 0."""
        axes = self.axes(op, shape)
        first = len(shape) - len(axes)
        return first if 0 < first and axes == set(range(first, len(shape))) else 0

    def shape_expr(self, shape: tuple, dim: dict[str, str]) -> E.Expr:
        """A shape as a tuple display of dims (literals or the locals bound to them)."""
        return E.tuple_([self.dim_ref(d, dim) for d in shape])

    def shared_calls(self, group: Group,
                     program: Program) -> dict[str, tuple[str, Arg, list[tuple[str, str]]]]:
        """Pairs of values of one argument that one helper call computes together:
        value -> (helper, argument, [(value, local's stem)]).

        sin and cos (a forward sin, its backward cos) share one argument reduction; softplus and
        exp(x - softplus(x)), its derivative's sigmoid, share one exp(-|x|)."""
        if self.fastmath:  # fastmath uses NumPy's functions, not the helpers
            return {}
        by_out = {op.out: op for op in group.ops}
        calls: list[tuple[str, Arg, list[tuple[str, str]]]] = []
        trig: dict[Arg, dict[str, str]] = {}
        for op in group.ops:
            if op.op in ("sin", "cos"):
                trig.setdefault(op.args[0], {})[op.op] = op.out
        calls += [("sincos", x, [(ops["sin"], "sin"), (ops["cos"], "cos")])
                  for x, ops in trig.items() if len(ops) == 2]
        for op in group.ops:  # exp(x - y) with y = softplus(x)
            diff = by_out.get(op.args[0]) if op.op == "exp" and isinstance(op.args[0], str) else None
            if diff is None or diff.op != "sub" or not isinstance(diff.args[1], str):
                continue
            y = by_out.get(diff.args[1])
            if y is not None and y.op == "softplus" and y.args[0] == diff.args[0]:
                calls.append(("softplus_sigmoid", y.args[0],
                              [(y.out, program.values[y.out].hint), (op.out, "sigmoid")]))
        return {out: call for call in calls for out, _ in call[2]}

    def gather_sums(self, body: list[tuple[E.Expr, str, E.Expr]],
                    names: Names) -> list[tuple[E.Expr, str, E.Expr]]:
        """Several sums into one element (a weight's gradient from many steps) add up in a
        local first and store once, at the end of the loop body: one store instead of many,
        which keeps long loop bodies vectorisable. Lines are (target, "" or "+", value).

        Each partial sum is a local of its own (``dw_e_2 = dw_e + ...``), never ``dw_e += ...``
        again: Numba's SSA pass looks up every use of a name assigned many times in one block by
        scanning the block, which made a 250-step chain's compile time cubic in its length."""
        targets = Counter(t for t, aug, _ in body if aug == "+")
        shared = {t for t, n in targets.items() if n > 1}
        local: dict[E.Expr, E.Expr] = {}
        out = []
        for target, aug, x in body:
            if aug != "+" or target not in shared:
                out.append((target, aug, x))
                continue
            array = target.base if isinstance(target, E.Index) else target
            total = E.as_expr(names.fresh(array.render() + "_e"))
            out.append((total, "", E.add(local[target], x) if target in local else x))
            local[target] = total
        out.extend((target, "+", name) for target, name in local.items())
        return out

    def reuse(self, group: Group, program: Program, uses: dict[str, int],
              dead: set[str]) -> dict[str, str]:
        """Materialised values that write into a dead array's buffer: value -> array.

        Safe when the array has the loop's shape (read at exactly the element being written)
        and every read of it is evaluated no later than the line that stores the value."""
        ops = group.ops
        at = {op.out: k for k, op in enumerate(ops)}
        users: dict[str, int] = {}
        for k, op in enumerate(ops):
            for a in op.args:
                if isinstance(a, str) and a in at:
                    users[a] = k
        evaluated: dict[str, int] = {}  # value -> position of the line that computes it
        for k in range(len(ops) - 1, -1, -1):
            out = ops[k].out
            own_line = (out in group.materialise or uses.get(out, 0) > 1
                        or ops[k].op in REDUCTIONS or out not in users)
            evaluated[out] = k if own_line else evaluated.get(ops[users[out]].out, k)
        read_at: dict[str, int] = {}  # dead array -> last line that reads it
        transposed = {self.views[a] for op in ops for a in op.args
                      if isinstance(a, str) and a in self.views}  # read across, not in step
        for op in ops:
            for a in op.args:
                if isinstance(a, str) and a in dead and a not in transposed:
                    read_at[a] = max(read_at.get(a, -1), evaluated[op.out])
        reuse: dict[str, str] = {}
        taken: set[str] = set()
        for k, op in enumerate(ops):
            value = program.values[op.out]
            if (op.out not in group.materialise or op.op in REDUCTIONS
                    or value.shape != group.shape or not value.shape):
                continue
            for a, last in sorted(read_at.items()):
                if (a not in taken and last <= k and program.values[a].shape == group.shape):
                    reuse[op.out] = a
                    taken.add(a)
                    break
        return reuse

    def _index(self, names: Names, k: int) -> str:
        """Loop index k of the current function (i, j, ...), allocated once per scope."""
        key = id(names)
        per = self._loop_index.setdefault(key, [])
        while len(per) <= k:
            per.append(names.fresh("ijklmn"[len(per)]))
        return per[k]

    def element(self, name: str, shape: tuple, loop: tuple, index: list[str]) -> str:
        """``name`` at the loop's current element, NumPy broadcasting: size-1 axes read index 0."""
        if not shape:
            return name
        return E.index(name, *self.element_index(shape, loop, index)).render()

    def element_index(self, shape: tuple, loop: tuple, index: list[str]) -> list[str]:
        """The indices of an array of ``shape`` at the loop's current element."""
        offset = len(loop) - len(shape)
        return ["0" if d == 1 and loop[offset + k] != 1 else index[offset + k]
                for k, d in enumerate(shape)]

    def reduced_index(self, op: Op, shape: tuple, index: list[str]) -> list[str]:
        axis = op.attr("axis")
        axes = set(range(len(shape))) if axis is None else set(
            axis if isinstance(axis, tuple) else (axis,))
        keep = bool(op.attr("keepdims", False))
        out = []
        for k in range(len(shape)):
            if k in axes:
                if keep:
                    out.append("0")
            else:
                out.append(index[k])
        return out

    def empty_max_check(self, op: Op, shape: tuple, dim: dict[str, str]) -> Stmt | None:
        """A spec's max (or min, written -max(-x)) over an empty array or axis raises NumPy's
        ValueError, as np.max does: it has no identity (the loop would give -inf). The shift
        of a lowered normalisation (``shift``) is -inf there instead, as the NumPy helpers'
        ``initial=-np.inf``."""
        empty = [E.binop("==", self.dim_ref(shape[k], dim), 0)
                 for k in sorted(self.axes(op, shape))
                 if not isinstance(shape[k], int) or shape[k] == 0]
        if not empty:  # every reduced axis has a fixed size above 0
            return None
        line = f" (line {op.origin.line})" if isinstance(op.origin.line, int) else ""
        message = (f"{self.function_name}{line}: zero-size array to reduction operation maximum "
                   "which has no identity (a max or min over an axis of size 0)")
        return Stmt(f"if {E.any_of(empty)}:\n    raise ValueError({message!r})")

    def count(self, op: Op, program: Program, dim: dict[str, str]) -> E.Expr:
        """The number of elements a mean averages: a product of dims (a tree, never a string
        pasted after ``/``)."""
        x = program.values[op.args[0]].shape  # type: ignore[index]
        axis = op.attr("axis")
        dims = x if axis is None else [x[a] for a in (axis if isinstance(axis, tuple) else (axis,))]
        return E.product([self.dim_ref(d, dim) for d in dims])

    def scalar_expr(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str],
                    extra: list[E.Expr] | None = None) -> tuple[str, int]:
        """One element of ``op`` (``extra``: arguments a math helper takes after the operand,
        sin's and cos's ``short``)."""
        form = NUMBA.get(op.op, _PLAIN)
        if form.math and not self.fastmath:  # fastmath may rewrite the helpers' roundings
            self.called.add(f"_{op.op}")
            return E.Call(f"_{op.op}", (E.Leaf(*args[0]), *(extra or []))).render(), ATOM
        tree = form.element(op, *(E.Leaf(*a) for a in args)) if form.element is not None else None
        if tree is None:
            return super().render_op(op, args, dim)
        return tree.render(), tree.prec

    def loop(self, group: Group, shape: tuple, index: list[str], before: list[str | Stmt],
             body: list[str], after: list[str | Stmt], dim: dict[str, str], switch: str = "",
             block: str = "", body_else: list[str] | None = None,
             rows_at: dict[int, tuple[list[str | Stmt], list[str | Stmt]]] | None = None
             ) -> list[Stmt]:
        """The loop nest; with a ``switch`` (sin and cos's arguments all below 1.6e6), twice:
        ``body`` (the flag True) and ``body_else`` (False), so that LLVM vectorises each without
        the other's reduction. With a ``block`` index, prange runs over blocks of _BLOCK rows
        (fixed, so sums add in the same order whatever the number of threads). ``rows_at``:
        axis -> lines before the loop over that axis and lines after it (a row's running sum
        in a local, and its store)."""
        comment = self.group_comment(group, self._comment_program, shape)
        lines = list(before)
        parallel = False

        row_lines = rows_at or {}

        def nest(indent: str, body: list[str]) -> None:
            nonlocal parallel
            indents = []
            for k, d in enumerate(shape):
                rng = "range"
                size = self.dim_ref(d, dim)
                indents.append(indent)
                lines.extend(indent + str(line) for line in row_lines.get(k, ([], []))[0])
                if k == 0 and block:
                    blocks = E.floordiv(E.add(size, _BLOCK - 1), _BLOCK)
                    lines.append(f"{indent}for {block} in {E.call('numba.prange', blocks)}:")
                    parallel = True
                    indent += "    "
                    start = E.mul(_BLOCK, block)
                    rows = E.call("range", start, E.call("min", E.add(start, _BLOCK), size))
                    lines.append(f"{indent}for {index[k]} in {rows}:")
                    indent += "    "
                    continue
                if k == 0 and self.parallel and self.parallel_safe(group):
                    rng = "numba.prange"
                    parallel = True
                lines.append(f"{indent}for {index[k]} in {E.call(rng, size)}:")
                indent += "    "
            lines.extend(indent + b for b in body)
            for k in sorted(row_lines, reverse=True):
                lines.extend(indents[k] + str(line) for line in row_lines[k][1])

        if switch:
            lines.append(f"if {switch}:  # every argument of sin and cos is below 1.6e6: "
                         "the short reduction")
            nest("    ", body)
            lines.append("else:")
            nest("    ", body_else or [])
        else:
            nest("", body)
        lines.extend(after)
        stmts = [line if isinstance(line, Stmt) else Stmt(line, parallel=parallel)
                 for line in lines]
        if stmts:
            stmts[0].comment = text.wrap_comment(comment)
        return stmts

    def parallel_safe(self, group: Group) -> bool:
        """prange over the first axis of a loop nest (a 1-D loop is seldom long enough to win)
        when every reduction across rows is a full sum (a row of column sums per block) or, in
        two dimensions, a sum over axis 0 (a row of partial sums per block)."""
        if len(group.shape) < 2:
            return False
        for op in group.reductions:
            axes = self.axes(op, group.shape)
            if 0 not in axes:  # each row sums into its own element
                continue
            full = axes == set(range(len(group.shape))) and not op.attr("keepdims", False)
            if op.op == "max" or not (full or self.sums_rows(op, group.shape)):
                return False
        return True

    def axes(self, op: Op, shape: tuple) -> set[int]:
        """The loop axes a reduction sums over."""
        axis = op.attr("axis")
        return set(range(len(shape))) if axis is None else set(
            axis if isinstance(axis, tuple) else (axis,))

    def sums_rows(self, op: Op, shape: tuple) -> bool:
        """A sum (or mean) over the rows of a 2-D loop, into a vector."""
        return (op.op != "max" and len(shape) == 2 and self.axes(op, shape) == {0}
                and not op.attr("keepdims", False))

    def group_comment(self, group: Group, program: Program, shape: tuple) -> str:
        """The loop's comment: each spec step it computes, once, and under a step's backward the
        equation of each rule application the loop completes, over the names the kernel uses
        (a value the loop keeps in a register goes by the name it stands for)."""
        names = self._comment_names.of
        mine = {op.out: op for op in group.ops}
        read_in_group: set[tuple[str, int]] = {(a, op.group) for op in group.ops for a in op.args
                                               if isinstance(a, str)}

        def expand(v: str) -> Op | None:
            if v in self.views:  # a transpose the loop reads across: X.T
                return self._producers.get(v)
            op = mine.get(v)
            return op if op is not None and v not in names and op.group == current else None

        leaf = annotate.hint_leaf(program, names)
        blocks: dict[tuple[str, str, int], list[str]] = {}  # ordered: step -> its rule lines
        first: dict[tuple[str, str, int], Op] = {}  # step -> its first op
        current = -1
        for op in group.ops:
            key = annotate.block_key(op)
            first.setdefault(key, op)
            lines = blocks.setdefault(key, [])
            if op.phase != "backward" or (op.out not in names
                                          and (op.out, op.group) in read_in_group):
                continue  # a part of a rule application's expression
            current = op.group
            target = names.get(op.out) or program.values[op.out].hint
            eq = annotate.equation(op, target, leaf, expand)
            lines.append("    " + annotate.rule_line(op, eq, op.out in self._final))
        head = f"fused loop over [{', '.join(str(d) for d in shape)}]" if shape else "scalars"
        out = [head + ":"]
        for key, lines in blocks.items():
            header = annotate.step_header(first[key])
            out += (["  " + header] if header else []) + lines
        return annotate.join(out)
