"""f_jacobian and f_hessian over blocks of basis vectors (issue 15): one pass of a batched tangent
program (``codegen/batch.py``, ``OpDef.batch``) per block of columns, not a loop of single-vector
calls; the loop stays where an op has no batched form.

Every case of the op-table tests (``test_ops.CASES``) is one function of one generated NumPy
module asking for a Jacobian (of ``y``) and one asking for a Hessian (of a nonlinear scalar of
``y``): their batched programs, run over a block of all basis vectors at once and over blocks of
two (a partial last block included), agree with the unbatched Jacobian (VJP rows or JVP columns,
one vector per call) and the HVP loop, and with central differences.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from helpers import assert_close
from test_ops import CASES, DIMS, _inputs

import codegen
from codegen import compiler
from codegen.importing import import_source
from codegen.loader import load_spec
from codegen.ops import OPS

MLP = """
module: mlp_blocks
dims: {N: 8, D: 5, H: 6, K: 3}
functions:
  predictions:
    inputs: {X: [N, D], W1: [D, H], b1: [H], W2: [H, K], b2: [K]}
    wrt: [W1, b1, W2]
    derivatives: [jacobian]
    steps:
      - Z1 = X @ W1 + b1
      - Z2 = tanh(Z1) @ W2 + b2
    outputs: [Z2]
  loss:
    inputs: {X: [N, D], Y: [N, K], W1: [D, H], b1: [H], W2: [H, K], b2: [K]}
    wrt: [W1, b1, W2, b2]
    derivatives: [hessian]
    steps:
      - Z1 = X @ W1 + b1
      - P = log_softmax(relu(Z1) @ W2 + b2, axis=1)
      - L = -sum(Y * P) / N + 0.01 * sum(W1 ** 2)
    outputs: [L]
"""


def _mlp_args(rng):
    X, W1, b1 = rng.normal(size=(8, 5)), rng.normal(size=(5, 6)) * 0.5, rng.normal(size=6) * 0.1
    W2, b2 = rng.normal(size=(6, 3)) * 0.5, rng.normal(size=3) * 0.1
    Y = np.eye(3)[rng.integers(0, 3, 8)]
    return X, Y, W1, b1, W2, b2


def test_a_typical_mlp_takes_the_batched_path_one_pass_per_block(monkeypatch):
    source = compiler.render(compiler.compile_spec(load_spec(MLP, "mlp.yaml")), "numpy")
    assert "def _predictions_jvp_block(" in source and "return _jacobian_blocks(" in source
    assert "def _loss_hvp_block(" in source and "return _hessian_blocks(" in source
    assert "one basis vector per pass" not in source
    m = codegen.load_module(MLP, path="mlp.yaml")
    X, Y, W1, b1, W2, b2 = _mlp_args(np.random.default_rng(0))
    calls = {"block": 0, "backward": 0, "jvp": 0}
    for name in ("_predictions_jvp_block", "_loss_hvp_block"):
        monkeypatch.setattr(m, name, _counted(getattr(m, name), calls, "block"))
    monkeypatch.setattr(m, "predictions_backward", _counted(m.predictions_backward, calls,
                                                            "backward"))
    Z2, jac = m.predictions_jacobian(X, W1, b1, W2, b2)
    assert calls == {"block": 1, "backward": 0, "jvp": 0}  # 24 rows > 1 pass over 54 columns
    _, jac_loop = m._jacobian(m.predictions_forward, m.predictions_backward, None,
                              m.predictions_Grads, (X, W1, b1, W2, b2), (1, 2, 3), False)
    for name in ("W1", "b1", "W2"):
        assert_close(getattr(jac, name), getattr(jac_loop, name), rtol=1e-12, atol=1e-14,
                     what=name)
    assert jac.W1.shape == (24, 30) and jac.b1.shape == (24, 6) and jac.W2.shape == (24, 18)
    calls["block"] = 0
    L, grads, H = m.loss_hessian(X, Y, W1, b1, W2, b2)
    assert calls["block"] == 1 and H.shape == (57, 57)
    _, _, H_loop = m._hessian(m.loss_hvp, (X, Y, W1, b1, W2, b2), (2, 3, 4, 5))
    assert_close(H, H_loop, rtol=1e-12, atol=1e-14, what="Hessian")
    # the memory bound: blocks of 7 columns (a partial last block) give the same matrix
    monkeypatch.setattr(m, "_block_size", lambda n, width: 7)
    calls["block"] = 0
    assert_close(m.loss_hessian(X, Y, W1, b1, W2, b2)[2], H, rtol=1e-12, atol=1e-14,
                 what="Hessian in blocks of 7")
    assert calls["block"] == -(-57 // 7)


def _counted(fn, calls, key):
    def wrapper(*args, **kwargs):
        calls[key] += 1
        return fn(*args, **kwargs)
    return wrapper


def test_the_block_size_bounds_the_largest_batched_tangent():
    m = codegen.load_module(MLP, path="mlp.yaml")
    assert m._block_size(54, 48) == 54
    assert m._block_size(10**6, 2**10) == 2**10  # 2**20 numbers per batched tangent
    assert m._block_size(5, 2**30) == 1


def test_vjp_rows_when_they_are_fewer_passes(monkeypatch):
    """A scalar's Jacobian is its gradient: one VJP row, not a block pass over the columns."""
    spec = MLP.replace("derivatives: [hessian]", "derivatives: [jacobian, hessian]")
    m = codegen.load_module(spec, path="mlp.yaml")
    calls = {"block": 0}
    monkeypatch.setattr(m, "_loss_jvp_block", _counted(m._loss_jvp_block, calls, "block"))
    args = _mlp_args(np.random.default_rng(1))
    L, jac = m.loss_jacobian(*args)
    _, grads = m.loss_value_and_grad(*args)
    assert calls["block"] == 0
    assert_close(jac.W1, grads.W1.reshape(1, -1), rtol=1e-12, atol=1e-15, what="row = gradient")


