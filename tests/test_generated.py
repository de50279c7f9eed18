"""Functional tests of generated modules (DESIGN.md §3): generate from inline specs, import, call."""

from __future__ import annotations

import ast
import inspect
import sys

import numpy as np
import pytest
from helpers import assert_close, module_from, numeric_grad

import codegen

MLP = """
module: mlp
dims: {N: 6, D: 4, H: 5, K: 3}
functions:
  mlp_mse:
    doc: Two-layer tanh perceptron.
    inputs: {X: [N, D], Y: [N, K], W1: [D, H], b1: [H], W2: [H, K], b2: [K]}
    wrt: [W1, b1, W2, b2]
    steps:
      - Z1 = X @ W1 + b1
      - H1 = tanh(Z1)
      - Z2 = H1 @ W2 + b2
      - loss = sum((Z2 - Y) ** 2)
    outputs: [loss, Z2]
"""

rng = np.random.default_rng(0)


def mlp_args(dtype=np.float64):
    shapes = [(6, 4), (6, 3), (4, 5), (5,), (5, 3), (3,)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.fixture(scope="module")
def mlp():
    return module_from(MLP)


def test_public_names_and_grads_type(mlp):
    for name in ["mlp_mse", "mlp_mse_forward", "mlp_mse_backward", "mlp_mse_value_and_grad",
                 "mlp_mse_Grads"]:
        assert hasattr(mlp, name), name
    assert mlp.mlp_mse_Grads._fields == ("W1", "b1", "W2", "b2")
    assert issubclass(mlp.mlp_mse_Grads, tuple)
    assert list(mlp.mlp_mse_Grads.__annotations__) == ["W1", "b1", "W2", "b2"]


def test_four_entry_points_agree(mlp):
    args = mlp_args()
    loss, Z2 = mlp.mlp_mse(*args)
    (loss2, Z2b), saved = mlp.mlp_mse_forward(*args)
    grads = mlp.mlp_mse_backward(saved)
    (loss3, Z2c), grads_vg = mlp.mlp_mse_value_and_grad(*args)
    assert loss == loss2 == loss3
    np.testing.assert_array_equal(Z2, Z2b)
    for a, b, x in zip(grads, grads_vg, args[2:]):
        assert_close(a, b)
        assert a.shape == x.shape and a.dtype == x.dtype
    g2 = mlp.mlp_mse_backward(saved, 2.0)
    for a, b in zip(g2, grads):
        assert_close(a, 2 * b)


def test_gradients_match_finite_differences(mlp):
    args = mlp_args()
    _, grads = mlp.mlp_mse_value_and_grad(*args)
    for field, i in zip(grads._fields, range(2, 6)):
        num = numeric_grad(lambda a: float(mlp.mlp_mse(*a)[0]), args, i)
        assert_close(getattr(grads, field), num, rtol=1e-5, atol=1e-6, what=field)


def test_inputs_by_keyword(mlp):
    X, Y, W1, b1, W2, b2 = mlp_args()
    pos = mlp.mlp_mse_value_and_grad(X, Y, W1, b1, W2, b2)
    kw = mlp.mlp_mse_value_and_grad(b2=b2, W2=W2, b1=b1, W1=W1, Y=Y, X=X)
    assert pos[0][0] == kw[0][0]


def test_saved_holds_only_what_backward_needs(mlp):
    _, saved = mlp.mlp_mse_forward(*mlp_args())
    fields = set(saved._fields)
    assert {"X", "W2", "H1"} <= fields
    # Y, W1, b1, b2, Z1 and Z2 are not needed by the backward pass
    assert not fields & {"Y", "W1", "b1", "b2", "Z1", "Z2"}


@pytest.mark.parametrize("index, bad, message", [
    (2, np.zeros((5, 5)), r"input W1 has shape \(5, 5\); expected \[D, H\]"),
    (3, np.zeros((5, 1)), r"input b1 has shape \(5, 1\); expected \[H\]"),
    (1, np.zeros((7, 3)), r"input Y has shape \(7, 3\); expected \[N, K\] with N=6"),
    (0, np.zeros((6, 4), dtype=np.float32), r"input X has dtype float32; expected float64"),
    (0, np.zeros((6, 4), dtype=np.complex128), r"input X has dtype complex128"),
    (0, "not an array", r"input X must be a float64 array"),
])
def test_wrong_inputs_raise_value_error_naming_input(mlp, index, bad, message):
    args = mlp_args()
    args[index] = bad
    for entry in (mlp.mlp_mse, mlp.mlp_mse_forward, mlp.mlp_mse_value_and_grad):
        with pytest.raises(ValueError, match=message):
            entry(*args)


def test_backward_checks_cotangent(mlp):
    _, saved = mlp.mlp_mse_forward(*mlp_args())
    with pytest.raises(ValueError, match="g has shape"):
        mlp.mlp_mse_backward(saved, np.ones(3))


def test_float32_spec_stays_float32():
    mod = module_from(MLP.replace("module: mlp", "module: mlp32\ndtype: float32"))
    args = mlp_args(np.float32)
    (loss, Z2), grads = mod.mlp_mse_value_and_grad(*args)
    assert Z2.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    _, saved = mod.mlp_mse_forward(*args)
    assert all(g.dtype == np.float32 for g in mod.mlp_mse_backward(saved, np.float32(1.5)))
    with pytest.raises(ValueError, match="expected float32"):
        mod.mlp_mse(*mlp_args())


def test_float32_nonscalar_seed_keeps_dtype():
    mod = module_from("""
        module: v32
        dtype: float32
        functions:
          f:
            inputs: {a: [3], B: [3, 2]}
            steps: [y = a @ B]
            outputs: [y]
        """)
    a, B = np.ones(3, np.float32), np.ones((3, 2), np.float32)
    _, grads = mod.f_value_and_grad(a, B)
    assert grads.a.dtype == np.float32 and grads.B.dtype == np.float32


def test_scalar_input_accepts_python_number_and_returns_scalar_gradient():
    mod = module_from("""
        functions:
          f:
            inputs: {x: [N], s: []}
            steps: [y = sum(x * s)]
            outputs: [y]
        """)
    x = np.arange(3.0)
    y, grads = mod.f_value_and_grad(x, 2.0)
    assert y == 6.0
    assert np.shape(grads.s) == () and float(grads.s) == 3.0
    assert_close(grads.x, [2.0, 2.0, 2.0])


def test_nonscalar_output_backward_uses_g_and_scalar_g_broadcasts():
    mod = module_from("""
        functions:
          f:
            inputs: {A: [M, N], x: [N]}
            steps: [y = tanh(A @ x)]
            outputs: [y]
        """)
    A, x = rng.standard_normal((4, 3)), rng.standard_normal(3)
    y, saved = mod.f_forward(A, x)
    u = rng.standard_normal(4)
    grads = mod.f_backward(saved, u)
    assert_close(grads.x, A.T @ (u * (1 - y**2)))
    assert_close(grads.A, np.outer(u * (1 - y**2), x))
    ones = mod.f_backward(saved, 1.0)
    assert_close(ones.x, A.T @ (1 - y**2))
    _, vg = mod.f_value_and_grad(A, x)
    assert_close(vg.x, ones.x)


def test_gradient_is_a_fresh_array_not_an_alias():
    mod = module_from("""
        functions:
          f:
            inputs: {a: [N], b: [N]}
            steps: [y = sum(a * b)]
            outputs: [y]
        """)
    a, b = np.ones(3), np.arange(3.0)
    _, grads = mod.f_value_and_grad(a, b)
    assert_close(grads.a, b)
    assert grads.a is not b and not np.shares_memory(grads.a, b)
    grads.a[0] = 99.0
    assert b[0] == 0.0


def test_input_not_reaching_the_output_gets_zero_gradient():
    mod = module_from("""
        functions:
          f:
            inputs: {a: [N], b: [N, 2]}
            steps: [y = sum(a ** 2)]
            outputs: [y]
        """)
    _, grads = mod.f_value_and_grad(np.ones(3), np.ones((3, 2)))
    np.testing.assert_array_equal(grads.b, np.zeros((3, 2)))


def test_one_output_is_returned_bare_several_as_tuple():
    mod = module_from("""
        functions:
          one:
            inputs: {a: [N]}
            steps: [y = sum(a)]
            outputs: [y]
          two:
            inputs: {a: [N]}
            steps: [s = exp(a), y = sum(s)]
            outputs: [y, s]
        """)
    assert mod.one(np.ones(3)) == 3.0
    y, s = mod.two(np.zeros(2))
    assert y == 2.0 and s.shape == (2,)


def test_docstrings_are_escaped_and_round_trip():
    doc = 'Tricky """ quotes\\n and a backslash \\\\ and\n"""\nimport os  # not code'
    spec = {"doc": doc, "functions": {"f": {"doc": doc + " (f)", "inputs": {"a": []},
                                            "steps": ["y = a * 2"], "outputs": ["y"]}}}
    import yaml

    src = codegen.generate_source(yaml.safe_dump(spec), path="evil.yaml")
    tree = ast.parse(src)
    assert ast.get_docstring(tree, clean=False) == doc
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f")
    assert ast.get_docstring(fn).startswith(inspect.cleandoc(doc + " (f)"))
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                   any(a.name == "os" for a in n.names) for n in ast.walk(tree))


