"""The Numba backend's elementary functions (templates/helpers/numba_math.py.j2).

They replace libm's per-element calls in the kernels' loops.  Checked here: agreement with
NumPy within a few ulp over wide ranges, NumPy's special values exactly (NaN, +-inf, -0.0,
overflow, subnormals), float32, and that a loop calling them compiles to packed SIMD code
with no call to a math library.
"""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest

import codegen

numba = pytest.importorskip("numba")

FUNCTIONS = {  # step -> NumPy reference
    "exp": np.exp,
    "tanh": np.tanh,
    # from exp(-|x|), as the NumPy backend's _sigmoid (exp(-logaddexp(0, -x)) loses |x| ulps)
    "sigmoid": lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                  np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
    "log": np.log,
    "log1p": np.log1p,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "sin": np.sin,
    "cos": np.cos,
}
MPMATH = {"exp": mpmath.exp, "tanh": mpmath.tanh, "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
          "log": mpmath.log, "log1p": mpmath.log1p, "softplus": lambda v: mpmath.log(1 + mpmath.exp(v)),
          "sin": mpmath.sin, "cos": mpmath.cos}
mpmath.mp.prec = 3000  # enough for sin and cos of the largest doubles
ULP = 4  # NumPy's own functions are within about 1 ulp; ours within 1.7 (measured vs mpmath)


def _spec(n: int, dtype: str = "float64") -> str:
    steps = "\n".join(f"      - {name.upper()} = {name}(X)" for name in FUNCTIONS)
    outputs = ", ".join(name.upper() for name in FUNCTIONS)
    return (f"module: mathcheck\ndtype: {dtype}\ndims: {{N: {n}}}\nfunctions:\n  f:\n"
            f"    inputs: {{X: [N]}}\n    wrt: [X]\n    steps:\n{steps}\n"
            f"      - loss = sum(EXP)\n    outputs: [loss, {outputs}]\n")


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    n = 4000
    sign = rng.choice([-1.0, 1.0], n)
    sets = [
        rng.uniform(-50, 50, n),
        sign * 10.0 ** rng.uniform(-300, 300, n),
        rng.uniform(-1, 1, n),
        sign * 10.0 ** rng.uniform(-20, -5, n),
        rng.integers(1, 2**52, n).view(np.float64) * sign,  # subnormals
        rng.uniform(709.7, 709.8, n),  # exp overflows
        sign * 10.0 ** rng.uniform(6, 308, n),  # sin and cos: Payne-Hanek reduction
        np.round(rng.uniform(-1e5, 1e5, n)) * (np.pi / 2),  # near multiples of pi/2
        rng.uniform(-745.2, -700, n),  # exp underflows to subnormals
        rng.uniform(-40, -30, n),
        rng.uniform(-0.9, 0.9, n),  # tanh's and log1p's branch points
        rng.uniform(15, 25, n) * sign,
        -1.0 + rng.uniform(0, 1e-3, n),
        1.0 + rng.uniform(-1e-3, 1e-3, n),
    ]
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, -1.7976931348623157e308, 709.782712893384, -745.1332191019411,
               -745.1332191019412, 22.0, -22.0, 0.35, 0.8, 746.0, -746.0, 1e-300, -1e-300, 1e22,
               6381956970095103 * 2.0**797, 2.0**1023, 7.450580596923828e-09, 1e-8]
    return np.concatenate([np.array(special), *sets])


@pytest.fixture(scope="module")
def module():
    x = _inputs()
    return codegen.load_module(_spec(x.size), backend="numba"), x


def _assert_close_ulp(got: np.ndarray, want: np.ndarray, x: np.ndarray, name: str) -> None:
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    zero = want == 0
    assert np.array_equal(np.signbit(got[zero]), np.signbit(want[zero])), f"{name}: sign of zero"
    finite = np.isfinite(want) & np.isfinite(got) & ~same
    ulps = np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want[finite]))
    bad = ~same
    bad[finite] = ulps > ULP
    for k in np.flatnonzero(bad & np.isfinite(got)):  # NumPy is not always right: ask mpmath
        exact = MPMATH[name](mpmath.mpf(float(x[k])))
        if abs(mpmath.mpf(float(got[k])) - exact) <= ULP * np.spacing(abs(float(exact))):
            bad[k] = False
    assert not bad.any(), (f"{name}: {bad.sum()} values differ from NumPy, e.g. x = "
                           f"{x[bad][:3]!r}: {got[bad][:3]!r} vs {want[bad][:3]!r}")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_matches_numpy_within_a_few_ulp_and_special_values_exactly(module, name):
    mod, x = module
    outs, _ = mod.f_forward(x)
    got = outs[1 + list(FUNCTIONS).index(name)]
    with np.errstate(all="ignore"):
        want = FUNCTIONS[name](x)
    _assert_close_ulp(got, want, x, name)


