"""Derivatives beyond the gradient (DESIGN.md §3b): f_jvp, f_jacobian, f_hvp, f_hessian.

``derivative_programs`` makes the IR (``forward.py``: tangents pushed through the forward program
for f_jvp, through the joint forward+backward program for f_hvp); ``derivative_view`` renders it
with the module's emitter: the NumPy emitter writes NumPy statements, the Numba emitter writes a
kernel of fused loops (from the lowered program) that a NumPy-level wrapper calls; its
f_jacobian's VJP rows are one compiled kernel (``_f_vjp_rows``, in the template).

f_jacobian and f_hessian (helpers in ``templates/helpers/tangents.py.j2`` and ``blocks.py.j2``):
in the NumPy module,
JVP (HVP) columns in blocks, one pass of a *batched* tangent program (``batch.py``: every tangent
with a leading axis of k basis vectors) per block of k columns, k bounded so that a batched
tangent holds at most about 2**20 numbers; f_jacobian takes VJP rows (one f_backward call per
element of the output) instead when those are fewer passes.  Where an op of the program has no
batched form, and in the Numba module (whose kernels are compiled per vector), they loop over
unit vectors: VJP rows or JVP columns, whichever are fewer, and HVP columns.  Nothing here pastes
rendered text into arithmetic: statements come from the emitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import expr as E
from . import text
from .batch import Batched, batch_program
from .emit import Emitter
from .errors import SpecError
from .forward import TangentProgram, hvp_program, jvp_program
from .ir import Program
from .fusion import fuse
from .lower import lower
from .memory import plan as plan_memory
from .passes import constant_only
from .plan import Body, Stmt
from .names import Names
from .parse import Function
from .reserved import BODY_BUILTINS, inputs_const, tangents_const, template_names
from .shapes import product_dim

KINDS = ("jvp", "jacobian", "hvp", "hessian")


@dataclass
class DerivativePrograms:
    """The IR behind a function's derivative kinds (None where not asked for)."""

    kinds: tuple[str, ...]  # as asked for in the spec
    jvp: TangentProgram | None = None  # (also made for a jacobian: its JVP columns)
    hvp: TangentProgram | None = None  # (also made for a hessian)
    jvp_block: Batched | None = None  # the JVP over a block of tangents (a jacobian's)
    hvp_block: Batched | None = None  # the HVP over a block of tangents (a hessian's)


def derivative_programs(fn: Function, joint: Program) -> DerivativePrograms:
    """Check the kinds the spec asks for and build their programs (``joint``: value_and_grad's)."""
    kinds = tuple(ref.name for ref in fn.spec.derivatives)
    first = fn.program.outputs[0]
    assert isinstance(first, str)
    shape = fn.program.values[first].shape
    for ref in fn.spec.derivatives:
        if ref.name in ("hvp", "hessian") and shape:
            name = fn.program.values[first].hint
            raise SpecError(
                f"{fn.name}: '{ref.name}' needs a scalar first output, but {name} has shape "
                f"[{', '.join(map(str, shape))}]; reduce it to a scalar (e.g. sum({name})) or ask "
                "for 'jvp' or 'jacobian' instead", ref.loc)
    out = DerivativePrograms(kinds)
    if "jvp" in kinds or "jacobian" in kinds:
        out.jvp = jvp_program(fn)
    if "hvp" in kinds or "hessian" in kinds:
        out.hvp = hvp_program(fn, joint)
    dim = "k"  # the block size: a dim of its own
    while dim in fn.dims:
        dim += "_"
    if "jacobian" in kinds and out.jvp is not None:
        out.jvp_block = batch_program(out.jvp, dim)
    if "hessian" in kinds and out.hvp is not None:
        out.hvp_block = batch_program(out.hvp, dim)
    return out


@dataclass
class DerivFunction:
    """One rendered derivative function: its kernel (Numba) or body (NumPy), and its return."""

    body: list[Stmt]
    returns: list[str]  # locals, in order: outputs, then (hvp) gradients, then the results
    tangents: list[str]  # the locals of the tangent inputs
    decorator: str = ""
    rules: list[str] = field(default_factory=list)
    kernel_return: str = ""  # "(Z, Z_dot)" (a tuple however many)
    namespace: str = ""  # the array-API module's namespace local: "xp" ("_" if the body reads none)
    result: str = ""  # the public function's return, from the locals or the kernel's tuple ``r``
    doc: str = ""  # (a block function's docstring)


