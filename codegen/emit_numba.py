"""The Numba backend: the NumPy emitter, overriding only what differs.

Kernels are ``@numba.njit(cache=True)`` functions in nopython mode.  The fusion pass
(``fusion.py``) decides the loop groups; this emitter renders each group as one explicit loop
nest (elementwise chains and the reductions that close them: one pass over memory), every other
op as a statement (matrix products go to BLAS through ``np.dot``; transposes stay views).
Python wrappers around the kernels check inputs exactly as the NumPy module does.
"""

from __future__ import annotations

import re
from collections import Counter

from .emit import Emitter, FunctionView, Stmt, grad_values
from .fusion import REDUCTIONS, Group, fuse
from .ir import Arg, Const, DimSize, Op, Program
from .lower import lower
from .names import Names
from .ops import ATOM, CMP, OPS, UNARY
from .parse import Function
from . import text

# Per-element renderings where the NumPy array form is not right for a scalar.
_SCALAR_FMT = {
    "nonzero_or_inf": "{0} if {0} > 0 else np.inf",
    "relu": "max({0}, 0.0)",
    "positive": "1.0 if {0} > 0 else 0.0",
    "full": "{0}",
    "broadcast_to": "{0}",
    "copy": "{0}",
    "identity": "{0}",
}


_CONDITIONAL = 10  # precedence of ``a if c else b``: below every operator

# Ops whose result is a new array the kernel owns (a buffer a later loop may write into).
_NEW_ARRAY = frozenset({"matmul", "outer", "inv"})


# Elementary functions rendered as the vectorisable helpers of helpers/numba_math.py.j2 (Numba
# would call libm once per element for np.tanh, np.exp, ...), and what each helper calls.
_MATH = {"exp": ("exp",), "log": ("log", "log_poly"), "log1p": ("log1p", "log_poly"),
         "tanh": ("tanh", "exp"), "sigmoid": ("sigmoid", "exp"),
         "softplus": ("softplus", "exp", "log1p", "log_poly"), "sin": ("sin",), "cos": ("cos",),
         # helpers that compute two values from one argument (NumbaEmitter.shared_calls)
         "sincos": ("sincos",), "softplus_sigmoid": ("softplus_sigmoid", "exp", "log1p", "log_poly")}


_BLOCK = 32  # rows per block of a prange loop that sums (one row of column sums per block)


def _tuple(items: list[str]) -> str:
    """A tuple display as black writes it: ``(a,)`` for one item, ``a, b`` otherwise."""
    return f"({items[0]},)" if len(items) == 1 else ", ".join(items)


