"""Issue 14 (tensors): misuse of the axes ops, batched @ and einsum is a located spec error."""

from __future__ import annotations

import pytest

import codegen
from codegen.errors import SpecError


def _spec(step: str, inputs: str = "{A: [B, N, D], C: [B, D, N]}") -> str:
    return (f"functions:\n  f:\n    inputs: {inputs}\n    steps:\n      - y = {step}\n"
            "    outputs: [y]\n")


@pytest.mark.parametrize("step, inputs, message", [
    ('einsum("ij,jk->ik", A, C)', None, r"operand 1 has rank 3 .* subscripts 'ij' name 2 axes"),
    ('einsum("bii,bij->bj", A, C)', None, r"repeat an index"),
    ('einsum("bij,bjk->bix", A, C)', None, r"output index 'x' is in no operand"),
    ('einsum("bij,bjk", A, C)', None, r"explicit output"),
    ("reshape(A, (B, N))", None, r"reshape: \[B, N, D\] cannot become \[B, N\]"),
    ("reshape(A, (B, N * E))", None, r"'E' is not a dim of the inputs"),
    ("transpose(A, (0, 1))", None, r"not a permutation"),
    ("swapaxes(A, 0, 3)", None, r"axis 3 is out of range"),
    ("concatenate((A, C), axis=1)", None, r"differ outside axis 1"),
    ("stack((A, C), axis=0)", None, r"stack: the operands' shapes"),
    ("A @ C @ A @ C", "{A: [B, N, D], C: [B, N, D]}", r"inner dims differ"),
    ("stack((A, A), axis=0)", "{A: [B, N, D, E]}", r"rank 5"),
    ("A @ v", "{A: [B, N, D], v: [N]}", r"inner dims differ"),
])
def test_misuse_is_a_located_spec_error(step, inputs, message):
    with pytest.raises(SpecError, match=message) as err:
        codegen.generate_source(_spec(step, inputs or "{A: [B, N, D], C: [B, D, N]}"))
    assert err.value.loc is not None and err.value.loc.line == 5