@dataclass
class BlockCall:
    """f_jacobian's or f_hessian's body: checks and sizes, then the helper's call (blocks or loop)."""

    lines: list[Stmt]  # the inputs checked, the dims the sizes below read
    size: str = "1"  # the first output's size (f_jacobian: VJP rows)
    width: str = "1"  # numbers per basis vector in the largest batched tangent
    note: str = ""  # why the loop over unit vectors (no batched form), for a comment


@dataclass
class DerivView:
    """What ``templates/derivs.py.j2`` needs for one spec function."""

    name: str
    params: str
    input_list: list[str]
    wrt: str  # the wrt names as a tuple literal: ("W", "b")
    args: str  # the inputs as a tuple: "(X, y, w)"
    tangents_param: str  # "tangents" (DESIGN.md §3b), "tangents_" if an input has that name
    v_param: str
    wrt_index: str  # the wrt inputs' positions among the inputs: "(2,)"
    n_outputs: int
    n_grads: int
    scalars_out: list[bool]  # per output, then gradient: a shape-[] value (cast by Numba wrappers)
    scalars_wrt: list[bool]
    tangent_const: str  # module constant: the shapes of the inputs and the tangents
    tangent_spec: str
    first: str  # the first output's name
    jvp: DerivFunction | None = None
    hvp: DerivFunction | None = None
    jacobian: bool = False
    hessian: bool = False
    jvp_block: DerivFunction | None = None  # the batched JVP (f_jacobian's columns in blocks)
    hvp_block: DerivFunction | None = None
    vjp_rows: bool = False  # a loop backend's f_jacobian: the VJP rows in one compiled kernel
    rows: list[str] = field(default_factory=list)  # its results, one per wrt input
    # a loop backend's f_hessian (f_jacobian): the HVP (JVP) columns in one compiled kernel,
    # per wrt input what _columns gives
    hvp_cols: list[dict[str, object]] = field(default_factory=list)
    jvp_cols: list[dict[str, object]] = field(default_factory=list)
    jvp_out: str = ""  # the JVP kernel's local of the first output's tangent
    jacobian_call: BlockCall | None = None
    hessian_call: BlockCall | None = None
    kernels: bool = False  # a loop backend: the tangent programs are compiled kernels
    public_jvp: bool = False  # asked for (else f_jvp only serves f_jacobian, still public)
    doc_jvp: str = ""
    doc_jacobian: str = ""
    doc_hvp: str = ""
    doc_hessian: str = ""


def _render(emitter: Emitter, fn: Function, tp: TangentProgram, returns_grads: bool,
            module_names: set[str], batch_dim: str = "") -> DerivFunction:
    """The statements of one tangent program, named for a reader (``batch_dim``: its tangents'
    leading axis, a block of tangents, read from the first tangent's shape)."""
    program = lower(tp.program) if emitter.lowers else tp.program
    spec_names = {v for v, val in fn.program.values.items() if val.kind in ("input", "step")}
    base = Names(spec_names | {"np", "tangents", "v", "tangents_", "v_"} | template_names() | BODY_BUILTINS
                 | module_names)
    for vid in spec_names:
        base.of[vid] = vid
    dim = {d: base.fresh(d if d not in spec_names else f"{d}_size") for d in fn.dims}
    if batch_dim:
        dim[batch_dim] = base.fresh(batch_dim)
    for vid in tp.tangents:
        base.bind(vid, program.values[vid].hint)
    keep = {r for r in tp.results if isinstance(r, str)}
    keep |= {o for o in program.outputs if isinstance(o, str)}
    if returns_grads:
        keep |= {g for _, g in program.grads if isinstance(g, str)}
    emitter.used_dims = set()
    plan = Body(program, list(program.ops), keep, "", numbers=constant_only(program))
    plan.live_out = keep | {o for o in program.outputs if isinstance(o, str)} | {
        g for _, g in program.grads if isinstance(g, str)}
    if emitter.fuses:  # loop groups, one kernel (not split into parts)
        plan.items = fuse(plan.ops, program, plan.live_out, emitter.max_part_ops)
        plan.parts = [plan.items]
    body = emitter.render_body(plan, base, dim)
    namespace = emitter.body_namespace()
    body = emitter.dim_lines(fn, dim)([d for d in fn.dims if d in emitter.used_dims]) + body
    if batch_dim in emitter.used_dims:
        body.insert(0, Stmt(E.assign(dim[batch_dim], E.index(f"{base.of[tp.tangents[0]]}.shape", 0)),
                            "the number of tangents in the block"))
    returns = [base.of[o] for o in program.outputs if isinstance(o, str)]
    if returns_grads:
        returns += [base.of[g] for _, g in program.grads if isinstance(g, str)]
    returns += [base.of[r] for r in tp.results if isinstance(r, str)]
    if emitter.plan_memory:  # as the gradient's functions: dead arrays freed, ops in place
        body, = plan_memory([body], set(returns))
    decorator = emitter.decorator(body) if emitter.fuses else ""  # type: ignore[attr-defined]
    return DerivFunction(body, returns, [base.of[t] for t in tp.tangents], decorator, tp.rules,
                         _tuple(returns), namespace=namespace)


