"""First-call compile time of the Numba module of long chains (not part of the test suite).

    python -m benchmarks.compile_time                      # 250, 500, 1000, 2000 steps
    python -m benchmarks.compile_time --steps 250 500      # some lengths only
    python -m benchmarks.compile_time --matmul --steps 120 # the unfused chain h = tanh(h @ W)

Each length is generated into a fresh temporary directory and imported by a fresh Python process
with an empty Numba cache (``NUMBA_CACHE_DIR``), which calls ``deep_chain_value_and_grad`` once on
small inputs (8 x 8): the call's time is the compile time (the run takes microseconds). Reported:
the CPU seconds of that process during the call (the machine may be shared, so wall time is
printed too), the generation time and the number of lines of the module.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .workloads import deep_chain_spec

_CHILD = r"""
import importlib, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
module = importlib.import_module(sys.argv[2])
rng = np.random.default_rng(0)
inputs = [rng.standard_normal(tuple(shape)) * 0.1 for shape in json.loads(sys.argv[3])]
cpu, wall = time.process_time(), time.perf_counter()
module.deep_chain_value_and_grad(*inputs)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"cpu": cpu, "wall": wall}))
"""


def matmul_chain_spec(steps: int) -> str:
    """``h_k = tanh(h_(k-1) @ W)``: products between the elementwise steps, so no fusion."""
    lines = ["module: bench_deep_chain", "dtype: float64", "dims: {N: 8, K: 8}", "functions:",
             "  deep_chain:", "    inputs:", "      X: [N, K]", "      W: [K, K]",
             "    wrt: [X, W]", "    steps:"]
    prev = "X"
    for k in range(1, steps + 1):
        lines.append(f"      - h{k} = tanh({prev} @ W)")
        prev = f"h{k}"
    lines += [f"      - loss = sum({prev} ** 2)", "    outputs: [loss]"]
    return "\n".join(lines) + "\n"


def measure(steps: int, matmul: bool, max_part_ops: int | None = None,
            max_loop_lines: int | None | bool = False) -> dict:
    """``max_loop_lines``: False for codegen's default, None for loops never split."""
    from codegen.compiler import compile_spec, render
    from codegen.emit_numba import RUNTIME_FILENAME, runtime_source
    from codegen.loader import load_spec

    # ``steps`` steps in all: the chain's and the loss (a spec has at most 2,000)
    chain = steps - 1
    spec = matmul_chain_spec(chain) if matmul else deep_chain_spec(chain, {"M": 8, "N": 8})
    shapes = [[8, 8], [8, 8]] if matmul else [[8, 8], [8]]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        compiled = compile_spec(load_spec(spec, "compile_time.yaml"))
        options: dict = {} if max_part_ops is None else {"max_part_ops": max_part_ops}
        if max_loop_lines is not False:
            options["max_loop_lines"] = max_loop_lines
        source = render(compiled, "numba", None, **options)
        generation = time.perf_counter() - start
        Path(tmp, "bench_deep_chain_numba.py").write_text(source, encoding="utf-8")
        Path(tmp, RUNTIME_FILENAME).write_text(runtime_source(), encoding="utf-8")
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp, "cache")))
        run = subprocess.run([sys.executable, "-c", _CHILD, tmp, "bench_deep_chain_numba",
                              json.dumps(shapes)], env=env, capture_output=True, text=True,
                             check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
    kernels = sum(source.count(f"\n@{d}\n") for d in ("_kernel", "_parallel_kernel", "_part"))
    kernels -= source.count("def _deep_chain_fw_") + source.count("def _deep_chain_bw_")
    kernels -= 2  # the forward and backward kernels: only value_and_grad's are compiled
    return {"steps": steps, "lines": source.count("\n"), "kernels": kernels,
            "generation": generation, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--matmul", action="store_true", help="the chain h = tanh(h @ W)")
    parser.add_argument("--max-part-ops", type=int, default=None,
                        help="ops per compiled function (default: codegen's own)")
    parser.add_argument("--max-loop-lines", type=int, default=False,
                        help="lines of a loop body per compiled function (default: codegen's "
                             "own; 0: never split)")
    args = parser.parse_args(argv)
    print("| steps | module lines | compiled functions | generation (s) | first call CPU (s) | wall (s) |")
    print("|---|---|---|---|---|---|")
    for steps in args.steps:
        r = measure(steps, args.matmul, args.max_part_ops,
                    None if args.max_loop_lines is not False and args.max_loop_lines == 0
                    else args.max_loop_lines)
        print(f"| {r['steps']} | {r['lines']} | {r['kernels']} | {r['generation']:.1f} | "
              f"{r['cpu']:.1f} | {r['wall']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
