"""The derivative kinds (DESIGN.md §3b: f_jvp, f_jacobian, f_hvp, f_hessian) in the array-API
module (§3c): the same names and results as the NumPy module, computed in the inputs' library.

Each kind of every function that asks for it (seed 002's affine map and the dictionary learning of
specs/seeds.yaml, specs/logistic.yaml, and tests/test_derivatives.py's spec, which has every op of
the vocabulary and all four kinds) is compared with the NumPy module's on NumPy, array-api-strict
(the standard only), JAX and Dask inputs; Dask results must still be lazy.  Closed forms (seed
002's Jacobian exactly, the row softmax's Jacobian, the logistic regression's Hessian) are checked
against formulas written here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("array_api_compat", reason="the array-API modules need array-api-compat")

import codegen  # noqa: E402
from codegen.compiler import compile_spec  # noqa: E402
from codegen.finite_differences import check_spec, example_dims, random_inputs  # noqa: E402
from codegen.loader import load_spec, load_spec_file  # noqa: E402
from test_derivatives import SPEC as ALL_OPS_SPEC  # noqa: E402  (every op, all four kinds)
from test_derivatives import _args as all_ops_args  # noqa: E402
from test_derivatives import _fix_elementwise  # noqa: E402
from test_xp import LIBRARIES, _lazy_then_computed, to_numpy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

SOFTMAX_SPEC = textwrap.dedent("""\
    module: xp_softmax
    functions:
      sm:
        inputs: {X: [3, 4]}
        derivatives: [jvp, jacobian]
        steps: ["S = softmax(X, axis=1)"]
        outputs: [S]
    """)

SEED_002_JACOBIAN = [[1, 0, 2, 0, 3, 0], [0, 1, 0, 2, 0, 3], [4, 0, 5, 0, 6, 0], [0, 4, 0, 5, 0, 6]]
SEED_002_INPUTS = (np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([[7.0, 8], [10, 11], [12, 13]]),
                   np.array([13.0, 14]))

# the libraries of the comparison (PyTorch and CuPy too where installed)
COMPARED = ["numpy", "array_api_strict", "jax", "dask", "torch"]


def _load(source, backend, path=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a non-scalar first output's warning)
        if path is None:
            return codegen.load_module(source, backend=backend)
        return codegen.load_module(source, backend=backend, path=path)


@pytest.fixture(scope="module")
def modules():
    """{module: (spec, NumPy module, array-API module)} of every spec with derivative kinds."""
    out = {}
    for path in (ROOT / "specs" / "seeds.yaml", ROOT / "specs" / "logistic.yaml"):
        out[path.stem] = (load_spec_file(str(path)), _load(path, "numpy"), _load(path, "array_api"))
    for text, name in ((ALL_OPS_SPEC, "derivs_all.yaml"), (SOFTMAX_SPEC, "xp_softmax.yaml")):
        out[name] = (load_spec(text, name), _load(text, "numpy", name),
                     _load(text, "array_api", name))
    return out


def _inputs(module, spec, fn, rng):
    """Inputs at which every function is smooth (test_derivatives' for its spec)."""
    if module == "derivs_all.yaml":
        return _fix_elementwise(all_ops_args(fn.name, rng))
    return random_inputs(fn, example_dims(spec, fn), rng)


def _cases(modules, library):
    for module, (spec, np_mod, xp_mod) in modules.items():
        for cf in compile_spec(spec).functions:
            fn = cf.function
            kinds = [ref.name for ref in fn.spec.derivatives]
            if not kinds:
                continue
            ops = {op.op for op in fn.program.ops}
            if library == "dask" and ops & {"det", "logdet"}:
                continue  # Dask has no det: a clear error (tests/test_xp.py)
            yield f"{module}:{fn.name}", spec, fn, kinds, np_mod, xp_mod


def _leaves(x):
    if isinstance(x, tuple):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def _same(got, expected, what, library):
    """The array-API module's result (any nesting of tuples) equals the NumPy module's to 1e-12
    relative to each array's scale; Dask's is lazy until computed."""
    got = _lazy_then_computed(got, library)
    got_leaves, expected_leaves = list(_leaves(got)), list(_leaves(expected))
    assert len(got_leaves) == len(expected_leaves), what
    for k, (a, e) in enumerate(zip(got_leaves, expected_leaves)):
        a, e = to_numpy(a), np.asarray(e)
        assert np.all(np.isfinite(e)), (what, k)  # (inputs where every function is smooth)
        assert a.shape == e.shape and a.dtype == np.float64, (what, k, a.shape, e.shape, a.dtype)
        scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-12 * scale, err_msg=f"{what} [{k}]")


