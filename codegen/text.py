"""Escaping of spec text that reaches generated code: comments and docstrings only."""

from __future__ import annotations


def comment(text: str) -> str:
    """One safe comment line: anything that could end the line or confuse a reader becomes '?'."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def docstring(text: str, indent: str) -> str:
    """A triple-quoted literal that evaluates back to ``text`` and cannot be broken out of."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\n")
        elif not c.isprintable():
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(c)
    if out and out[-1] == '\\"':
        out[-1] = "\\x22"  # a quote just before the closing quotes would make black add a space
    body = "".join(out).replace("\n", "\n" + indent)
    return f'"""{body}"""'


def number(value: float | int) -> str:
    """A numeric literal that reads back to exactly ``value``."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text


COMMENT_WIDTH = 93  # 99 columns less a function body's indent and "# "
_SEP = "\n    # "


def wrap_comment(comment: str) -> str:
    """Fold comment lines (joined by newline-indent-#) that exceed the line length."""
    out = []
    for line in comment.split(_SEP):
        if len(line) <= COMMENT_WIDTH:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        out.extend(_fold(line, COMMENT_WIDTH, lead + "    "))
    return _SEP.join(out)


def _fold(line: str, width: int, indent: str) -> list[str]:
    """``textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
    break_on_hyphens=False) or [line]``, the same lines, found by slicing when they can be."""
    lines = _fold_at_spaces(line, width, indent)
    if lines is not None:
        return lines or [line]
    import textwrap

    return textwrap.wrap(line, width, initial_indent="", subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [line]


def _fold_at_spaces(line: str, width: int, indent: str) -> list[str] | None:
    """Greedy folding of a line whose only whitespace is spaces, as ``textwrap`` folds it
    (chunks are runs of spaces and of other characters; a run of spaces is dropped where a line
    ends and where a continuation line starts); None when a line would start with a chunk wider
    than the room left, which ``textwrap`` handles on its own terms."""
    if not line.isprintable():  # tabs, newlines or other whitespace: textwrap rewrites them
        return None
    lines: list[str] = []
    rest = line
    while rest:
        room = width
        if lines:
            rest = rest.lstrip(" ")
            room = width - len(indent)
            if not rest:
                break
        cut = len(rest) if len(rest) <= room else _last_boundary(rest, room)
        text = rest[:cut].rstrip(" ")
        if not text:  # nothing but spaces fits before the first word
            return None
        lines.append(indent + text if lines else text)
        rest = rest[cut:]
    return lines


def _last_boundary(text: str, end: int) -> int:
    """The last position ``<= end`` (``end < len(text)``) between a run of spaces and a run of
    other characters; 0 when there is none."""
    if end <= 0:
        return 0
    if (text[end - 1] == " ") != (text[end] == " "):
        return end
    if text[end] == " ":  # inside a run of spaces: before it
        return len(text[:end].rstrip(" "))
    return text.rfind(" ", 0, end) + 1  # inside a word: before it


def wrap_doc(doc: str, width: int = 86) -> str:
    """Fold the long lines of a docstring's text at word boundaries (short lines are kept)."""
    lines = []
    for line in doc.split("\n"):
        lines.extend([line] if len(line) <= width else _fold(line, width, ""))
    return "\n".join(lines)
