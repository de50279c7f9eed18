"""Spec model: the validated, located content of one YAML spec file (no expressions parsed yet)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Loc

Dim = int | str  # a literal size or a symbolic dim name


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[Dim, ...]
    loc: Loc  # location of the input's key
    dtype: str = ""  # "" for the spec's float dtype; "int64" or "bool" for labels and masks


@dataclass(frozen=True)
class StepSpec:
    text: str  # the step exactly as written, stripped
    loc: Loc  # location of the step's scalar in the YAML list


@dataclass(frozen=True)
class NameRef:
    name: str
    loc: Loc


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    doc: str
    inputs: tuple[InputSpec, ...]
    wrt: tuple[NameRef, ...]  # defaults to every float input (locs then point at the function key)
    steps: tuple[StepSpec, ...]
    outputs: tuple[NameRef, ...]
    loc: Loc  # location of the function's key
    # derivative kinds beyond the gradient (DESIGN.md §3b): jvp, jacobian, hvp, hessian
    derivatives: tuple[NameRef, ...] = ()


@dataclass(frozen=True)
class Spec:
    path: str  # as given by the user (used in headers and diagnostics)
    module: str
    dtype: str  # "float64" or "float32"
    doc: str
    dims: tuple[tuple[str, int], ...]  # in file order
    functions: tuple[FunctionSpec, ...]
    sha256: str  # hex digest of the spec file's bytes
    loc: Loc  # start of the document
