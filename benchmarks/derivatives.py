"""Second-order and Jacobian rows: ``python -m benchmarks.derivatives [--only small_mlp ...]``.

For the MLP and dictionary workloads (their specs with ``derivatives: [hvp]`` added), the time of
``f_hvp`` (forward over reverse, one call: outputs, gradients and H v) against the time of
``f_value_and_grad`` on the same inputs, for the generated NumPy and Numba modules, and against
``jax.jit`` of ``jax.jvp`` over ``jax.grad`` and ``torch.func.jvp`` over ``torch.func.grad`` when
installed. The issue's targets: f_hvp at most 4x f_value_and_grad; faster than torch and JAX at
the small MLP size.

Jacobian rows: the small MLP's predictions ``Z2`` (32x4) with respect to ``W2`` (32x4), a
128x128 Jacobian: ``f_jacobian`` (NumPy: the 128 JVP columns in one pass of the batched JVP;
Numba: 128 VJP rows, a loop over unit vectors) against ``jax.jit(jax.jacrev(...))`` and
``torch.func.jacrev``.

Timing: after a warm-up call (which compiles the Numba kernels and JAX's jit), the generated
modules' f_value_and_grad and f_hvp are sampled in turn, ``--repeat`` rounds of ``--number``
calls each: the times are medians over rounds, the ratio the median of the ratios within a round.
The peers' times are the best of ``--repeat`` samples. Prints a Markdown table; nothing is
written.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from benchmarks import workloads as W

JACOBIAN_SPEC = """
module: bench_jacobian
dims: {N: 32, D: 16, H: 32, K: 4}
functions:
  predictions:
    inputs: {X: [N, D], W1: [D, H], b1: [H], W2: [H, K], b2: [K]}
    wrt: [W2]
    derivatives: [jacobian]
    steps:
      - Z1 = X @ W1 + b1
      - Z2 = tanh(Z1) @ W2 + b2
    outputs: [Z2]
"""


def with_hvp(spec: str) -> str:
    """A workload's spec with a module-level ``derivatives: [hvp]``."""
    return spec.replace("\nfunctions:", "\nderivatives: [hvp]\nfunctions:", 1)