@pytest.mark.parametrize("library", COMPARED)
def test_every_kind_equals_the_numpy_modules(modules, library):
    convert = LIBRARIES[library]()
    rng = np.random.default_rng(11)
    seen = set()
    for label, spec, fn, kinds, np_mod, xp_mod in _cases(modules, library):
        args = _inputs(label.split(":")[0], spec, fn, rng)
        xs = [convert(a) for a in args]
        where = [fn.program.inputs.index(w) for w in fn.wrt]
        direction = [rng.normal(size=args[i].shape) for i in where]
        grads_type = getattr(xp_mod, fn.name + "_Grads")
        if library in ("jax", "dask") and label.startswith("derivs_all"):
            # kept fast (JAX compiles each op at each shape it meets): f_hvp pushes tangents
            # through the forward ops too; the other specs have f_jacobian and f_hessian
            kinds = ["hvp"] if "hvp" in kinds else ["jvp"]
        for kind in kinds:
            what = f"{label} {kind} on {library}"
            f_np, f_xp = getattr(np_mod, f"{fn.name}_{kind}"), getattr(xp_mod, f"{fn.name}_{kind}")
            if kind in ("jvp", "hvp"):
                expected = f_np(*args, tuple(direction))
                # the tangents as a tuple of the library's arrays, and as an f_Grads
                _same(f_xp(*xs, tuple(convert(d) for d in direction)), expected, what, library)
                _same(f_xp(*xs, grads_type(*(convert(d) for d in direction))), expected,
                      what + " (f_Grads)", library)
            else:
                _same(f_xp(*xs), f_np(*args), what, library)
            seen.add(kind)
    assert seen == {"jvp", "jacobian", "hvp", "hessian"}


@pytest.mark.parametrize("library", COMPARED)
def test_seed_002_jacobian_exactly_in_each_library(modules, library):
    """Seed 002: d vec(Z) / d vec(W) of Z = A W + B (row-major), its numbers exactly, as the
    library's arrays, and ones(4) @ J = vec(dS/dW) = [5, 5, 7, 7, 9, 9]."""
    convert = LIBRARIES[library]()
    _, _, seeds_xp = modules["seeds"]
    A, W, B = SEED_002_INPUTS
    Z, jac = seeds_xp.affine_jacobian(*(convert(a) for a in SEED_002_INPUTS))
    assert type(jac.W) is type(convert(W)), type(jac.W)
    Z, jac = _lazy_then_computed((Z, jac), library)
    np.testing.assert_array_equal(to_numpy(Z), [[76, 83], [163, 179]])
    np.testing.assert_array_equal(to_numpy(jac.W), SEED_002_JACOBIAN)
    np.testing.assert_array_equal(np.ones(4) @ to_numpy(jac.W), [5, 5, 7, 7, 9, 9])
    np.testing.assert_array_equal(to_numpy(jac.A), np.kron(np.eye(2), W.T))
    np.testing.assert_array_equal(to_numpy(jac.B), np.vstack([np.eye(2), np.eye(2)]))
    # forward mode: column k of the Jacobian is the JVP along the k-th unit tangent of W
    for k in range(6):
        e = np.zeros(6)
        e[k] = 1
        tangents = (convert(np.zeros((2, 3))), convert(e.reshape(3, 2)), convert(np.zeros(2)))
        _, dZ = _lazy_then_computed(seeds_xp.affine_jvp(*(convert(a) for a in SEED_002_INPUTS),
                                                        tangents), library)
        np.testing.assert_array_equal(to_numpy(dZ).ravel(), np.array(SEED_002_JACOBIAN)[:, k])