def _result(fn: Function, f: DerivFunction, kernel: bool, grads: bool) -> str:
    """The public return: ``(outputs, dout)`` or ``(outputs, f_Grads(...), f_Grads(...))``
    (``kernel``: from a compiled kernel's tuple ``_r``, its scalars made the dtype's)."""
    outputs = [o for o in fn.program.outputs if isinstance(o, str)]
    shapes = [fn.program.values[o].shape for o in outputs]
    if grads:
        shapes += [fn.program.values[w].shape for w in fn.wrt] * 2
    else:
        shapes.append(fn.program.values[outputs[0]].shape)
    items = []
    for k, (local, shape) in enumerate(zip(f.returns, shapes)):
        item = f"_r[{k}]" if kernel else local
        items.append(f"_DTYPE.type({item})" if kernel and shape == () else item)
    n = len(outputs)
    outs = items[0] if n == 1 else "(" + ", ".join(items[:n]) + ")"
    if not grads:
        return f"{outs}, {items[n]}"
    m = len(fn.wrt)
    g = ", ".join(f"{w}={x}" for w, x in zip(fn.wrt, items[n:n + m]))
    hv = ", ".join(f"{w}={x}" for w, x in zip(fn.wrt, items[n + m:]))
    return f"{outs}, {fn.name}_Grads({g}), {fn.name}_Grads({hv})"


def _columns(fn: Function, view: DerivView, f: DerivFunction) -> list[dict[str, object]]:
    """Per wrt input, what a compiled loop over unit tangents needs: the input, its tangent
    local, whether it is a scalar, the locals of its range of columns [start, stop) and of its
    tangent as one vector; and (HVP) the local of its hv."""
    hv = f.returns[view.n_outputs + view.n_grads:] or [""] * len(fn.wrt)
    return [{"input": w, "tangent": t, "hv": h, "scalar": scalar, "start": f"_o{j}",
             "stop": f"_o{j + 1}", "flat": f"_t{j}"}
            for j, (w, t, h, scalar) in enumerate(zip(fn.wrt, f.tangents, hv, view.scalars_wrt,
                                                      strict=True))]


def _tuple(items: list[str]) -> str:
    """A tuple literal as black leaves it (a trailing comma only for one item)."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _with_block(emitter: Emitter, fn: Function, batched: Batched, grads: bool,
                module_names: set[str], kind: str, doc: str,
                loop_note: str) -> tuple[DerivFunction | None, BlockCall]:
    """f_<kind>'s block function (where the backend takes blocks and every op has a batched
    form) and the lines of its call; without a block, the call's note says why."""
    block = None
    if batched.program is not None and emitter.blocks:
        block = _render(emitter, fn, batched.program, grads, module_names, batched.dim)
        block.result = _result(fn, block, False, grads)
        block.doc = doc
    call = _block_call(emitter, fn, batched if block is not None else None, kind)
    if block is None:
        call.note = batched.reason or loop_note
    return block, call


