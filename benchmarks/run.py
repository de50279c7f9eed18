"""Run the benchmark suite: ``python -m benchmarks [--quick]`` (or ``python benchmarks/run.py``).

What it measures (see benchmarks/README.md for the latest full run):

1. value_and_grad time of five workloads (``benchmarks/specs/*.yaml``) for hand-written NumPy
   (``handwritten.py``, the baseline of every ratio), the generated NumPy and Numba modules,
   PyTorch eager and ``jax.jit(jax.value_and_grad(...))`` (a column is skipped when its package
   is not installed).  Every system's loss and gradients are checked against the hand-written
   ones first.  Samples are interleaved across systems (the order rotates each round) and each
   sample averages enough back-to-back calls to last ``--sample-ms``; the median over rounds is
   reported, and each ratio is the median over rounds of the ratio to the hand-written sample of
   the same round (so that drifts of the machine's load cancel).  float64 throughout (JAX with
   ``jax_enable_x64``); thread counts left at defaults.
2. Peak memory of one call: tracemalloc (NumPy's and Numba's array allocations, which both go
   through the Python allocator hooks, plus Python objects) for the NumPy and Numba systems, and
   the peak resident-set growth of one call in a separate process for every system.
3. Numba start-up per spec in fresh processes sharing one empty ``NUMBA_CACHE_DIR``: first call
   with the cache empty (compile) and in a second process (cache hit).
4. Code generation time for a 250/500/1000-step chain, both backends.

Results go to ``benchmarks/results.json``; the Markdown report is printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):  # run as ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001



def _threads_option(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


def limit_threads(n: str) -> None:
    """Thread limits that must be in the environment before NumPy, torch or JAX load."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "CODEGEN_BENCH_THREADS"):
        os.environ[var] = n
    flags = f"--xla_cpu_multi_thread_eigen={'false' if n == '1' else 'true'} " \
            f"intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()


if _threads_option(sys.argv[1:]):  # before NumPy is imported
    limit_threads(_threads_option(sys.argv[1:]))

import numpy as np  # noqa: E402

from benchmarks import systems as S  # noqa: E402
from benchmarks.workloads import DEEP_STEPS, deep_chain_spec, workloads  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# targets: (workload, systems, max ratio to hand-written NumPy)
TARGETS = [
    ("small_mlp", ("numba",), 0.5),
    ("mid_mlp", ("numpy", "numba"), 1.1),
    ("dictionary", ("numpy", "numba"), 1.15),
    ("elementwise", ("numba",), 0.5),
    ("attention", ("numpy",), 1.2),  # issue 14: generated NumPy ≤ 1.2×, generated Numba ≤ 1.0×
    ("attention", ("numba",), 1.0),
    ("layer_norm", ("numpy",), 1.2),
    ("layer_norm", ("numba",), 1.0),
]
TRACED = ("handwritten", "numpy", "numba", "numba_par")  # systems whose arrays tracemalloc sees
RTOL = 1e-9  # verification: max |a - b| / max |b| per gradient, float64


# --------------------------------------------------------------------------------------------
# machine


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    info["torch"] = S.torch_version()
    info["jax"] = S.jax_version()
    if info["torch"]:
        import torch

        if os.environ.get("CODEGEN_BENCH_THREADS"):
            torch.set_num_threads(int(os.environ["CODEGEN_BENCH_THREADS"]))
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    try:
        import codegen

        info["codegen"] = codegen.__version__
    except Exception:  # noqa: BLE001
        info["codegen"] = None
    # codegen's sources change often: a digest of them identifies the generator measured
    digest = hashlib.sha256()
    for f in sorted([*ROOT.glob("codegen/*.py"), *ROOT.glob("templates/**/*.j2")]):
        digest.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    info["codegen_sources_sha256"] = digest.hexdigest()[:16]
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({f"{p.get('internal_api')} {p.get('version')} "
                               f"({p.get('num_threads')} threads)" for p in threadpool_info()})
    except ImportError:
        info["blas"] = None
    return info


# --------------------------------------------------------------------------------------------
# subprocesses


def _env(cache_dir: str, **extra: str) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = cache_dir
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def _probe(args: list[str], env: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.probe", *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"probe exited {proc.returncode}: {' | '.join(tail)[:300]}",
                "process_s": wall}
    out["process_s"] = wall
    return out