@pytest.mark.parametrize("library", ["array_api_strict", "dask"])
def test_closed_forms_softmax_jacobian_and_logistic_hessian(modules, library):
    """Row softmax: each row's block of the Jacobian is diag(s) - s s^T.  L2-regularised logistic
    regression (mean log-loss): H_ww = X^T diag(p(1-p)) X / N + lam I, H_wb = X^T p(1-p) / N,
    H_bb = mean(p(1-p)) (p = sigmoid(X w + b))."""
    convert = LIBRARIES[library]()
    rng = np.random.default_rng(12)
    X = rng.normal(size=(3, 4))
    S, jac = _lazy_then_computed(modules["xp_softmax.yaml"][2].sm_jacobian(convert(X)), library)
    e = np.exp(X - X.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    expected = np.zeros((12, 12))
    for r in range(3):
        expected[4 * r:4 * r + 4, 4 * r:4 * r + 4] = np.diag(s[r]) - np.outer(s[r], s[r])
    np.testing.assert_allclose(to_numpy(jac.X), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_numpy(S), s, rtol=1e-12)

    X, y = rng.normal(size=(30, 4)), (rng.random(30) > 0.5) * 1.0
    w, b, lam = rng.normal(size=4), np.array(0.3), np.array(0.1)
    logistic_xp = modules["logistic"][2]
    _, grads, H = _lazy_then_computed(
        logistic_xp.logistic_l2_hessian(*(convert(a) for a in (X, y, w, b, lam))), library)
    p = 1 / (1 + np.exp(-(X @ w + b)))
    d = p * (1 - p) / 30
    expected = np.block([[X.T @ np.diag(d) @ X + 0.1 * np.eye(4), (X.T @ d)[:, None]],
                         [(X.T @ d)[None, :], np.array([[d.sum()]])]])
    np.testing.assert_allclose(to_numpy(H), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(grads.w), X.T @ (p - y) / 30 + 0.1 * w, rtol=1e-12)


def test_jax_jit_compiles_the_hvp():
    convert = LIBRARIES["jax"]()
    import jax

    module = _load(ROOT / "specs" / "logistic.yaml", "array_api")
    rng = np.random.default_rng(13)
    args = [rng.normal(size=(9, 6)), (rng.random(9) > 0.5) * 1.0, rng.normal(size=6),
            np.array(0.2), np.array(0.5)]
    v = (rng.normal(size=6), np.array(1.5))
    expected = module.logistic_l2_hvp(*args, v)[2]
    got = jax.jit(module.logistic_l2_hvp)(*(convert(a) for a in args), tuple(map(convert, v)))[2]
    np.testing.assert_allclose(np.asarray(got.w), expected.w, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got.b), expected.b, rtol=1e-12)


@pytest.mark.parametrize("library", ["numpy", "array_api_strict", "jax"])
def test_tangents_must_be_a_tuple_or_grads_not_one_array(modules, library):
    convert = LIBRARIES[library]()
    _, _, logistic_xp = modules["logistic"]
    rng = np.random.default_rng(14)
    args = [convert(a) for a in (rng.normal(size=(5, 6)), np.ones(5), np.ones(6), np.array(0.0),
                                 np.array(1.0))]
    for call in (logistic_xp.logistic_l2_jvp, logistic_xp.logistic_l2_hvp):
        with pytest.raises(ValueError, match="one array per input of w, b"):
            call(*args, convert(np.ones(2)))  # one array with a length of 2: not a tuple of 2
        with pytest.raises(ValueError, match=r"tangent of w has shape \(5,\); expected \[D\]"):
            call(*args, (convert(np.ones(5)), convert(np.array(1.0))))
    with pytest.raises(ValueError, match="different array libraries"):
        logistic_xp.logistic_l2_jvp(*args, (convert(np.ones(6)), LIBRARIES["dask"]()(np.ones(()))))


def test_dask_jacobian_and_hessian_stay_lazy_and_do_not_compute(modules, monkeypatch):
    """Building the matrices never computes a Dask array (no item assignment, no size query
    that would run the graph): with computing forbidden, the results are still made."""
    import dask
    import dask.array as da

    convert = LIBRARIES["dask"]()
    _, _, seeds_xp = modules["seeds"]
    rng = np.random.default_rng(15)

    def refuse(*a, **k):
        raise AssertionError("computed while building the graph")

    with dask.config.set(scheduler=refuse):
        _, jac = seeds_xp.affine_jacobian(*(convert(a) for a in SEED_002_INPUTS))
        X, D, R = (convert(rng.normal(size=s)) for s in ((4, 5), (4, 3), (3, 5)))
        _, _, H = seeds_xp.dictionary_learning_hessian(X, D, R)
    assert isinstance(jac.W, da.Array) and isinstance(H, da.Array) and H.shape == (27, 27)
    np.testing.assert_array_equal(jac.W.compute(), SEED_002_JACOBIAN)


