"""The reference interpreter (codegen/interpret.py) and the value checks of --gradcheck.

The interpreter is checked against an independent reference (NumPy written directly, and
scipy.special for the stable ML functions) on every case of the op table; --gradcheck must fail,
naming the function and the output, when a generated module returns a wrong value.
"""

from __future__ import annotations

import re
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close
from test_ops import CASES, _inputs, _spec, eval_numpy

import codegen
from codegen import cli, importing, parse
from codegen.compiler import compile_spec
from codegen.finite_differences import check_spec
from codegen.interpret import InterpretError, implementation, interpret
from codegen.ir import Op, Origin
from codegen.loader import load_spec
from codegen.ops import CALLABLE


def _function(text: str, name: str = "f"):
    spec = load_spec(textwrap.dedent(text), "t.yaml")
    return next(cf for cf in compile_spec(spec).functions if cf.function.name == name)


def test_every_op_a_spec_can_produce_is_implemented():
    parser_ops = set(parse._BINOPS.values()) | {"neg", "pow", "transpose", "identity", "copy"}
    missing = sorted(op for op in set(CALLABLE) | parser_ops if implementation(op) is None)
    assert not missing, missing


def test_an_unknown_op_is_a_clear_error():
    cf = _function("""
        functions:
          f:
            inputs: {x: [N]}
            steps: [y = tanh(x)]
            outputs: [y]
        """)
    program = cf.function.program
    program.ops[0] = Op("lgamma", program.ops[0].args, (), "y", "forward", 1,
                        Origin("y = lgamma(x)", 5))
    with pytest.raises(InterpretError, match=r"no implementation of op 'lgamma' \(step 'y = lgamma"):
        interpret(cf, [np.ones(3)])


def test_inputs_are_checked_and_never_modified():
    cf = _function("""
        functions:
          f:
            inputs: {A: [N, K], b: [K]}
            steps: [y = A + b, z = y.T]
            outputs: [z, A]
        """)
    A, b = np.ones((2, 3)), np.arange(3.0)
    z, a_out = interpret(cf, {"A": A, "b": b})
    assert_close(z, (A + b).T)
    a_out[0, 0] = 5  # outputs are fresh arrays
    assert A[0, 0] == 1
    with pytest.raises(InterpretError, match="dim K"):
        interpret(cf, [A, np.ones(4)])
    with pytest.raises(InterpretError, match="expected 2 inputs"):
        interpret(cf, [A])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreter_matches_direct_numpy_on_every_op_case(case):
    name, expr, inputs, positive = case
    cf = compile_spec(load_spec(_spec(expr, inputs), "t.yaml")).functions[0]
    args = _inputs(inputs, positive, np.random.default_rng(zlib.crc32(name.encode())))
    [y] = interpret(cf, args)
    assert_close(y, np.asarray(eval_numpy(expr, dict(zip(inputs, args)))), rtol=1e-12,
                 atol=1e-13, what=name)
    [y32] = interpret(cf, [a.astype(np.float32) for a in args], dtype=np.float32)
    assert y32.dtype == np.float32


def test_stable_functions_match_scipy_at_extreme_inputs():
    special = pytest.importorskip("scipy.special")
    x = np.array([[-1000.0, 0.0, 1000.0, 3.5], [-745.0, -30.0, 40.0, 700.0], [1, 2, 3, 4]])
    for step, reference in [
        ("y = logsumexp(x, axis=1)", special.logsumexp(x, axis=1)),
        ("y = logsumexp(x, axis=0, keepdims=True)", special.logsumexp(x, axis=0, keepdims=True)),
        ("y = logsumexp(x)", special.logsumexp(x)),
        ("y = logsumexp(x, keepdims=True)", special.logsumexp(x, keepdims=True)),
        ("y = softmax(x, axis=1)", special.softmax(x, axis=1)),
        ("y = softmax(x)", special.softmax(x)),
        ("y = log_softmax(x, axis=0)", special.log_softmax(x, axis=0)),
        ("y = sigmoid(x)", special.expit(x)),
        ("y = softplus(x)", np.logaddexp(0, x)),
    ]:
        cf = _function(f"""
            functions:
              f:
                inputs: {{x: [M, N]}}
                steps: ["{step}"]
                outputs: [y]
            """)
        [y] = interpret(cf, [x])
        assert np.all(np.isfinite(y)), step
        assert_close(y, reference, rtol=1e-13, atol=1e-300, what=step)


# --------------------------------------------------------------------------- --gradcheck values

SPEC = """\
module: planted
dims: {N: 3, K: 4}
functions:
  f:
    inputs: {X: [N, K], w: [K]}
    steps:
      - Y = tanh(X * w)
      - Z = Y.T
      - loss = mean(Y ** 2)
    outputs: [loss, Z]
"""