def numba_startup(plan: list[tuple[str, str, int]], cache_dir: str, log) -> dict:
    """Per spec: a process with an empty cache (compile), then a second one (cache hit)."""
    results = {}
    for key, name, steps in plan:
        log(f"  numba start-up: {key} (cold)")
        cold = _probe(["compile", name, str(steps)], _env(cache_dir), timeout=1500)
        warm = None
        if "error" not in cold:
            log(f"  numba start-up: {key} (warm)")
            warm = _probe(["compile", name, str(steps)], _env(cache_dir), timeout=600)
        results[key] = {"steps": steps, "cold": cold, "warm": warm}
    return results


# --------------------------------------------------------------------------------------------
# timing


def verify(calls: dict, reference: str = "handwritten") -> dict:
    """Max relative error of each system's loss and gradients against the reference."""
    ref_loss, ref_grads = calls[reference].normalize(calls[reference]())
    errors = {}
    for system, call in calls.items():
        if isinstance(call, str):
            continue
        loss, grads = call.normalize(call())
        worst = abs(loss - ref_loss) / max(abs(ref_loss), 1e-300)
        for g, r in zip(grads, ref_grads, strict=True):
            if g.shape != r.shape:
                worst = float("inf")
                continue
            scale = max(float(np.max(np.abs(r))), 1e-300)
            worst = max(worst, float(np.max(np.abs(g - r))) / scale)
        errors[system] = worst
    return errors


# Between samples of different systems: OpenBLAS's threads spin about 0.1 s after a call
# before they sleep, and NumPy's and SciPy's OpenBLAS (which Numba's np.dot calls) each have a
# pool; on 2 cores, a sample started while the other pool still spins pays for both.
SETTLE_S = 0.2


def time_interleaved(calls: dict, rounds: int, sample_s: float, settle_s: float = SETTLE_S) -> dict:
    """Median seconds per call; samples interleaved across systems, the order rotating, with a
    pause of ``settle_s`` before each sample (see SETTLE_S)."""
    live = {s: c for s, c in calls.items() if not isinstance(c, str)}
    numbers = {}
    for system, call in live.items():  # warm up and calibrate
        call()
        once = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            call()
            once = min(once, time.perf_counter() - t0)
        numbers[system] = max(1, min(10_000, int(sample_s / max(once, 1e-7))))
    samples: dict = {s: [] for s in live}
    order = list(live)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            rotated = order[r % len(order):] + order[:r % len(order)]
            for system in rotated:
                call, n = live[system], numbers[system]
                time.sleep(settle_s)
                call()  # after the pause: the first call wakes this system's threads
                t0 = time.perf_counter()
                for _ in range(n):
                    call()
                samples[system].append((time.perf_counter() - t0) / n)
            gc.collect()
    finally:
        if gc_was:
            gc.enable()
    base = samples["handwritten"]
    return {s: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v),
                # each round's ratio to the hand-written sample of the same round: slow drifts
                # of the machine's load cancel out
                "ratio": statistics.median(x / b for x, b in zip(v, base)),
                "calls_per_sample": numbers[s], "samples": len(v)} for s, v in samples.items()}


def tracemalloc_peak(call, calls: int = 3) -> int:
    """Peak bytes traced during one call (its results included, as they are alive at return).

    The least of ``calls`` calls, each after an untraced one: gc.collect() empties Python's free
    lists, and a small object that is freed into a free list stays "allocated" for tracemalloc,
    so the first call after a collection counts a few hundred bytes that a training loop's
    steady state does not; arrays are not affected.
    """
    peaks = []
    for _ in range(calls):
        gc.collect()
        call()  # untraced: refills the free lists that gc.collect() emptied
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            result = call()
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
            del result
        finally:
            tracemalloc.stop()
    return min(peaks)


# --------------------------------------------------------------------------------------------
# generation speed


def generation_speed(step_counts: list[int], log) -> dict:
    import codegen

    out = {}
    for backend in ("numpy", "numba"):
        codegen.generate_source(deep_chain_spec(5), backend=backend)  # warm imports, templates
        rows = {}
        for steps in step_counts:
            log(f"  generation: {steps} steps, {backend}")
            text = deep_chain_spec(steps)
            t0 = time.perf_counter()
            source = codegen.generate_source(text, backend=backend)
            rows[str(steps)] = {"seconds": time.perf_counter() - t0, "lines": source.count("\n")}
        out[backend] = rows
    return out


