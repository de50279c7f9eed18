"""The NumPy module's erf: vectorised, within 1e-15 (relative) of math.erf everywhere; and the
array-API module's, made of the namespace's operations (no host round trip), as accurate."""

import math

import numpy as np
import pytest

import codegen

SPEC = """
module: erf_check
functions:
  f:
    inputs: {x: [N]}
    steps:
      - y = erf(x)
      - loss = sum(y)
    outputs: [loss, y]
"""


@pytest.fixture(scope="module")
def mod():
    return codegen.load_module(SPEC, backend="numpy")


def _points():
    rng = np.random.default_rng(7)
    return np.concatenate([
        rng.standard_normal(20000) * 2,
        rng.uniform(-8, 8, 20000),
        np.linspace(-6, 6, 20001),
        10.0 ** rng.uniform(-320, 2.5, 20000) * rng.choice([-1.0, 1.0], 20000),
        [1.5, -1.5, np.nextafter(1.5, 0), np.nextafter(1.5, 2), 30.0, np.nextafter(30.0, 0),
         1e-310, -5e-324, 5.9, 6.0, 27.0, 1e300, -1e300],
    ])


def test_erf_is_vectorised_not_a_python_call_per_element():
    from codegen import compiler
    from codegen.loader import load_spec

    source = compiler.render(compiler.compile_spec(load_spec(SPEC, "<erf>")), "numpy")
    assert "def _erf(" in source
    assert "frompyfunc" not in source and "vectorize" not in source


def test_erf_matches_math_erf_to_1e_15(mod):
    x = _points()
    y = mod._erf(x)
    ref = np.array([math.erf(v) for v in x])
    assert y.dtype == np.float64 and y.shape == x.shape
    err = np.abs(y - ref)
    normal = np.abs(ref) >= np.finfo(np.float64).tiny
    assert np.max(err[normal] / np.abs(ref[normal])) <= 1e-15
    # a subnormal result has fewer bits: within one unit of its last place (5e-324)
    assert np.max(err[~normal]) <= 5e-324
    assert np.count_nonzero(~normal) > 100


def test_erf_special_values(mod):
    y = mod._erf(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    assert y[0] == 0 and not np.signbit(y[0])
    assert y[1] == 0 and np.signbit(y[1])  # erf(-0) = -0
    assert y[2] == 1.0 and y[3] == -1.0
    assert np.isnan(y[4])


def test_erf_keeps_shape_and_float32(mod):
    x = np.linspace(-3, 3, 24).reshape(2, 3, 4)
    assert mod._erf(x).shape == (2, 3, 4)
    y32 = mod._erf(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.ravel(), [math.erf(v) for v in x.astype(np.float32).ravel()],
                               rtol=1e-6)
    assert mod._erf(np.float64(0.5)) == pytest.approx(math.erf(0.5), rel=1e-15)


def test_erf_in_a_function_and_its_gradient(mod):
    x = np.array([-3.0, -0.2, 0.0, 0.7, 2.5])
    (loss, y), grads = mod.f_value_and_grad(x)
    np.testing.assert_allclose(y, [math.erf(v) for v in x], rtol=1e-15, atol=0)
    np.testing.assert_allclose(grads.x, 2 / math.sqrt(math.pi) * np.exp(-x * x), rtol=1e-14)


@pytest.fixture(scope="module")
def xp_mod():
    pytest.importorskip("array_api_compat")
    return codegen.load_module(SPEC, backend="array_api")


def test_the_array_api_erf_computes_in_the_namespace_as_accurately(xp_mod):
    """array-api-strict has no erf: the module's own, of the standard's operations only, within
    1e-15 of math.erf (a subnormal result within 5e-324), the special values and float32 kept."""
    xs = pytest.importorskip("array_api_strict")
    source = codegen.generate_source(SPEC, backend="array_api")
    assert "vectorize" not in source and "np.asarray" not in source.split("def _erf(")[1]
    x = _points()
    y = np.asarray(xp_mod._erf(xs, xs.asarray(x)))
    ref = np.array([math.erf(v) for v in x])
    err = np.abs(y - ref)
    normal = np.abs(ref) >= np.finfo(np.float64).tiny
    assert np.max(err[normal] / np.abs(ref[normal])) <= 1e-15
    assert np.max(err[~normal]) <= 5e-324
    special = np.asarray(xp_mod._erf(xs, xs.asarray([0.0, -0.0, np.inf, -np.inf, np.nan])))
    assert special[0] == 0 and not np.signbit(special[0]) and np.signbit(special[1])
    assert special[2] == 1.0 and special[3] == -1.0 and np.isnan(special[4])
    x32 = np.linspace(-40, 40, 8001, dtype=np.float32)
    y32 = xp_mod._erf(xs, xs.asarray(x32))
    assert y32.dtype == xs.float32
    np.testing.assert_allclose(np.asarray(y32), [math.erf(v) for v in x32], rtol=1e-6, atol=1e-7)