def test_gradcheck_checks_the_kinds_of_the_array_api_module(tmp_path):
    """--gradcheck --backend array_api checks every kind asked for (each against differences)."""
    proc = subprocess.run([sys.executable, "-m", "codegen", str(ROOT / "specs" / "logistic.yaml"),
                           str(ROOT / "specs" / "seeds.yaml"), "-o", str(tmp_path),
                           "--backend", "array_api", "--gradcheck"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for module, fn, kind, value in (("logistic", "logistic_l2", "jvp", "loss"),
                                    ("logistic", "logistic_l2", "hvp", "loss"),
                                    ("logistic", "logistic_l2", "hessian", "loss"),
                                    ("seeds", "affine", "jvp", "Z"),
                                    ("seeds", "affine", "jacobian", "Z"),
                                    ("seeds", "dictionary_learning", "hvp", "f"),
                                    ("seeds", "dictionary_learning", "hessian", "f")):
        assert re.search(rf"{module}_xp\.{fn} +{kind} d{value} +\S+ +ok", proc.stdout), (
            module, fn, kind, proc.stdout)
    assert "FAIL" not in proc.stdout
    spec = load_spec(textwrap.dedent(ALL_OPS_SPEC), "derivs_all.yaml")
    results = [r for r in check_spec(spec, backend="array_api") if r.kind not in ("value", "gradient")]
    assert len(results) == 4 * 4 + 2 and all(r.ok for r in results), results


def test_generated_modules_have_the_kinds_and_only_the_standard():
    """generated/*_xp.py (regenerated with --backend all) has each kind the spec asks for, and
    its derivative functions call no NumPy and update nothing in place."""
    for name, kinds in (("seeds", {"affine": ("jvp", "jacobian"),
                                   "dictionary_learning": ("hvp", "hessian")}),
                        ("logistic", {"logistic_l2": ("jvp", "hvp", "hessian")})):
        source = (ROOT / "generated" / f"{name}_xp.py").read_text()  # (fresh: test_generated)
        tree = ast.parse(source)
        defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        for fn, fn_kinds in kinds.items():
            for kind in fn_kinds:
                node = defined[f"{fn}_{kind}"]
                for inner in ast.walk(node):
                    assert not isinstance(inner, ast.AugAssign), node.name
                    assert not (isinstance(inner, ast.Assign)
                                and any(isinstance(t, ast.Subscript) for t in inner.targets))
                    assert not (isinstance(inner, ast.Name) and inner.id == "np"), node.name
        for helper in ("_jacobian", "_hessian", "_basis"):
            for inner in ast.walk(defined[helper]):
                assert not isinstance(inner, ast.AugAssign) or isinstance(inner.target, ast.Name)
                assert not (isinstance(inner, ast.Assign)
                            and any(isinstance(t, ast.Subscript) for t in inner.targets)), helper


LABELS_SPEC = textwrap.dedent("""\
    module: xp_labels_derivs
    functions:
      ce:
        inputs:
          Z: [5, 3]
          y: {shape: [5, 1], dtype: int64}
        wrt: [Z]
        derivatives: [jvp, jacobian, hvp, hessian]
        steps:
          - logp = log_softmax(Z, axis=1)
          - loss = -sum(take_along_axis(logp, y, axis=1)) / 5
        outputs: [loss]
    """)


@pytest.mark.parametrize("backend, library", [("numpy", "numpy"), ("array_api", "numpy"),
                                              ("array_api", "array_api_strict")])
def test_labels_keep_their_dtype_in_the_derivative_kinds(backend, library):
    """Integer labels are checked as labels by f_jvp, f_hvp, f_hessian (they were converted to
    floats, which take_along_axis refuses): mean cross-entropy's gradient (p - onehot) / N and
    Hessian blockdiag(diag(p) - p p^T) / N."""
    module = _load(LABELS_SPEC, backend, "xp_labels_derivs.yaml")
    convert = LIBRARIES[library]()
    rng = np.random.default_rng(16)
    Z, y, V = rng.normal(size=(5, 3)), rng.integers(0, 3, (5, 1)), rng.normal(size=(5, 3))
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.eye(3)[y[:, 0]]
    H = np.zeros((15, 15))
    for r in range(5):
        H[3 * r:3 * r + 3, 3 * r:3 * r + 3] = (np.diag(p[r]) - np.outer(p[r], p[r])) / 5
    Zx, yx = convert(Z), convert(y)
    _, dout = module.ce_jvp(Zx, yx, (convert(V),))
    np.testing.assert_allclose(to_numpy(dout), np.sum((p - onehot) * V) / 5, rtol=1e-12)
    _, grads, hv = module.ce_hvp(Zx, yx, (convert(V),))
    np.testing.assert_allclose(to_numpy(grads.Z), (p - onehot) / 5, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_numpy(hv.Z).ravel(), H @ V.ravel(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_numpy(module.ce_hessian(Zx, yx)[2]), H, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_numpy(module.ce_jacobian(Zx, yx)[1].Z),
                               ((p - onehot) / 5).reshape(1, 15), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="input y must be an array of int64"):
        module.ce_jvp(Zx, convert(y * 1.0), (convert(V),))