# --------------------------------------------------------------------------------------------
# report


def _fmt_s(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt_b(b) -> str:
    if isinstance(b, str):
        return b
    if b < 1024 * 1024:
        return f"{b / 1024:.0f} KiB"
    return f"{b / 2**20:.1f} MiB"


def report(res: dict) -> str:
    m = res["machine"]
    systems = res["systems"]
    lines = [f"## Results ({'--quick' if res['quick'] else 'full run'}, {res['date']})", ""]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy "
                 f"{m['numpy']}, Numba {m['numba']}, torch {m['torch'] or 'not installed'} "
                 f"({m.get('torch_threads', '-')} threads), JAX {m['jax'] or 'not installed'}; "
                 f"codegen {m.get('codegen')} (sources sha256 "
                 f"{m.get('codegen_sources_sha256', '?')}). float64 everywhere.")
    threads = res["settings"].get("threads")
    lines.append("Threads: " + (f"limited to {threads} everywhere (`--threads {threads}`)."
                                if isinstance(threads, int) else "each library's default."))
    if m.get("blas"):
        lines.append(f"Thread pools: {'; '.join(m['blas'])}.")
    if m.get("loadavg_start"):
        lines.append(f"Load average (1, 5, 15 min) at start {m['loadavg_start']}, at end "
                     f"{m['loadavg_end']} ({m['cores']} cores; other processes share the "
                     "machine).")
    worst = max((v for w in res["workloads"].values() for v in w["verify"].values()),
                default=0.0)
    lines.append(f"Checked before timing: every system's loss and gradients agree with the "
                 f"hand-written ones to {worst:.1e} (max relative difference).")
    lines += ["", "### value_and_grad time", "",
              "Median seconds per call; × = ratio to hand-written NumPy (median over rounds of "
              "the ratio within a round).", ""]
    lines.append("| workload | " + " | ".join(S.LABELS[s] for s in systems) + " |")
    lines.append("|---" * (len(systems) + 1) + "|")
    for name, w in res["workloads"].items():
        cells = []
        for s in systems:
            t = w["time"].get(s)
            if isinstance(t, str) or t is None:
                cells.append(t or "-")
                continue
            ratio = w["ratio"][s]
            flag = "" if w["verify"].get(s, 0) <= RTOL else " ⚠ mismatch"
            cells.append(_fmt_s(t["median_s"]) + ("" if s == "handwritten" else f" ({ratio:.2f}×)")
                         + flag)
        lines.append(f"| {w['title']} | " + " | ".join(cells) + " |")
    traced = [s for s in TRACED if s in systems]
    lines += ["", "### Peak memory of one call: tracemalloc", "",
              "tracemalloc sees NumPy's array buffers and Numba's (NRT allocates through "
              "Python's raw allocator) and Python objects, the results included; it does not see "
              "torch's or XLA's allocators. × = ratio to hand-written NumPy.", "",
              "| workload | " + " | ".join(S.LABELS[s] for s in traced) + " |",
              "|---" * (1 + len(traced)) + "|"]
    for name, w in res["workloads"].items():
        tm = w.get("tracemalloc", {})
        hw = tm.get("handwritten")
        cells = []
        for s in traced:
            v = tm.get(s, "-")
            if isinstance(v, int) and s != "handwritten" and isinstance(hw, int) and hw:
                cells.append(f"{_fmt_b(v)} ({v / hw:.2f}×)")
            else:
                cells.append(_fmt_b(v))
        lines.append(f"| {w['title']} | " + " | ".join(cells) + " |")
    if res.get("rss"):
        lines += ["", "### Peak memory of one call: resident-set growth (separate process)", "",
                  "Peak RSS during the call minus RSS before it, all systems alike; arrays of "
                  "64 KiB or more (smaller ones are below this method's resolution, shown as 0).",
                  ""]
        if "error" in res["rss"]:
            lines.append(f"Not measured: {res['rss']['error']}")
        else:
            lines += ["| workload | " + " | ".join(S.LABELS[s] for s in systems) + " |",
                      "|---" * (1 + len(systems)) + "|"]
            for name, w in res["workloads"].items():
                rss = res["rss"].get(name, {})
                lines.append(f"| {w['title']} | "
                             + " | ".join(_fmt_b(rss.get(s, "-")) for s in systems) + " |")
    if res.get("numba_startup"):
        lines += ["", "### Numba start-up (fresh processes, one empty NUMBA_CACHE_DIR)", "",
                  "| spec | generate | import module | 1st call, empty cache (compile) | "
                  "1st call, 2nd process (cache hit) | steady call |", "|---" * 6 + "|"]
        for key, r in res["numba_startup"].items():
            cold, warm = r["cold"], r["warm"] or {}
            if "error" in cold:
                first = (f"**failed** after {cold.get('error_after_s', 0):.1f} s: "
                         f"{cold['error'][:80]}")
                lines.append(f"| {key} | {_fmt_s(cold.get('generate_s', 0))} | "
                             f"{_fmt_s(cold.get('import_module_s', 0))} | {first} | - | - |")
                continue
            hit = _fmt_s(warm["first_call_s"]) if "first_call_s" in warm else warm.get("error",
                                                                                        "-")
            lines.append(f"| {key} | {_fmt_s(cold['generate_s'])} | "
                         f"{_fmt_s(cold['import_module_s'])} | {_fmt_s(cold['first_call_s'])} | "
                         f"{hit} | {_fmt_s(cold['steady_call_s'])} |")
    gen = res.get("generation")
    if gen:
        counts = list(gen["numpy"])
        lines += ["", "### Generation time of an N-step chain (`codegen.generate_source`)", "",
                  "| steps | NumPy backend | per step | Numba backend | per step |",
                  "|---|---|---|---|---|"]
        for c in counts:
            a, b = gen["numpy"][c]["seconds"], gen["numba"][c]["seconds"]
            lines.append(f"| {c} | {a:.2f} s | {a / int(c) * 1e3:.2f} ms | {b:.2f} s | "
                         f"{b / int(c) * 1e3:.2f} ms |")
        lo, hi = counts[0], counts[-1]
        k = int(hi) / int(lo)
        lines.append("")
        lines.append(
            f"Growth from {lo} to {hi} steps (×{k:.0f} the steps): NumPy "
            f"×{gen['numpy'][hi]['seconds'] / gen['numpy'][lo]['seconds']:.1f}, Numba "
            f"×{gen['numba'][hi]['seconds'] / gen['numba'][lo]['seconds']:.1f} "
            f"(linear would be ×{k:.0f}).")
    if res.get("targets"):
        lines += ["", "### Targets (ratios to hand-written NumPy, this run)", "",
                  "| target | measured | verdict |", "|---|---|---|"]
        for t in res["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {t['verdict']} |")
    if "xp" in res:
        from . import xp

        lines.append(xp.report(res["xp"]))
    return "\n".join(lines) + "\n"