def _planted(monkeypatch: pytest.MonkeyPatch, call: str, output: int) -> None:
    """Make the imported module's ``call`` return output ``output`` 0.1 % off (gradients intact)."""
    real = importing.import_source

    def wrong(result, k):
        outs = list(result)
        outs[k] = outs[k] * 1.001
        return tuple(outs)

    def import_source(source, name, backend="numpy"):
        module = real(source, name, backend)
        original = getattr(module, call)
        def planted(*a):
            if call == "f":
                return wrong(original(*a), output)
            result = original(*a)
            return wrong(result[0], output), result[1]
        monkeypatch.setattr(module, call, planted)
        return module

    monkeypatch.setattr(importing, "import_source", import_source)


def test_gradcheck_values_pass_on_a_correct_module():
    results = check_spec(load_spec(SPEC, "planted.yaml"))
    values = [r for r in results if r.kind == "value"]
    assert [r.wrt for r in values] == ["loss", "Z"]
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert {r.wrt for r in results if r.kind == "gradient"} == {"X", "w"}


@pytest.mark.parametrize("call", ["f", "f_value_and_grad", "f_forward"])
@pytest.mark.parametrize("output", [0, 1], ids=["first", "ride-along"])
def test_gradcheck_fails_on_a_planted_wrong_value(monkeypatch, call, output):
    _planted(monkeypatch, call, output)
    results = check_spec(load_spec(SPEC, "planted.yaml"))
    bad = [r for r in results if not r.ok]
    assert [(r.kind, r.wrt) for r in bad] == [("value", ["loss", "Z"][output])]
    assert call in bad[0].detail.split(", ") and 1e-4 < bad[0].error < 1e-2


def test_gradcheck_cli_exits_1_and_names_the_wrong_output(monkeypatch, capsys, tmp_path: Path):
    _planted(monkeypatch, "f_forward", 1)
    spec = tmp_path / "planted.yaml"
    spec.write_text(SPEC)
    rc = cli.main([str(spec), "-o", str(tmp_path / "out"), "--gradcheck"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert re.search(r"planted\.f\s+value Z\s+\S+\s+FAIL", out), out
    assert re.search(r"VALUE MISMATCH: planted.f output Z differs .* in: f, f_forward$", out, re.MULTILINE), out
    assert re.search(r"planted\.f\s+dX\s+\S+\s+ok", out), out


def test_gradcheck_fails_on_a_planted_wrong_gradient_of_either_call(monkeypatch):
    """A gradient wrong only in f_backward (or only in f_value_and_grad) fails the check."""
    real = importing.import_source
    for call in ("f_backward", "f_value_and_grad"):
        def import_source(source, name, backend="numpy", call=call):
            module = real(source, name, backend)
            original = getattr(module, call)

            def planted(*a):
                result = original(*a)
                grads = result if call == "f_backward" else result[1]
                grads = grads._replace(w=grads.w * 1.01)
                return grads if call == "f_backward" else (result[0], grads)

            monkeypatch.setattr(module, call, planted)
            return module

        monkeypatch.setattr(importing, "import_source", import_source)
        bad = [r for r in check_spec(load_spec(SPEC, "planted.yaml")) if not r.ok]
        assert [(r.kind, r.wrt) for r in bad] == [("gradient", "w")], call
        assert bad[0].detail.startswith("forward+backward" if call == "f_backward"
                                        else "value_and_grad")


def test_gradcheck_reports_a_crashing_call_as_a_failure(monkeypatch):
    real = importing.import_source

    def import_source(source, name, backend="numpy"):
        module = real(source, name, backend)

        def crash(*a):
            raise NameError("name 'loss_3' is not defined")

        monkeypatch.setattr(module, "f", crash)
        return module

    monkeypatch.setattr(importing, "import_source", import_source)
    bad = [r for r in check_spec(load_spec(SPEC, "planted.yaml")) if not r.ok]
    assert [(r.kind, r.wrt) for r in bad] == [("value", "loss"), ("value", "Z")]
    assert "f raised NameError: name 'loss_3'" in bad[0].detail


def test_gradcheck_catches_the_numba_mean_value_bug():
    """Issue 11's minimal case: Numba's mean was off by K**2 while its gradient was right."""
    pytest.importorskip("numba")
    text = "module: m\nfunctions:\n  f:\n    inputs: {X: [N, K]}\n    steps:\n" \
           "      - loss = mean(X ** 2)\n    outputs: [loss]\n"
    results = codegen.gradcheck(text, backend="numba")
    assert all(r.ok for r in results), [r for r in results if not r.ok]
