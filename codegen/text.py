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
