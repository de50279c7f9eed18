"""Derivatives beyond the gradient (DESIGN.md §3b): f_jvp, f_jacobian, f_hvp, f_hessian.

``derivative_programs`` makes the IR (``forward.py``: tangents pushed through the forward program
for f_jvp, through the joint forward+backward program for f_hvp); ``derivative_view`` renders it
with the module's emitter: the NumPy emitter writes NumPy statements, the Numba emitter writes a
kernel of fused loops (from the lowered program) that a NumPy-level wrapper calls.  f_jacobian
and f_hessian are loops over basis vectors in the template (``templates/derivs.py.j2``): VJP rows
(f_backward) or JVP columns (f_jvp), whichever needs fewer passes at the actual sizes, and HVP
columns.  Nothing here pastes rendered text into arithmetic: statements come from the emitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import text
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
from .reserved import BODY_BUILTINS, tangents_const, template_names

KINDS = ("jvp", "jacobian", "hvp", "hessian")


@dataclass
class DerivativePrograms:
    """The IR behind a function's derivative kinds (None where not asked for)."""

    kinds: tuple[str, ...]  # as asked for in the spec
    jvp: TangentProgram | None = None  # (also made for a jacobian: its JVP columns)
    hvp: TangentProgram | None = None  # (also made for a hessian)


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
    kernels: bool = False  # a loop backend: the tangent programs are compiled kernels
    public_jvp: bool = False  # asked for (else f_jvp only serves f_jacobian, still public)
    doc_jvp: str = ""
    doc_jacobian: str = ""
    doc_hvp: str = ""
    doc_hessian: str = ""


def _render(emitter: Emitter, fn: Function, tp: TangentProgram, returns_grads: bool,
            module_names: set[str]) -> DerivFunction:
    """The statements of one tangent program, named for a reader."""
    program = lower(tp.program) if emitter.lowers else tp.program
    spec_names = {v for v, val in fn.program.values.items() if val.kind in ("input", "step")}
    base = Names(spec_names | {"np", "tangents", "v", "tangents_", "v_"} | template_names() | BODY_BUILTINS
                 | module_names)
    for vid in spec_names:
        base.of[vid] = vid
    dim = {d: base.fresh(d if d not in spec_names else f"{d}_size") for d in fn.dims}
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
    returns = [base.of[o] for o in program.outputs if isinstance(o, str)]
    if returns_grads:
        returns += [base.of[g] for _, g in program.grads if isinstance(g, str)]
    returns += [base.of[r] for r in tp.results if isinstance(r, str)]
    if emitter.plan_memory:  # as the gradient's functions: dead arrays freed, ops in place
        body, = plan_memory([body], set(returns))
    decorator = emitter.decorator(body) if emitter.fuses else ""  # type: ignore[attr-defined]
    return DerivFunction(body, returns, [base.of[t] for t in tp.tangents], decorator, tp.rules,
                         _tuple(returns), namespace=namespace)


def _result(fn: Function, f: DerivFunction, numba: bool, grads: bool) -> str:
    """The public return: ``(outputs, dout)`` or ``(outputs, f_Grads(...), f_Grads(...))``."""
    outputs = [o for o in fn.program.outputs if isinstance(o, str)]
    shapes = [fn.program.values[o].shape for o in outputs]
    if grads:
        shapes += [fn.program.values[w].shape for w in fn.wrt] * 2
    else:
        shapes.append(fn.program.values[outputs[0]].shape)
    items = []
    for k, (local, shape) in enumerate(zip(f.returns, shapes)):
        item = f"_r[{k}]" if numba else local
        items.append(f"_DTYPE.type({item})" if numba and shape == () else item)
    n = len(outputs)
    outs = items[0] if n == 1 else "(" + ", ".join(items[:n]) + ")"
    if not grads:
        return f"{outs}, {items[n]}"
    m = len(fn.wrt)
    g = ", ".join(f"{w}={x}" for w, x in zip(fn.wrt, items[n:n + m]))
    hv = ", ".join(f"{w}={x}" for w, x in zip(fn.wrt, items[n + m:]))
    return f"{outs}, {fn.name}_Grads({g}), {fn.name}_Grads({hv})"


def _tuple(items: list[str]) -> str:
    """A tuple literal as black leaves it (a trailing comma only for one item)."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


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
    )

    def doc(body: str) -> str:
        return text.docstring(text.wrap_doc(body), "    ")

    if programs.jvp is not None:
        view.jvp = _render(emitter, fn, programs.jvp, False, module_names)
        view.jvp.result = _result(fn, view.jvp, emitter.fuses, False)
        view.doc_jvp = doc(
            f"Forward mode: (outputs, d{first_name}), d{first_name} the directional derivative of "
            f"{first_name} along `tangents` (one array per input of {wrt}, in that order, each of "
            "its input's shape; a tuple or a Grads). Each line pushes the tangents (`_dot`) "
            "through one op by its JVP rule.")
        view.doc_jacobian = doc(
            f"(outputs, jac): jac.<x> is d vec({first_name}) / d vec(x) for x in {wrt}, shape "
            f"({first_name}.size, x.size), vec in row-major order. Built from vector-Jacobian "
            f"products ({fn.name}_backward, one per element of {first_name}) or Jacobian-vector "
            f"products ({fn.name}_jvp, one per element of {wrt}), whichever are fewer.")
    if programs.hvp is not None:
        view.hvp = _render(emitter, fn, programs.hvp, True, module_names)
        view.hvp.result = _result(fn, view.hvp, emitter.fuses, True)
        view.doc_hvp = doc(
            f"(outputs, grads, hv): hv holds the Hessian of {first_name} with respect to {wrt} "
            "times `v` (one array per input, as grads). Forward over reverse: the tangents "
            f"(`_dot`) of the gradient program of {fn.name}_value_and_grad.")
        view.doc_hessian = doc(
            f"(outputs, grads, H): H the dense Hessian of {first_name}, (n, n) with n the total "
            f"size of {wrt}, rows and columns ordered as "
            "np.concatenate([g.ravel() for g in grads]); one Hessian-vector product per column.")
    return view


def derivative_helpers(views: list[object]) -> list[str]:
    """The helper templates the derivative functions call."""
    return ["helpers/tangents.py.j2"] if any(v is not None for v in views) else []


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
    if "hessian" in programs.kinds:
        out += [f"{code(fn.name + '_hessian')}: one HVP per column"
                + (f" ({n} at the example sizes)." if known else "."), ""]
    return out
