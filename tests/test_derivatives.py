"""Derivatives beyond the gradient (DESIGN.md §3b): f_jvp, f_jacobian, f_hvp, f_hessian.

Forward mode (JVP rules, forward planner) against central differences of the function; second
order (forward over reverse) against central differences of the gradient; closed forms of
Jacobians and Hessians; the spec key's errors. Every op of the vocabulary appears in SPEC, whose
module is generated once per backend (one Numba module for all functions).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from helpers import assert_close

import codegen
from codegen.errors import SpecError
from codegen.ops import OPS

SPEC = """
module: derivs_all
derivatives: [jvp, jacobian, hvp, hessian]
functions:
  elementwise:
    inputs: {X: [3, 2], C: [3, 2]}
    wrt: [X]
    steps:
      - S = exp(X) + tanh(X) * sigmoid(X) + softplus(X) + sin(X) * cos(X) + log1p(X * X)
      - T = sqrt(1 + X * X) + square(X) + X ** 3 + abs(X) + relu(X) + X / (2 + X * X) - X
      - U = log(2 + X) - 0.5 * X ** 0.5 + (-X) ** 2
      - loss = sum(C * (S + T)) + sum(U)
    outputs: [loss]
  reductions:
    inputs: {X: [3, 4], C: [3, 4], v: [4]}
    wrt: [X, v]
    steps:
      - A = logsumexp(X, axis=1, keepdims=True) * sum(C, axis=1, keepdims=True)
      - B = sum(log_softmax(X, axis=1) * C) + sum(softmax(X, axis=0) * C * C)
      - M = mean(X * X, axis=0) * v + mean(X, axis=1, keepdims=True) * v
      - loss = sum(A) + B + sum(M) + logsumexp(v * v, axis=0) + mean(X ** 2) * sum(v)
    outputs: [loss]
  linear:
    inputs: {X: [3, 4], M: [4, 4], v: [4], b: [4], C: [3, 4]}
    wrt: [X, M, v, b]
    steps:
      - Z = tanh(X @ M + b)
      - loss = sum(Z * C) + v @ M @ v + sum(outer(v, b) * M) + trace(M @ M.T) + sum((X.T @ Z) ** 2)
    outputs: [loss, Z]
  matrix:
    inputs: {M: [3, 3], P: [3, 3]}
    wrt: [M]
    steps:
      - loss = logdet(M) + det(M) * trace(inv(M) @ P)
    outputs: [loss]
  vector_out:
    inputs: {X: [2, 3], w: [3]}
    derivatives: [jvp, jacobian]
    steps:
      - Y = softmax(X * w, axis=1) + X * sum(w ** 2)
    outputs: [Y]
