"""Newton's method with a generated Hessian, Newton-CG with generated Hessian-vector products,
and gradient descent, on scikit-learn's breast cancer data (L2-regularised logistic regression).

Loss, gradient, Hessian and Hessian-vector products come only from the generated module for
``specs/logistic.yaml``'s ``logistic_l2``: ``generated/logistic.py`` (``--backend numpy``) or
``generated/logistic_numba.py`` (``--backend numba``):

- Newton: ``logistic_l2_hessian`` gives (loss, grads, H); the step solves ``H d = -g``;
- Newton-CG: the same step by conjugate gradients, each iteration one ``logistic_l2_hvp``
  (H is never formed);
- gradient descent: ``logistic_l2_value_and_grad`` with the step 1 / L, L a bound on H's largest
  eigenvalue (for comparison: it needs thousands of steps where Newton needs a handful).

    pip install -e '.[examples]'
    python -m codegen specs -o generated            # add --backend all for logistic_numba.py
    python examples/newton_logistic.py              # --backend numba, --lam 1e-3, --plot -

The data set ships inside scikit-learn (569 samples, 30 features): nothing is downloaded. The
last line printed is the result, e.g.
``Newton: gradient norm 4.1e-16 after 8 steps (Newton-CG 8, gradient descent 2.3e-04 after 500) (backend numpy)``.
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
DEFAULT_PLOT = Path("newton_logistic.png")  # in the current directory, never over the committed one
MODULES = {"numpy": "logistic", "numba": "logistic_numba"}
TOL = 1e-8  # stop when the gradient's norm is below this


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Newton, Newton-CG and gradient descent on L2-regularised logistic regression "
        "(scikit-learn's breast cancer), with derivatives from the generated module."
    )
    p.add_argument("--backend", choices=sorted(MODULES), default="numpy",
                   help="generated module: numpy = generated/logistic.py, "
                   "numba = generated/logistic_numba.py")
    p.add_argument("--lam", type=float, default=1e-3,
                   help="L2 regularisation strength (default 1e-3)")
    p.add_argument("--newton-steps", type=int, default=15,
                   help="at most this many Newton (and Newton-CG) steps (default 15)")
    p.add_argument("--gd-steps", type=int, default=500,
                   help="gradient descent steps, for comparison (default 500)")
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT,
                   help=f"PNG of the gradient norm per iteration (default {DEFAULT_PLOT}, in the "
                   "current directory); '-' for no plot")
    p.add_argument("--generated", type=Path, default=DEFAULT_GENERATED,
                   help="directory holding the generated modules (default <repo>/generated)")
    args = p.parse_args(argv)
    if args.lam <= 0 or args.newton_steps < 1 or args.gd_steps < 0:
        p.error("--lam and --newton-steps must be positive, --gd-steps non-negative")
    return args


def load_backend(backend: str, generated: Path):
    """Import generated/logistic.py or generated/logistic_numba.py from its file path."""
    name = MODULES[backend]
    path = Path(generated) / f"{name}.py"
    if not path.is_file():
        command = "python -m codegen specs -o generated" + (
            " --backend all" if backend == "numba" else "")
        raise SystemExit(f"newton_logistic: {path} not found: run {command} first")
    module_name = f"_newton_logistic_{name}"  # private name: never shadows an importable module
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_data():
    """Breast cancer: features standardised, labels 0/1, C-contiguous float64."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.ascontiguousarray(X, dtype=np.float64), y.astype(np.float64)


def flat(grads) -> np.ndarray:
    """The gradient fields (w, b) as one vector, ordered as the Hessian's rows."""
    return np.concatenate([np.ravel(g) for g in grads])


