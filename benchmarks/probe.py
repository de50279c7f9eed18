"""Measurements that need a process of their own; ``run.py`` starts them and reads their JSON.

``python -m benchmarks.probe compile WORKLOAD STEPS``
    Numba start-up of one spec in this (fresh) process: generate and import the module, then
    call ``f_value_and_grad`` twice.  With an empty ``NUMBA_CACHE_DIR`` the first call compiles;
    with a filled one it loads the cached machine code.

``python -m benchmarks.probe memory STEPS SKIPS_JSON SYSTEM...``
    Peak resident memory of one value_and_grad call per workload and system: the kernel's
    "peak RSS" high-water mark is reset (``/proc/self/clear_refs``), the call runs, and the
    peak minus the resident size before the call is reported.  Run with
    ``MALLOC_MMAP_THRESHOLD_=65536`` so that every array of 64 KiB or more is mapped on
    allocation and returned on free (else glibc recycles freed heap memory and the peak hides);
    smaller allocations are under the resolution of this method.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback

import numpy as np


def _workload(name: str, steps: int):
    from .workloads import deep_chain_workload, workloads

    if name == "deep_chain":
        return deep_chain_workload(steps)
    return next(w for w in workloads() if w.name == name)


def _inputs(w):
    values = w.make_inputs(np.random.default_rng(0), w.dims)
    return [values[n] for n in w.inputs]


def compile_probe(name: str, steps: int) -> dict:
    t0 = time.perf_counter()
    import codegen
    from codegen import api

    w = _workload(name, steps)
    args = _inputs(w)
    out: dict = {"workload": name, "steps": steps}
    t1 = time.perf_counter()
    source = codegen.generate_source(w.spec(), backend="numba")
    t2 = time.perf_counter()
    if hasattr(api, "import_source"):
        module = api.import_source(source, f"bench_{name}", "numba")
    else:  # pragma: no cover - the API moved: load_module generates again
        module = codegen.load_module(w.spec(), backend="numba")
    t3 = time.perf_counter()
    out.update(import_codegen_s=t1 - t0, generate_s=t2 - t1, import_module_s=t3 - t2)
    vg = getattr(module, f"{w.name}_value_and_grad")
    try:
        t4 = time.perf_counter()
        vg(*args)
        t5 = time.perf_counter()
    except BaseException as exc:  # noqa: BLE001 - reported, not raised
        out.update(error=f"{type(exc).__name__}: {str(exc)[:200]}",
                   error_after_s=time.perf_counter() - t4,
                   traceback_tail=traceback.format_exc().splitlines()[-6:])
        return out
    steady = []
    for _ in range(3):
        t6 = time.perf_counter()
        vg(*args)
        steady.append(time.perf_counter() - t6)
    out.update(first_call_s=t5 - t4, steady_call_s=min(steady))
    return out


def _status() -> dict:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


def memory_probe(steps: int, skips: dict, systems: list[str]) -> dict:
    from . import systems as S

    try:  # numpy >= 2: large arrays would otherwise be backed by 2 MiB huge pages
        np._core.multiarray._set_madvise_hugepage(False)
    except AttributeError:  # pragma: no cover
        pass
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError as exc:
        return {"error": f"cannot reset the peak RSS: {exc}"}
    from .workloads import DEEP_STEPS, workloads

    results: dict = {}
    for w in workloads(quick=steps != DEEP_STEPS):
        fns = S.build(w, _inputs(w), systems, skips.get(w.name))
        row = {}
        for system, fn in fns.items():
            if isinstance(fn, str):
                row[system] = fn
                continue
            try:
                fn()  # warm: compiled, cached, allocator pools primed
                best = None
                for _ in range(3):
                    gc.collect()
                    open("/proc/self/clear_refs", "w").write("5")
                    before = _status()["VmRSS"]
                    result = fn()
                    peak = _status()["VmHWM"] - before
                    del result
                    best = peak if best is None else min(best, peak)
                row[system] = max(best, 0)
            except BaseException as exc:  # noqa: BLE001
                row[system] = f"{type(exc).__name__}: {str(exc)[:120]}"
        results[w.name] = row
    return results


def main(argv: list[str]) -> int:
    if argv[0] == "compile":
        print(json.dumps(compile_probe(argv[1], int(argv[2]))))
    elif argv[0] == "memory":
        print(json.dumps(memory_probe(int(argv[1]), json.loads(argv[2]), argv[3:])))
    else:
        raise SystemExit(f"unknown probe {argv[0]!r}")
    return 0


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    raise SystemExit(main(sys.argv[1:]))
