"""``--explain``: a Markdown derivation report per module, next to the generated code.

For every function of a spec the report lists the forward steps, then the backward pass in the
order it runs (the forward steps in reverse), naming the derivative rule applied at each step as
a worked derivation does ("for (1) we've used G: W -> X W ..."), the chain of rules behind every gradient,
and the forward values the backward pass keeps alive, with their symbolic shapes and the memory
they hold at the spec's example ``dims``.

Everything comes from the compiled IR (``CompiledFunction.backward``: each op's ``origin`` names
its spec step and rule; :func:`codegen.passes.backward_reads` gives the save-set), so the report
describes exactly the code that was generated.  The report is deterministic and begins with a
codegen header, like the modules, so that ``--check``, ``--force`` and ``--prune`` treat it as a
generated file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from . import __version__, text
from .compiler import Compiled, CompiledFunction
from .derivatives import explain_lines
from .ir import Op, Program, Shape
from .ops import OPS
from .passes import backward_reads

__all__ = ["ITEMSIZE", "explain_filename", "header_label", "render_explain", "saved_values"]

ITEMSIZE = {"float64": 8, "float32": 4}
SEED_ID = "%seed"


def explain_filename(module: str) -> str:
    """``nn.md`` for module ``nn``."""
    return f"{module}.md"


def header_label(label: str) -> str:
    """The spec label as it may appear inside an HTML comment (no line breaks, no ``-->``)."""
    return text.comment(label).replace(">", "?")


# --------------------------------------------------------------------------- Markdown escaping

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_text(s: str) -> str:
    """Plain text as one Markdown paragraph: whitespace collapsed, markup characters escaped."""
    s = " ".join(text.comment(" ".join(s.split())).split())
    s = _MD_SPECIAL.sub(r"\\\1", s.replace("&", "&amp;"))
    if re.match(r"^(#|[-+=]|\d+[.)])", s):  # would start a heading, list or setext underline
        s = "\\" + s
    return s


def code(s: str, in_table: bool = False) -> str:
    """An inline code span holding ``s`` verbatim (any backticks in ``s`` are fenced around)."""
    s = text.comment(s)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    out = f"{fence}{pad}{s}{pad}{fence}"
    return out.replace("|", "\\|") if in_table else out


def shape_code(shape: Shape, in_table: bool = False) -> str:
    return code("[" + ", ".join(str(d) for d in shape) + "]", in_table)


# --------------------------------------------------------------------------- memory


def elements(shape: Shape, dims: dict[str, int]) -> int | None:
    """Number of elements of ``shape`` at ``dims``; None when a symbolic dim has no size."""
    n = 1
    for d in shape:
        if isinstance(d, int):
            n *= d
        elif d in dims:
            n *= dims[d]
        else:
            return None
    return n


def human_bytes(n: int) -> str:
    """``4,096 bytes (4.0 KiB)``."""
    if n < 1024:
        return f"{n:,} bytes"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"  # pragma: no cover


def saved_values(cf: CompiledFunction) -> list[str]:
    """Ids of the forward values the backward program reads (in forward order)."""
    return backward_reads(cf.backward)[0]


def _saved_fields(cf: CompiledFunction, dtype: str,
                  saved: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """How the generated ``f_Saved`` names each saved value, and the sizes it saves (the emitter
    decides both; the report asks it rather than deriving them a second way)."""
    from .emit import Emitter

    view = Emitter(dtype).function_view(cf.function, cf.value_and_grad, cf.backward)
    arrays = [name for name, kind in view.saved_types if kind != "int"]
    sizes = [name for name, kind in view.saved_types if kind == "int"]
    return dict(zip(saved, arrays)), sizes


# --------------------------------------------------------------------------- rules


def _rule_parts(rule: str) -> tuple[str, str]:
    """``("right product", "dA = dZ @ B.T")`` from ``"right product: dA = dZ @ B.T"``."""
    name, sep, formula = rule.partition(": ")
    return (name.strip(), formula.strip()) if sep else (rule.strip(), "")


def _forward_math(rule: str) -> str:
    """The forward formula (``Z = A @ B``) of the rule-table entry a rule comes from, or ''."""
    name = _rule_parts(rule)[0]
    for opdef in OPS.values():
        if any(_rule_parts(g)[0] == name for g in opdef.grads):
            return opdef.math
    return ""


def _rule_md(rule: str) -> str:
    name, formula = _rule_parts(rule)
    if not name:
        return "(no rule recorded)"
    return f"{md_text(name)}: {code(formula)}" if formula else md_text(name)


def _runs(ops: Iterable[Op]) -> list[list[Op]]:
    """Consecutive ops of one group (one rule application) together."""
    runs: list[list[Op]] = []
    for op in ops:
        if runs and runs[-1][-1].group == op.group and runs[-1][-1].origin == op.origin:
            runs[-1].append(op)
        else:
            runs.append([op])
    return runs


def _ancestors(program: Program, value: object) -> set[str]:
    """Ids of the backward ops whose results flow into ``value``."""
    producers = {op.out: op for op in program.ops if op.phase == "backward"}
    seen: set[str] = set()
    stack = [value] if isinstance(value, str) else []
    while stack:
        v = stack.pop()
        op = producers.get(v)
        if op is None or v in seen:
            continue
        seen.add(v)
        stack.extend(a for a in op.args if isinstance(a, str))
    return seen


# --------------------------------------------------------------------------- the report


def render_explain(compiled: Compiled, label: str) -> str:
    """The Markdown report of a compiled spec; ``label`` names the spec in the header."""
    spec = compiled.spec
    dims = dict(spec.dims)
    itemsize = ITEMSIZE.get(spec.dtype, 8)
    out: list[str] = [
        f"<!-- Generated by codegen {__version__} from {header_label(label)}: do not edit. -->",
        f"<!-- Change the spec and run `python -m codegen --explain` again. "
        f"Spec sha256: {spec.sha256} -->",
        "",
        f"# Derivation report: {code(spec.module)}",
        "",
    ]
    if spec.doc.strip():
        out += [md_text(spec.doc), ""]
    sizes = ", ".join(f"{name} = {size}" for name, size in spec.dims) or "none given"
    out += [
        f"How {code(spec.module + '.py')} computes each gradient: the forward steps, then the "
        "backward pass in the order it runs (the forward steps in reverse), naming the "
        "derivative rule applied to each step (the chain rule, one step at a time: df/dX is "
        "written in terms of df/dG for each step G that uses X), and the forward values the backward pass keeps.",
        "",
        f"Memory estimates use the spec's example sizes ({sizes}) and {itemsize} bytes per "
        f"element ({spec.dtype}).",
        "",
    ]
    for cf in compiled.functions:
        out += _function_report(cf, spec.dtype, dims, itemsize)
        out += explain_lines(cf.function, cf.derivatives, dims)  # f_jvp, f_hvp, ... (§3b)
    return "\n".join(out).rstrip("\n") + "\n"


def _function_report(
    cf: CompiledFunction, dtype: str, dims: dict[str, int], itemsize: int
) -> list[str]:
    fn = cf.function
    bw = cf.backward
    fwd = fn.program
    first = fwd.outputs[0]
    name = fn.name
    out = [f"## {code(name)}", ""]
    if fn.doc.strip():
        out += [md_text(fn.doc), ""]
    inputs = ", ".join(f"{code(i)} {shape_code(fwd.values[i].shape)}" for i in fwd.inputs)
    outputs = ", ".join(
        f"{code(o)} {shape_code(fwd.values[o].shape)}" for o in fwd.outputs if isinstance(o, str)
    )
    grads = ", ".join(code("d" + w) for w in fn.wrt)
    out += [
        f"- Inputs: {inputs}",
        f"- Outputs: {outputs}; the first, {code(str(first))}, is differentiated",
        f"- Gradients: {grads} (the fields of {code(name + '_Grads')})",
        "",
    ]

    # forward
    out += ["### Forward steps", "", "| # | step | value | shape |", "|---|---|---|---|"]
    for i, step in enumerate(fn.spec.steps, 1):
        target = step.text.partition("=")[0].strip()
        if target in fwd.values:
            shape = shape_code(fwd.values[target].shape, True)
            out.append(f"| {i} | {code(step.text, True)} | {code(target, True)} | {shape} |")
        else:
            out.append(
                f"| {i} | {code(step.text, True)} | {code(target, True)} | "
                "(dropped: no output depends on it) |"
            )
    out.append("")

    # backward, in the order it runs
    out += [
        "### Backward pass, in reverse order",
        "",
        f"The cotangent of {code(str(first))} starts as {code('g')} (shape "
        f"{shape_code(fwd.values[str(first)].shape)}; {code(name + '_value_and_grad')} uses "
        f"g = 1). Each step below applies one rule per operand; where a value feeds several "
        "steps, its contributions are added.",
        "",
    ]
    bw_ops = [op for op in bw.ops if op.phase == "backward"]
    by_step: list[list[list[Op]]] = []
    for run in _runs(bw_ops):
        o = run[-1].origin
        if by_step and (by_step[-1][-1][-1].origin.step, by_step[-1][-1][-1].origin.line) == (
            o.step,
            o.line,
        ):
            by_step[-1].append(run)
        else:
            by_step.append([run])
    if not by_step:
        out += ["No backward operations: every gradient is a constant.", ""]
    for i, runs in enumerate(by_step, 1):
        o = runs[0][-1].origin
        where = f" (spec line {o.line})" if o.line else ""
        out.append(f"{i}. {code(o.step) if o.step else '(generated)'}{where}")
        for run in runs:
            last = run[-1]
            value = bw.values[last.out]
            forward = _forward_math(last.origin.rule)
            of = f" (forward {code(forward)})" if forward else ""
            out.append(
                f"   - {_rule_md(last.origin.rule)}{of} → {code(value.hint)} "
                f"{shape_code(value.shape)}"
            )
    out.append("")

    # per gradient: the chain of rules, as in a worked derivation by hand
    out += ["### Gradients", ""]
    out += [
        "Each gradient is the chain of these rule applications, from the output back to the "
        "input:",
        "",
    ]
    grad_of = dict(bw.grads)
    for w in fn.wrt:
        shape = shape_code(bw.values[w].shape) if w in bw.values else ""
        out.append(f"- {code('d' + w)} {shape}, the gradient of {code(str(first))} with "
                   f"respect to {code(w)}:")
        anc = _ancestors(bw, grad_of.get(w))
        chain = [op for op in bw_ops if op.out in anc]
        steps: list[tuple[str, str]] = []
        for run in _runs(chain):
            key = (run[-1].origin.step, run[-1].origin.rule)
            if not steps or steps[-1] != key:
                steps.append(key)
        if not steps:
            out.append("  1. (a constant: no rule applies)")
        for k, (step_text, rule) in enumerate(steps, 1):
            out.append(f"  {k}. {code(step_text) if step_text else '(generated)'}: {_rule_md(rule)}")
    out.append("")

    # the save-set and its memory
    saved = saved_values(cf)
    names, saved_dims = _saved_fields(cf, dtype, saved)
    producers = {op.out: op for op in bw.ops if op.phase == "forward"}
    out += ["### Saved for the backward pass", ""]
    if not saved:
        out += [
            f"{code(name + '_backward')} needs no forward arrays"
            + (f" (only the sizes {', '.join(code(d) for d in saved_dims)})." if saved_dims
               else "."),
            "",
        ]
        return out
    out += [
        f"{code(name + '_forward')} keeps these values in {code(name + '_Saved')} for "
        f"{code(name + '_backward')}. Inputs are references to the caller's arrays; the "
        "other values are arrays the forward pass allocated and keeps alive.",
        "",
        "| value | what | shape | elements | bytes |",
        "|---|---|---|---|---|",
    ]
    total = 0
    allocated = 0
    unknown: list[str] = []
    missing: list[str] = []
    for v in saved:
        value = bw.values[v]
        if value.kind == "input":
            what = "input"
        elif value.kind == "step":
            what = "step value"
        else:
            op = producers.get(v)
            what = f"part of {code(op.origin.step, True)}" if op and op.origin.step else "temporary"
        n = elements(value.shape, dims)
        if n is None:
            unknown.append(names[v])
            missing += [d for d in value.shape if isinstance(d, str) and d not in dims
                        and d not in missing]
            count, size = "unknown", "unknown"
        else:
            nbytes = n * itemsize
            total += nbytes
            if value.kind != "input":
                allocated += nbytes
            count, size = f"{n:,}", f"{nbytes:,}"
        out.append(
            f"| {code(names[v], True)} | {what} | {shape_code(value.shape, True)} | {count} | "
            f"{size} |"
        )
    out.append("")
    if unknown:
        out.append(
            f"Total: unknown: the size of {', '.join(code(d) for d in missing)} is not in the "
            f"spec's {code('dims')}; the values of known size hold {human_bytes(total)}."
        )
    else:
        out.append(
            f"Total: {human_bytes(total)} at the example sizes, of which "
            f"{human_bytes(allocated)} are arrays allocated by the forward pass."
        )
    if saved_dims:
        out.append(
            f"The backward pass also reads the sizes {', '.join(code(d) for d in saved_dims)}."
        )
    out.append("")
    return out