def evaluate_targets(res: dict) -> list[dict]:
    out = []
    W = res["workloads"]

    def ratio(name, s):
        r = W.get(name, {}).get("ratio", {}).get(s)
        return r if isinstance(r, float) else None

    for name, systems, limit in TARGETS:
        if name not in W:
            continue
        for s in systems:
            r = ratio(name, s)
            if r is None:
                out.append({"target": f"{name}: {s} ≤ {limit}×", "measured": "not run",
                            "verdict": "missed"})
                continue
            verdict = "met" if r <= limit else f"missed by {r / limit:.2f}×"
            out.append({"target": f"{name}: {s} ≤ {limit}×", "measured": f"{r:.2f}×",
                        "verdict": verdict})
            r = ratio(name, "numba_par") if s == "numba" else None
            if r is not None:
                out.append({"target": f"{name}: (numba_par ≤ {limit}×, for information)",
                            "measured": f"{r:.2f}×",
                            "verdict": "met" if r <= limit else f"missed by {r / limit:.2f}×"})
    if "elementwise" in W:
        t = W["elementwise"]["time"]
        if isinstance(t.get("numba"), dict) and isinstance(t.get("jax"), dict):
            r = W["elementwise"]["ratio"]["numba"] / W["elementwise"]["ratio"]["jax"]
            out.append({"target": "elementwise: Numba on par with JAX jit (≤ 1.1× JAX)",
                        "measured": f"{r:.2f}× JAX", "verdict": "met" if r <= 1.1 else
                        f"missed by {r / 1.1:.2f}×"})
    for name, w in W.items():
        tm = w.get("tracemalloc", {})
        hw = tm.get("handwritten")
        for s in ("numpy", "numba"):
            v = tm.get(s)
            if isinstance(v, int) and isinstance(hw, int) and hw:
                miss = f"missed by {v / hw:.2f}×" if v / hw >= 1.01 else \
                    f"missed by {(v - hw) / 1024:.0f} KiB"
                out.append({"target": f"{name}: peak memory, {s} ≤ hand-written",
                            "measured": f"{_fmt_b(v)} vs {_fmt_b(hw)} ({v / hw:.2f}×)",
                            "verdict": "met" if v <= hw else miss})
    return out


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run (about a minute): 10-step deep chain, 3 short samples, no "
                        "numba_par column, no RSS process, start-up of small_mlp only, "
                        "generation of 10/20/40 steps")
    p.add_argument("--output", type=Path,
                   help="where to write the JSON results (default: benchmarks/results.json; "
                        "benchmarks/results-quick.json with --quick, so that a smoke run leaves "
                        "the full run's results alone)")
    p.add_argument("--only", nargs="+", metavar="WORKLOAD", help="run only these workloads")
    p.add_argument("--systems", nargs="+", choices=S.SYSTEMS,
                   help="systems to run (default: all; --quick leaves out numba_par)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="limit every system to N threads (BLAS, OpenMP, torch, XLA, Numba); "
                        "default: each library's own default")
    p.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 21; 3 "
                                              "with --quick)")
    p.add_argument("--sample-ms", type=float, help="length of one sample (default 50; 10 with "
                                                   "--quick)")
    p.add_argument("--settle-ms", type=float, default=SETTLE_S * 1000,
                   help="pause before each sample, so that the BLAS threads of the system timed "
                        f"before stop spinning (default {SETTLE_S * 1000:.0f}; 0 to measure the "
                        "contention of two BLAS pools in one process)")
    p.add_argument("--no-startup", action="store_true", help="skip the Numba start-up probes")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS process")
    p.add_argument("--no-generation", action="store_true", help="skip generation timing")
    p.add_argument("--no-xp", action="store_true",
                   help="skip the array-API section (overhead on NumPy inputs, Dask LocalCluster)")
    p.add_argument("--xp-only", action="store_true",
                   help="run only the array-API section (benchmarks/xp.py); writes results-xp.json")
    p.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                   help="print the Markdown report of an earlier run's results and exit")
    args = p.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    quick = args.quick
    if args.output is None:
        args.output = HERE / ("results-quick.json" if quick else "results.json")
    if args.threads and os.environ.get("CODEGEN_BENCH_THREADS") != str(args.threads):
        limit_threads(str(args.threads))  # main() called directly: limit what is loaded now too
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    rounds = args.rounds or (3 if quick else 21)
    sample_s = (args.sample_ms or (10 if quick else 50)) / 1000
    chosen = args.systems or [s for s in S.SYSTEMS if not (quick and s == "numba_par")]
    systems = [s for s in S.SYSTEMS if s in chosen]
    if "handwritten" not in systems:
        p.error("the hand-written baseline cannot be left out")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    # One empty cache for the whole run: the start-up probes fill it, the timing loads from it.
    cache_dir = tempfile.mkdtemp(prefix="codegen-bench-numba-")
    os.environ["NUMBA_CACHE_DIR"] = cache_dir
    # codegen.load_module writes Numba modules under CODEGEN_CACHE_DIR; a private one keeps
    # other processes (test suites) from rewriting them and so invalidating the cache mid-run
    private_tmp = os.path.join(cache_dir, "tmp")
    os.makedirs(private_tmp, mode=0o700)
    os.environ["TMPDIR"] = private_tmp
    os.environ["CODEGEN_CACHE_DIR"] = private_tmp
    tempfile.tempdir = private_tmp
    if "numba" in sys.modules or "numba.core.config" in sys.modules:
        log("note: numba was imported before NUMBA_CACHE_DIR was set; timings compile in-process")

    spec_file = HERE / "specs" / "deep_chain.yaml"
    if spec_file.read_text() != deep_chain_spec(DEEP_STEPS):
        log("error: specs/deep_chain.yaml differs from workloads.deep_chain_spec(200); "
            "rewrite it from the function")
        return 2

    wls = workloads(quick)
    if args.xp_only:  # only benchmarks/xp.py's section
        from . import xp

        res = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "xp": xp.run(wls, quick, rounds, sample_s, args.settle_ms / 1000, time_interleaved, log)}
        out = args.output if args.output != HERE / ("results-quick.json" if quick else "results.json") \
            else HERE / "results-xp.json"
        out.write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(xp.report(res["xp"]))
        return 0
    if args.only:
        unknown = set(args.only) - {w.name for w in wls}
        if unknown:
            p.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        wls = [w for w in wls if w.name in args.only]

    res: dict = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "quick": quick,
                 "command": "python -m benchmarks" + (" --quick" if quick else ""),
                 "settings": {"rounds": rounds, "sample_s": sample_s, "settle_s": args.settle_ms / 1000,
                              "dtype": "float64",
                              "threads": args.threads or "library defaults",
                              "verify_rtol": RTOL, "numba_cache_dir": cache_dir},
                 "systems": systems, "machine": machine(), "workloads": {}}

    phases: dict = {}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 1)
        mark = now

    # 1. Numba start-up, in fresh processes (fills the cache for the timing below)
    skip_numba: dict = {}
    if "numba" in systems and not args.no_startup:
        deep = 10 if quick else DEEP_STEPS
        plan = [(w.name, w.name, deep if w.name == "deep_chain" else 0) for w in wls
                if not quick or w.name == "small_mlp"]
        if not quick and any(w.name == "deep_chain" for w in wls):
            plan += [(f"deep_chain ({n} steps)", "deep_chain", n) for n in (25, 50, 100)]
        res["numba_startup"] = numba_startup(plan, cache_dir, log)
        for w in wls:
            r = res["numba_startup"].get(w.name)
            if r and "error" in r["cold"]:
                why = f"compile failed ({r['cold']['error'][:60]})"
                skip_numba[w.name] = {"numba": why, "numba_par": "not tried: " + why}

    phase("numba start-up probes")
    # 2. timing, verification, tracemalloc
    for w in wls:
        log(f"workload {w.name}: building")
        values = w.make_inputs(np.random.default_rng(0), w.dims)
        inputs = [values[n] for n in w.inputs]
        calls = S.build(w, inputs, systems, skip_numba.get(w.name))
        entry: dict = {"title": w.title + (f" [{w.note}]" if w.note else ""), "dims": w.dims}
        log(f"workload {w.name}: verifying")
        errors = verify(calls)
        entry["verify"] = errors
        bad = [s for s in ("numpy", "numba") if errors.get(s, 0) > RTOL]
        if bad:
            log(f"error: {w.name}: hand-written and generated ({', '.join(bad)}) gradients "
                f"disagree: {errors}")
            return 1
        log(f"workload {w.name}: timing")
        times = time_interleaved(calls, rounds, sample_s, args.settle_ms / 1000)
        entry["time"] = {s: times.get(s, calls[s] if isinstance(calls[s], str) else None)
                         for s in systems}
        entry["ratio"] = {s: t["ratio"] for s, t in times.items()}
        entry["tracemalloc"] = {s: tracemalloc_peak(calls[s]) if not isinstance(calls[s], str)
                                else calls[s] for s in TRACED if s in calls}
        res["workloads"][w.name] = entry
        phase(f"workload {w.name}")

    # 3. peak RSS per call, all systems, in one separate process
    if not (args.no_rss or quick or args.only) and sys.platform.startswith("linux"):
        log("peak RSS process")
        steps = 10 if quick else DEEP_STEPS
        rss = _probe(["memory", str(steps), json.dumps(skip_numba), *systems],
                     _env(cache_dir, MALLOC_MMAP_THRESHOLD_="65536",
                          MALLOC_TRIM_THRESHOLD_="65536"), timeout=900)
        rss.pop("process_s", None)
        res["rss"] = rss
        phase("peak RSS process")

    # 4. generation speed
    if not args.no_generation:
        res["generation"] = generation_speed([10, 20, 40] if quick else [250, 500, 1000], log)
        phase("generation")

    # 5. the array-API module (benchmarks/xp.py)
    if not (args.no_xp or args.only):
        from . import xp

        res["xp"] = xp.run(wls, quick, rounds, sample_s, args.settle_ms / 1000, time_interleaved, log)
        phase("array-API module")

    res["targets"] = evaluate_targets(res)
    res["phases_s"] = phases
    res["elapsed_s"] = time.perf_counter() - t_start
    res["machine"]["loadavg_start"] = [round(x, 2) for x in load_start]
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(cache_dir, ignore_errors=True)
    args.output.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(report(res))
    log(f"wrote {args.output} ({res['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