# --- every op family: one module for all cases --------------------------------------------------

# Cases whose batched tangents would go through a product or a stack of rank 5, beyond the shape
# rules (ranks 0 to 4): these keep the loop over basis vectors.
_RANK5 = {"matmul-rank4-rank3", "stack-last-three"}
# (a vector @ a rank-4 batch: its JVP batches; its HVP's backward product would need rank 5)
_RANK5_HVP = _RANK5 | {"matmul-vector-batch"}


def _case_spec(cases):
    lines = ["module: blocks", "dims: {%s}" % ", ".join(f"{k}: {v}" for k, v in DIMS.items()),
             "functions:"]
    for k, (_, expr, inputs, _) in enumerate(cases):
        shapes = [f"      {n}: [{', '.join(map(str, s))}]" for n, s in inputs.items()]
        for kind, steps, out in (("jacobian", [f"y = {expr}"], "y"),
                                 ("hessian", [f"y = {expr}", "s = sum(sin(y) + y * y)"], "s")):
            lines += [f"  {kind[0]}{k}:", "    inputs:", *shapes,
                      f"    derivatives: [{kind}]", "    steps:",
                      *[f"      - {s}" for s in steps], f"    outputs: [{out}]"]
    return "\n".join(lines) + "\n"


_CHUNK = 100  # cases per module (two functions each; a spec has at most 200)


@pytest.fixture(scope="module")
def sources():
    return [compiler.render(compiler.compile_spec(load_spec(
        _case_spec(CASES[start:start + _CHUNK]), "blocks.yaml")), "numpy")
        for start in range(0, len(CASES), _CHUNK)]


@pytest.fixture(scope="module")
def cases_modules(sources):
    return [import_source(source, "blocks", "numpy") for source in sources]


