"""Values of both backends against a direct NumPy computation of each formula (an oracle that
shares nothing with codegen), and gradients against each other and finite differences.

The functions of one dtype are batched into one spec, so Numba compiles one module (each
kernel compiles on its first call). Each case is a regression test of issue 11: the Numba value
bugs (a mean off by K**2, outputs aliasing a buffer the backward overwrites, reductions to a
scalar or with kept dims that did not compile, a forward kernel using a name it never defined),
the float32 gradients that came back float64, and constant exponents that were refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, numeric_grad

import codegen

DIMS = {"N": 3, "K": 4, "M": 5}  # different sizes, so that N*K and N/K mistakes show


def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    y = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return y if keepdims else np.squeeze(y, axis=axis)


def _softmax(x, axis=None):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


relu = lambda x: np.maximum(x, 0)  # noqa: E731

# name: (inputs, steps, outputs, oracle(**inputs) -> outputs)
CASES: dict[str, tuple[dict, list[str], list[str], object]] = {
    # the mean divided by N and multiplied by K ("loss / N * K")
    "mean_all": ({"X": ["N", "K"]}, ["loss = mean(X ** 2)"], ["loss"],
                 lambda X: np.mean(X ** 2)),
    "psnr": ({"X": ["N", "K"], "Y": ["N", "K"]},
             ["mse = mean((X - Y) ** 2)", "loss = log(mse)"], ["loss"],
             lambda X, Y: np.log(np.mean((X - Y) ** 2))),
    "mean_axis0": ({"X": ["N", "K"]}, ["m = mean(X * X, axis=0)", "loss = sum(m * m)"],
                   ["loss", "m"], lambda X: (np.sum(np.mean(X * X, 0) ** 2), np.mean(X * X, 0))),
    "mean_axis1_keep": ({"X": ["N", "K"]}, ["m = mean(tanh(X), axis=1, keepdims=True)",
                                            "loss = sum(exp(m))"], ["loss", "m"],
                        lambda X: (np.sum(np.exp(np.mean(np.tanh(X), 1, keepdims=True))),
                                   np.mean(np.tanh(X), 1, keepdims=True))),
    "mean_vector": ({"v": ["M"]}, ["loss = log(mean(v * v) + 1)"], ["loss"],
                    lambda v: np.log(np.mean(v * v) + 1)),
    # a sum added into another sum's array: the forward kernel returned a saved name it never
    # bound (NameError: loss_3)
    "sums_added": ({"s": [], "a": ["N"], "b": ["K"]}, ["loss = s * (sum(a) + sum(b))"], ["loss"],
                   lambda s, a, b: s * (np.sum(a) + np.sum(b))),
    "column_sums_added": ({"w": ["K"], "A": ["N", "K"], "B": ["M", "K"]},
                          ["c = sum(A, axis=0) + sum(B * B, axis=0)", "loss = sum(w * c * c)"],
                          ["loss", "c"],
                          lambda w, A, B: (np.sum(w * (A.sum(0) + (B * B).sum(0)) ** 2),
                                           A.sum(0) + (B * B).sum(0))),
    "sums_added_saved": ({"a": ["N"], "b": ["K"]}, ["t = sum(a) + sum(b * b)",
                                                    "loss = t * t"], ["loss"],
                         lambda a, b: (np.sum(a) + np.sum(b * b)) ** 2),
    # an output that is a view of a buffer the fused backward then wrote into
    "transposed_output": ({"A": ["M", "N"], "x": ["N", "K"]}, ["z1 = sigmoid(A @ x)", "z2 = z1.T"],
                          ["z2"], lambda A, x: _sigmoid(A @ x).T),
    "transposed_ride_along": ({"Z": ["N", "K"], "W": ["K", "N"]},
                              ["T = softmax(Z, axis=1).T", "loss = sum(T * W)"], ["loss", "T"],
                              lambda Z, W: (np.sum(_softmax(Z, 1).T * W), _softmax(Z, 1).T)),
    "transposed_step_ride_along": ({"X": ["N", "K"], "w": ["K"]},
                                   ["H = tanh(X * w)", "Ht = H.T", "loss = sum(H * H)"],
                                   ["loss", "Ht"],
                                   lambda X, w: (np.sum(np.tanh(X * w) ** 2), np.tanh(X * w).T)),
    "kept_axis_dropped": ({"X": ["N", "K"], "v": ["N"]},
                          ["l = logsumexp(X, axis=1)", "e = exp(l - v)", "loss = sum(e * l)"],
                          ["loss", "l", "e"],
                          lambda X, v: (np.sum(np.exp(_lse(X, 1) - v) * _lse(X, 1)), _lse(X, 1),
                                        np.exp(_lse(X, 1) - v))),
    # constant arithmetic in an exponent is folded (it was refused: "must be a number")
    "folded_exponents": ({"z": ["K"]}, [
        "y = z ** 2 ** -1 + z ** (1 / 2) * z ** -(3 - 1) + z ** (2 * 3) + z ** sqrt(4.0)",
        "loss = sum(y)"], ["loss", "y"],
        lambda z: (np.sum(z ** 0.5 + z ** 0.5 * z ** -2.0 + z ** 6 + z ** 2.0),
                   z ** 0.5 + z ** 0.5 * z ** -2.0 + z ** 6 + z ** 2.0)),
}


def _reduction_cases() -> dict:
    """Every reduction on every axis, with and without keepdims, each result fed to elementwise
    ops (relu and tanh of a logsumexp to a scalar did not compile: a 0-d array; logsumexp with
    keepdims and no axis called .reshape on a float). One function per shape and axis."""
    out = {}
    for shape in (["M"], ["N", "K"], ["N", 1]):
        for axis in [None, 0] + ([1] if len(shape) == 2 else []):
            kw = "" if axis is None else f", axis={axis}"

            def oracle(x, axis=axis):
                s, m, lse = np.sum(x, axis), np.mean(x, axis), _lse(x, axis)
                s1, m1 = np.sum(x, axis, keepdims=True), np.mean(x, axis, keepdims=True)
                lse1 = _lse(x, axis, True)
                p, q = _softmax(x, axis), np.log(_softmax(x, axis))
                y = relu(lse) + np.tanh(s) * m
                y1 = np.tanh(lse1) * s1 + relu(m1)
                loss = np.sum(y * y) + np.sum(y1 * x) + np.sum(np.tanh(p) * q)
                return loss, s, m, lse, s1, m1, lse1, p, q

            name = f"reduce_{len(shape)}d{'' if shape[-1] != 1 else 'col'}_{axis}"
            out[name] = ({"x": shape}, [
                f"s = sum(x{kw})", f"m = mean(x{kw})", f"lse = logsumexp(x{kw})",
                f"s1 = sum(x{kw}, keepdims=True)", f"m1 = mean(x{kw}, keepdims=True)",
                f"lse1 = logsumexp(x{kw}, keepdims=True)",
                f"p = softmax(x{kw})", f"q = log_softmax(x{kw})",
                "y = relu(lse) + tanh(s) * m", "y1 = tanh(lse1) * s1 + relu(m1)",
                "loss = sum(y * y) + sum(y1 * x) + sum(tanh(p) * q)"],
                ["loss", "s", "m", "lse", "s1", "m1", "lse1", "p", "q"], oracle)
    return out


CASES.update(_reduction_cases())


# float32: every output and gradient keeps the dtype (the folded g = 1 of a broadcast became an
# integer np.broadcast_to(K, (K,)), and a product with it float64)
CASES32: dict[str, tuple[dict, list[str], list[str], object]] = {
    "row_minus_column": ({"u": ["M"], "A": ["M", "K"], "X": ["K", 1]}, ["z1 = u @ A", "z = z1 - X"],
                         ["z"], lambda u, A, X: u @ A - X),
    "tanh_logsumexp": ({"v": ["N"]}, ["loss = tanh(logsumexp(v, axis=0))"], ["loss"],
                       lambda v: np.tanh(_lse(v, 0))),
    "relu_logsumexp_keep": ({"X": ["N", "K"]}, ["l = logsumexp(X, keepdims=True)",
                                                "loss = relu(l) * X"], ["loss", "l"],
                            lambda X: (relu(_lse(X, keepdims=True)) * X, _lse(X, keepdims=True))),
    "mean_of_squares": ({"X": ["N", "K"]}, ["loss = mean(X ** 2)"], ["loss"],
                        lambda X: np.mean(X ** 2)),
    "affine": ({"X": ["N", "K"], "s": []}, ["y = X * 2 + s"], ["y"], lambda X, s: X * 2 + s),
    "outer_product": ({"u": ["N"], "v": ["K"]}, ["Z = outer(u, v) + 1"], ["Z"],
                      lambda u, v: np.outer(u, v) + 1),
    "matrix_vector": ({"A": ["N", "K"], "v": ["K"]}, ["y = A @ v", "z = y.T"], ["z"],
                      lambda A, v: A @ v),
    "inner_sum": ({"v": ["K"], "w": ["K"], "X": ["N", "K"]}, ["loss = v @ w + sum(X, axis=0) @ w"],
                  ["loss"], lambda v, w, X: v @ w + X.sum(0) @ w),
    "trace_mean": ({"S": ["N", "N"]}, ["loss = trace(S) + mean(S, axis=0)"], ["loss"],
                   lambda S: np.trace(S) + S.mean(0)),
    "softmax_columns": ({"X": ["N", "K"]}, ["P = softmax(X, axis=0)"], ["P"],
                        lambda X: _softmax(X, 0)),
}


def _spec(cases: dict, dtype: str = "float64") -> str:
    lines = ["module: values_" + dtype, f"dtype: {dtype}",
             "dims: {" + ", ".join(f"{k}: {v}" for k, v in DIMS.items()) + "}", "functions:"]
    for name, (inputs, steps, outputs, _) in cases.items():
        ins = ", ".join(f"{k}: [{', '.join(map(str, v))}]" for k, v in inputs.items())
        lines += [f"  {name}:", f"    inputs: {{{ins}}}", "    steps:"]
        lines += [f"      - {s}" for s in steps]
        lines += [f"    outputs: [{', '.join(outputs)}]"]
    return "\n".join(lines) + "\n"


_modules: dict = {}


def modules(dtype: str = "float64"):
    if dtype not in _modules:
        text = _spec(CASES if dtype == "float64" else CASES32, dtype)
        _modules[dtype] = (codegen.load_module(text, path=f"values_{dtype}.yaml"),
                           codegen.load_module(text, backend="numba", path=f"values_{dtype}.yaml"))
    return _modules[dtype]


def _inputs(inputs: dict, seed: int, dtype=np.float64) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (rng.uniform(0.5, 1.5, [DIMS.get(d, d) for d in shape])).astype(dtype)
            for k, shape in inputs.items()}


def _tuple(outs, n: int) -> tuple:
    return outs if n > 1 else (outs,)


@pytest.mark.parametrize("name", list(CASES32))
def test_float32_outputs_and_gradients_keep_the_dtype(name):
    inputs, steps, outputs, oracle = CASES32[name]
    args = _inputs(inputs, 4, np.float32)
    expected = _tuple(oracle(**{k: v.astype(np.float64) for k, v in args.items()}), len(outputs))
    f32 = np.dtype(np.float32)
    np_mod, nb_mod = modules("float32")
    for mod in (np_mod, nb_mod):
        label = mod.__name__
        outs, grads = getattr(mod, name + "_value_and_grad")(**args)
        fouts, saved = getattr(mod, name + "_forward")(**args)
        first = _tuple(outs, len(outputs))[0]
        g = np.random.default_rng(5).standard_normal(np.shape(first)).astype(np.float32)
        grads_g = getattr(mod, name + "_backward")(saved, g)
        for what, got in (("f_value_and_grad", outs), ("f_forward", fouts),
                          ("f", getattr(mod, name)(**args))):
            for out, want, o in zip(_tuple(got, len(outputs)), expected, outputs):
                assert np.asarray(out).dtype == f32, f"{label} {what}: {o} is {np.asarray(out).dtype}"
                assert_close(out, want, rtol=2e-5, atol=2e-5, what=f"{label} {what}: {o}")
        for field, a, b in zip(grads._fields, grads, grads_g):
            assert np.asarray(a).dtype == f32, f"{label} d{field} is {np.asarray(a).dtype}"
            assert np.asarray(b).dtype == f32, f"{label} d{field} (backward) is {np.asarray(b).dtype}"
            assert np.shape(a) == np.shape(args[field]) == np.shape(b)
    for (field, a), b in zip(zip(grads._fields, np_mod.__dict__[name + "_value_and_grad"](**args)[1]),
                             nb_mod.__dict__[name + "_value_and_grad"](**args)[1]):
        assert_close(b, a, rtol=1e-4, atol=1e-4, what=f"d{field}: Numba against NumPy")


@pytest.mark.parametrize("name", list(CASES))
def test_values_match_a_direct_numpy_oracle(name):
    inputs, steps, outputs, oracle = CASES[name]
    args = _inputs(inputs, 1)
    expected = _tuple(oracle(**args), len(outputs))
    for mod in modules():
        for what, outs in (("f", getattr(mod, name)(**args)),
                           ("f_forward", getattr(mod, name + "_forward")(**args)[0]),
                           ("f_value_and_grad", getattr(mod, name + "_value_and_grad")(**args)[0])):
            for out, want, o in zip(_tuple(outs, len(outputs)), expected, outputs):
                assert_close(out, want, rtol=1e-12, atol=1e-12,
                             what=f"{mod.__name__} {what}: {o}")


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_finite_differences_of_the_oracle_and_each_other(name):
    inputs, steps, outputs, oracle = CASES[name]
    args = _inputs(inputs, 2)
    keys = list(args)
    first = lambda *xs: np.asarray(_tuple(oracle(*xs), len(outputs))[0])  # noqa: E731
    shape = np.shape(first(*args.values()))
    u = np.random.default_rng(3).standard_normal(shape)
    scalar = lambda xs: float(np.sum(first(*xs) * u))  # noqa: E731  <u, f(x)>
    np_mod, nb_mod = modules()
    for mod in (np_mod, nb_mod):
        _, grads = getattr(mod, name + "_value_and_grad")(**args)
        _, saved = getattr(mod, name + "_forward")(**args)
        grads_u = getattr(mod, name + "_backward")(saved, u if shape else float(u))
        for i, k in enumerate(keys):
            xs = [args[k2].copy() for k2 in keys]
            numeric = numeric_grad(scalar, xs, i)
            assert_close(grads_u[i], numeric, rtol=1e-5, atol=1e-6, what=f"{mod.__name__} d{k}")
            numeric_1 = numeric_grad(lambda xs: float(np.sum(first(*xs))), xs, i)  # g = 1
            assert_close(grads[i], numeric_1, rtol=1e-5, atol=1e-6,
                         what=f"{mod.__name__} d{k} (value_and_grad)")
            assert np.asarray(grads[i]).dtype == np.float64


SHARED = """
module: shared_cotangent
functions:
  ridge:
    inputs: {X: [3, 2], Y: [3, 2]}
    steps: [loss = sum((X + Y) ** 2) + sum(X * X)]
    outputs: [loss]
  cancel:
    inputs: {X: [3, 2], Y: [3, 2]}
    steps: [loss = sum((Y - X + X) ** 2)]
    outputs: [loss]
  wave:
    inputs: {X: [3, 2], Y: [3, 2]}
    steps: [loss = sum(sin(X + Y)) - sum(X)]
    outputs: [loss]
  spread:
    inputs: {X: [3, 2], Y: [3, 2]}
    steps:
      - loss = sum(tanh(Y + sum(X, axis=0))) + sum(Y)
    outputs: [loss]