class NumbaEmitter(Emitter):
    """Renders kernels with explicit fused loops, and NumPy-compatible wrappers."""

    backend = "numba"
    template = "module_numba.py.j2"

    def __init__(self, dtype: str, parallel: bool = False, fastmath: bool = False) -> None:
        super().__init__(dtype)
        self.parallel = parallel
        self.fastmath = fastmath
        self.math: set[str] = set()  # helpers of numba_math.py.j2 the kernels call

    def function_view(self, fn: Function, vg: Program, bw: Program) -> FunctionView:
        self._loop_index: dict[int, list[str]] = {}
        view = super().function_view(fn, lower(vg), lower(bw))

        def cast(local: str, name: str) -> str:
            return f"_DTYPE.type({local})" if name in view.scalars else local

        outputs = [o for o in fn.program.outputs if isinstance(o, str)]
        outs = [cast(local, o) for local, o in zip(view.fw_outputs, outputs)]
        view.wrap_outputs = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        view.saved_kwargs = ", ".join(f"{f}={f}" for f in view.fw_saved)
        view.fw_saved = [f for f in view.fw_saved if f not in view.fw_outputs]  # returned once
        view.wrapper_grads = view.vg_grads
        fields = ", ".join(f"{w}={cast(local, w)}" for w, local in zip(fn.wrt, view.vg_grads))
        view.wrap_grads = f"{fn.name}_Grads({fields})"
        view.fw_decorator = self.decorator(view.forward)
        view.bw_decorator = self.decorator(view.backward)
        view.vg_decorator = self.decorator(view.vg_forward + view.vg_backward)
        return view

    def template_vars(self) -> dict[str, str]:
        chosen = [name for name, on in (("parallel", self.parallel), ("fastmath", self.fastmath))
                  if on]
        options = 'cache=True, error_model="numpy"' + (", fastmath=True" if self.fastmath else "")
        return {"kernel_options": options,
                "math": sorted(self.math),
                "parallel": self.parallel,
                "options": f" ({', '.join(chosen)})" if chosen else "",
                "tuple": _tuple}

    def typed_number(self, expr: str) -> str:
        return expr  # the wrapper returns scalars in the dtype

    def helpers(self, programs: list[Program]) -> list[str]:
        # the normalisations are lowered to loops; elementary functions have loop helpers
        return ["helpers/numba_math.py.j2"] if self.math else []

    def decorator(self, body: list[Stmt]) -> str:
        """``@_parallel_kernel`` for a kernel with a prange loop, else ``@_kernel``."""
        parallel = any("numba.prange(" in s.code for s in body)
        return "@_parallel_kernel" if parallel else "@_kernel"

    def render_value_and_grad(self, fwd_ops: list[Op], bwd_ops: list[Op], vg: Program,
                              names: Names, dim: dict[str, str],
                              keep_named: set[str]) -> tuple[list[Stmt], list[Stmt]]:
        """Forward and backward fused as one run: a forward loop and the backward loop that
        reads it element by element become one loop nest, and what only that loop reads is
        never written to an array."""
        return self.render_ops(fwd_ops + bwd_ops, vg, names, dim, grad_values(vg)), []

    # --- plain ops ------------------------------------------------------------------------------

    def render_op(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> tuple[str, int]:
        if op.op == "matmul":
            a, b = (e for e, _ in args)
            return f"np.dot({a}, {b})", ATOM
        return super().render_op(op, args, dim)

    # --- statements -----------------------------------------------------------------------------

    def render_ops(self, ops: list[Op], program: Program, names: Names, dim: dict[str, str],
                   keep_named: set[str]) -> list[Stmt]:
        live_out = set(keep_named) | {o for o in program.outputs if isinstance(o, str)} | {
            g for _, g in program.grads if isinstance(g, str)}
        stmts: list[Stmt] = []
        self.views: dict[str, str] = {}  # transposes of named arrays, written inline
        items = fuse(ops, program, live_out)
        last_read: dict[str, int] = {}
        for n, item in enumerate(items):
            for op in ([item] if isinstance(item, Op) else item.ops):
                for a in op.args:
                    if isinstance(a, str):
                        last_read[a] = n
        owned: set[str] = set()  # arrays this function allocated (not inputs, not views)
        for n, item in enumerate(items):
            if isinstance(item, Group):
                dead = {a for a, last in last_read.items()
                        if last == n and a in owned and a not in live_out}
                stmts.extend(self.render_group(item, program, names, dim, dead))
                owned |= {op.out for op in item.ops if op.op not in REDUCTIONS}
            elif (item.op == "transpose" and isinstance(item.args[0], str)
                  and item.out not in live_out and item.args[0] not in self.views):
                self.views[item.out] = item.args[0]
            else:
                args = [(f"{names.of[self.views[a]]}.T", ATOM) if isinstance(a, str) and a in self.views
                        else self.arg_expr(a, names, dim, {}) for a in item.args]
                expr, _ = self.render_op(item, args, dim)
                target = names.bind(item.out, program.values[item.out].hint)
                stmts.append(Stmt(f"{target} = {expr}", text.wrap_comment(self.comment(item))))
                if item.op in _NEW_ARRAY:
                    owned.add(item.out)
        return stmts

    def render_group(self, group: Group, program: Program, names: Names,
                     dim: dict[str, str], dead: set[str]) -> list[Stmt]:
        """One loop nest: allocations, the loop with one line per kept value, then finishing.

        ``dead``: arrays of this function that nothing reads after this group; a value the
        group writes may take over the buffer of one it reads element by element."""
        shape = group.shape
        index = [self._index(names, k) for k in range(len(shape))]
        members = {op.out for op in group.ops}
        uses: dict[str, int] = {}
        for op in group.ops:
            for a in op.args:
                if isinstance(a, str) and a in members:
                    uses[a] = uses.get(a, 0) + 1
        reuse = self.reuse(group, program, uses, dead)
        prange = self.parallel and self.parallel_safe(group)
        block = ""  # under prange, the index of a block of _BLOCK rows, when sums need one
        before: list[str] = []
        body: list[str] = []
        after: list[str] = []
        scalar: dict[str, tuple[str, int]] = {}  # value -> expression inside the loop

        def read(a: Arg) -> tuple[str, int]:
            if isinstance(a, Const):
                s = text.number(a.value)
                return s, UNARY if s.startswith("-") else ATOM
            if isinstance(a, DimSize):
                return self.dim_ref(a.name, dim), ATOM
            if a in scalar:
                return scalar[a]
            if a in self.views:  # X.T[i, j] is X[j, i]
                base = self.views[a]
                at = self.element("", program.values[a].shape, shape, index)
                parts = at[1:-1].split(", ")[::-1]
                return f"{names.of[base]}[{', '.join(parts)}]", ATOM
            return self.element(names.of[a], program.values[a].shape, shape, index), ATOM

        trig_arrays: list[str] = []  # arrays read by sin and cos: checked before the loop
        switch = names.fresh("short") if index else ""

        def short(a: Arg) -> str:
            """What sin's or cos's argument passes as ``short``: the loop's switch for an
            array read from memory; an argument computed in the loop takes the long way."""
            if not switch or not isinstance(a, str) or a in members or not program.values[a].shape:
                return "False"
            arr = names.of[self.views.get(a, a)]
            if arr not in trig_arrays:
                trig_arrays.append(arr)
            return switch

        shared = self.shared_calls(group, program)
        paired: dict[str, str] = {}  # value -> the local a shared call assigned it to
        for op in group.ops:
            value = program.values[op.out]
            if op.out in shared and op.out not in paired:
                helper, x_arg, parts = shared[op.out]
                x, _ = read(x_arg)
                if helper == "sincos":
                    x += f", {short(x_arg)}"
                locals_ = [names.fresh(f"{stem}_e") for _, stem in parts]
                body.append(f"{', '.join(locals_)} = _{helper}({x})")
                self.math |= set(_MATH[helper])
                paired.update((out, local) for (out, _), local in zip(parts, locals_))
            if op.op in REDUCTIONS:
                total = group.into.get(op.out)
                acc = names.of[total] if total else names.bind(op.out, value.hint)
                x, _ = read(op.args[0])
                out_index = self.reduced_index(op, shape, index)
                target = f"{acc}[{', '.join(out_index)}]" if out_index else acc
                # a full sum in a nest keeps one running sum per column (below)
                columns = op.op != "max" and not value.shape and len(shape) > 1
                if prange and (columns or value.shape) and not block:
                    block = names.fresh("block")
                blocks = f"({self.dim_ref(shape[0], dim)} + {_BLOCK - 1}) // {_BLOCK}"
                if prange and value.shape:  # a sum over rows (parallel_safe): one per block
                    part = names.fresh(f"{acc}_blocks")
                    before.append(f"{part} = np.zeros(({blocks}, {self.dim_ref(shape[-1], dim)}),"
                                  f" dtype={self.np_dtype})")
                    body.append(f"{part}[{block}, {index[-1]}] += {x}")
                    whole = f"{part}.sum(axis=0)"
                    after.append(f"{acc} += {whole}" if total else f"{acc} = {whole}")
                    if op.op == "mean" and not total:
                        after.append(f"{acc} /= {self.count(op, program, dim)}")
                    continue
                if columns:
                    # one running sum per column: the inner loop's lanes are independent, so
                    # it vectorises without reordering any addition (no fastmath needed);
                    # under prange, one row of them per block of rows
                    cols = names.fresh(f"{acc}_cols")
                    width = self.dim_ref(shape[-1], dim)
                    size = f"({blocks}, {width})" if prange else f"({width},)"
                    before.append(f"{cols} = np.zeros({size}, dtype=np.float64)")
                    at = f"{block}, {index[-1]}" if prange else index[-1]
                    body.append(f"{cols}[{at}] += {x}")
                    after.append(f"{acc} += {cols}.sum()" if total else f"{acc} = {cols}.sum()")
                elif op.op == "max":
                    body.append(f"{target} = max({target}, {x})")
                else:
                    body.append(f"{target} += {x}")
                init = "-np.inf" if op.op == "max" else "0.0"
                if total:  # adds into an earlier sum's array
                    continue
                if value.shape:
                    fill = "np.full" if op.op == "max" else "np.zeros"
                    args = f", {init}" if op.op == "max" else ""
                    before.append(f"{acc} = {fill}({self.shape_tuple(value.shape, dim)}{args}, "
                                  f"dtype={self.np_dtype})")
                elif not columns:
                    before.append(f"{acc} = {init}")
                if op.op == "mean":
                    n = self.count(op, program, dim)
                    after.append(f"{acc} /= {n}" if value.shape else f"{acc} = {acc} / {n}")
                continue
            if op.out in paired:  # already a local of the loop body
                expr = (paired[op.out], ATOM)
            else:
                expr = self.scalar_expr(op, [read(a) for a in op.args], dim)
                if op.op in ("sin", "cos") and not self.fastmath:
                    expr = (f"{expr[0][:-1]}, {short(op.args[0])})", ATOM)
            if op.out in group.materialise:
                arr = names.bind(op.out, value.hint)
                if op.out in reuse:
                    old = names.of[reuse[op.out]]
                    before.append(f"{arr} = {old}  # in place of {old}: not read after this loop")
                elif index:  # a scalar group's values are plain locals
                    before.append(f"{arr} = np.empty({self.shape_tuple(value.shape, dim)}, "
                                  f"dtype={self.np_dtype})")
                elem = f"{arr}[{', '.join(index)}]" if index else arr
                if uses.get(op.out, 0) and op.out not in paired:
                    tmp = names.fresh(f"{arr}_e")
                    body.append(f"{tmp} = {expr[0]}")
                    body.append(f"{elem} = {tmp}")
                    scalar[op.out] = (tmp, ATOM)
                else:
                    body.append(f"{elem} = {expr[0]}")
                    if op.out in paired:
                        scalar[op.out] = expr
            elif uses.get(op.out, 0) > 1 and op.out not in paired:
                tmp = names.fresh(f"{value.hint}_e")
                body.append(f"{tmp} = {expr[0]}")
                scalar[op.out] = (tmp, ATOM)
            else:
                scalar[op.out] = expr
        for alias, total in group.aliases.items():
            names.of[alias] = names.of[total]
        body = self.gather_sums(body, names)
        if trig_arrays:
            before.append(f"{switch} = " + " and ".join(f"_short_reduction({a})"
                                                      for a in trig_arrays))
        return self.loop(group, program, shape, index, before, body, after, dim,
                         switch if trig_arrays else "", block)

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

    def gather_sums(self, body: list[str], names: Names) -> list[str]:
        """Several sums into one element (a weight's gradient from many steps) add up in a
        local first and store once, at the end of the loop body: one store instead of many,
        which keeps long loop bodies vectorisable."""
        targets = Counter(line.split(" += ")[0] for line in body if " += " in line)
        shared = {t for t, n in targets.items() if n > 1}
        local: dict[str, str] = {}
        out = []
        for line in body:
            target, _, x = line.partition(" += ")
            if target not in shared:
                out.append(line)
            elif target in local:
                out.append(f"{local[target]} += {x}")
            else:
                local[target] = names.fresh(target.split("[")[0] + "_e")
                out.append(f"{local[target]} = {x}")
        out.extend(f"{target} += {name}" for target, name in local.items())
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
        offset = len(loop) - len(shape)
        parts = ["0" if d == 1 and loop[offset + k] != 1 else index[offset + k]
                 for k, d in enumerate(shape)]
        return f"{name}[{', '.join(parts)}]"

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

    def count(self, op: Op, program: Program, dim: dict[str, str]) -> str:
        x = program.values[op.args[0]].shape  # type: ignore[index]
        axis = op.attr("axis")
        dims = x if axis is None else [x[a] for a in (axis if isinstance(axis, tuple) else (axis,))]
        return " * ".join(self.dim_ref(d, dim) for d in dims) or "1"

    def scalar_expr(self, op: Op, args: list[tuple[str, int]], dim: dict[str, str]) -> tuple[str, int]:
        if op.op in _MATH and not self.fastmath:  # fastmath may rewrite the helpers' roundings
            self.math |= set(_MATH[op.op])
            return f"_{op.op}({args[0][0]})", ATOM
        fmt = _SCALAR_FMT.get(op.op)
        if fmt is None:
            return super().render_op(op, args, dim)
        opdef = OPS[op.op]
        conditional = " if " in fmt  # binds loosest of all: its users parenthesise it
        parts = [f"({e})" if p < (opdef.arg_prec[i] if i < len(opdef.arg_prec) else 0)
                 or (conditional and p <= CMP) else e for i, (e, p) in enumerate(args)]
        prec = args[0][1] if fmt == "{0}" else _CONDITIONAL if conditional else ATOM
        return fmt.format(*parts), prec

    def loop(self, group: Group, program: Program, shape: tuple, index: list[str],
             before: list[str], body: list[str], after: list[str],
             dim: dict[str, str], switch: str = "", block: str = "") -> list[Stmt]:
        """The loop nest; with a ``switch`` (sin and cos's arguments all below 1.6e6), twice:
        with the flag True and False, so that LLVM vectorises each without the other's
        reduction. With a ``block`` index, prange runs over blocks of _BLOCK rows (fixed, so
        sums add in the same order whatever the number of threads)."""
        comment = self.group_comment(group, shape)
        lines = list(before)

        def nest(indent: str, flag: str) -> None:
            for k, d in enumerate(shape):
                rng = "range"
                size = self.dim_ref(d, dim)
                if k == 0 and block:
                    lines.append(f"{indent}for {block} in numba.prange(({size} + {_BLOCK - 1}) "
                                 f"// {_BLOCK}):")
                    indent += "    "
                    lines.append(f"{indent}for {index[k]} in range({_BLOCK} * {block}, "
                                 f"min({_BLOCK} * {block} + {_BLOCK}, {size})):")
                    indent += "    "
                    continue
                if k == 0 and self.parallel and self.parallel_safe(group):
                    rng = "numba.prange"
                lines.append(f"{indent}for {index[k]} in {rng}({size}):")
                indent += "    "
            word = re.compile(rf"\b{switch}\b") if switch else None
            lines.extend(indent + (word.sub(flag, b) if word else b) for b in body)

        if switch:
            lines.append(f"if {switch}:  # every argument of sin and cos is below 1.6e6: "
                         "the short reduction")
            nest("    ", "True")
            lines.append("else:")
            nest("    ", "False")
        else:
            nest("", "")
        lines.extend(after)
        stmts = [Stmt(line) for line in lines]
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
            axis = op.attr("axis")
            axes = set(range(len(group.shape))) if axis is None else set(
                axis if isinstance(axis, tuple) else (axis,))
            if 0 not in axes:
                continue
            full = axes == set(range(len(group.shape)))
            rows = axes == {0} and len(group.shape) == 2 and not op.attr("keepdims", False)
            if op.op == "max" or not (full or rows):
                return False
        return True

    def group_comment(self, group: Group, shape: tuple) -> str:
        seen: dict[str, None] = {}  # ordered, without repeats
        for op in group.ops:
            line = self.comment(op) if op.origin.step or op.origin.rule else ""
            if line:
                seen.setdefault(line)
        head = f"fused loop over [{', '.join(str(d) for d in shape)}]" if shape else "scalars"
        return "\n    # ".join([head + ":"] + ["  " + c for c in seen])
