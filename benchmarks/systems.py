"""The systems benchmarked side by side, each wrapped as a zero-argument value_and_grad call."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

SYSTEMS = ("handwritten", "numpy", "numba", "numba_par", "torch", "jax")
LABELS = {
    "handwritten": "hand-written NumPy",
    "numpy": "generated NumPy",
    "numba": "generated Numba",
    "numba_par": "generated Numba, --numba-parallel",
    "torch": "PyTorch eager",
    "jax": "JAX jit",
}

_modules: dict = {}


def generated_module(w, backend: str):
    """The generated module of a workload's spec (loaded once per process).

    ``numba_par`` is the Numba backend with the option of ``python -m codegen --numba-parallel``,
    reached through codegen's internal ``render(..., parallel=True)``.
    """
    import codegen

    key = (w.name, w.spec(), backend)
    if key not in _modules:
        if backend == "numba_par":
            from codegen import api, compiler
            from codegen.loader import load_spec

            source = compiler.render(compiler.compile_spec(load_spec(w.spec(), "<bench>")),
                                     "numba", parallel=True)
            _modules[key] = api.import_source(source, f"{w.name}_par", "numba")
        else:
            _modules[key] = codegen.load_module(w.spec(), backend=backend)
    return _modules[key]


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def jax_version() -> str | None:
    try:
        import jax
    except ImportError:
        return None
    return jax.__version__


class Call:
    """A zero-argument value_and_grad call and how to read its result as (loss, [grads])."""

    def __init__(self, call: Callable, normalize: Callable) -> None:
        self.call = call
        self.normalize = normalize

    def __call__(self):
        return self.call()


def _generated(w, args, backend):
    vg = getattr(generated_module(w, backend), f"{w.name}_value_and_grad")

    def normalize(result):
        outputs, grads = result
        loss = outputs[0] if isinstance(outputs, tuple) else outputs
        return float(loss), [np.asarray(g) for g in grads]

    return Call(lambda: vg(*args), normalize)


def _handwritten(w, args):
    fn = w.handwritten
    return Call(lambda: fn(*args), lambda r: (float(r[0]), [np.asarray(g) for g in r[1]]))


def _torch(w, args):
    import torch

    if os.environ.get("CODEGEN_BENCH_THREADS"):  # run.py --threads N
        torch.set_num_threads(int(os.environ["CODEGEN_BENCH_THREADS"]))
    tensors = [torch.from_numpy(np.array(a, copy=True)) for a in args]
    for i in w.wrt_index:
        tensors[i].requires_grad_(True)
    wrt = [tensors[i] for i in w.wrt_index]
    loss_fn = w.torch_loss

    def call():
        loss = loss_fn(torch, *tensors)
        return loss, torch.autograd.grad(loss, wrt)

    return Call(call, lambda r: (float(r[0].item()), [g.numpy() for g in r[1]]))


def _jax(w, args):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    loss_fn = w.jax_loss
    f = jax.jit(jax.value_and_grad(lambda *a: loss_fn(jnp, jax, *a), argnums=w.wrt_index))
    arrays = [jax.device_put(np.array(a, copy=True)) for a in args]
    for a in arrays:
        assert a.dtype == np.float64, "jax_enable_x64 did not take effect"

    def call():
        return jax.block_until_ready(f(*arrays))

    return Call(call, lambda r: (float(r[0]), [np.asarray(g) for g in r[1]]))


def build(w, args, systems, skip: dict | None = None) -> dict:
    """``{system: Call}``, or ``{system: "reason"}`` for a system that cannot run here."""
    skip = skip or {}
    out: dict = {}
    for system in systems:
        if system in skip:
            out[system] = skip[system]
            continue
        try:
            if system == "handwritten":
                out[system] = _handwritten(w, args)
            elif system in ("numpy", "numba"):
                out[system] = _generated(w, args, system)
            elif system == "numba_par":
                try:
                    out[system] = _generated(w, args, system)
                except (ImportError, AttributeError, TypeError) as exc:
                    out[system] = f"not available ({type(exc).__name__}: {str(exc)[:60]})"
            elif system == "torch":
                if torch_version() is None:
                    out[system] = "not installed"
                    continue
                out[system] = _torch(w, args)
            elif system == "jax":
                if jax_version() is None:
                    out[system] = "not installed"
                    continue
                out[system] = _jax(w, args)
        except ImportError as exc:
            out[system] = f"not installed ({exc.name})"
    return out