def _block_call(emitter: Emitter, fn: Function, batched: Batched | None, kind: str) -> BlockCall:
    """f_jacobian's or f_hessian's lines before the helper's call: the inputs checked and, for
    blocks, the sizes that choose the block (the first output's size, and the numbers per basis
    vector of the largest batched tangent, from the dims)."""
    if batched is None or batched.program is None:
        return BlockCall([], note=batched.reason if batched is not None else "")
    names = Names(set(fn.program.inputs) | {"np"} | template_names() | BODY_BUILTINS
                  | emitter.module_names)
    dim = {d: names.fresh(d if d not in fn.program.inputs else f"{d}_size") for d in fn.dims}
    emitter.used_dims = set()

    def size(shape: tuple) -> E.Expr:
        number = 1
        for d in shape:
            number *= d if isinstance(d, int) else 1
        factors: list[E.ExprLike] = [number] if number != 1 or all(
            isinstance(d, int) for d in shape) else []
        factors += [emitter.dim_ref(d, dim) for d in shape if not isinstance(d, int)]
        return E.product(factors)

    def key(shape: tuple) -> object:  # equal sizes once (a sum of dims, D+E, as it is)
        return product_dim(list(shape)) if not any("+" in str(d) for d in shape) else shape

    program = batched.program.program
    first = fn.program.outputs[0]
    assert isinstance(first, str)
    widths: dict[object, tuple] = {}
    for v in program.values.values():
        if v.shape[:1] == (batched.dim,):
            widths.setdefault(key(tuple(v.shape[1:])), tuple(v.shape[1:]))
    numbers = [w for w in widths if isinstance(w, int)]
    items = [size(shape) for w, shape in widths.items() if not isinstance(w, int)]
    if numbers:
        items.append(E.as_expr(max(numbers)))
    width = items[0] if len(items) == 1 else E.call("max", *items)
    m = size(fn.program.values[first].shape)
    params = ", ".join(fn.program.inputs)
    tupled = params + ("," if len(fn.program.inputs) == 1 else "")
    targets = f"({tupled})" if len(fn.program.inputs) == 1 else tupled
    check = Stmt(f'{targets} = _check_inputs("{fn.name}_{kind}", ({tupled}), '
                 f'{inputs_const(fn.name)})')
    lines = [check] + emitter.dim_lines(fn, dim)([d for d in fn.dims if d in emitter.used_dims])
    return BlockCall(lines, m.render(), width.render())


