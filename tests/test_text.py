"""Comment folding (``codegen/text.py``): the fast path folds exactly as ``textwrap`` does."""

from __future__ import annotations

import random
import textwrap

from codegen.text import _fold

WORDS = ["a", "ab", "a50", "=", "tanh(a49)", "→", "Hadamard", "product:", "é", "x" * 30,
         "y" * 95, "z" * 120]


def _line(rng: random.Random) -> str:
    parts = [" " * rng.choice([0, 0, 0, 1, 2, 5])]
    for _ in range(rng.randint(0, 40)):
        parts += [rng.choice(WORDS), " " * rng.choice([1, 1, 1, 2, 3, 7])]
    line = "".join(parts)
    if rng.random() < 0.5:
        line = line.rstrip(" ")
    if rng.random() < 0.02:
        line = line.replace(" ", "\t", 1)  # not the fast path's: textwrap expands tabs
    return line


def test_fold_is_textwrap():
    rng = random.Random(0)
    for _ in range(5000):
        line = _line(rng)
        width = rng.choice([93, 93, 20, 10, 5, 1])
        lead = line[: len(line) - len(line.lstrip())]
        indent = rng.choice([lead + "    ", "", " " * 12])
        want = textwrap.wrap(line, width, initial_indent="", subsequent_indent=indent,
                             break_long_words=False, break_on_hyphens=False) or [line]
        assert _fold(line, width, indent) == want, (line, width, indent)
