"""Diagnostics: every user-facing failure is a SpecError rendered as ``path:line:col: error: message``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A position in a spec file (1-based line and column)."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


class _Located(Exception):
    """A diagnostic located in a spec, rendered as ``path:line:col: <severity>: message``."""

    severity = "error"

    def __init__(self, message: str, loc: Loc | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def __str__(self) -> str:
        where = str(self.loc) if self.loc is not None else "<spec>:1:1"
        return f"{where}: {self.severity}: {self.message}"


class SpecError(_Located):
    """A problem in a spec, located at the offending key, value or step."""


class SpecWarning(_Located, UserWarning):
    """A spec that compiles but probably does not mean what it says, located like a SpecError.

    Rendered as ``path:line:col: warning: message``.  The command line prints each warning once
    on stderr (``--strict`` makes them errors); the Python API issues them with
    :func:`warnings.warn`, so the usual warning filters apply (``warnings.simplefilter("error",
    codegen.SpecWarning)`` makes them exceptions).
    """

    severity = "warning"

    def as_error(self) -> SpecError:
        """The same diagnostic as an error (``--strict``)."""
        return SpecError(f"{self.message} (a warning; an error with --strict)", self.loc)
