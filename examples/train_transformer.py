"""Train a one-block transformer on scikit-learn's digits with gradients from generated code.

Each 8x8 image is a sequence of 8 rows (tokens) of 8 pixels (features). The loss (mean softmax
cross-entropy) and its gradients come only from the generated module for
``specs/transformer.yaml``'s ``classifier`` (a pre-norm block: layer norm, single-head attention
over the rows, an exact-GELU MLP, residuals; a linear head on all tokens): ``generated/transformer.py``
(``--backend numpy``) or ``generated/transformer_numba.py`` (``--backend numba``). Everything else
here is plain NumPy: data preparation, initialisation, minibatches and the optimiser. The labels
go in as integers of shape [B, 1] (the spec's ``y: {shape: [B, 1], dtype: int64}``), and the
attention's 1 / sqrt(D) comes from the spec itself (a dim as a number), so nothing but data and
parameters is passed.

    pip install -e '.[examples]'
    python -m codegen specs -o generated --backend all
    python examples/train_transformer.py            # --backend numba, --epochs 30, --width 32, ...

The data set ships inside scikit-learn (1797 8x8 images, 10 classes): nothing is downloaded.
The last line printed is the result, e.g.
``test accuracy 0.9722 after 30 epochs in 170.5 s (backend numpy)`` (on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GENERATED = REPO / "generated"
DEFAULT_PLOT = Path("train_transformer.png")  # in the current directory, never over the committed one
MODULES = {"numpy": "transformer", "numba": "transformer_numba"}
PARAMS = ("We", "pos", "g1", "c1", "Wq", "Wk", "Wv", "Wo", "g2", "c2", "W1", "b1", "W2", "b2",
          "Wc", "bc")  # the spec's wrt, in order
DEFAULT_LR = {"adam": 3e-3, "sgd": 0.02}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train specs/transformer.yaml's classifier on scikit-learn's digits, "
        "with loss and gradients from the generated module."
    )
    p.add_argument(
        "--backend",
        choices=sorted(MODULES),
        default="numpy",
        help="generated module: numpy = generated/transformer.py, numba = generated/transformer_numba.py",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="passes over the training set (default 30)",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="minibatch size (default 32)"
    )
    p.add_argument("--width", type=int, default=32, help="model width D (default 32)")
    p.add_argument("--hidden", type=int, default=64, help="MLP hidden units F (default 64)")
    p.add_argument(
        "--optimizer",
        choices=("adam", "sgd"),
        default="adam",
        help="adam (default) or sgd (with momentum)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default {DEFAULT_LR['adam']} for adam, "
        f"{DEFAULT_LR['sgd']} for sgd)",
    )
    p.add_argument(
        "--momentum", type=float, default=0.9, help="sgd momentum (default 0.9)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for initialisation and shuffling (default 0)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the stratified 80/20 train/test split (default 0)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=DEFAULT_PLOT,
        help=f"PNG of loss and accuracy per epoch (default {DEFAULT_PLOT}, in the current "
        "directory); '-' for no plot",
    )
    p.add_argument(
        "--generated",
        type=Path,
        default=DEFAULT_GENERATED,
        help="directory holding the generated modules (default <repo>/generated)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1 or args.width < 1:
        p.error("--epochs, --batch-size, --width and --hidden must be positive")
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    return args


def load_backend(backend: str, generated: Path):
    """Import generated/transformer.py or transformer_numba.py from its file path."""
    name = MODULES[backend]
    path = Path(generated) / f"{name}.py"
    if not path.is_file():
        command = "python -m codegen specs -o generated --backend all"
        raise SystemExit(f"train_transformer: {path} not found: run {command} first")
    module_name = (
        f"_train_transformer_{name}"  # private name: never shadows an importable module
    )
    # The Numba module imports its runtime, _codegen_numba_runtime.py beside it, by name when it
    # is not in a package: its directory must be on sys.path.
    directory = str(path.resolve().parent)
    if backend == "numba" and directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    missing = [
        f
        for f in ("classifier", "classifier_value_and_grad")
        if not hasattr(module, f)
    ]
    if missing:
        raise SystemExit(
            f"train_transformer: {path} has no {', '.join(missing)} (stale?): "
            "run python -m codegen specs -o generated --backend all first"
        )
    return module


def load_data(split_seed: int):
    """Digits as sequences [n, 8 rows, 8 pixels], standardised, and integer labels [n, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=split_seed
    )
    scaler = StandardScaler().fit(X_train)  # constant pixels keep scale 1

    def prepare(X, y):
        X = np.ascontiguousarray(scaler.transform(X).reshape(-1, 8, 8), dtype=np.float64)
        labels = np.ascontiguousarray(y[:, None], dtype=np.int64)  # [n, 1], classes 0..9
        return X, labels

    return prepare(X_train, y_train), prepare(X_test, y_test)


def glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