def test_every_case_batches_but_products_of_rank_five(sources):
    for k, (name, *_rest) in enumerate(CASES):
        for kind, fn in (("jvp", f"j{k % _CHUNK}"), ("hvp", f"h{k % _CHUNK}")):
            batched = f"def _{fn}_{kind}_block(" in sources[k // _CHUNK]
            assert batched == (name not in (_RANK5 if kind == "jvp" else _RANK5_HVP)), (name, kind)


def test_every_op_a_tangent_goes_through_has_a_batched_form():
    """Ops without one are those a tangent never reaches (their JVPs apply them to primal
    values) and the label ops (the loop; tested below)."""
    unbatched = {n for n, op in OPS.items() if op.batch is None}
    assert unbatched == {"inv", "det", "logdet", "max", "logsumexp", "softmax", "log_softmax",
                         "take_along_axis", "put_along_axis", "one_hot", "zeros", "eye"}


def _basis(shapes, start, stop):
    n = sum(int(np.prod(s)) for s in shapes)
    eye = np.eye(n)[start:stop]
    out, offset = [], 0
    for s in shapes:
        size = int(np.prod(s))
        out.append(eye[:, offset:offset + size].reshape((stop - start,) + tuple(s)))
        offset += size
    return out


@pytest.mark.filterwarnings("ignore:invalid value encountered in log")  # where(a > 0.1, log(a), a)
@pytest.mark.parametrize("k", range(len(CASES)), ids=[c[0] for c in CASES])
def test_blocks_agree_with_the_loop_and_differences(cases_modules, k):
    name, expr, inputs, positive = CASES[k]
    if name in _RANK5_HVP:
        pytest.skip("keeps the loop (rank 5)")
    m = cases_modules[k // _CHUNK]
    k %= _CHUNK
    args = _inputs(inputs, positive, np.random.default_rng(zlib.crc32(name.encode())))
    shapes = [a.shape for a in args]
    wrt = tuple(range(len(args)))
    n = sum(a.size for a in args)
    # f_jacobian's columns: the batched JVP over all basis vectors, and over blocks of two
    jvp_block = getattr(m, f"_j{k}_jvp_block")
    fwd, bwd, jvp, grads_type = (getattr(m, f"j{k}_{s}")
                                 for s in ("forward", "backward", "jvp", "Grads"))
    y = m.__dict__[f"j{k}"](*args)
    whole = jvp_block(*args, *_basis(shapes, 0, n))[1].reshape(n, -1).T
    pairs = np.concatenate([jvp_block(*args, *_basis(shapes, s, min(n, s + 2)))[1]
                            .reshape(min(n, s + 2) - s, -1) for s in range(0, n, 2)]).T
    # the loop: VJP rows or JVP columns, one vector per call
    _, rows = m._jacobian(fwd, bwd, jvp, grads_type, tuple(args), wrt, False)
    loop = np.concatenate([getattr(rows, x) for x in inputs], axis=1).reshape(np.size(y), n)
    assert_close(whole, loop, rtol=1e-10, atol=1e-12, what=f"{name}: Jacobian block")
    assert_close(pairs, loop, rtol=1e-10, atol=1e-12, what=f"{name}: Jacobian, blocks of 2")
    _, jac = getattr(m, f"j{k}_jacobian")(*args)
    assert_close(np.concatenate([getattr(jac, x) for x in inputs], axis=1), loop, rtol=1e-10,
                 atol=1e-12, what=f"{name}: f_jacobian")
    # f_hessian: the batched HVP against the HVP loop and differences of the gradient
    hvp_block = getattr(m, f"_h{k}_hvp_block")
    pairs = np.concatenate([np.concatenate(
        [h.reshape(min(n, s + 2) - s, -1) for h in hvp_block(*args, *_basis(shapes, s, min(n, s + 2)))[2]],
        axis=1) for s in range(0, n, 2)]).T
    _, _, H_loop = m._hessian(getattr(m, f"h{k}_hvp"), tuple(args), wrt)
    _, _, H = getattr(m, f"h{k}_hessian")(*args)
    assert_close(pairs, H_loop, rtol=1e-10, atol=1e-12, what=f"{name}: Hessian, blocks of 2")
    assert_close(H, H_loop, rtol=1e-10, atol=1e-12, what=f"{name}: f_hessian")
    vg = getattr(m, f"h{k}_value_and_grad")
    flat = np.concatenate([a.ravel() for a in args])

    def grad_at(x):
        parts = np.split(x, np.cumsum([a.size for a in args])[:-1])
        g = vg(*[p.reshape(s) for p, s in zip(parts, shapes)])[1]
        return np.concatenate([np.ravel(getattr(g, x)) for x in inputs])

    eps = 1e-6
    for j in range(0, n, max(1, n // 4)):  # a few columns by central differences
        e = np.zeros(n)
        e[j] = eps
        assert_close(H[:, j], (grad_at(flat + e) - grad_at(flat - e)) / (2 * eps), rtol=1e-5,
                     atol=1e-6, what=f"{name}: Hessian column {j} vs differences")


LABELS = """
module: labels_loop
dims: {N: 4, K: 3}
functions:
  xent:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    wrt: [Z]
    derivatives: [jacobian, hessian]
    steps:
      - P = log_softmax(Z * Z, axis=1)
      - picked = take_along_axis(P, y, axis=1)
      - loss = sum(picked * picked)
    outputs: [loss, picked]
  picks:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    wrt: [Z]
    derivatives: [jacobian]
    steps:
      - picked = take_along_axis(tanh(Z), y, axis=1)
    outputs: [picked]
"""


def test_an_op_without_a_batched_form_keeps_the_loop():
    source = compiler.render(compiler.compile_spec(load_spec(LABELS, "labels.yaml")), "numpy")
    assert "_jvp_block" not in source and "_hvp_block" not in source
    for kind, count in (("JVP", 2), ("HVP", 1)):
        assert source.count(f"# one basis vector per pass, no {kind} over a block of them:\n"
                            "    # 'take_along_axis' has no batched form") == count
    m = codegen.load_module(LABELS, path="labels.yaml")
    rng = np.random.default_rng(3)
    Z, y = rng.normal(size=(4, 3)), np.array([[0], [2], [1], [2]], dtype=np.int64)
    _, jac = m.picks_jacobian(Z, y)
    assert jac.Z.shape == (4, 12)
    eps = 1e-6
    for j in range(12):
        e = np.zeros(12)
        e[j] = eps
        diff = (m.picks(Z + e.reshape(4, 3), y) - m.picks(Z - e.reshape(4, 3), y)) / (2 * eps)
        assert_close(jac.Z[:, j], diff.ravel(), rtol=1e-6, atol=1e-8, what=f"column {j}")
    _, grads, H = m.xent_hessian(Z, y)
    for j in range(12):
        e = np.zeros(12)
        e[j] = eps
        gp = m.xent_value_and_grad(Z + e.reshape(4, 3), y)[1].Z.ravel()
        gm = m.xent_value_and_grad(Z - e.reshape(4, 3), y)[1].Z.ravel()
        assert_close(H[:, j], (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-7, what=f"H column {j}")


ROWS = """
module: rows_numba
functions:
  f:
    inputs: {X: [3, 2], s: [], w: [2]}
    wrt: [X, s, w]
    derivatives: [jacobian]
    steps:
      - Y = tanh(X * s) @ w + s * sum(w ** 2)
      - Z = X * 2
    outputs: [Y, Z]
"""


def test_numba_makes_the_vjp_rows_in_one_compiled_loop():
    """The Numba module's f_jacobian: its VJP rows from one kernel looping over unit cotangents
    (the backward kernel's statements), a scalar wrt input's column included."""
    pytest.importorskip("numba")
    source = codegen.generate_source(ROWS, backend="numba", path="rows.yaml")
    assert "def _f_vjp_rows(_m, _shape, _sizes," in source and "        _f_vjp_rows,\n" in source
    nb = codegen.load_module(ROWS, backend="numba", path="rows.yaml")
    ref = codegen.load_module(ROWS, path="rows.yaml")
    rng = np.random.default_rng(4)
    X, s, w = rng.normal(size=(3, 2)), 0.7, rng.normal(size=2)
    (Y, Z), jac = nb.f_jacobian(X, s, w)
    (Y_ref, _), jac_ref = ref.f_jacobian(X, s, w)
    assert_close(Y, Y_ref, rtol=1e-12, atol=1e-14, what="Y")
    assert jac.X.shape == (3, 6) and jac.s.shape == (3, 1) and jac.w.shape == (3, 2)
    eps = 1e-6
    for name in ("X", "s", "w"):
        assert_close(getattr(jac, name), getattr(jac_ref, name), rtol=1e-10, atol=1e-12, what=name)
    for j in range(2):  # a column of dY/dw by central differences
        e = np.zeros(2)
        e[j] = eps
        diff = (ref.f(X, s, w + e)[0] - ref.f(X, s, w - e)[0]) / (2 * eps)
        assert_close(jac.w[:, j], diff, rtol=1e-6, atol=1e-8, what=f"dY/dw[{j}]")
    diff = (ref.f(X, s + eps, w)[0] - ref.f(X, s - eps, w)[0]) / (2 * eps)
    assert_close(jac.s[:, 0], diff, rtol=1e-6, atol=1e-8, what="dY/ds")


COLUMNS = """
module: columns_numba
dims: {N: 7, D: 2}
functions:
  f:
    inputs: {X: [N, D], s: [], w: [D]}
    wrt: [s, w]
    derivatives: [jacobian]
    steps:
      - Y = tanh(X * w) * s
      - Z = X * 2
    outputs: [Y, Z]
  g:
    inputs: {X: [N, D], s: [], w: [D]}
    derivatives: [hessian]
    steps:
      - L = sum(tanh(X * w) * s) + s ** 2 * sum(w ** 3)
    outputs: [L]
  h:
    inputs: {X: [N, D], s: [], w: [D]}
    wrt: [w]
    derivatives: [hessian]
    steps:
      - L = sum(tanh(X * w)) * s + s
    outputs: [L]
"""


def test_numba_makes_the_jvp_and_hvp_columns_in_one_compiled_loop():
    """The Numba module's f_jacobian by columns (more elements of the output than of the wrt
    inputs) and its f_hessian: one kernel looping over unit tangents each, scalar wrt inputs
    included; an empty Hessian still gives the outputs and gradients."""
    pytest.importorskip("numba")
    source = codegen.generate_source(COLUMNS, backend="numba", path="columns.yaml")
    assert "def _f_jvp_cols(_m, X, s, w):" in source and "        _f_jvp_cols,\n" in source
    assert "def _g_hvp_cols(X, s, w):" in source and "= _g_hvp_cols(X, s, w)" in source
    # with --numba-parallel the loops keep their threads: the kernels are parallel ones too
    parallel = compiler.render(compiler.compile_spec(load_spec(COLUMNS, "columns.yaml")), "numba",
                               parallel=True)
    for kernel in ("_f_jvp_cols", "_g_hvp_cols"):
        assert f"@_parallel_kernel\ndef {kernel}(" in parallel, kernel
    nb = codegen.load_module(COLUMNS, backend="numba", path="columns.yaml")
    ref = codegen.load_module(COLUMNS, path="columns.yaml")
    rng = np.random.default_rng(5)
    X, s, w = rng.normal(size=(7, 2)), 0.7, rng.normal(size=2)
    (Y, _), jac = nb.f_jacobian(X, s, w)
    (Y_ref, _), jac_ref = ref.f_jacobian(X, s, w)
    assert_close(Y, Y_ref, rtol=1e-12, atol=1e-14, what="Y")
    assert jac.s.shape == (14, 1) and jac.w.shape == (14, 2)
    for name in ("s", "w"):
        assert_close(getattr(jac, name), getattr(jac_ref, name), rtol=1e-10, atol=1e-12, what=name)
    eps = 1e-6
    diff = (ref.f(X, s + eps, w)[0] - ref.f(X, s - eps, w)[0]).ravel() / (2 * eps)
    assert_close(jac.s[:, 0], diff, rtol=1e-6, atol=1e-8, what="dY/ds")

    L, grads, H = nb.g_hessian(X, s, w)
    L_ref, grads_ref, H_ref = ref.g_hessian(X, s, w)
    assert_close(L, L_ref, rtol=1e-12, atol=1e-14, what="L")
    assert H.shape == (17, 17)
    assert_close(H, H_ref, rtol=1e-10, atol=1e-12, what="H")
    for name in ("X", "s", "w"):
        assert_close(getattr(grads, name), getattr(grads_ref, name), rtol=1e-12, atol=1e-14,
                     what=name)
    # column 14 (s) by central differences of the gradient
    flat = lambda g: np.concatenate([np.ravel(g.X), np.ravel(g.s), np.ravel(g.w)])  # noqa: E731
    diff = (flat(ref.g_value_and_grad(X, s + eps, w)[1])
            - flat(ref.g_value_and_grad(X, s - eps, w)[1])) / (2 * eps)
    assert_close(H[:, 14], diff, rtol=1e-6, atol=1e-7, what="d grad / ds")
    # no column: the outputs and gradients all the same
    L0, grads0, H0 = nb.h_hessian(np.zeros((7, 0)), s, np.zeros(0))
    L0_ref, _, H0_ref = ref.h_hessian(np.zeros((7, 0)), s, np.zeros(0))
    assert H0.shape == H0_ref.shape == (0, 0) and L0 == L0_ref == s and grads0.w.shape == (0,)
