"""examples/train_transformer.py: a short run trains specs/transformer.yaml's classifier on
digits on both backends (the loss falls, both backends agree, the plot is written), with
integer labels [B, 1] and no scale argument (the spec's §1b spellings).

Needs the `examples` extra (scikit-learn, tqdm, matplotlib); skipped without it.  The full run
(30 epochs) is the example's own; this keeps the suite fast.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "train_transformer.py"
EPOCHS = 2


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("_example_train_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(example, tmp_path, backend):
    plot = tmp_path / f"transformer_{backend}.png"
    result = example.main(["--backend", backend, "--epochs", str(EPOCHS), "--seed", "0",
                           "--width", "16", "--hidden", "32", "--plot", str(plot),
                           "--no-progress"])
    return result, plot


@pytest.fixture(scope="module")
def runs(example, tmp_path_factory):
    return {b: _run(example, tmp_path_factory.mktemp(b), b) for b in ("numpy", "numba")}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_short_training_run_learns(runs, backend):
    result, plot = runs[backend]
    losses = np.array(result["losses"])
    assert len(losses) == EPOCHS and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] < np.log(10) * 1.2, losses  # from chance level, down
    assert result["accuracy"] > 0.5, result["accuracies"]  # far above chance (0.1)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_labels_are_integers_and_no_scale_is_passed(example):
    """The spec takes y: {shape: [B, 1], dtype: int64} and computes 1 / sqrt(D) itself."""
    import inspect

    (X, y), (X_test, y_test) = example.load_data(0)
    assert X.shape[1:] == (8, 8) and X.dtype == np.float64
    assert y.shape == (len(X), 1) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert y_test.shape == (len(X_test), 1) and y_test.dtype == np.int64
    nn = example.load_backend("numpy", example.DEFAULT_GENERATED)
    params = list(inspect.signature(nn.classifier).parameters)
    assert params[:2] == ["X", "y"] and "scale" not in params
    assert params[2:] == list(example.PARAMS)


def test_backends_agree(runs):
    a, b = runs["numpy"][0], runs["numba"][0]
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-8)
