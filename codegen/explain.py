"""``--explain``: a Markdown derivation report per module, next to the generated code.

For every function of a spec the report lists the forward steps, then the backward pass in the
order it runs (the forward steps in reverse), naming the derivative rule applied at each step and
writing it with the values' names (``right product: dH1 = dZ2 @ W2.T``), each gradient as the sum
of its paths from the output (each path the chain of rules along it: a value used twice opens two
paths), and the forward values the backward pass keeps alive, with their symbolic shapes and the
memory they hold at the spec's example ``dims``.

Everything comes from the compiled IR (``CompiledFunction.backward``: each op's ``origin`` names
its spec step and rule, ``Program.edges`` the planner's rule applications;
:func:`codegen.passes.backward_reads` gives the save-set), so the report
describes exactly the code that was generated.  The report is deterministic and begins with a
codegen header, like the modules, so that ``--check``, ``--force`` and ``--prune`` treat it as a
generated file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from . import __version__, text
from .annotate import equation, rule_parts
from .compiler import Compiled, CompiledFunction, plan_function
from .derivatives import explain_lines
from .ir import Edge, Op, Origin, Program, Shape
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

    emitter = Emitter(dtype)
    view = emitter.function_view(plan_function(cf, emitter))
    arrays = [name for name, kind in view.saved_types if kind != "int"]
    sizes = [name for name, kind in view.saved_types if kind == "int"]
    return dict(zip(saved, arrays)), sizes


# --------------------------------------------------------------------------- rules


def _run_md(program: Program, run: list[Op]) -> str:
    """A rule application as its name and its equation over the values' names, derived from
    the ops (``right product: `dH1 = dZ2 @ W2.T` `[N, H]```), and the planner's note."""
    last = run[-1]
    inside = {op.out for op in run}
    read_outside = {a for op in program.ops if op.out not in inside for a in op.args}
    shown = [op for op in run if op is last or op.out in read_outside]  # each its own equation
    mine = {op.out: op for op in run if op not in shown}
    name, note = rule_parts(last.origin.rule)
    eqs = "; ".join(equation(op, program.values[op.out].hint, lambda v: program.values[v].hint,
                             mine.get) for op in shown)
    head = f"{md_text(name)}: " if name else ""
    tail = f" ({md_text(note)})" if note else ""
    return f"{head}{code(eqs)} {shape_code(program.values[last.out].shape)}{tail}"


def _runs(ops: Iterable[Op]) -> list[list[Op]]:
    """Consecutive ops of one group (one rule application) together."""
    runs: list[list[Op]] = []
    for op in ops:
        if runs and runs[-1][-1].group == op.group and runs[-1][-1].origin == op.origin:
            runs[-1].append(op)
        else:
            runs.append([op])
    return runs


MAX_PATHS = 8  # paths listed per gradient (a deep chain with fan-out has exponentially many)


def gradient_paths(program: Program, output: str, w: str,
                   limit: int = MAX_PATHS) -> tuple[list[list[Edge]], int]:
    """The first ``limit`` paths of rule applications from ``output`` down to input ``w`` (in
    the order the planner applied them) and how many there are in all."""
    by_out: dict[str, list[Edge]] = {}
    for e in program.edges:
        by_out.setdefault(e.out, []).append(e)
    count: dict[str, int] = {w: 1}

    def paths_from(v: str) -> int:  # memoised, iteratively deep enough for long chains
        stack = [v]
        while stack:
            u = stack[-1]
            pending = [e.x for e in by_out.get(u, []) if e.x not in count]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            count[u] = sum(count[e.x] for e in by_out.get(u, [])) if u != w else 1
        return count[v]

    total = paths_from(output)
    found: list[list[Edge]] = []
    stack: list[tuple[str, list[Edge]]] = [(output, [])]
    while stack and len(found) < limit:
        v, path = stack.pop()
        if v == w:
            found.append(path)
            continue
        for e in reversed(by_out.get(v, [])):
            if count.get(e.x, 0):
                stack.append((e.x, path + [e]))
    return found, total


def _path_md(path: list[Edge], indent: str) -> list[str]:
    """A path as a numbered list: per spec step, the rules applied there, in order."""
    steps: list[tuple[Origin, list[str]]] = []
    for e in path:
        name, note = rule_parts(e.origin.rule)
        rule = md_text(f"{name} ({note})" if note else name)
        if steps and (steps[-1][0].step, steps[-1][0].line) == (e.origin.step, e.origin.line):
            steps[-1][1].append(rule)
        else:
            steps.append((e.origin, [rule]))
    return [f"{indent}{k}. {code(o.step) if o.step else '(generated)'}: {' → '.join(rules)}"
            for k, (o, rules) in enumerate(steps, 1)]


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
            out.append(f"   - {_run_md(bw, run)}")
    out.append("")

    # per gradient: the sum over the paths from the output to the input, each a chain of rules
    out += ["### Gradients", ""]
    out += [
        "Each gradient is the sum, over every path from the output back to the input, of the "
        "chain of rule applications along that path (a value used twice opens two paths):",
        "",
    ]
    for w in fn.wrt:
        shape = shape_code(bw.values[w].shape) if w in bw.values else ""
        paths, total = gradient_paths(bw, str(first), w)
        what = (f"- {code('d' + w)} {shape}, the gradient of {code(str(first))} with "
                f"respect to {code(w)}")
        if not paths:
            out += [f"{what}: zero ({code(w)} does not affect {code(str(first))})."]
            continue
        if total == 1:
            out += [f"{what}, one path:"] + _path_md(paths[0], "  ")
            continue
        shown = "" if total == len(paths) else f"; the first {len(paths)} shown"
        out.append(f"{what}, the sum of {total:,} paths{shown}:")
        for k, path in enumerate(paths, 1):
            out += [f"  - path {k}:"] + _path_md(path, "    ")
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