class Adam:
    def __init__(self, params: dict, lr: float, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps, self.t = lr, beta1, beta2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        c1 = 1 - self.beta1**self.t
        c2 = 1 - self.beta2**self.t
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            params[k] -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


class SGD:
    def __init__(self, params: dict, lr: float, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum
        self.velocity = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        for k, g in grads.items():
            v = self.velocity[k]
            v *= self.momentum
            v -= self.lr * g
            params[k] += v


def save_plot(path: Path, losses, test_losses, accuracies, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(losses) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(
        1, 2, figsize=(9, 3.6), constrained_layout=True
    )
    ax_loss.plot(epochs, losses, marker=".", label="train (mean over minibatches)")
    ax_loss.plot(epochs, test_losses, marker=".", label="test")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("softmax cross-entropy")
    ax_loss.set_title("Loss")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend()
    ax_acc.plot(
        epochs, accuracies, marker=".", color="tab:green", label="test accuracy"
    )
    ax_acc.axhline(0.95, color="gray", linestyle="--", linewidth=1, label="0.95")
    ax_acc.set_ylim(min(0.8, min(accuracies) - 0.02), 1.0)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title(f"Test accuracy (final {accuracies[-1]:.4f})")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train, plot, print the result; return accuracy, losses, accuracies and seconds."""
    from tqdm.auto import trange

    args = parse_args(argv)
    nn = load_backend(args.backend, args.generated)
    (X_train, y_train), (X_test, y_test) = load_data(args.split_seed)
    n, seq, p = X_train.shape
    k = int(y_train.max()) + 1  # classes 0..9; the spec's K comes from Wc and bc
    d, f = args.width, args.hidden

    rng = np.random.default_rng(args.seed)
    params = {
        "We": glorot(rng, p, d),
        "pos": 0.1 * rng.standard_normal((seq, d)),
        "g1": np.ones(d),
        "c1": np.zeros(d),
        "Wq": glorot(rng, d, d),
        "Wk": glorot(rng, d, d),
        "Wv": glorot(rng, d, d),
        "Wo": glorot(rng, d, d),
        "g2": np.ones(d),
        "c2": np.zeros(d),
        "W1": glorot(rng, d, f),
        "b1": np.zeros(f),
        "W2": glorot(rng, f, d),
        "b2": np.zeros(d),
        "Wc": glorot(rng, seq * d, k).reshape(seq, d, k),
        "bc": np.zeros(k),
    }
    if args.optimizer == "adam":
        optimizer = Adam(params, args.lr)
    else:
        optimizer = SGD(params, args.lr, args.momentum)

    def evaluate():
        loss, Z = nn.classifier(X_test, y_test, **params)
        return float(loss), float(np.mean(np.argmax(Z, axis=1) == y_test[:, 0]))

    # One call before the clock starts: it compiles the Numba backend (no-op cost for NumPy).
    t0 = time.perf_counter()
    nn.classifier_value_and_grad(X_train[:2], y_train[:2], **params)
    evaluate()
    warmup = time.perf_counter() - t0

    losses, test_losses, accuracies = [], [], []
    start = time.perf_counter()
    bar = trange(
        args.epochs,
        desc=f"transformer ({args.backend})",
        unit="epoch",
        disable=args.no_progress,
    )
    for _ in bar:
        order = rng.permutation(n)
        total = 0.0
        for lo in range(0, n, args.batch_size):
            idx = order[
                lo : lo + args.batch_size
            ]  # the last batch may be smaller: B is symbolic
            (loss, _Z), grads = nn.classifier_value_and_grad(
                X_train[idx], y_train[idx], **params
            )
            optimizer.step(params, {name: getattr(grads, name) for name in PARAMS})
            total += float(loss) * len(idx)
        losses.append(total / n)
        test_loss, accuracy = evaluate()
        test_losses.append(test_loss)
        accuracies.append(accuracy)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", test_acc=f"{accuracy:.4f}")
    bar.close()
    seconds = time.perf_counter() - start

    if str(args.plot) != "-":
        title = (
            f"transformer on digits: D={d}, F={f}, {args.optimizer} lr={args.lr:g}, "
            f"batch {args.batch_size}, backend {args.backend}"
        )
        save_plot(args.plot, losses, test_losses, accuracies, title)
        print(f"plot written to {args.plot}")
    if warmup > 0.5:
        print(
            f"(warm-up call, including JIT compilation: {warmup:.1f} s, not counted below)"
        )
    print(
        f"test accuracy {accuracies[-1]:.4f} after {args.epochs} epochs in {seconds:.1f} s "
        f"(backend {args.backend})"
    )
    return {
        "accuracy": accuracies[-1],
        "losses": losses,
        "test_losses": test_losses,
        "accuracies": accuracies,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "backend": args.backend,
        "plot": None if str(args.plot) == "-" else args.plot,
    }


if __name__ == "__main__":
    main()
