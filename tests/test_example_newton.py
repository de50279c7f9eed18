"""examples/newton_logistic.py: Newton's method with the generated Hessian (and Newton-CG with
generated Hessian-vector products) reaches a gradient norm below 1e-8 within 15 steps on
scikit-learn's breast cancer data, on both backends.

Needs the `examples` extra (scikit-learn, matplotlib); skipped without it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "newton_logistic.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("_example_newton_logistic", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _check(result, backend, capsys):
    newton, cg, gd = result["newton"], result["newton_cg"], result["gd"]
    assert newton[-1] < 1e-8 and len(newton) - 1 <= 15, newton
    assert cg[-1] < 1e-8 and len(cg) - 1 <= 15, cg
    assert result["hvp_products"] > 0
    assert gd[-1] > 1e-6  # 100 steps of gradient descent are far from it
    assert np.all(np.diff(newton) < 0), newton  # monotone here (the loss is strongly convex)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"Newton: gradient norm {newton[-1]:.1e} after {len(newton) - 1} steps")
    assert last.endswith(f"(backend {backend})")


def test_newton_converges_numpy(example, tmp_path, capsys):
    plot = tmp_path / "newton.png"
    result = example.main(["--gd-steps", "100", "--plot", str(plot)])
    _check(result, "numpy", capsys)
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.skipif(not (REPO / "generated" / "logistic_numba.py").exists(),
                    reason="generated/logistic_numba.py not generated")
def test_newton_converges_numba_as_numpy(example, capsys):
    pytest.importorskip("numba")
    result = example.main(["--backend", "numba", "--gd-steps", "100", "--plot", "-"])
    _check(result, "numba", capsys)
    reference = example.main(["--gd-steps", "100", "--plot", "-"])
    np.testing.assert_allclose(result["newton"][:5], reference["newton"][:5], rtol=1e-8)


def test_missing_module_says_how_to_generate_it(example, tmp_path):
    with pytest.raises(SystemExit) as info:
        example.main(["--backend", "numba", "--generated", str(tmp_path), "--plot", "-"])
    assert "run python -m codegen specs -o generated --backend all first" in str(info.value)
