"""The op table's value checks, for the Numba module: every op and every shape case of
``test_ops.CASES``, not only their gradients.

The cases are batched into a few functions of one spec (one Numba module, so the compile is
shared): function ``c<k>`` has one step per case, ``y<i> = EXPR`` with the case's inputs renamed
apart, and every step is an output.  Each output of ``f``, ``f_value_and_grad`` and
``f_forward`` is compared with NumPy written directly (``test_ops.eval_numpy``) and with the
reference interpreter.  The first case of each function also has its gradients compared with
the NumPy module's (every case's gradients are ``test_numba.py``'s and the differential
fuzzer's: a first output summing every case would triple the compile time).  Functions of 8
cases: a cold compile costs about 0.5 s of CPU per case, several seconds for ``sin``/``cos``
(their loops are written twice, see the README); Numba's cache makes later runs fast.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from helpers import assert_close
from test_ops import CASES, _inputs, eval_numpy

import codegen
from codegen.compiler import compile_spec
from codegen.interpret import interpret
from codegen.loader import load_spec

pytest.importorskip("numba")

CHUNK = 8
CHUNKS = [CASES[k:k + CHUNK] for k in range(0, len(CASES), CHUNK)]


def _renamed(expr: str, names: list[str], k: int) -> str:
    return re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: f"{m.group(1)}{k}", expr)


def _batch_spec() -> str:
    lines = ["module: opcases", "dims: {M: 3, N: 4, P: 2}", "functions:"]
    for c, chunk in enumerate(CHUNKS):
        inputs, steps, outs = [], [], []
        for i, (_, expr, ins, _) in enumerate(chunk):
            k = c * CHUNK + i
            inputs += [f"      {name}{k}: [{', '.join(map(str, shape))}]"
                       for name, shape in ins.items()]
            steps.append(f"      - y{k} = {_renamed(expr, list(ins), k)}")
            outs.append(f"y{k}")
        lines += [f"  c{c}:", "    inputs:", *inputs, "    steps:", *steps,
                  f"    outputs: [{', '.join(outs)}]"]
    return "\n".join(lines) + "\n"


_modules: dict = {}


def _modules_once():  # type: ignore[no-untyped-def]
    if not _modules:
        text = _batch_spec()
        _modules["compiled"] = compile_spec(load_spec(text, "opcases.yaml"))
        _modules["numpy"] = codegen.load_module(text, path="opcases.yaml")
        _modules["numba"] = codegen.load_module(text, backend="numba", path="opcases.yaml")
    return _modules


@pytest.mark.parametrize("c", range(len(CHUNKS)))
def test_numba_values_of_every_op_case(c):
    mods = _modules_once()
    cf = mods["compiled"].functions[c]
    args, env = [], []
    for i, (case_id, expr, ins, positive) in enumerate(CHUNKS[c]):
        xs = _inputs(ins, positive, np.random.default_rng(zlib.crc32(case_id.encode())))
        args += xs
        env.append(dict(zip(ins, xs)))
    expected = interpret(cf, args)
    nb = mods["numba"]
    name = f"c{c}"
    calls = {"f": getattr(nb, name)(*args),
             "f_value_and_grad": getattr(nb, name + "_value_and_grad")(*args)[0],
             "f_forward": getattr(nb, name + "_forward")(*args)[0]}
    for call, outs in calls.items():
        if len(CHUNKS[c]) == 1:  # (a last chunk of one case: one output, not a tuple)
            outs = (outs,)
        assert len(outs) == len(CHUNKS[c])
        for i, (case_id, expr, _, _) in enumerate(CHUNKS[c]):
            assert np.asarray(outs[i]).dtype == np.float64, (call, case_id)
            direct = np.asarray(eval_numpy(expr, env[i]))
            assert_close(outs[i], direct, rtol=1e-9, atol=1e-10, what=f"{call}: {case_id}")
            assert_close(outs[i], expected[i], rtol=1e-10, atol=1e-12,
                         what=f"{call}: {case_id} (interpreter)")
    # the first case's gradients, from the same kernel
    _, g_nb = getattr(nb, name + "_value_and_grad")(*args)
    _, g_np = getattr(mods["numpy"], name + "_value_and_grad")(*args)
    for field, a, b in zip(g_np._fields, g_np, g_nb):
        assert_close(b, a, rtol=1e-9, atol=1e-10, what=f"d{field} (value_and_grad)")
