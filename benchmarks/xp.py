"""The array-API module: its overhead on NumPy inputs, and Dask on a LocalCluster.

1. **Overhead**: ``f_value_and_grad`` of the array-API module (``--backend array_api``) called
   with NumPy arrays, against the NumPy module, interleaved as the main tables are (ratio per
   round to the NumPy module).  The array-API module pays for ``array_namespace`` and its
   per-input checks on every call, and for its temporaries: it never computes in place.
2. **Dask**: one gradient step of ``examples/train_dask.py`` (``mlp_classifier_value_and_grad`` on
   data chunked along the batch, ``dask.compute`` of loss and gradients) on a 2-worker
   ``LocalCluster`` (one thread each), against the NumPy module on the same data in this process.

``python -m benchmarks --xp-only`` runs just this section (``--quick``: a small data set).
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from . import systems as S

REPO = Path(__file__).resolve().parent.parent
OVERHEAD_WORKLOADS = ("small_mlp", "mid_mlp", "dictionary", "elementwise")
TARGET = 1.3  # the array-API module on NumPy inputs, mid MLP and dictionary: at most 1.3x


def overhead(wls, rounds: int, sample_s: float, settle_s: float, time_interleaved, log) -> dict:
    """Median ratio array-API module / NumPy module per workload, on the same NumPy inputs."""
    from codegen import api

    out = {}
    for w in wls:
        if w.name not in OVERHEAD_WORKLOADS:
            continue
        log(f"xp overhead {w.name}")
        values = w.make_inputs(np.random.default_rng(0), w.dims)
        args = [values[n] for n in w.inputs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xp_mod = api.import_source(api.generate_source(w.spec(), "array_api"), f"{w.name}_xp",
                                       "array_api")
        xp_vg = getattr(xp_mod, f"{w.name}_value_and_grad")
        np_call = S._generated(w, args, "numpy")
        ref = np_call.normalize(np_call())
        got = np_call.normalize(xp_vg(*args))
        err = max(float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))
                  for a, b in zip(got[1], ref[1]))
        # (time_interleaved's baseline is named "handwritten": here it is the NumPy module)
        times = time_interleaved({"handwritten": np_call, "xp": lambda: xp_vg(*args)}, rounds,
                                 sample_s, settle_s)
        out[w.name] = {"numpy_s": times["handwritten"]["median_s"], "xp_s": times["xp"]["median_s"],
                       "ratio": times["xp"]["ratio"], "max_grad_error": err}
    return out


def dask_step(samples: int, features: int, hidden: int, classes: int, chunk: int, steps: int,
              log) -> dict:
    """Seconds per gradient step on a 2-worker LocalCluster and with the NumPy module here."""
    import importlib.util
    import sys

    import dask
    from distributed import Client, LocalCluster, wait

    spec = importlib.util.spec_from_file_location("_bench_train_dask", REPO / "examples" / "train_dask.py")
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from codegen import api

        nn_xp = api.load_module(REPO / "specs" / "nn.yaml", backend="array_api")
        nn_np = api.load_module(REPO / "specs" / "nn.yaml")
    params = example.init_params(0, features, hidden, classes)
    gib = samples * (features + classes) * 8 / 2**30
    res: dict = {"samples": samples, "features": features, "classes": classes, "hidden": hidden,
                 "chunk_rows": chunk, "chunks": -(-samples // chunk), "data_gib": round(gib, 3),
                 "chunk_mib": round(chunk * (features + classes) * 8 / 2**20, 1), "workers": 2,
                 "threads_per_worker": 1}
    log(f"dask: LocalCluster, {gib:.2f} GiB in {res['chunks']} chunks")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40, memory_limit=None)
    client = Client(cluster)
    try:
        X, Y = example.make_data(samples, features, classes, chunk, 0)
        t0 = time.perf_counter()
        X, Y = dask.persist(X, Y)
        wait([X, Y])
        res["persist_s"] = time.perf_counter() - t0
        example.gradient_step(nn_xp, X, Y, params)  # warm-up
        dask_times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            loss_dask, grads_dask = example.gradient_step(nn_xp, X, Y, params)
            dask_times.append(time.perf_counter() - t0)
        log("dask: the same data in this process")
        t0 = time.perf_counter()
        Xn, Yn = dask.compute(X, Y)
        res["gather_s"] = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    vg = nn_np.mlp_classifier_value_and_grad
    vg(Xn, Yn, **params)
    np_times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        (loss_np, _), grads_np = vg(Xn, Yn, **params)
        np_times.append(time.perf_counter() - t0)
    res["max_grad_error"] = max(float(np.max(np.abs(grads_dask[k] - getattr(grads_np, k))))
                                for k in grads_dask)
    res["loss_error"] = abs(loss_dask - float(loss_np))
    res["dask_step_s"] = statistics.median(dask_times)
    res["numpy_step_s"] = statistics.median(np_times)
    res["ratio"] = res["dask_step_s"] / res["numpy_step_s"]
    return res


def run(wls, quick: bool, rounds: int, sample_s: float, settle_s: float, time_interleaved, log) -> dict:
    res: dict = {"overhead": overhead(wls, rounds, sample_s, settle_s, time_interleaved, log)}
    try:
        import distributed  # noqa: F401
    except ImportError:
        res["dask"] = "dask.distributed not installed"
        return res
    if quick:
        res["dask"] = dask_step(200_000, 64, 32, 4, 25_000, 3, log)
    else:  # 2,000,000 x 68 float64: 1.01 GiB
        res["dask"] = dask_step(2_000_000, 64, 32, 4, 250_000, 5, log)
    return res


def report(res: dict) -> str:
    """Markdown tables of the section."""
    lines = ["", "### Array-API module on NumPy inputs (overhead against the NumPy module)", "",
             "| workload | NumPy module | array-API module | ratio | target |", "|---|---|---|---|---|"]
    for name, r in res.get("overhead", {}).items():
        target = f"≤ {TARGET}×" if name in ("mid_mlp", "dictionary") else ""
        lines.append(f"| {name} | {r['numpy_s'] * 1e3:.3f} ms | {r['xp_s'] * 1e3:.3f} ms | "
                     f"{r['ratio']:.2f}× | {target} |")
    d = res.get("dask")
    if isinstance(d, dict):
        lines += ["", "### Dask: one gradient step of examples/train_dask.py", "",
                  f"Data: {d['samples']:,} rows × ({d['features']} features + {d['classes']} one-hot "
                  f"classes) float64 = {d['data_gib']} GiB, {d['chunks']} chunks of {d['chunk_rows']:,} "
                  f"rows ({d['chunk_mib']} MiB), persisted on a LocalCluster of {d['workers']} worker "
                  f"processes × {d['threads_per_worker']} thread (persist: {d['persist_s']:.1f} s); "
                  f"MLP {d['features']}→{d['hidden']}→{d['classes']}, softmax cross-entropy.", "",
                  "| system | seconds per step | ratio |", "|---|---|---|",
                  f"| NumPy module, one process (data in memory) | {d['numpy_step_s']:.3f} | 1.00× |",
                  f"| array-API module on Dask, 2 workers | {d['dask_step_s']:.3f} | {d['ratio']:.2f}× |",
                  "", f"Largest gradient difference between the two: {d['max_grad_error']:.1e}."]
    elif d:
        lines += ["", f"Dask: {d}"]
    return "\n".join(lines)