def best(call: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` samples of ``number`` calls (after a warm-up)."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def paired(first: Callable[[], object], second: Callable[[], object], number: int,
           repeat: int) -> tuple[float, float, float]:
    """(first's seconds per call, second's, second / first): medians over ``repeat`` rounds, each
    a sample of ``number`` calls of one then of the other, the ratio taken within each round (so
    that the machine's load drifting between samples cancels, as in ``python -m benchmarks``)."""
    first()
    second()
    a, b = [], []
    for _ in range(repeat):
        for call, out in ((first, a), (second, b)):
            start = time.perf_counter()
            for _ in range(number):
                call()
            out.append((time.perf_counter() - start) / number)
    ratios = [y / x for x, y in zip(a, b)]
    return float(np.median(a)), float(np.median(b)), float(np.median(ratios))


def _jax_hvp(w, args):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(*params):
        full = list(args)
        for i, p in zip(w.wrt_index, params):
            full[i] = p
        return w.jax_loss(jnp, jax, *full)

    primals = tuple(jnp.asarray(args[i]) for i in w.wrt_index)
    rng = np.random.default_rng(1)
    tangents = tuple(jnp.asarray(rng.standard_normal(np.shape(p))) for p in primals)
    f = jax.jit(lambda p, t: jax.jvp(jax.grad(loss, argnums=tuple(range(len(p)))), p, t))
    return lambda: jax.block_until_ready(f(primals, tangents))


def _torch_hvp(w, args):
    import torch
    from torch.func import grad, jvp

    tensors = [torch.from_numpy(np.array(a, copy=True)) for a in args]

    def loss(*params):
        full = list(tensors)
        for i, p in zip(w.wrt_index, params):
            full[i] = p
        return w.torch_loss(torch, *full)

    primals = tuple(tensors[i] for i in w.wrt_index)
    tangents = tuple(torch.randn_like(p) for p in primals)
    g = grad(loss, argnums=tuple(range(len(primals))))
    return lambda: jvp(g, primals, tangents)


def hvp_rows(names: list[str], number: int, repeat: int, log) -> list[tuple]:
    import codegen

    rows = []
    for w in W.workloads():
        if w.name not in names:
            continue
        rng = np.random.default_rng(0)
        inputs = w.make_inputs(rng, w.dims)
        args = [inputs[n] for n in w.inputs]
        v = [np.random.default_rng(1).standard_normal(np.shape(args[i])) for i in w.wrt_index]
        row = [w.title]
        for backend in ("numpy", "numba"):
            log(f"{w.name}: {backend}")
            m = codegen.load_module(with_hvp(w.spec()), backend=backend)
            vg = getattr(m, f"{w.name}_value_and_grad")
            hvp = getattr(m, f"{w.name}_hvp")
            row += paired(lambda: vg(*args), lambda: hvp(*args, v), number, repeat)
        for name, make in (("jax", _jax_hvp), ("torch", _torch_hvp)):
            log(f"{w.name}: {name}")
            try:
                row.append(best(make(w, args), number, repeat))
            except ImportError:
                row.append(None)
        rows.append(tuple(row))
    return rows


def jacobian_row(number: int, repeat: int, log) -> tuple:
    import codegen

    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 16))
    W1, b1 = rng.standard_normal((16, 32)) * 0.25, rng.standard_normal(32) * 0.1
    W2, b2 = rng.standard_normal((32, 4)) * 0.2, rng.standard_normal(4) * 0.1
    row: list = ["small MLP predictions Z2 (32×4) w.r.t. W2 (32×4): 128×128"]
    for backend in ("numpy", "numba"):
        log(f"jacobian: {backend}")
        m = codegen.load_module(JACOBIAN_SPEC, backend=backend)
        row.append(best(lambda: m.predictions_jacobian(X, W1, b1, W2, b2), number, repeat))
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        f = jax.jit(jax.jacrev(lambda w2: jnp.tanh(X @ W1 + b1) @ w2 + b2))
        row.append(best(lambda: jax.block_until_ready(f(jnp.asarray(W2))), number, repeat))
    except ImportError:
        row.append(None)
    try:
        import torch
        from torch.func import jacrev

        t = [torch.from_numpy(a) for a in (X, W1, b1, W2, b2)]
        row.append(best(lambda: jacrev(lambda w2: torch.tanh(t[0] @ t[1] + t[2]) @ w2 + t[4])(t[3]),
                        number, repeat))
    except ImportError:
        row.append(None)
    return tuple(row)


def _fmt(s: float | None) -> str:
    if s is None:
        return "not installed"
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=["small_mlp", "mid_mlp", "dictionary"])
    p.add_argument("--no-jacobian", action="store_true")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=11)
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"  ... {msg}", flush=True)

    rows = hvp_rows(args.only, args.number, args.repeat, log)
    print("\n| workload | NumPy value_and_grad | NumPy hvp | ratio | Numba value_and_grad | "
          "Numba hvp | ratio | JAX jit jvp(grad) | torch.func jvp(grad) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for title, nvg, nh, nr, bvg, bh, br, jx, tc in rows:
        print(f"| {title} | {_fmt(nvg)} | {_fmt(nh)} | {nr:.1f}× | {_fmt(bvg)} | "
              f"{_fmt(bh)} | {br:.1f}× | {_fmt(jx)} | {_fmt(tc)} |")
    if not args.no_jacobian:
        title, n, b, jx, tc = jacobian_row(max(1, args.number // 4), args.repeat, log)
        print("\n| Jacobian | NumPy f_jacobian | Numba f_jacobian | JAX jit jacrev | "
              "torch.func jacrev |")
        print("|---|---|---|---|---|")
        print(f"| {title} | {_fmt(n)} | {_fmt(b)} | {_fmt(jx)} | {_fmt(tc)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
