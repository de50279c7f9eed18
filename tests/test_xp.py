"""The array-API module (``--backend array_api``, ``<module>_xp.py``) on every library installed.

Each library's results are compared with the NumPy module's on the same data: values, the
gradients of ``f_value_and_grad`` and those of ``f_forward`` + ``f_backward`` with a random
cotangent.  array-api-strict (the standard's reference implementation, which refuses anything
outside it) proves the module uses only the standard; Dask results must stay lazy; one test runs
the gradients on a real ``dask.distributed.LocalCluster`` with the data chunked along the batch.
"""

from __future__ import annotations

import ast
import re
import importlib.util
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("array_api_compat", reason="the array-API modules need array-api-compat")

import codegen  # noqa: E402
from codegen.compiler import compile_spec, render  # noqa: E402
from codegen.emit_xp import XP_RENDER  # noqa: E402
from codegen.finite_differences import example_dims, random_inputs  # noqa: E402
from codegen.loader import load_spec, load_spec_file  # noqa: E402
from codegen.ops import OPS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# Every elementwise function, reduction and normalisation, broadcasting both ways, numbers and
# dims in steps, a ride-along output, a non-scalar first output, and the subgradient points.
OPS_SPEC = textwrap.dedent("""\
    module: xp_ops
    dims: {N: 6, D: 4, K: 3}
    functions:
      elementwise:
        inputs: {X: [N, D], w: [D], c: [N, 1], s: []}
        steps:
          - A = sigmoid(X * w) + softplus(X - c) + relu(X) * s
          - B = tanh(A) + sin(X) * cos(c) + exp(-square(X)) + log1p(X * X) + abs(X) ** 3
          - C = sqrt(X * X + 1) + log(abs(X) + 2) / s
          - loss = sum(B * C) + mean(A, axis=0) @ w
        outputs: [loss, A]
      normalise:
        inputs: {X: [N, K], Y: [N, K], W: [K, K]}
        steps:
          - Z = X @ W
          - P = softmax(Z, axis=1)
          - L = log_softmax(Z, axis=0)
          - loss = sum(P * Y) - mean(sum(Y * L, axis=1)) + sum(logsumexp(Z, axis=1, keepdims=True)) + logsumexp(Z)
        outputs: [loss, P]
      vector:
        inputs: {u: [D], v: [K], M: [D, K]}
        steps:
          - O = outer(u, v) * M
          - loss = sum(O ** 2) + u @ M @ v + sum(u.T * u) / 4
        outputs: [O, loss]
      matrices:
        inputs: {A: [D, D], x: [D]}
        steps:
          - S = A @ A.T + eye_like
          - loss = trace(S) + x @ inv(S) @ x
        outputs: [loss]
    """).replace("eye_like", "3 * trace(A @ A.T) / 4")  # (no eye() in this vocabulary)

# --- the libraries -------------------------------------------------------------------------------


def _jax():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    jax.config.update("jax_enable_x64", True)  # a float64 module refuses JAX's default float32
    import jax.numpy as jnp

    return jnp.asarray