def test_generated_code_shape_of_the_backward():
    src = codegen.generate_source(MLP)
    vg = src[src.index("def mlp_mse_value_and_grad"):]
    assert "np.ones" not in src  # sums never build a ones-matrix
    # tanh reuses its output (computed in place into H1's buffer once H1 is dead)
    assert "1 - H1 * H1" in vg or "np.multiply(H1, H1, out=H1)" in vg
    assert "np.tanh" not in vg.split("# Z1 = X @ W1 + b1, backward:")[1]  # ... nor recomputes it
    assert " * 1\n" not in vg and "= 1 * " not in vg and "g *" not in vg  # the seed g = 1 is folded
    # the rule with the names of the line (never the rule's generic letters)
    assert "#   → left product: dW1 = X.T @ dZ1\n    dW1 = X.T @ dZ1" in vg
    assert "import codegen" not in src and "from codegen" not in src


def test_exp_reuses_its_output():
    src = codegen.generate_source("""
        functions:
          f:
            inputs: {a: [N]}
            steps: [e = exp(a), y = sum(e)]
            outputs: [y]
        """.replace("\n        ", "\n"))
    backward = src[src.index("def f_backward"):src.index("def f_value_and_grad")]
    assert "np.exp" not in backward and "e" in backward


def test_dead_steps_are_not_generated_and_views_are_not_cse_names():
    src = codegen.generate_source("""
functions:
  f:
    inputs: {X: [N, D], W1: [D, H], W2: [D, H]}
    steps: [unused = exp(X), Z = X @ W1, Z2 = X @ W2, y = sum(Z * Z2)]
    outputs: [y]
""")
    assert "unused" not in src
    code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("#"))
    assert code.count("X.T @") == 4  # two per backward variant, each written inline


def test_deterministic_source():
    assert codegen.generate_source(MLP) == codegen.generate_source(MLP)


def test_load_module_from_file_path(tmp_path):
    p = tmp_path / "spec_file.yaml"
    p.write_text(MLP)
    mod = codegen.load_module(p)
    assert mod.__name__ == "mlp"
    assert "spec_file" not in sys.modules


def test_spec_error_from_api():
    with pytest.raises(codegen.SpecError, match=r"^bad\.yaml:\d+:\d+: error: "):
        codegen.generate_source("functions: {}", path="bad.yaml")


def test_readme_rules_table_matches_rule_table():
    from pathlib import Path

    from codegen.docs import rules_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- rules:start -->\n")[1].split("<!-- rules:end -->")[0]
    assert block == rules_table(), "README rules table is stale: run python -m codegen.docs"


def test_readme_excerpt_is_real_generated_code():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    excerpt = readme.split("```python\ndef mlp_mse_value_and_grad")[1].split("```")[0]
    assert "def mlp_mse_value_and_grad" + excerpt in (root / "generated" / "nn.py").read_text()
