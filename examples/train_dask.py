"""Data-parallel training on a Dask cluster with gradients from the generated array-API module.

The loss and gradients come only from ``generated/nn_xp.py`` (``--backend array_api``), the
array-API module of ``specs/nn.yaml``: its ``mlp_classifier`` (a two-layer tanh network, mean
softmax cross-entropy) is called on Dask arrays chunked along the batch axis, so each step's
gradient is a Dask graph that the cluster's workers compute chunk by chunk (the matrix products
``X.T @ dZ`` are sums over chunks, reduced on the cluster); only the loss and the gradients, a
few kilobytes, come back to this process. The data set is synthetic (a random teacher network
labels Gaussian inputs), made on the workers chunk by chunk and persisted there once.

    pip install -e '.[examples,xp]' 'dask[array,distributed]'
    python -m codegen specs -o generated --backend all
    python examples/train_dask.py                        # a LocalCluster of 2 worker processes
    python examples/train_dask.py --scheduler tcp://HOST:8786   # a running cluster instead
    python examples/train_dask.py --samples 2000000 --chunk 250000   # about 1 GiB of data

The last line printed is the result, e.g.
``loss 0.4213 after 100 steps in 9.8 s (0.098 s a step; 2 workers, 80 chunks of 2500 rows)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GENERATED = REPO / "generated"
DEFAULT_PLOT = Path("train_dask.png")  # in the current directory
PARAMS = ("W1", "b1", "W2", "b2")  # the spec's wrt, in order


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train specs/nn.yaml's mlp_classifier by full-batch gradient descent on a "
        "data set chunked over a Dask cluster, with loss and gradients from generated/nn_xp.py."
    )
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running dask.distributed scheduler (default: start a "
                        "LocalCluster)")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes of the LocalCluster (default 2; one thread each)")
    p.add_argument("--samples", type=int, default=200_000, help="rows N (default 200000)")
    p.add_argument("--features", type=int, default=32, help="features D (default 32)")
    p.add_argument("--classes", type=int, default=4, help="classes K (default 4)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units H (default 32)")
    p.add_argument("--chunk", type=int, default=25_000,
                   help="rows per chunk (default 25000; the chunks are spread over the workers)")
    p.add_argument("--steps", type=int, default=100, help="gradient steps (default 100)")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT,
                   help=f"PNG of the loss per step (default {DEFAULT_PLOT}); '-' for no plot")
    p.add_argument("--generated", type=Path, default=DEFAULT_GENERATED,
                   help="directory holding nn_xp.py (default <repo>/generated)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("workers", "samples", "features", "classes", "hidden", "chunk", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    return args


def load_module(generated: Path):
    """Import generated/nn_xp.py from its file path."""
    path = Path(generated) / "nn_xp.py"
    if not path.is_file():
        raise SystemExit(f"train_dask: {path} not found: run "
                         "python -m codegen specs -o generated --backend all first")
    name = "_train_dask_nn_xp"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_data(samples: int, features: int, classes: int, chunk: int, seed: int):
    """The data set as Dask arrays X [N, D] and Y [N, K], chunked along N: Gaussian inputs and
    the one-hot labels of a noisy random teacher network.  Made with Dask's own random numbers
    where each chunk is computed: nothing is sent from here but the seed."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    T1 = rng.standard_normal((features, 16)) / math.sqrt(features)
    T2 = rng.standard_normal((16, classes))
    state = da.random.RandomState(seed)
    X = state.standard_normal((samples, features), chunks=(chunk, features))
    logits = da.tanh(X @ T1) @ T2 + 0.3 * state.standard_normal((samples, classes), chunks=(chunk, classes))
    Y = (logits == logits.max(axis=1, keepdims=True)).astype(np.float64)
    return X, Y


def init_params(seed: int, features: int, hidden: int, classes: int) -> dict:
    """Glorot-uniform weights, zero biases."""
    rng = np.random.default_rng([seed, 1])

    def glorot(fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out))

    return {"W1": glorot(features, hidden), "b1": np.zeros(hidden),
            "W2": glorot(hidden, classes), "b2": np.zeros(classes)}


def gradient_step(nn, X, Y, params: dict):
    """The loss and gradients at ``params`` (NumPy arrays), computed on the cluster.

    The array-API module takes all its inputs from one library: the parameters go in as
    one-chunk Dask arrays (cheap: they are small), and ``dask.compute`` runs the whole graph
    at once, returning NumPy values.
    """
    import dask
    import dask.array as da

    lazy = {name: da.from_array(value, chunks=-1) for name, value in params.items()}
    (loss, _Z), grads = nn.mlp_classifier_value_and_grad(X, Y, **lazy)
    loss, grads = dask.compute(loss, grads)  # _Z (N x K) is never sent back
    return float(loss), {name: np.asarray(getattr(grads, name)) for name in PARAMS}


def save_plot(path: Path, losses, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    ax.plot(np.arange(len(losses)), losses, marker=".", markersize=3)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("mean softmax cross-entropy")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train, plot, print the result; return losses, params, seconds and the data's layout."""
    import dask
    from distributed import Client, LocalCluster, wait
    from tqdm.auto import trange

    args = parse_args(argv)
    nn = load_module(args.generated)
    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
    client = Client(args.scheduler or cluster)
    try:
        workers = len(client.scheduler_info()["workers"])
        X, Y = make_data(args.samples, args.features, args.classes, args.chunk, args.seed)
        X, Y = dask.persist(X, Y)  # made and kept on the workers, once
        wait([X, Y])
        params = init_params(args.seed, args.features, args.hidden, args.classes)
        losses = []
        start = time.perf_counter()
        bar = trange(args.steps, desc=f"dask ({workers} workers)", unit="step",
                     disable=args.no_progress)
        for _ in bar:
            loss, grads = gradient_step(nn, X, Y, params)
            losses.append(loss)
            for name in PARAMS:  # gradient descent, on the client: the parameters are small
                params[name] = params[name] - args.lr * grads[name]
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        seconds = time.perf_counter() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    chunks = len(X.chunks[0])
    gib = args.samples * (args.features + args.classes) * 8 / 2**30
    if str(args.plot) != "-":
        save_plot(args.plot, losses, f"mlp_classifier on {args.samples} rows ({gib:.2f} GiB) in "
                  f"{chunks} chunks, {workers} Dask workers, lr {args.lr:g}")
        print(f"plot written to {args.plot}")
    print(f"loss {losses[-1]:.4f} after {args.steps} steps in {seconds:.1f} s "
          f"({seconds / args.steps:.3f} s a step; {workers} workers, {chunks} chunks of "
          f"{args.chunk} rows)")
    return {"losses": losses, "params": params, "seconds": seconds, "workers": workers,
            "chunks": chunks, "gib": gib}


if __name__ == "__main__":
    main()