def _dask():
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    # chunked along the first axis (the batch), in two chunks
    return lambda a: da.from_array(a, chunks=(max(1, (a.shape[0] + 1) // 2),) + a.shape[1:]) \
        if a.ndim else da.from_array(a)


def _torch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    return torch.asarray


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy needs a GPU: none found")
    except Exception as e:  # noqa: BLE001 - no CUDA driver
        pytest.skip(f"CuPy needs a GPU: {e}")
    return cupy.asarray


def _strict():
    xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    return xs.asarray


LIBRARIES = {"array_api_strict": _strict, "numpy": lambda: np.asarray, "jax": _jax,
             "dask": _dask, "torch": _torch, "cupy": _cupy}


def to_numpy(x):
    """A library's array (computed, on the host) as a NumPy array."""
    if type(x).__module__.startswith("dask"):
        x = x.compute()
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    if type(x).__module__.startswith("array_api_strict"):
        return np.asarray(x._array)
    return np.asarray(x)


def _lazy_then_computed(result, library):
    """Dask results must still be lazy; computed together, as users do with dask.compute."""
    if library != "dask":
        return result
    import dask
    import dask.array as da

    leaves = [v for v in _flat(result)]
    assert leaves and all(isinstance(v, da.Array) for v in leaves), [type(v) for v in leaves]
    return dask.compute(result)[0]


def _flat(x):
    if isinstance(x, tuple):
        for v in x:
            yield from _flat(v)
    else:
        yield x


# --- generating the modules ----------------------------------------------------------------------


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every spec of specs/ and the inline ones, generated by the command into a temporary
    directory (NumPy and array-API modules), imported from there: {module: (spec, np, xp)}."""
    out = tmp_path_factory.mktemp("xp")
    (out / "xp_ops.yaml").write_text(OPS_SPEC)
    sources = [str(p) for p in SPECS] + [str(out / "xp_ops.yaml")]
    for backend in ("numpy", "array_api"):
        proc = subprocess.run([sys.executable, "-m", "codegen", *sources, "-o", str(out / "gen"),
                               "--backend", backend], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    modules = {}
    for source in sources:
        spec = load_spec_file(source)
        modules[spec.module] = (spec, _import(out / "gen" / f"{spec.module}.py", f"t_{spec.module}"),
                                _import(out / "gen" / f"{spec.module}_xp.py", f"t_{spec.module}_xp"))
    return modules


def _cases(generated, skip_lapack_det: bool = False, modules=None, skip_einsum: bool = False):
    for module, (spec, np_mod, xp_mod) in generated.items():
        if modules is not None and module not in modules:
            continue
        compiled = compile_spec(spec)
        for cf in compiled.functions:
            fn = cf.function
            if skip_lapack_det and {op.op for op in fn.program.ops} & {"det", "logdet"}:
                continue
            if skip_einsum and "einsum" in {op.op for op in fn.program.ops}:
                continue
            args = random_inputs(fn, example_dims(spec, fn), np.random.default_rng(1))
            yield f"{module}.{fn.name}", fn, args, np_mod, xp_mod


def _close(actual, expected, what):
    a, e = to_numpy(actual), np.asarray(expected)
    assert a.shape == e.shape, (what, a.shape, e.shape)
    assert a.dtype == np.float64, (what, a.dtype)
    np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_same_values_and_gradients_as_the_numpy_module(generated, library):
    convert = LIBRARIES[library]()
    lacks_det = library == "dask"  # tested below: an error naming the op and the library
    # JAX compiles every op for every shape it sees: a subset keeps the suite fast
    modules = ("xp_ops",) if library == "jax" else None
    checked = 0
    # array-api-strict has no einsum (not in the standard): tested below
    lacks_einsum = library == "array_api_strict"
    for label, fn, args, np_mod, xp_mod in _cases(generated, lacks_det, modules, lacks_einsum):
        n_out = len(fn.program.outputs)
        xs = [convert(a) for a in args]
        (out, grads) = getattr(np_mod, fn.name + "_value_and_grad")(*args)
        out = out if n_out > 1 else (out,)

        result = _lazy_then_computed(getattr(xp_mod, fn.name + "_value_and_grad")(*xs), library)
        x_out = result[0] if n_out > 1 else (result[0],)
        for k in range(n_out):
            _close(x_out[k], out[k], f"{label} output {k} on {library}")
        for w in fn.wrt:
            _close(getattr(result[1], w), getattr(grads, w), f"{label} d{w} on {library}")

        plain = _lazy_then_computed(getattr(xp_mod, fn.name)(*xs), library)
        _close(plain if n_out == 1 else plain[0], out[0], f"{label} f() on {library}")

        # forward + backward with a random cotangent of the first output's shape
        g = np.random.default_rng(2).standard_normal(np.shape(out[0]))
        fwd, saved = getattr(np_mod, fn.name + "_forward")(*args)
        expected = getattr(np_mod, fn.name + "_backward")(saved, g)
        _, x_saved = getattr(xp_mod, fn.name + "_forward")(*xs)
        x_grads = _lazy_then_computed(tuple(getattr(xp_mod, fn.name + "_backward")(x_saved, convert(g))),
                                      library)
        for w, got in zip(fn.wrt, x_grads):
            _close(got, getattr(expected, w), f"{label} backward d{w} on {library}")
        checked += 1
    assert checked >= (4 if modules else 20)


def test_dask_lacks_det_and_slogdet_and_says_so(generated):
    convert = _dask()
    _, _, matrix = generated["matrix"]
    A = convert(np.eye(4) + 0.1)
    with pytest.raises(NotImplementedError, match=r"logdet\(\) needs linalg\.slogdet.*dask\.array"):
        matrix.log_abs_det_value_and_grad(A)
    with pytest.raises(NotImplementedError, match=r"det\(\) needs linalg\.det.*dask\.array"):
        matrix.determinant(A)


def test_a_mix_of_libraries_is_a_clear_value_error(generated):
    to_torch = _torch()
    _, _, nn = generated["nn"]
    X, y, w = np.ones((3, 2)), np.ones(3), np.ones(2)
    with pytest.raises(ValueError, match=r"linear_regression: inputs from different array libraries: "
                                         r"X \(numpy\), y \(numpy\), w \(torch\)"):
        nn.linear_regression(X, y, to_torch(w), 0.5)
    _, saved = nn.linear_regression_forward(X, y, w, 0.5)
    with pytest.raises(ValueError, match=r"linear_regression_backward: inputs from different array "
                                         r"libraries: .*g \(torch\)"):
        nn.linear_regression_backward(saved, to_torch(np.float64(1.0)))
    with pytest.raises(ValueError, match="input w must be a float64 array of an array-API library"):
        nn.linear_regression(X, y, "w", 0.5)


def test_numbers_and_lists_are_converted_with_the_arrays_library(generated):
    to_torch = _torch()
    import torch

    _, np_nn, nn = generated["nn"]
    X, y, w = np.arange(6.0).reshape(3, 2), np.ones(3), np.array([0.5, -1.0])
    expected = np_nn.linear_regression_value_and_grad(X, y, w, 2)
    # numbers and lists beside torch arrays become torch arrays; ints are converted exactly
    out, grads = nn.linear_regression_value_and_grad(to_torch(X), [1, 1, 1], to_torch(w), 2)
    assert isinstance(out, torch.Tensor) and isinstance(grads.b, torch.Tensor)
    _close(out, expected[0], "loss")
    _close(grads.w, expected[1].w, "dw")
    # a NumPy 0-d array or scalar is a number too (converted), not a second library
    out, grads = nn.linear_regression_value_and_grad(to_torch(X), to_torch(y), to_torch(w), np.array(2.0))
    assert isinstance(grads.b, torch.Tensor)
    _close(grads.b, expected[1].b, "db from a 0-d NumPy array")
    with pytest.raises(ValueError, match=r"input b must be a float64 array of shape \[\] \(got dtype float32\)"):
        nn.linear_regression(to_torch(X), to_torch(y), to_torch(w), np.array(2.0, dtype=np.float32))
    # no array at all: NumPy, as the NumPy module
    out, grads = nn.linear_regression_value_and_grad(X.tolist(), [1, 1, 1], [0.5, -1], 2.0)
    assert isinstance(grads.w, np.ndarray)
    _close(grads.b, expected[1].b, "db")
    # integer arrays of the library are converted; another float precision is refused
    out, _ = nn.linear_regression_value_and_grad(to_torch(X), torch.ones(3, dtype=torch.int64),
                                                 to_torch(w), 2.0)
    _close(out, expected[0], "loss from an int64 tensor")
    with pytest.raises(ValueError, match=r"input X has dtype torch\.float32; expected float64 with shape \[N, D\]"):
        nn.linear_regression(torch.ones((3, 2), dtype=torch.float32), to_torch(y), to_torch(w), 2.0)
    with pytest.raises(ValueError, match=r"input w has shape \(3,\); expected \[D\] with D=2"):
        nn.linear_regression(to_torch(X), to_torch(y), to_torch(np.ones(3)), 2.0)


def test_stable_numerics_and_subgradients_as_the_numpy_module(generated):
    """max-shifted logsumexp/softmax, sigmoid and softplus from exp(-|x|), and the subgradients
    of relu, abs and sqrt at 0, on array-api-strict: the same (finite) numbers as NumPy's."""
    convert = _strict()
    _, np_mod, xp_mod = generated["xp_ops"]
    X = np.array([[800.0, -800.0, 0.0, 1e-3]] * 6)
    X[1] = 0.0
    args = [X, np.array([1.0, 2.0, -1.0, 0.0]), np.zeros((6, 1)), np.float64(1.5)]
    out, grads = np_mod.elementwise_value_and_grad(*args)
    x_out, x_grads = xp_mod.elementwise_value_and_grad(*[convert(a) for a in args])
    assert np.all(np.isfinite(to_numpy(x_out[1])))
    _close(x_out[0], out[0], "loss")
    for w in ("X", "w", "c", "s"):
        assert np.all(np.isfinite(to_numpy(getattr(x_grads, w))))
        _close(getattr(x_grads, w), getattr(grads, w), f"d{w}")
    Z = np.array([[1000.0, -1000.0, 0.0]] * 6)
    n_args = [Z, np.eye(6, 3), np.eye(3)]
    out, grads = np_mod.normalise_value_and_grad(*n_args)
    x_out, x_grads = xp_mod.normalise_value_and_grad(*[convert(a) for a in n_args])
    _close(x_out[0], out[0], "loss of large logits")
    _close(x_grads.W, grads.W, "dW of large logits")


def test_jax_jit_compiles_the_generated_gradient(generated):
    convert = _jax()
    import jax

    _, np_nn, nn = generated["nn"]
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(s) for s in ((8, 4), (8, 3), (4, 5), (5,), (5, 3), (3,))]
    expected = np_nn.mlp_mse_value_and_grad(*args)
    got = jax.jit(nn.mlp_mse_value_and_grad)(*[convert(a) for a in args])
    _close(got[0][0], expected[0][0], "loss under jit")
    _close(got[1].W1, expected[1].W1, "dW1 under jit")


def test_generated_source_is_standard_only_and_never_mutates():
    """No NumPy call, no in-place update, no item assignment in the function bodies: JAX arrays
    are immutable and Dask's are lazy (array-api-strict checks the calls at run time)."""
    for path in SPECS:
        source = render(compile_spec(load_spec_file(str(path))), "array_api")
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                for inner in ast.walk(node):
                    assert not isinstance(inner, ast.AugAssign), (path, node.name)
                    assert not (isinstance(inner, ast.Assign)
                                and any(isinstance(t, ast.Subscript) for t in inner.targets)), node.name
                    assert not (isinstance(inner, ast.keyword) and inner.arg == "out"), node.name
                    assert not (isinstance(inner, ast.Name) and inner.id == "np"), (path, node.name)
        assert "\nimport array_api_compat\nimport numpy as np\n" in source
        assert "codegen" not in source.split('"""', 2)[2].replace("codegen ", "")


def test_every_op_has_an_array_api_rendering():
    """An op added to the rule table without an array-API rendering is caught here (the emitter
    refuses to generate it rather than writing NumPy code into an array-API module)."""
    assert set(OPS) <= set(XP_RENDER), sorted(set(OPS) - set(XP_RENDER))


def test_an_op_without_rendering_is_an_error_not_numpy_code(monkeypatch):
    monkeypatch.delitem(XP_RENDER, "tanh")
    spec = load_spec("functions:\n  f:\n    inputs: {x: [3]}\n    steps: [y = sum(tanh(x))]\n"
                     "    outputs: [y]\n", "t.yaml")
    with pytest.raises(NotImplementedError, match="no rendering for op 'tanh'"):
        render(compile_spec(spec), "array_api")


def test_gradcheck_and_explain_cover_the_array_api_backend(tmp_path):
    spec = ROOT / "specs" / "nn.yaml"
    proc = subprocess.run([sys.executable, "-m", "codegen", str(spec), "-o", str(tmp_path),
                           "--backend", "array_api", "--gradcheck", "--explain"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"nn_xp\.mlp_mse +dW1 ", proc.stdout) and "FAIL" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nn.md", "nn_xp.py"]
    check = subprocess.run([sys.executable, "-m", "codegen", str(spec), "-o", str(tmp_path),
                            "--backend", "array_api", "--check"], capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stdout


def test_load_module_array_api():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = codegen.load_module(ROOT / "specs" / "seeds.yaml", backend="array_api")
    assert module.matrix_sum(np.ones((2, 3))) == 6.0


# --- a real cluster --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_client():
    """A dask.distributed LocalCluster of two worker processes (started once for the module)."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_gradients_on_a_local_cluster_chunked_along_the_batch(generated, cluster_client):
    import dask
    import dask.array as da

    assert len(cluster_client.scheduler_info()["workers"]) == 2
    _, np_nn, nn = generated["nn"]
    rng = np.random.default_rng(4)
    N = 4000
    data = {"X": rng.standard_normal((N, 8)), "Y": rng.standard_normal((N, 3))}
    params = [rng.standard_normal(s) * 0.3 for s in ((8, 16), (16,), (16, 3), (3,))]
    chunked = [da.from_array(data["X"], chunks=(500, 8)), da.from_array(data["Y"], chunks=(500, 3))]
    chunked = dask.persist(*chunked)  # on the workers, once
    expected = np_nn.mlp_mse_value_and_grad(data["X"], data["Y"], *params)
    # one library per call: the (small) parameters go in as one-chunk Dask arrays
    lazy = nn.mlp_mse_value_and_grad(*chunked, *[da.from_array(p, chunks=-1) for p in params])
    assert isinstance(lazy[1].W1, da.Array)
    (loss, Z2), grads = dask.compute(lazy)[0]  # on the cluster
    assert cluster_client.run(lambda: True)  # (the workers are alive and answered)
    _close(loss, expected[0][0], "loss on the cluster")
    _close(Z2, expected[0][1], "Z2 on the cluster")
    for w in ("W1", "b1", "W2", "b2"):
        _close(getattr(grads, w), getattr(expected[1], w), f"d{w} on the cluster")
    # logistic regression: softplus, a scalar input, a mean over the chunked batch
    w, b = rng.standard_normal(8), 0.3
    y = (rng.standard_normal(N) > 0) * 1.0
    expected = np_nn.logistic_regression_value_and_grad(data["X"], y, w, b)
    got = dask.compute(nn.logistic_regression_value_and_grad(
        chunked[0], da.from_array(y, chunks=500), da.from_array(w), da.from_array(np.float64(b))))[0]
    _close(got[0][0], expected[0][0], "logistic loss on the cluster")  # (loss, z)
    for field in ("w", "b"):
        _close(getattr(got[1], field), getattr(expected[1], field), f"logistic d{field} on the cluster")


def test_train_dask_example_follows_the_numpy_module(cluster_client, tmp_path):
    """examples/train_dask.py on the cluster: its loss curve is the NumPy module's, step by step,
    on the same data with the same gradient descent."""
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    if not (ROOT / "generated" / "nn_xp.py").exists():
        pytest.skip("generated/nn_xp.py not generated")
    spec = importlib.util.spec_from_file_location("_example_train_dask", ROOT / "examples" / "train_dask.py")
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    plot = tmp_path / "loss.png"
    argv = ["--scheduler", cluster_client.scheduler.address, "--samples", "3000", "--chunk", "700",
            "--features", "6", "--hidden", "8", "--classes", "3", "--steps", "6", "--lr", "0.5",
            "--plot", str(plot), "--no-progress"]
    result = example.main(argv)
    assert result["workers"] == 2 and result["chunks"] == 5
    assert plot.read_bytes().startswith(b"\x89PNG")
    # the same data, computed here, and the same descent with the NumPy module
    import dask

    X, Y = dask.compute(*example.make_data(3000, 6, 3, 700, 0), scheduler="sync")
    nn = _import(ROOT / "generated" / "nn.py", "_t_nn_for_dask")
    params = example.init_params(0, 6, 8, 3)
    losses = []
    for _ in range(6):
        (loss, _), grads = nn.mlp_classifier_value_and_grad(X, Y, **params)
        losses.append(float(loss))
        params = {k: v - 0.5 * getattr(grads, k) for k, v in params.items()}
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-10)
    assert losses[-1] < losses[0]
    for k, v in params.items():
        np.testing.assert_allclose(result["params"][k], v, rtol=1e-9, atol=1e-12)


def test_einsum_outside_the_standard_names_the_op_and_the_library(generated):
    """array-api-strict has only the standard, which has no einsum: a clear error, not a wrong
    result."""
    import array_api_strict as xps

    _, np_mod, xp_mod = generated["transformer"]
    spec = generated["transformer"][0]
    fn = next(cf.function for cf in compile_spec(spec).functions
              if "einsum" in {op.op for op in cf.function.program.ops})
    args = random_inputs(fn, example_dims(spec, fn), np.random.default_rng(1))
    with pytest.raises(NotImplementedError, match=r"einsum\(\).*array_api_strict|einsum\(\).*strict"):
        getattr(xp_mod, fn.name)(*[xps.asarray(a) for a in args])