"""


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
def test_a_cotangent_shared_by_two_inputs_is_not_accumulated_into(backend):
    """X + Y passes one cotangent to X and to Y; X's other terms were then added into that
    array (``dX += X``) while Y's gradient still named it: dY came back as dX, silently
    (held-out round 3, #17); or while a sum over its rows, inlined into a later line, still had
    to read it (spread). Closed forms, through f_value_and_grad and f_backward."""
    if backend == "array_api":
        pytest.importorskip("array_api_compat")
    m = codegen.load_module(SHARED, backend=backend)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    cases = {"ridge": (2 * (X + Y) + 2 * X, 2 * (X + Y)), "cancel": (0 * X, 2 * Y),
             "wave": (np.cos(X + Y) - 1, np.cos(X + Y))}
    t = 1 - np.tanh(Y + X.sum(axis=0)) ** 2  # spread: a sum over rows read on a later line
    cases["spread"] = (np.broadcast_to(t.sum(axis=0), X.shape), t + 1)
    for name, (dX, dY) in cases.items():
        _, grads = getattr(m, f"{name}_value_and_grad")(X, Y)
        assert_close(np.asarray(grads.X), dX, rtol=1e-12, atol=1e-12)
        assert_close(np.asarray(grads.Y), dY, rtol=1e-12, atol=1e-12)
        _, saved = getattr(m, f"{name}_forward")(X, Y)
        back = getattr(m, f"{name}_backward")(saved, 0.5)
        assert_close(np.asarray(back.X), 0.5 * dX, rtol=1e-12, atol=1e-12)
        assert_close(np.asarray(back.Y), 0.5 * dY, rtol=1e-12, atol=1e-12)