def split(d: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
    return d[:D], np.asarray(d[D])


def line_search(m, X, y, w, b, lam, loss, g, d):
    """Backtracking (Armijo): the first of 1, 1/2, 1/4, ... that decreases the loss enough."""
    D = w.size
    t = 1.0
    for _ in range(30):
        dw, db = split(t * d, D)
        if m.logistic_l2(X, y, w + dw, b + db, lam) <= loss + 1e-4 * t * (g @ d):
            break
        t *= 0.5
    dw, db = split(t * d, D)
    return w + dw, b + db


def newton(m, X, y, lam, steps: int) -> list[float]:
    """Newton's method with the dense Hessian (logistic_l2_hessian); gradient norms per step."""
    w, b = np.zeros(X.shape[1]), np.asarray(0.0)
    norms = []
    for _ in range(steps + 1):
        loss, grads, H = m.logistic_l2_hessian(X, y, w, b, lam)
        g = flat(grads)
        norms.append(float(np.linalg.norm(g)))
        if norms[-1] < TOL:
            break
        w, b = line_search(m, X, y, w, b, lam, loss, g, np.linalg.solve(H, -g))
    return norms


def newton_cg(m, X, y, lam, steps: int) -> tuple[list[float], int]:
    """Newton-CG: each Newton step solved by conjugate gradients on H v (logistic_l2_hvp)."""
    D = X.shape[1]
    w, b = np.zeros(D), np.asarray(0.0)
    norms, products = [], 0
    for _ in range(steps + 1):
        loss, grads = m.logistic_l2_value_and_grad(X, y, w, b, lam)
        g = flat(grads)
        norms.append(float(np.linalg.norm(g)))
        if norms[-1] < TOL:
            break
        # conjugate gradients for H d = -g, to a relative residual min(0.5, sqrt(|g|)) |g|
        d, r = np.zeros_like(g), -g
        p, rr = r.copy(), r @ r
        tol = min(0.5, np.sqrt(norms[-1])) * norms[-1]
        for _ in range(g.size):
            hv = flat(m.logistic_l2_hvp(X, y, w, b, lam, split(p, D))[2])
            products += 1
            alpha = rr / (p @ hv)
            d += alpha * p
            r -= alpha * hv
            rr, rr_old = r @ r, rr
            if np.sqrt(rr) < tol:
                break
            p = r + (rr / rr_old) * p
        w, b = line_search(m, X, y, w, b, lam, loss, g, d)
    return norms, products


def gradient_descent(m, X, y, lam, steps: int) -> list[float]:
    """Steps of 1 / L, L = ||[X 1]||_2^2 / (4 N) + lam bounds the Hessian's largest eigenvalue."""
    N = X.shape[0]
    L = np.linalg.norm(np.hstack([X, np.ones((N, 1))]), 2) ** 2 / (4 * N) + lam
    w, b = np.zeros(X.shape[1]), np.asarray(0.0)
    norms = []
    for _ in range(steps + 1):
        _, grads = m.logistic_l2_value_and_grad(X, y, w, b, lam)
        norms.append(float(np.linalg.norm(flat(grads))))
        w, b = w - grads.w / L, b - grads.b / L
    return norms


def save_plot(path: Path, runs: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, norms in runs.items():
        ax.semilogy(range(len(norms)), norms, marker="." if len(norms) < 50 else None,
                    label=label)
    ax.axhline(TOL, color="grey", linestyle=":", label=f"tolerance {TOL:g}")
    ax.set_xscale("symlog", linthresh=20)
    ax.set_xlim(0, max(len(norms) for norms in runs.values()))
    ax.set_xlabel("iteration")
    ax.set_ylabel("gradient norm")
    ax.set_title(title)
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the three methods, plot, print the result; return their gradient norms."""
    args = parse_args(argv)
    m = load_backend(args.backend, args.generated)
    X, y = load_data()
    # warm-up: the first call of each function compiles the Numba backend's kernels
    w0, b0 = np.zeros(X.shape[1]), np.asarray(0.0)
    m.logistic_l2(X[:2], y[:2], w0, b0, args.lam)
    m.logistic_l2_value_and_grad(X[:2], y[:2], w0, b0, args.lam)
    m.logistic_l2_hessian(X[:2], y[:2], w0, b0, args.lam)
    start = time.perf_counter()
    newton_norms = newton(m, X, y, args.lam, args.newton_steps)
    seconds = time.perf_counter() - start
    cg_norms, products = newton_cg(m, X, y, args.lam, args.newton_steps)
    gd_norms = gradient_descent(m, X, y, args.lam, args.gd_steps)
    runs = {"Newton (logistic_l2_hessian)": newton_norms,
            f"Newton-CG (logistic_l2_hvp, {products} products)": cg_norms,
            "gradient descent (step 1/L)": gd_norms}
    if str(args.plot) != "-":
        title = (f"L2-regularised logistic regression, breast cancer (lam = {args.lam:g}, "
                 f"{args.backend})")
        save_plot(args.plot, runs, title)
        print(f"plot written to {args.plot}")
    print(f"Newton: gradient norm {newton_norms[-1]:.1e} after {len(newton_norms) - 1} steps "
          f"in {seconds:.3f} s (Newton-CG {len(cg_norms) - 1} steps, {products} Hessian-vector "
          f"products; gradient descent {gd_norms[-1]:.1e} after {len(gd_norms) - 1}) "
          f"(backend {args.backend})")
    return {"newton": newton_norms, "newton_cg": cg_norms, "gd": gd_norms,
            "hvp_products": products, "seconds": seconds,
            "plot": None if str(args.plot) == "-" else args.plot}


if __name__ == "__main__":
    main()