def derivative_view(emitter: Emitter, fn: Function, programs: DerivativePrograms,
                    module_names: set[str]) -> DerivView | None:
    """The rendered derivative functions of ``fn``, or None when its spec asks for none."""
    if not programs.kinds:
        return None
    first = fn.program.outputs[0]
    assert isinstance(first, str)
    first_name = fn.program.values[first].hint
    outputs = [o for o in fn.program.outputs if isinstance(o, str)]
    # (labels and masks keep their dtype, int64 or bool, as in the gradient's input check)
    shapes = [(name, fn.program.values[name].shape, fn.program.values[name].dtype)
              for name in fn.program.inputs]
    shapes += [(f"tangent of {w}", fn.program.values[w].shape, "") for w in fn.wrt]
    spec = _tuple([f'("{n}", {emitter.shape_spec(s)}' + (f', "{t}")' if t else ")")
                   for n, s, t in shapes])
    wrt = ", ".join(fn.wrt)
    view = DerivView(
        name=fn.name,
        params=", ".join(fn.program.inputs),
        input_list=list(fn.program.inputs),
        wrt=_tuple([f'"{w}"' for w in fn.wrt]),
        args=_tuple(list(fn.program.inputs)),
        tangents_param="tangents" + "_" * fn.program.inputs.count("tangents"),
        v_param="v" + "_" * fn.program.inputs.count("v"),
        wrt_index=_tuple([str(fn.program.inputs.index(w)) for w in fn.wrt]),
        n_outputs=len(outputs),
        n_grads=len(fn.wrt),
        scalars_out=[fn.program.values[o].shape == () for o in outputs],
        scalars_wrt=[fn.program.values[w].shape == () for w in fn.wrt],
        tangent_const=tangents_const(fn.name),
        tangent_spec=spec,
        first=first_name,
        jacobian="jacobian" in programs.kinds,
        hessian="hessian" in programs.kinds,
        public_jvp="jvp" in programs.kinds,
        kernels=emitter.fuses,
        # (a scalar's Jacobian is its gradient: one f_backward call)
        vjp_rows=emitter.fuses and "jacobian" in programs.kinds
        and bool(fn.program.values[first].shape),
        rows=[f"_rows{j}" for j in range(len(fn.wrt))],
    )

    def doc(body: str) -> str:
        return text.docstring(text.wrap_doc(body), "    ")

    if programs.jvp is not None:
        view.jvp = _render(emitter, fn, programs.jvp, False, module_names)
        view.jvp.result = _result(fn, view.jvp, emitter.fuses, False)
        if view.vjp_rows:  # (a loop backend, a Jacobian, a first output that is an array)
            view.jvp_cols = _columns(fn, view, view.jvp)
            view.jvp_out = view.jvp.returns[view.n_outputs]
        if programs.jvp_block is not None:
            view.jvp_block, view.jacobian_call = _with_block(
                emitter, fn, programs.jvp_block, False, module_names, "jacobian", doc(
                    f"{fn.name}_jvp over a block of k tangents at once (for {fn.name}_jacobian's "
                    f"columns): each tangent (`_dot`) has a leading axis of k, one tangent per "
                    f"basis vector, the primal values their own shapes; returns (outputs, "
                    f"d{first_name} with a leading axis of k). The inputs are checked by the "
                    "caller."),
                f"the VJP rows are one compiled loop (_{fn.name}_vjp_rows)" if view.vjp_rows
                else "the blocks are in the NumPy module only")
        view.doc_jvp = doc(
            f"Forward mode: (outputs, d{first_name}), d{first_name} the directional derivative of "
            f"{first_name} along `tangents` (one array per input of {wrt}, in that order, each of "
            "its input's shape; a tuple or a Grads). Each line pushes the tangents (`_dot`) "
            "through one op by its JVP rule.")
        view.doc_jacobian = doc(
            f"(outputs, jac): jac.<x> is d vec({first_name}) / d vec(x) for x in {wrt}, shape "
            f"({first_name}.size, x.size), vec in row-major order. " + (
                f"Built from Jacobian-vector products over blocks of basis vectors "
                f"(_{fn.name}_jvp_block: one pass per block of k columns), or from "
                f"vector-Jacobian products ({fn.name}_backward, one per element of "
                f"{first_name}) when those are fewer passes." if view.jvp_block is not None else
                f"Built from vector-Jacobian products ({fn.name}_backward, one per element of "
                f"{first_name}) or Jacobian-vector products ({fn.name}_jvp, one per element of "
                f"{wrt}), whichever are fewer."))
    if programs.hvp is not None:
        view.hvp = _render(emitter, fn, programs.hvp, True, module_names)
        view.hvp.result = _result(fn, view.hvp, emitter.fuses, True)
        if programs.hvp_block is not None:
            view.hvp_block, view.hessian_call = _with_block(
                emitter, fn, programs.hvp_block, True, module_names, "hessian", doc(
                    f"{fn.name}_hvp over a block of k tangents at once (for {fn.name}_hessian's "
                    "columns): each tangent (`_dot`) has a leading axis of k, one tangent per "
                    "basis vector, the primal values their own shapes; returns (outputs, grads, "
                    "hv with a leading axis of k). The inputs are checked by the caller."),
                "the blocks are in the NumPy module only")
        if emitter.fuses and view.hessian:
            view.hvp_cols = _columns(fn, view, view.hvp)
            if view.hessian_call is not None:
                view.hessian_call.note = (
                    f"the columns are one compiled loop over unit vectors (_{fn.name}_hvp_cols)")
        view.doc_hvp = doc(
            f"(outputs, grads, hv): hv holds the Hessian of {first_name} with respect to {wrt} "
            "times `v` (one array per input, as grads). Forward over reverse: the tangents "
            f"(`_dot`) of the gradient program of {fn.name}_value_and_grad.")
        view.doc_hessian = doc(
            f"(outputs, grads, H): H the dense Hessian of {first_name}, (n, n) with n the total "
            f"size of {wrt}, rows and columns ordered as "
            "np.concatenate([g.ravel() for g in grads]); " + (
                f"Hessian-vector products over blocks of basis vectors (_{fn.name}_hvp_block: "
                "one pass per block of k columns)." if view.hvp_block is not None else
                "one Hessian-vector product per column."))
    return view