def test_float32_within_one_float32_ulp():
    x = np.random.default_rng(1).uniform(-30, 30, 3000).astype(np.float32)
    mod = codegen.load_module(_spec(x.size, "float32"), backend="numba", path="mathcheck32.yaml")
    outs, _ = mod.f_forward(x)
    for name, got in zip(FUNCTIONS, outs[1:]):
        assert got.dtype == np.float32
        with np.errstate(all="ignore"):
            want = FUNCTIONS[name](x.astype(np.float64))
        rounded = want.astype(np.float32)
        ok = (got == rounded) | (np.abs(got - rounded) <= np.spacing(np.abs(rounded)))
        ok |= np.isnan(got) & np.isnan(rounded)
        assert ok.all(), name


def _called(asm: str) -> list[str]:
    """Symbols the assembly calls (Numba loads a callee's address into a register first)."""
    lines = asm.splitlines()
    out = []
    for i, line in enumerate(lines):
        if "\tcall" in line:
            target = line.strip()
            reg = re.search(r"\*%(\w+)", line)
            if reg:
                for j in range(i - 1, max(i - 60, 0), -1):
                    m = re.search(r"movabsq\s+\$(\S+),\s+%" + reg.group(1) + r"\b", lines[j])
                    if m:
                        target = m.group(1)
                        break
            out.append(target)
    return out


def test_fused_loops_are_vectorised_without_libm_calls():
    """One fused loop with every helper: packed SIMD code, no call left."""
    text = ("module: vec\ndims: {M: 64, N: 64}\nfunctions:\n  f:\n    inputs: {X: [M, N], W: [M, N]}\n"
            "    wrt: [X, W]\n    steps:\n      - A = tanh(X * W) + sigmoid(X) / (1 + W * W) + sin(X) * cos(W)\n"
            "      - B = softplus(A) + log1p(exp(-A * A))\n      - loss = sum(B ** 2)\n"
            "    outputs: [loss]\n")
    mod = codegen.load_module(text, backend="numba")
    rng = np.random.default_rng(2)
    X, W = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    mod.f_value_and_grad(X, W)
    # compiled afresh: a kernel loaded from Numba's cache has no assembly to inspect
    kernel = numba.njit(error_model="numpy")(mod._f_value_and_grad.py_func)
    kernel(X, W)
    asm = kernel.inspect_asm(kernel.signatures[0])
    libm = [c for c in _called(asm) if "_f_value_and_grad" not in c  # (its Python wrapper)
            # libm, or a helper LLVM did not inline
            and re.search(r"^(tanh|exp|expm1|log|log1p|logaddexp|sin|cos|pow|fma)f?$|"
                          r"_codegen_numba_kernels\d+_[a-z]", c)]
    assert not libm, libm
    packed = [line for line in asm.splitlines()
              if re.search(r"\tv\w+pd\s", line) and re.search(r"%[yz]mm", line)]
    assert len(packed) > 50 and any("vdivpd" in line for line in packed)


def test_sin_and_cos_of_one_argument_share_one_reduction():
    text = ("module: trig\ndims: {N: 300}\nfunctions:\n  f:\n    inputs: {X: [N]}\n    wrt: [X]\n"
            "    steps:\n      - S = sin(X)\n      - loss = sum(S * cos(X) + sin(2 * X))\n"
            "    outputs: [loss, S]\n")
    src = codegen.generate_source(text, backend="numba")
    vg = src[src.index("def _f_value_and_grad"):src.index("def f(")]
    # (sin X, cos X) forward, (sin 2X, cos 2X) for the grad; the loop twice, the short reduction
    # for X, read from memory, and the long one for 2X, computed in the loop
    assert vg.count("= _sincos(") == 4
    assert vg.count("_sincos(X[i], True)") == vg.count("_sincos(X[i], False)") == 1
    assert vg.count(", False)") == 3  # X's long reduction, and 2X's in both loops
    ref, nb = codegen.load_module(text), codegen.load_module(text, backend="numba")
    x = np.concatenate([np.random.default_rng(3).uniform(-1e3, 1e3, 296), [0.0, -0.0, 1e300, np.nan]])
    (l0, s0), (g0,) = ref.f_value_and_grad(x)
    (l1, s1), (g1,) = nb.f_value_and_grad(x)
    np.testing.assert_array_equal(np.signbit(s1[296:298]), [False, True])
    for a, b in ((s0, s1), (g0, g1)):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13, equal_nan=True)