"""


def _args(name, rng):
    if name == "elementwise":
        return [rng.uniform(0.2, 1.5, (3, 2)) * rng.choice([-1, 1], (3, 2)) + 0.0,
                rng.normal(size=(3, 2))]
    if name == "reductions":
        return [rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=4)]
    if name == "linear":
        return [rng.normal(size=(3, 4)), rng.normal(size=(4, 4)) * 0.5, rng.normal(size=4),
                rng.normal(size=4), rng.normal(size=(3, 4))]
    if name == "matrix":
        return [np.eye(3) * 2 + 0.3 * rng.normal(size=(3, 3)), rng.normal(size=(3, 3))]
    return [rng.normal(size=(2, 3)), rng.normal(size=3)]


WRT = {"elementwise": [0], "reductions": [0, 2], "linear": [0, 1, 2, 3], "matrix": [0],
       "vector_out": [0, 1]}
FUNCTIONS = list(WRT)


@pytest.fixture(scope="module")
def reference():
    """The NumPy module: the function and gradient that the differences are taken of (on the
    Numba backend too, so that its tests compile only the kernels they check)."""
    return codegen.load_module(SPEC, path="derivs_all.yaml")


@pytest.fixture(scope="module", params=["numpy", "numba"])
def module(request, reference):
    if request.param == "numpy":
        return reference
    pytest.importorskip("numba")
    return codegen.load_module(SPEC, backend=request.param, path="derivs_all.yaml")


def _fix_elementwise(args):
    # X ** 0.5 and log(2 + X) need X > 0 for the first term: shift the data, keep abs/relu kinks away
    if len(args) == 2 and args[0].shape == (3, 2):
        args[0] = np.abs(args[0])
    return args


def _first(result):
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("name", FUNCTIONS)
def test_jvp_matches_differences_of_the_function(module, reference, name):
    rng = np.random.default_rng(1)
    args = _fix_elementwise(_args(name, rng))
    f = getattr(reference, name)
    tangents = [rng.normal(size=args[i].shape) for i in WRT[name]]
    outputs, dout = getattr(module, f"{name}_jvp")(*args, tangents)
    assert_close(_first(outputs), _first(f(*args)), what="outputs")
    h = 1e-6

    def moved(s):
        out = [a.copy() for a in args]
        for i, t in zip(WRT[name], tangents):
            out[i] = out[i] + s * t
        return np.asarray(_first(f(*out)))

    assert_close(dout, (moved(h) - moved(-h)) / (2 * h), rtol=1e-5, atol=1e-6, what=f"{name} jvp")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_jacobian_matches_differences_columnwise(module, reference, name):
    if module is not reference and name != "vector_out":
        pytest.skip("checked on NumPy; Numba's VJP rows kernel: tests/test_jacobian_blocks.py")
    rng = np.random.default_rng(2)
    args = _fix_elementwise(_args(name, rng))
    f = getattr(reference, name)
    _, jac = getattr(module, f"{name}_jacobian")(*args)
    y = np.asarray(_first(f(*args)))
    h = 1e-6
    for field, i in zip(jac._fields, WRT[name]):
        J = getattr(jac, field)
        assert J.shape == (y.size, args[i].size)
        for k in range(args[i].size):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[i].reshape(-1)[k] += h
            minus[i].reshape(-1)[k] -= h
            column = (np.asarray(_first(f(*plus))) - np.asarray(_first(f(*minus)))) / (2 * h)
            assert_close(J[:, k], column.ravel(), rtol=1e-5, atol=1e-6, what=f"{name}.{field}[:, {k}]")


@pytest.mark.parametrize("name", [n for n in FUNCTIONS if n != "vector_out"])
def test_hvp_matches_differences_of_the_gradient(module, reference, name):
    rng = np.random.default_rng(3)
    args = _fix_elementwise(_args(name, rng))
    v = [rng.normal(size=args[i].shape) for i in WRT[name]]
    outputs, grads, hv = getattr(module, f"{name}_hvp")(*args, v)
    vg = getattr(reference, f"{name}_value_and_grad")
    ref_out, ref_grads = vg(*args)
    assert_close(_first(outputs), _first(ref_out), what="outputs")
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, what="grads")
    h = 1e-6

    def grads_at(s):
        out = [a.copy() for a in args]
        for i, t in zip(WRT[name], v):
            out[i] = out[i] + s * t
        return vg(*out)[1]

    for field, p, m, got in zip(hv._fields, grads_at(h), grads_at(-h), hv):
        assert_close(got, (p - m) / (2 * h), rtol=1e-5, atol=1e-6, what=f"{name} hv.{field}")


@pytest.mark.parametrize("name", [n for n in FUNCTIONS if n != "vector_out"])
def test_hessian_is_symmetric_and_agrees_with_hvp(module, name):
    rng = np.random.default_rng(4)
    args = _fix_elementwise(_args(name, rng))
    outputs, grads, H = getattr(module, f"{name}_hessian")(*args)
    n = sum(args[i].size for i in WRT[name])
    assert H.shape == (n, n)
    assert_close(H, H.T, rtol=1e-9, atol=1e-9, what="symmetry")
    v = [rng.normal(size=args[i].shape) for i in WRT[name]]
    _, _, hv = getattr(module, f"{name}_hvp")(*args, v)
    assert_close(np.concatenate([h.ravel() for h in hv]),
                 H @ np.concatenate([x.ravel() for x in v]), what="H v")


def test_jacobian_of_row_softmax_is_diag_s_minus_s_st():
    module = codegen.load_module(textwrap.dedent("""
        functions:
          sm:
            inputs: {X: [3, 4]}
            derivatives: [jacobian]
            steps: ["S = softmax(X, axis=1)"]
            outputs: [S]
    """), path="sm.yaml")
    X = np.random.default_rng(5).normal(size=(3, 4))
    S, jac = module.sm_jacobian(X)
    blocks = [np.diag(s) - np.outer(s, s) for s in S]
    expected = np.zeros((12, 12))
    for r, block in enumerate(blocks):
        expected[4 * r:4 * r + 4, 4 * r:4 * r + 4] = block
    assert_close(jac.X, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_closed_form_hessians_quadratic_form_and_logistic_regression(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    module = codegen.load_module(textwrap.dedent("""
        functions:
          quad:
            inputs: {a: [5], G: [5, 5]}
            wrt: [a]
            derivatives: [hessian]
            steps: [f = a @ G @ a]
            outputs: [f]
          logistic:
            inputs: {X: [N, D], y: [N], w: [D]}
            wrt: [w]
            derivatives: [hvp, hessian]
            steps:
              - z = X @ w
              - loss = sum(softplus(z) - y * z)
            outputs: [loss]
    """), backend=backend, path="closed.yaml")
    rng = np.random.default_rng(6)
    a, G = rng.normal(size=5), rng.normal(size=(5, 5))
    assert_close(module.quad_hessian(a, G)[2], G + G.T, rtol=1e-12, atol=1e-12)
    X, y, w = rng.normal(size=(20, 4)), (rng.random(20) > 0.5) * 1.0, rng.normal(size=4)
    loss, grads, H = module.logistic_hessian(X, y, w)
    p = 1 / (1 + np.exp(-X @ w))
    assert_close(H, X.T @ np.diag(p * (1 - p)) @ X, rtol=1e-10, atol=1e-12)
    assert_close(grads.w, X.T @ (p - y), rtol=1e-10, atol=1e-12)


def test_relu_second_derivative_is_zero_and_abs_too():
    module = codegen.load_module(textwrap.dedent("""
        functions:
          kinks:
            inputs: {x: [4], c: [4]}
            wrt: [x]
            derivatives: [hessian]
            steps: [f = sum(c * relu(x)) + sum(abs(x) * c)]
            outputs: [f]
    """), path="kinks.yaml")
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(module.kinks_hessian(x, np.ones(4))[2], np.zeros((4, 4)))


def test_sqrt_at_zero_has_a_finite_hvp():
    module = codegen.load_module(textwrap.dedent("""
        functions:
          root:
            inputs: {x: [3]}
            derivatives: [hvp]
            steps: [f = sum(sqrt(x))]
            outputs: [f]
    """), path="root.yaml")
    _, grads, hv = module.root_hvp(np.array([0.0, 1.0, 4.0]), (np.ones(3),))
    np.testing.assert_array_equal(grads.x, [0.0, 0.5, 0.25])  # the sqrt convention: 0 at 0
    np.testing.assert_allclose(hv.x, [0.0, -0.25, -0.25 / 8])  # -1/4 x^(-3/2), and 0 at 0


def test_a_negated_tangent_read_twice_is_kept():
    """A tangent that is a negation (log_sigmoid's JVP, -x_dot * expm1(y)) met as the second
    operand of an add is folded into a subtraction; the negation itself must stay when other ops
    read it too (the backward's tangent in f_hvp, a second use of the step in f_jvp): it was
    dropped, and generation failed with an internal KeyError."""
    module = codegen.load_module(textwrap.dedent("""
        functions:
          second:
            inputs: {x: [3]}
            derivatives: [hvp, hessian]
            steps: [loss = sum(x * 2 + log_sigmoid(x))]
            outputs: [loss]
          reused:
            inputs: {x: [3]}
            derivatives: [jvp]
            steps:
              - a = log_sigmoid(x)
              - loss = sum(x + a) + sum(a * a)
            outputs: [loss]
    """), path="negated.yaml")
    x, t = np.array([-2.0, 0.3, 1.5]), np.array([0.5, -1.0, 2.0])
    s_neg = 1 / (1 + np.exp(x))  # sigmoid(-x): log_sigmoid's derivative
    _, grads, hessian = module.second_hessian(x)
    assert_close(grads.x, 2 + s_neg)
    assert_close(hessian, np.diag(-s_neg * (1 - s_neg)))  # d/dx sigmoid(-x) = -s(-x) s(x)
    a = -np.log1p(np.exp(-x))
    _, dloss = module.reused_jvp(x, (t,))
    assert_close(dloss, np.sum(t * (1 + s_neg)) + np.sum(2 * a * s_neg * t))


def test_tangents_are_checked():
    module = codegen.load_module(textwrap.dedent("""
        functions:
          f:
            inputs: {A: [2, 3], W: [3, 2]}
            wrt: [W]
            derivatives: [jvp, hvp]
            steps: [S = sum((A @ W) ** 2)]
            outputs: [S]
    """), path="f.yaml")
    A, W = np.ones((2, 3)), np.ones((3, 2))
    with pytest.raises(ValueError, match="tangent of W has shape"):
        module.f_jvp(A, W, (np.ones((2, 3)),))
    with pytest.raises(ValueError, match="one array per input of W"):
        module.f_jvp(A, W, np.ones((3, 2)))
    with pytest.raises(ValueError, match="one array per input of W"):
        module.f_hvp(A, W, (np.ones((3, 2)), np.ones((3, 2))))
    # a Grads is a tuple of tangents too; lists and integers are converted like inputs
    _, dS = module.f_jvp(A, W, module.f_Grads(W=[[1, 0], [0, 0], [0, 0]]))
    assert dS == pytest.approx(2 * np.sum((A @ W)[:, 0] * A[:, 0]))


def test_every_op_with_operands_has_a_jvp_rule():
    """Forward mode and second order need a JVP for every op that can appear in a forward or
    backward program (the planner's own ops included); ``max`` is only written by lowering."""
    missing = [name for name, op in OPS.items()
               if op.arity
               and (len(op.jvps) != op.arity or len(op.jvp_rules) != op.arity)]
    assert missing == []
    differentiable_without = [n for n, op in OPS.items() if op.differentiable and not op.jvps]
    assert differentiable_without == []


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        codegen.load_module(textwrap.dedent(text), path="bad.yaml")
    return info.value


def test_unknown_derivative_kind_is_a_located_error_with_a_hint():
    err = _error("""
        functions:
          f:
            inputs: {x: [3]}
            derivatives: [jvp, hesian]
            steps: [y = sum(x ** 2)]
            outputs: [y]
    """)
    assert "unknown derivative kind 'hesian'" in str(err)
    assert "did you mean 'hessian'" in str(err)
    assert err.loc is not None and (err.loc.line, err.loc.col) == (5, 24)


def test_hvp_of_a_vector_output_is_a_located_error():
    err = _error("""
        derivatives: [hessian]
        functions:
          f:
            inputs: {x: [3]}
            steps: [y = x * x]
            outputs: [y]
    """)
    assert "'hessian' needs a scalar first output" in str(err)
    assert "sum(y)" in str(err)
    assert err.loc is not None and err.loc.line == 2


def test_module_level_default_and_function_override():
    module = codegen.load_module(textwrap.dedent("""
        derivatives: [jvp]
        functions:
          f:
            inputs: {x: [3]}
            steps: [y = sum(x ** 2)]
            outputs: [y]
          g:
            inputs: {x: [3]}
            derivatives: [hvp]
            steps: [y = sum(x ** 3)]
            outputs: [y]
          h:
            inputs: {x: [3]}
            derivatives: []
            steps: [y = sum(x)]
            outputs: [y]
    """), path="defaults.yaml")
    assert hasattr(module, "f_jvp") and not hasattr(module, "f_hvp")
    assert hasattr(module, "g_hvp") and not hasattr(module, "g_jvp")
    assert not hasattr(module, "h_jvp")


GRADCHECK_SPEC = """
module: gcheck
dims: {N: 4, D: 3}
derivatives: [jvp, jacobian, hvp, hessian]
functions:
  f:
    inputs: {X: [N, D], w: [D]}
    wrt: [w]
    steps:
      - z = tanh(X @ w)
      - loss = sum(z * z) + sum(w ** 3)
    outputs: [loss]
"""


def test_gradcheck_checks_every_generated_kind(monkeypatch):
    from codegen import ops
    from codegen.finite_differences import check_spec
    from codegen.loader import load_spec

    spec = load_spec(textwrap.dedent(GRADCHECK_SPEC), "gcheck.yaml")
    results = check_spec(spec)
    assert [r.kind for r in results if r.kind not in ("value", "gradient")] == [
        "jvp", "jacobian", "hvp", "hessian"]
    assert all(r.ok for r in results), results
    # a wrong JVP rule (tanh' taken as 1) fails every kind that pushes tangents through tanh
    wrong = ops.OPS["tanh"].__class__(**{**ops.OPS["tanh"].__dict__, "jvps": (lambda b, op, t: t,)})
    monkeypatch.setitem(ops.OPS, "tanh", wrong)
    failed = {r.kind for r in check_spec(spec) if not r.ok}
    assert failed == {"jvp", "hvp", "hessian"}  # (the Jacobian of a scalar is one VJP row)


def test_cli_gradcheck_prints_the_derivative_kinds(tmp_path, capsys):
    from codegen.cli import main

    (tmp_path / "gcheck.yaml").write_text(textwrap.dedent(GRADCHECK_SPEC))
    assert main([str(tmp_path / "gcheck.yaml"), "-o", str(tmp_path / "out"), "--gradcheck"]) == 0
    out = capsys.readouterr().out
    for kind in ("jvp", "jacobian", "hvp", "hessian"):
        assert f"gcheck.f  {kind} dloss" in out
    assert "4 other derivatives" in out


def test_explain_shows_the_jvp_rules_used(tmp_path):
    from codegen.cli import main

    (tmp_path / "gcheck.yaml").write_text(textwrap.dedent(GRADCHECK_SPEC))
    assert main([str(tmp_path / "gcheck.yaml"), "-o", str(tmp_path / "out"), "--explain"]) == 0
    report = next((tmp_path / "out").glob("*.md")).read_text()
    section = report.split("### Derivatives beyond the gradient", 1)[1]
    assert "`f_jvp`: JVP rules applied to the forward steps" in section
    assert "tanh (diagonal Jacobian, JVP = VJP): y_dot = x_dot * (1 - y * y)" in section
    assert "matrix product (bilinear)" in section
    hvp = section.split("`f_hvp`", 1)[1]
    assert "forward over reverse" in hvp and "tanh" in hvp
    assert "At the example sizes (`loss` has 1 element, the wrt inputs 3): 1 VJP row." in section


def test_results_are_fresh_arrays_never_a_tangent_passed_in():
    module = codegen.load_module(textwrap.dedent("""
        functions:
          scaled:
            inputs: {x: [3]}
            derivatives: [jvp]
            steps: ["y = x * 1"]
            outputs: [y]
          ident:
            inputs: {x: [3]}
            derivatives: [jvp]
            steps: ["y = x"]
            outputs: [y]
          bias:
            inputs: {X: [2, 3], b: [3]}
            wrt: [b]
            derivatives: [jvp]
            steps: ["Y = X + b"]
            outputs: [Y]
    """), path="fresh.yaml")
    t = np.ones(3)
    for name in ("scaled", "ident"):
        _, dy = getattr(module, f"{name}_jvp")(np.arange(3.0), (t,))
        np.testing.assert_array_equal(dy, t)
        assert not np.shares_memory(dy, t)
    _, dY = module.bias_jvp(np.zeros((2, 3)), np.zeros(3), (t,))
    assert dY.shape == (2, 3) and dY.flags.writeable and not np.shares_memory(dY, t)


def test_names_the_derivative_functions_bind_are_reserved():
    """Every module-level name f_jvp, ..., f_hessian add is one codegen/reserved.py knows (so a
    spec name can never shadow it), and their bodies read no builtin beyond BODY_BUILTINS."""
    import ast
    import builtins

    from codegen import compiler, reserved
    from codegen.loader import load_spec

    compiled = compiler.compile_spec(load_spec(textwrap.dedent(SPEC), "derivs_all.yaml"))
    allowed = reserved.template_names() | {n for f in FUNCTIONS for n in reserved.function_names(f)}
    for backend in ("numpy", "numba"):
        tree = ast.parse(compiler.render(compiled, backend))
        bound = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.Assign):
                bound |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        assert "linear_hessian" in bound and "vector_out_jacobian" in bound
        assert bound <= allowed, bound - allowed
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in allowed - reserved.template_names():
                local = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)} | {
                    n.id for n in ast.walk(node)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                        and isinstance(n.ctx, ast.Load) and n.id not in local}
                assert {n for n in read if hasattr(builtins, n)} <= reserved.BODY_BUILTINS, node.name
