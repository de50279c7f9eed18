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
    import textwrap

    out = []
    for line in comment.split(_SEP):
        if len(line) <= COMMENT_WIDTH:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line, COMMENT_WIDTH, initial_indent="", subsequent_indent=lead + "    ",
                                 break_long_words=False, break_on_hyphens=False) or [line])
    return _SEP.join(out)


def wrap_doc(doc: str, width: int = 86) -> str:
    """Fold the long lines of a docstring's text at word boundaries (short lines are kept)."""
    import textwrap

    lines = []
    for line in doc.split("\n"):
        if len(line) <= width:
            lines.append(line)
        else:
            lines.extend(textwrap.wrap(line, width, break_long_words=False,
                                       break_on_hyphens=False) or [line])
    return "\n".join(lines)
