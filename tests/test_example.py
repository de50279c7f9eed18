"""examples/train_digits.py: a short training run reaches >= 95% test accuracy on digits.

Needs the `examples` extra (scikit-learn, tqdm, matplotlib); skipped without it.
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
EXAMPLE = REPO / "examples" / "train_digits.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 10 epochs: over 24 (split seed, init seed) pairs the worst test accuracy was 0.9639 (0.9611 at
# 8 epochs), and the epoch-mean training loss decreased at every epoch.
EPOCHS = 10


def _load_example():
    spec = importlib.util.spec_from_file_location("_example_train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


def _run(example, tmp_path, backend):
    plot = tmp_path / f"digits_{backend}.png"
    argv = [
        "--backend",
        backend,
        "--epochs",
        str(EPOCHS),
        "--seed",
        "0",
        "--plot",
        str(plot),
        "--no-progress",
    ]
    return example.main(argv), plot


def _check_result(result, plot, capsys, backend):
    assert result["accuracy"] >= 0.95, result["accuracies"]
    assert len(result["losses"]) == len(result["accuracies"]) == EPOCHS
    losses = np.array(result["losses"])
    assert np.all(np.isfinite(losses))
    assert np.all(np.diff(losses) < 0), losses
    assert losses[-1] < 0.25 * losses[0], losses
    assert result["seconds"] > 0
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    import matplotlib.image

    image = matplotlib.image.imread(plot)  # decodes the whole file
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(
        f"test accuracy {result['accuracy']:.4f} after {EPOCHS} epochs in "
    )
    assert last.endswith(f" s (backend {backend})")


@pytest.fixture(scope="module")
def numpy_run(example, tmp_path_factory):
    return _run(example, tmp_path_factory.mktemp("numpy"), "numpy")


def test_numpy_backend_reaches_95_percent(numpy_run, capsys, example, tmp_path):
    result, plot = _run(example, tmp_path, "numpy")
    _check_result(result, plot, capsys, "numpy")
    # Same seed, same numbers.
    np.testing.assert_array_equal(result["losses"], numpy_run[0]["losses"])


@pytest.mark.skipif(
    not (REPO / "generated" / "nn_numba.py").exists(),
    reason="generated/nn_numba.py not generated",
)
def test_numba_backend_matches_numpy(numpy_run, capsys, example, tmp_path):
    pytest.importorskip("numba")
    result, plot = _run(example, tmp_path, "numba")
    _check_result(result, plot, capsys, "numba")
    # Same algorithm in float64: the training curves agree to rounding.
    np.testing.assert_allclose(result["losses"], numpy_run[0]["losses"], rtol=1e-6)


def test_missing_numba_module_says_how_to_generate_it(example, tmp_path):
    with pytest.raises(SystemExit) as info:
        example.main(
            [
                "--backend",
                "numba",
                "--generated",
                str(tmp_path),
                "--epochs",
                "1",
                "--plot",
                "-",
            ]
        )
    assert "run python -m codegen specs -o generated --backend all first" in str(
        info.value
    )


def test_plot_goes_to_the_current_directory_never_over_the_committed_one(
        example, tmp_path, monkeypatch):
    committed = REPO / "examples" / "train_digits.png"
    before = committed.read_bytes() if committed.exists() else None
    monkeypatch.chdir(tmp_path)
    result = example.main(["--epochs", "1", "--no-progress"])
    assert (tmp_path / "train_digits.png").read_bytes().startswith(PNG_SIGNATURE)
    assert result["plot"] is not None and Path(result["plot"]).resolve() == (
        tmp_path / "train_digits.png")
    after = committed.read_bytes() if committed.exists() else None
    assert after == before
