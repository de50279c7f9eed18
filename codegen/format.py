"""Black, applied where it changes something: the output is exactly what black makes of the module.

Formatting a whole module with black costs about a millisecond a line, which made a 1000-step spec
take many seconds.  The emitter already writes short statements the way black would (spaces
around operators, ``**`` hugging simple operands, no redundant parentheses), so only the lines
black may change are handed to it: statements longer than the line limit and docstrings.  They
are batched into one stub module per indentation (one black call each), each chunk wrapped so
that black sees the same indentation and the same docstring position as in the real module.
``tests/test_format.py`` checks that the result is stable under black on the whole file.

The longest lines of a long spec are flat lists of names (a kernel's saved values, returned,
unpacked, passed as ``name=name``), which black explodes one item a line; ``_exploded`` writes
those few forms as black writes them without calling it (``tests/test_format.py`` compares them
with black), and everything else still goes through black.
"""

from __future__ import annotations

import re

import black

LINE_LENGTH = 99
MODE = black.Mode(line_length=LINE_LENGTH)
_MARK = "# @@codegen-chunk@@"


def format_module(source: str) -> str:
    """``source`` formatted as black would format it (see the module docstring for how)."""
    lines = source.splitlines(keepends=True)
    chunks = _chunks(lines)
    if not chunks:
        return source
    texts = [("".join(lines[a:b]), doc) for a, b, doc in chunks]
    exploded = [None if doc else _exploded(text) for text, doc in texts]
    blacked = iter(_format_chunks([t for t, e in zip(texts, exploded, strict=True) if e is None]))
    formatted = [e if e is not None else next(blacked) for e in exploded]
    out: list[str] = []
    row = 0
    for (a, b, _), text in zip(chunks, formatted):
        out.extend(lines[row:a])
        out.append(text)
        row = b
    out.extend(lines[row:])
    return "".join(out)


def _chunks(lines: list[str]) -> list[tuple[int, int, bool]]:
    """(first row, end row, is a docstring) of each span black may change."""
    spans = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith('"""'):
            j = i
            if not (len(stripped) >= 6 and stripped.endswith('"""')):
                j += 1
                while j < len(lines) and not lines[j].rstrip().endswith('"""'):
                    j += 1
            spans.append((i, j + 1, True))
            i = j + 1
            continue
        if len(lines[i].rstrip("\n")) > LINE_LENGTH and not stripped.startswith("#"):
            spans.append((i, i + 1, False))
        i += 1
    return spans


_NAME = r"[A-Za-z_]\w*"
_NAMES = rf"{_NAME}(?:, {_NAME})+"  # two or more
_KWARGS = rf"{_NAME}={_NAME}(?:, {_NAME}={_NAME})*"
# Statements black splits at one bracket around a flat list: (head, items, tail) by name.
_FLAT_LISTS = [
    # return a, b, c
    (re.compile(rf"(?P<ind> *)return (?P<items>{_NAMES})\n"), "return (", ")"),
    # def f(a, b, c):  at the top level (black puts blank lines around nested functions)
    (re.compile(rf"(?P<ind>)def (?P<f>{_NAME})\((?P<items>{_NAME}(?:, {_NAME})*)\):\n"),
     "def {f}(", "):"),
    # a, b, c = f(x, *y)  and  a, b, c = saved
    (re.compile(rf"(?P<ind> *)(?P<items>{_NAMES}) = "
                rf"(?P<rhs>{_NAME}(?:\(\*?{_NAME}(?:, \*?{_NAME})*\))?)\n"), "(", ") = {rhs}"),
    # return x, S(a=a, b=b)  and  return _DTYPE.type(x), S(a=a, b=b)
    (re.compile(rf"(?P<ind> *)return (?P<first>{_NAME}(?:\.{_NAME})*(?:\({_NAME}\))?), "
                rf"(?P<call>{_NAME})\((?P<items>{_KWARGS})\)\n"), "return {first}, {call}(", ")"),
]


def _exploded(text: str) -> str | None:
    """Black's layout of one of the ``_FLAT_LISTS`` statements whose items do not fit on one
    line even on a line of their own (black writes one item a line, with a trailing comma);
    None for any other text."""
    for pattern, head, tail in _FLAT_LISTS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        ind, items = m["ind"], m["items"]
        first = ind + head.format(**m.groupdict())
        last = ind + tail.format(**m.groupdict())
        if len(ind) + 4 + len(items) <= LINE_LENGTH or max(len(first), len(last)) > LINE_LENGTH:
            return None  # black may keep the items on one line, or split elsewhere
        return "".join([first + "\n"] + [f"{ind}    {item},\n" for item in items.split(", ")]
                       + [last + "\n"])
    return None


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _format_chunks(chunks: list[tuple[str, bool]]) -> list[str]:
    """Black each chunk in a context of its own indentation; one black call per indentation."""
    results: list[str] = [""] * len(chunks)
    by_indent: dict[int, list[int]] = {}
    for k, (text, _) in enumerate(chunks):
        by_indent.setdefault(_indent(text), []).append(k)
    for indent, ks in by_indent.items():
        parts = []
        for k in ks:
            text, is_doc = chunks[k]
            header = text.rstrip().endswith(":")
            body = text + (" " * (indent + 4) + "pass\n" if header else "")
            stub = "".join(f"{' ' * d}def _():\n" for d in range(0, indent, 4))
            if indent and not is_doc:
                stub += " " * indent + '"""."""\n'  # keep the chunk from being a docstring
            parts.append(f"{_MARK}\n{stub}{body}")
        formatted = black.format_str("".join(parts), mode=MODE)
        pieces = formatted.split(_MARK + "\n")[1:]
        for k, piece in zip(ks, pieces):
            text, is_doc = chunks[k]
            piece_lines = piece.strip("\n").split("\n")
            skip = indent // 4 + (1 if indent and not is_doc else 0)
            piece_lines = piece_lines[skip:]
            if text.rstrip().endswith(":"):
                piece_lines = piece_lines[:-1]
            results[k] = "\n".join(piece_lines) + "\n"
    return results
