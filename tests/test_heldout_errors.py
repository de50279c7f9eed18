"""Held-out acceptance tests of DESIGN.md §2: a bad spec exits 2 with `path:line:col: error: message`,
no traceback, nothing written; for the spec errors of §1b and §3b.

Each spec marks the line(s) the error may point at with a trailing YAML comment `#<<`.
"""

from __future__ import annotations

import pytest

from heldout_common import LOCATED, run_codegen, write_spec

import codegen

HEAD = """\
module: ho_err
dims: {N: 3, D: 4, K: 3}
functions:
"""

CASES = {
    "comparison_outside_where": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = sum(x > 0)  #<<
    outputs: [loss]
""",
    "rank5_input": """
  f:
    inputs:
      x: [2, 2, 2, 2, 2]  #<<
    steps:
      - loss = sum(x)
    outputs: [loss]
""",
    "rank5_step": """
  f:
    inputs: {x: [2, 2, 2, 2]}
    steps:
      - R = reshape(x, (2, 2, 2, 2, 1))  #<<
      - loss = sum(R)
    outputs: [loss]
""",
    "int_in_wrt": """
  f:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    wrt: [Z, y]  #<<
    steps:
      - loss = sum(take_along_axis(Z, y, axis=1))
    outputs: [loss]
""",
    "bool_in_wrt": """
  f:
    inputs: {x: [D], m: {shape: [D], dtype: bool}}
    wrt: [x, m]  #<<
    steps:
      - loss = sum(x * x)
    outputs: [loss]
""",
    "arith_on_int": """
  f:
    inputs: {Z: [N, K], y: {shape: [N, 1], dtype: int64}}
    steps:
      - loss = sum(Z * y)  #<<
    outputs: [loss]
""",
    "float_labels": """
  f:
    inputs: {Z: [N, K], y: [N, 1]}
    steps:
      - loss = sum(take_along_axis(Z, y, axis=1))  #<<
    outputs: [loss]
""",
    "one_hot_float": """
  f:
    inputs: {Z: [N, K], y: [N]}
    steps:
      - loss = sum(Z * one_hot(y, K))  #<<
    outputs: [loss]
""",
    "bad_dtype_input": """
  f:
    inputs:
      x: {shape: [D], dtype: complex128}  #<<
    steps:
      - loss = sum(x)
    outputs: [loss]
""",
    "einsum_unknown_output_index": """
  f:
    inputs: {A: [N, D], W: [D, K]}
    steps:
      - Z = einsum("ij,jk->il", A, W)  #<<
      - loss = sum(Z)
    outputs: [loss]
""",
    "einsum_operand_count": """
  f:
    inputs: {A: [N, D], W: [D, K]}
    steps:
      - Z = einsum("ij,jk->ik", A)  #<<
      - loss = sum(Z)
    outputs: [loss]
""",
    "einsum_rank_mismatch": """
  f:
    inputs: {A: [N, D], W: [D, K]}
    steps:
      - Z = einsum("ijk,jk->ik", A, W)  #<<
      - loss = sum(Z)
    outputs: [loss]
""",
    "einsum_size_mismatch": """
  f:
    inputs: {A: [N, D], W: [K, K]}
    steps:
      - Z = einsum("ij,jk->ik", A, W)  #<<
      - loss = sum(Z)
    outputs: [loss]
""",
    "einsum_not_string": """
  f:
    inputs: {A: [N, D]}
    steps:
      - Z = einsum(A, A)  #<<
      - loss = sum(Z)
    outputs: [loss]
""",
    "reshape_size": """
  f:
    inputs: {X: [N, D]}
    steps:
      - R = reshape(X, (N, N))  #<<
      - loss = sum(R)
    outputs: [loss]
""",
    "concat_mismatch": """
  f:
    inputs: {a: [N, D], b: [K, K]}
    steps:
      - C = concatenate((a, b), axis=1)  #<<
      - loss = sum(C)
    outputs: [loss]
""",
    "stack_mismatch": """
  f:
    inputs: {a: [N, D], b: [N, K]}
    steps:
      - C = stack((a, b), axis=0)  #<<
      - loss = sum(C)
    outputs: [loss]
""",
    "transpose_bad_axes": """
  f:
    inputs: {X: [N, D, K]}
    steps:
      - T = transpose(X, (0, 0, 1))  #<<
      - loss = sum(T)
    outputs: [loss]
""",
    "swapaxes_out_of_range": """
  f:
    inputs: {X: [N, D]}
    steps:
      - T = swapaxes(X, 1, 2)  #<<
      - loss = sum(T)
    outputs: [loss]
""",
    "max_axis_out_of_range": """
  f:
    inputs: {X: [N, D]}
    steps:
      - loss = sum(max(X, axis=2))  #<<
    outputs: [loss]
""",
    "matmul_mismatch": """
  f:
    inputs: {X: [N, D], W: [K, K]}
    steps:
      - loss = sum(X @ W)  #<<
    outputs: [loss]
""",
    "batched_matmul_batch_mismatch": """
  f:
    inputs: {X: [2, N, D], W: [3, D, K]}
    steps:
      - loss = sum(X @ W)  #<<
    outputs: [loss]
""",
    "diag_rank3": """
  f:
    inputs: {X: [N, D, K]}
    steps:
      - loss = sum(diag(X))  #<<
    outputs: [loss]
""",
    "eye_unknown": """
  f:
    inputs: {X: [D, D]}
    steps:
      - loss = sum(X * eye(Q))  #<<
    outputs: [loss]
""",
    "clip_arity": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = sum(clip(x, 0))  #<<
    outputs: [loss]
""",
    "std_ddof": """
  f:
    inputs: {x: [N, D]}
    steps:
      - loss = sum(std(x, axis=0, ddof=1))  #<<
    outputs: [loss]
""",
    "unknown_function": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = sum(frobnicate(x))  #<<
    outputs: [loss]
""",
    "recursion": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = sum(g(x))  #<<
    outputs: [loss]
  g:
    inputs: {x: [D]}
    steps:
      - y = f(x) * x  #<<
    outputs: [y]
""",
    "call_arity": """
  layer:
    inputs: {X: [N, D], W: [D, K]}
    steps:
      - Y = X @ W
    outputs: [Y]
  f:
    inputs: {X: [N, D], W: [D, K]}
    steps:
      - loss = sum(layer(X))  #<<
    outputs: [loss]
""",
    "call_shape_mismatch": """
  layer:
    inputs: {X: [M, P], W: [P, Q]}
    steps:
      - Y = X @ W
    outputs: [Y]
  f:
    inputs: {X: [N, D], W: [K, K]}
    steps:
      - loss = sum(layer(X, W))  #<<
    outputs: [loss]
""",
    "unknown_dim_in_step": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = sum(x) / sqrt(E)  #<<
    outputs: [loss]
""",
    "assign_twice": """
  f:
    inputs: {x: [D]}
    steps:
      - y = x * 2
      - y = x * 3  #<<
      - loss = sum(y)
    outputs: [loss]
""",
    "not_assignment": """
  f:
    inputs: {x: [D]}
    steps:
      - sum(x)  #<<
    outputs: [loss]
""",
    "eval_attempt": """
  f:
    inputs: {x: [D]}
    steps:
      - loss = __import__("os").system("echo pwned")  #<<
    outputs: [loss]
""",
    "hvp_nonscalar": """
  f:  #<<
    inputs: {x: [D]}
    derivatives: [hvp]  #<<
    steps:
      - y = tanh(x)  #<<
    outputs: [y]
""",
    "hessian_nonscalar": """
  f:  #<<
    inputs: {x: [D]}
    derivatives: [jvp, hessian]  #<<
    steps:
      - y = tanh(x)  #<<
    outputs: [y]
""",
    "unknown_kind": """
  f:
    inputs: {x: [D]}
    derivatives: [jvp, hessain]  #<<
    steps:
      - loss = sum(x * x)
    outputs: [loss]
""",
    "unknown_kind_module_level": None,  # special-cased below
    "log_softmax_bad_axis": """
  f:
    inputs: {x: [N, D]}
    steps:
      - loss = sum(log_softmax(x, axis=5))  #<<
    outputs: [loss]
""",
    "one_hot_bad_depth": """
  f:
    inputs: {Z: [N, K], y: {shape: [N], dtype: int64}}
    steps:
      - loss = sum(Z * one_hot(y, 2.5))  #<<
    outputs: [loss]
""",
    "take_along_axis_rank": """
  f:
    inputs: {Z: [N, K], y: {shape: [N], dtype: int64}}
    steps:
      - loss = sum(take_along_axis(Z, y, axis=1))  #<<
    outputs: [loss]
""",
}


def _spec_text(name: str) -> str:
    if name == "unknown_kind_module_level":
        return (
            "module: ho_err\nderivatives: [gradient2]  #<<\nfunctions:\n"
            "  f:\n    inputs: {x: [3]}\n    steps:\n      - loss = sum(x * x)\n    outputs: [loss]\n"
        )
    return HEAD + CASES[name].lstrip("\n")


def _marked_lines(text: str) -> set[int]:
    return {i for i, line in enumerate(text.splitlines(), start=1) if "#<<" in line}


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_error_is_located(tmp_path, name):
    text = _spec_text(name)
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    proc = run_codegen([str(spec), "-o", str(out), "--backend", "all"], cwd=tmp_path)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{text}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    m = LOCATED.search(proc.stderr)
    assert m, f"no located error in stderr: {proc.stderr!r}"
    assert m.group("path").endswith("bad.yaml")
    assert int(m.group("line")) in _marked_lines(text), (
        f"error at line {m.group('line')}, expected one of {_marked_lines(text)}:\n{proc.stderr}\n{text}"
    )
    assert int(m.group("col")) >= 1
    assert not out.exists() or not any(out.iterdir()), "a bad spec must write nothing"


def test_python_api_raises_located_spec_error():
    text = _spec_text("hvp_nonscalar")
    with pytest.raises(codegen.SpecError) as err:
        codegen.generate_source(text)
    assert LOCATED.search(str(err.value)), str(err.value)


def test_good_spec_with_all_kinds_writes_three_modules(tmp_path):
    spec = write_spec(
        tmp_path,
        """
        module: ho_ok
        functions:
          f:
            inputs: {x: [3]}
            derivatives: [jvp, jacobian, hvp, hessian]
            steps:
              - loss = sum(tanh(x) ** 2)
            outputs: [loss]
        """,
    )
    proc = run_codegen([str(spec), "-o", "out", "--backend", "all", "--gradcheck"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"ho_ok.py", "ho_ok_numba.py", "ho_ok_xp.py"}