def test_softplus_and_its_derivative_share_one_exp():
    """exp(x - softplus(x)), softplus's derivative, comes with softplus from one exp(-|x|), as
    an accurate sigmoid (exp of the difference loses about |x| ulps for large x)."""
    text = ("module: splus\ndims: {N: 300}\nfunctions:\n  f:\n    inputs: {X: [N]}\n    wrt: [X]\n"
            "    steps:\n      - B = softplus(X)\n      - S = exp(X - B)\n      - loss = sum(B * B)\n"
            "    outputs: [loss, B, S]\n")
    src = codegen.generate_source(text, backend="numba")
    vg = src[src.index("def _f_value_and_grad"):src.index("def f(")]
    assert vg.count("= _softplus_sigmoid(") == 1 and "_exp(" not in vg  # forward S, backward dB
    assert "def _softplus(" not in src  # no other softplus left in the module
    x = _inputs()
    mod = codegen.load_module(text.replace("{N: 300}", f"{{N: {x.size}}}"), backend="numba")
    (loss, B, S), (dX,) = mod.f_value_and_grad(x)
    with np.errstate(all="ignore"):
        _assert_close_ulp(B, FUNCTIONS["softplus"](x), x, "softplus")
        # (at x = inf, NaN: the NumPy module's exp(inf - inf); test_runtime.py's rule)
        want = np.where(x == np.inf, np.nan, FUNCTIONS["sigmoid"](x))
        _assert_close_ulp(S, want, x, "sigmoid")
    ref = codegen.load_module(text.replace("{N: 300}", "{N: 200}"))
    y = np.random.default_rng(4).uniform(-40, 40, 200)
    _, (g0,) = ref.f_value_and_grad(y)
    _, (g1,) = mod.f_value_and_grad(np.concatenate([y, x[200:]]))
    np.testing.assert_allclose(g1[:200], g0, rtol=1e-13)


def test_sin_and_cos_take_the_short_reduction_when_every_argument_is_below_1_6e6():
    """fdlibm's medium reduction, used when a check before the loop finds every |x| < 1.6e6,
    is as accurate as Payne-Hanek, near multiples of pi/2 included."""
    rng = np.random.default_rng(5)
    n = 4000
    x = np.concatenate([
        [np.nan, 0.0, -0.0, 5e-324, 1e-300, 7.450580596923828e-09, 1e-8, 1599999.9999999998],
        rng.uniform(-1.6e6, 1.6e6, n), rng.uniform(-10, 10, n),
        np.round(rng.uniform(-1e6, 1e6, n)) * (np.pi / 2),
        np.nextafter(np.round(rng.uniform(-1e6, 1e6, n)) * (np.pi / 2), np.inf),
    ])
    text = ("module: trigshort\nfunctions:\n  f:\n    inputs: {X: [N]}\n    steps:\n"
            "      - S = sin(X)\n      - C = cos(X)\n      - loss = sum(S * C)\n"
            "    outputs: [loss, S, C]\n")
    src = codegen.generate_source(text, backend="numba")
    assert "short = _short_reduction(X)" in src and "_sincos(X[i], True)" in src
    mod = codegen.load_module(text, backend="numba")
    assert mod._runtime._KERNELS._short_reduction(x) and not mod._runtime._KERNELS._short_reduction(
        np.append(x, 1.6e6))
    for arg in (x, np.append(x, 1e300)):  # short, then the long reduction for the same values
        (_, S, C), _ = mod.f_value_and_grad(arg)
        _assert_close_ulp(S[:x.size], np.sin(x), x, "sin")
        _assert_close_ulp(C[:x.size], np.cos(x), x, "cos")
        np.testing.assert_array_equal(np.signbit(S[1:3]), [False, True])