def derivative_helpers(views: list[object]) -> list[str]:
    """The helper templates the derivative functions call."""
    out = ["helpers/tangents.py.j2"] if any(v is not None for v in views) else []
    if any(isinstance(v, DerivView) and (v.jvp_block or v.hvp_block) for v in views):
        out.append("helpers/blocks.py.j2")  # f_jacobian's and f_hessian's blocks
    return out


def _block_lines(name: str, kind: str, batched: Batched | None, code, rather: str) -> list[str]:  # type: ignore[no-untyped-def]
    """``--explain``: whether the NumPy module's f_jacobian (f_hessian) takes blocks of columns."""
    if batched is None:
        return []
    if batched.program is None:
        return [f"In the NumPy module too, {code(name)} loops over unit vectors: {batched.reason}.",
                ""]
    return [f"In the NumPy module, {code(name)} takes its columns in blocks instead: one pass of "
            f"a batched {kind} (every tangent with a leading axis of k basis vectors) per block "
            f"of k columns{rather}; the Numba module loops over unit vectors, in one compiled "
            "kernel.", ""]


def explain_lines(fn: Function, programs: DerivativePrograms | None, dims: dict[str, int]
                  ) -> list[str]:
    """The ``--explain`` section of a function's derivative kinds: the JVP rules used, per step."""
    if programs is None or not programs.kinds:
        return []

    def code(s: str) -> str:
        return "`" + s.replace("`", "'") + "`"

    first = str(fn.program.outputs[0])
    out = ["### Derivatives beyond the gradient", "",
           "Generated: " + ", ".join(code(f"{fn.name}_{k}") for k in KINDS if k in programs.kinds)
           + ". Forward mode pushes a tangent (`x_dot`) through each op by its JVP rule, in "
           "program order.", ""]
    for label, tp, what in (
            (f"{fn.name}_jvp", programs.jvp, f"the forward steps, giving the tangent of {first}"),
            (f"{fn.name}_hvp", programs.hvp, "the joint forward and backward program of "
             f"{fn.name}_value_and_grad (forward over reverse), giving the tangents of the "
             "gradients: the Hessian times v")):
        if tp is None:
            continue
        out += [f"{code(label)}: JVP rules applied to {what}:", ""]
        seen: list[tuple[str, str]] = []
        for op in tp.program.ops:
            if op.phase == "tangent" and op.origin.rule and (op.origin.step, op.origin.rule) not in seen:
                seen.append((op.origin.step, op.origin.rule))
        for k, (step, rule) in enumerate(seen, 1):
            out.append(f"{k}. {code(step) if step else '(generated)'}: {rule}")
        out.append("")
    y = fn.program.values[first].shape
    m = 1
    n = 0
    known = True
    for d in y:
        m *= d if isinstance(d, int) else dims.get(d, 0)
        known = known and (isinstance(d, int) or d in dims)
    for w in fn.wrt:
        size = 1
        for d in fn.program.values[w].shape:
            size *= d if isinstance(d, int) else dims.get(d, 0)
            known = known and (isinstance(d, int) or d in dims)
        n += size
    if "jacobian" in programs.kinds:
        def count(k: int, what: str) -> str:
            return f"{k} {what}" + ("" if k == 1 else "s")

        how = (f" At the example sizes ({code(first)} has {count(m, 'element')}, the wrt inputs "
               f"{n}): " + (count(m, "VJP row") if m <= n else count(n, "JVP column")) + "."
               ) if known else ""
        out += [f"{code(fn.name + '_jacobian')}: one VJP ({code(fn.name + '_backward')}) per "
                f"element of {code(first)}, or one JVP per element of the wrt inputs, whichever "
                f"is fewer at the call's sizes (a loop over unit vectors).{how}", ""]
        out += _block_lines(fn.name + "_jacobian", "JVP", programs.jvp_block, code,
                            " (or the VJP rows when those are fewer passes)")
    if "hessian" in programs.kinds:
        out += [f"{code(fn.name + '_hessian')}: one HVP per column"
                + (f" ({n} at the example sizes)." if known else "."), ""]
        out += _block_lines(fn.name + "_hessian", "HVP", programs.hvp_block, code, "")
    return out
