"""Spec loader: YAML text -> validated, located :class:`~codegen.spec.Spec` (or a located SpecError).

The YAML is composed into a node graph (never constructed into arbitrary objects), then walked
by hand so every diagnostic can point at the offending key or value. Any failure, however
malformed the input, surfaces as :class:`~codegen.errors.SpecError`; no other exception escapes.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import keyword
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Loc, SpecError
from .files import read_regular
from .reserved import MODULES, VOCABULARY, function_names, reserved_names, template_names
from .spec import Dim, FunctionSpec, InputSpec, NameRef, Spec, StepSpec

__all__ = [
    "load_spec",
    "load_spec_file",
    "MAX_SPEC_BYTES",
    "MAX_FUNCTIONS",
    "MAX_STEPS",
    "MAX_STEP_CHARS",
    "MAX_DIM",
    "MAX_RANK",
    "RESERVED_NAMES",
]

MAX_SPEC_BYTES = 1 << 20  # 1 MiB
MAX_FUNCTIONS = 200
MAX_STEPS = 2000
MAX_STEP_CHARS = 2000
MAX_DIM = 10**7
from .shapes import MAX_RANK  # noqa: E402 (one limit, read by the op table too)
MAX_DEPTH = 64  # YAML nesting; real specs need 5
MAX_MODULE_CHARS = 100  # module names become file names (NAME_MAX is 255 bytes)
# Function names become the names of Numba's cache files, with the module's name (at most 100
# characters), a suffix and a line number: 64 keeps those within NAME_MAX (255 bytes).
MAX_FUNCTION_NAME_CHARS = 64
MAX_NODES = 250_000  # YAML nodes; bounds load time for pathological 1 MiB inputs

# Names the generated modules bind at module level or read as builtins, and the vocabulary's
# functions; user names must not shadow them (codegen/reserved.py, the one list).
RESERVED_NAMES = reserved_names()
# Module names that would shadow what generated modules import, directly or through Numba (and
# codegen itself); every standard-library module and the packages Numba needs are added at load
# time (shadowed_modules).
RESERVED_MODULES = MODULES

TOP_KEYS = ("module", "dtype", "doc", "dims", "derivatives", "functions")
FUNCTION_KEYS = ("doc", "inputs", "wrt", "derivatives", "steps", "outputs")
# Derivative kinds beyond the gradient (DESIGN.md §3b), in the order the module defines them.
DERIVATIVES = ("jvp", "jacobian", "hvp", "hessian")
DTYPES = ("float64", "float32")
# dtypes an input may declare besides the spec's float dtype (never differentiated)
INPUT_DTYPES = ("int64", "bool")
INPUT_KEYS = ("shape", "dtype")

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (
    _T + "str",
    _T + "int",
    _T + "float",
    _T + "bool",
    _T + "null",
)
SEQ, MAP, MERGE, VALUE, TIMESTAMP = (
    _T + "seq",
    _T + "map",
    _T + "merge",
    _T + "value",
    _T + "timestamp",
)
SCALAR_TAGS = frozenset({STR, INT, FLOAT, BOOL, NULL})
STEP_EXAMPLE = "step must be a string like 'Z = X @ W'"


# --------------------------------------------------------------------------- YAML composition


class _ComposerMixin(Composer):
    """Composer that rejects aliases and excessive nesting while building the node graph."""

    spec_path: str = "<spec>"
    depth: int = 0
    count: int = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        """Compose one node, refusing aliases, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes."""
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise SpecError(
                "YAML aliases ('*name') are not supported",
                _mark_loc(self.spec_path, event.start_mark),
            )
        if self.depth >= MAX_DEPTH:
            event = self.peek_event()
            raise SpecError(
                f"YAML nesting is deeper than {MAX_DEPTH} levels",
                _mark_loc(self.spec_path, event.start_mark),
            )
        self.count += 1
        if self.count > MAX_NODES:
            event = self.peek_event()
            raise SpecError(
                f"spec has more than {MAX_NODES} YAML values",
                _mark_loc(self.spec_path, event.start_mark),
            )
        self.depth += 1
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


class _PyLoader(_ComposerMixin, yaml.SafeLoader):
    """Pure-Python safe loader with the composer restrictions."""

    def __init__(self, stream: str, path: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self.spec_path = path


_CBase = getattr(yaml, "CSafeLoader", None)
_CLoader: type | None = None
if _CBase is not None:  # pragma: no branch - depends on the PyYAML build

    class _CLoaderImpl(_ComposerMixin, _CBase):  # type: ignore[misc, valid-type]
        """libyaml-backed safe loader (C scanner/parser, Python composer)."""

        def __init__(self, stream: str, path: str) -> None:
            _CBase.__init__(self, stream)  # type: ignore[misc]
            Composer.__init__(self)
            self.spec_path = path

    _CLoader = _CLoaderImpl


def _mark_loc(path: str, mark: object) -> Loc:
    """Location of a yaml Mark (0-based) as a 1-based Loc."""
    line = getattr(mark, "line", 0)
    col = getattr(mark, "column", 0)
    if not isinstance(line, int) or not isinstance(col, int):
        return Loc(path, 1, 1)
    return Loc(path, max(line, 0) + 1, max(col, 0) + 1)


def _node_loc(path: str, node: Node) -> Loc:
    """Location of the start of a node."""
    return _mark_loc(path, node.start_mark)


def _index_loc(path: str, text: str, index: int) -> Loc:
    """Location of a character index in text."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return Loc(path, line, col)


def _yaml_error(path: str, text: str, err: yaml.YAMLError, is_c: bool) -> SpecError:
    """Convert a PyYAML error into a located SpecError."""
    if isinstance(err, yaml.reader.ReaderError):
        pos = err.position if isinstance(err.position, int) else 0
        if is_c:  # libyaml reports byte offsets
            pos = len(text.encode("utf-8")[:pos].decode("utf-8", "ignore"))
        char = err.character
        code = ord(char) if isinstance(char, str) and len(char) == 1 else char
        shown = f"#x{code:04x}" if isinstance(code, int) else repr(code)
        return SpecError(
            f"invalid YAML: character {shown} is not allowed in a YAML file",
            _index_loc(path, text, pos),
        )
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        loc = _mark_loc(path, mark) if mark is not None else Loc(path, 1, 1)
        if _char_at(text, loc) == "\t":
            return SpecError(
                "invalid YAML: tab character here; YAML indentation must use spaces",
                loc,
            )
        problem = (err.problem or "").strip()
        context = (err.context or "").strip()
        detail = (
            problem if not context else f"{problem} ({context})" if problem else context
        )
        return SpecError(f"invalid YAML: {detail or 'syntax error'}", loc)
    return SpecError(f"invalid YAML: {err}", Loc(path, 1, 1))


def _char_at(text: str, loc: Loc) -> str:
    """The character at a 1-based line/col of text, or ''."""
    lines = text.split("\n")
    if 1 <= loc.line <= len(lines):
        line = lines[loc.line - 1]
        if 1 <= loc.col <= len(line):
            return line[loc.col - 1]
    return ""


def _compose(text: str, path: str) -> Node:
    """Compose exactly one YAML document into a node graph."""
    is_c = _CLoader is not None
    try:
        return _compose_with(_CLoader or _PyLoader, text, path)
    except yaml.YAMLError as err:
        raise _yaml_error(path, text, err, is_c) from None


def _compose_with(cls: type, text: str, path: str) -> Node:
    """Run one loader class over text: one document, no aliases (YAML errors propagate)."""
    loader = cls(text, path)  # the pure-Python reader already validates characters here
    try:
        loader.get_event()  # StreamStartEvent
        if loader.check_event(StreamEndEvent):
            raise SpecError(
                "empty spec: expected a mapping with a 'functions' key", Loc(path, 1, 1)
            )
        root: Node = loader.compose_document()
        if not loader.check_event(StreamEndEvent):
            event = loader.peek_event()
            raise SpecError(
                "multiple YAML documents are not supported (one spec per file)",
                _mark_loc(path, event.start_mark),
            )
        return root
    finally:
        loader.dispose()


def _check_tags(path: str, root: Node) -> None:
    """Reject non-standard tags and merge keys anywhere in the document."""
    stack: list[Node] = [root]
    scalar_ok = SCALAR_TAGS | {MERGE, VALUE}
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            if node.tag not in scalar_ok:
                if node.tag == TIMESTAMP:
                    message = f"value {_clip(node.value)!r} is read by YAML as a date/time; quote it"
                    raise SpecError(message, _node_loc(path, node))
                raise SpecError(
                    f"unsupported YAML tag {_clip(_short_tag(node.tag))!r}",
                    _node_loc(path, node),
                )
        elif isinstance(node, SequenceNode):
            if node.tag != SEQ:
                raise SpecError(
                    f"unsupported YAML tag {_clip(_short_tag(node.tag))!r}",
                    _node_loc(path, node),
                )
            stack.extend(reversed(node.value))
        elif isinstance(node, MappingNode):
            if node.tag != MAP:
                raise SpecError(
                    f"unsupported YAML tag {_clip(_short_tag(node.tag))!r}",
                    _node_loc(path, node),
                )
            for key, value in reversed(node.value):
                if key.tag == MERGE and isinstance(key, ScalarNode):
                    raise SpecError(
                        "YAML merge keys ('<<') are not supported", _node_loc(path, key)
                    )
                stack.append(value)
                stack.append(key)
        else:  # pragma: no cover - PyYAML only builds the three kinds
            raise SpecError("unsupported YAML node", _node_loc(path, node))


def _short_tag(tag: str) -> str:
    """A YAML tag as the user wrote it (``!!int`` rather than the full URI)."""
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


# --------------------------------------------------------------------------- node helpers


class _Walker:
    """Validates a composed node graph against the spec schema."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.float_dtype = "float64"  # the spec's dtype, once read (float inputs have it)
        self._constructor = yaml.constructor.SafeConstructor()

    def loc(self, node: Node) -> Loc:
        """Location of a node."""
        return _node_loc(self.path, node)

    def fail(self, message: str, node: Node | Loc) -> NoReturn:
        """Raise a SpecError at a node or location."""
        raise SpecError(message, node if isinstance(node, Loc) else self.loc(node))

    def value(self, node: Node) -> object:
        """Python value of a scalar node (SafeLoader semantics); lists/dicts as markers."""
        if isinstance(node, SequenceNode):
            return list
        if isinstance(node, MappingNode):
            return dict
        if node.tag in (MERGE, VALUE):
            return node.value
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception:  # malformed explicit tags such as `!!int abc`
            self.fail(
                f"invalid {_short_tag(node.tag)} value {_clip(node.value)!r}", node
            )

    def describe(self, node: Node) -> str:
        """A short description of a node's type for messages."""
        value = self.value(node)
        if value is list:
            return "a list"
        if value is dict:
            return "a mapping"
        if value is None:
            return "null (empty value)"
        if isinstance(value, bool):
            return f"boolean {_clip(node.value)!r}"
        if isinstance(value, int):
            return f"integer {_clip(node.value)}"
        if isinstance(value, float):
            return f"number {_clip(node.value)}"
        return f"string {_clip(str(value))!r}"

    def text(self, node: Node, what: str) -> str:
        """A string scalar (doc, step, ...), rejecting NUL and invalid code points."""
        value = self.value(node)
        if not isinstance(value, str):
            self.fail(f"{what} must be a string, got {self.describe(node)}", node)
        self.check_chars(value, what, node)
        return value

    def check_chars(self, value: str, what: str, node: Node) -> None:
        """Reject NUL characters and lone surrogates."""
        if "\x00" in value:
            self.fail(f"{what} contains a NUL character", node)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(
                f"{what} contains an invalid Unicode character (lone surrogate)", node
            )

    def name(self, node: Node, what: str, where: str = "") -> str:
        """A user-chosen name: a scalar that is an ASCII Python identifier (message: what 'x' where ...)."""
        value = self.string(node, f"{what} {_clip(str(node.value))!r}{where}",
                            f"{what}{where} must be a name")
        self.check_chars(value, what + where, node)
        problem = identifier_problem(value) or reserved_problem(value)
        if problem:
            self.fail(f"{what} {_clip(value)!r}{where} {problem}", node)
        return value

    def mapping(
        self, node: Node, what: str, example: str
    ) -> list[tuple[str, Node, Node]]:
        """Items of a mapping with plain-string keys, rejecting duplicates (at the second key)."""
        if not isinstance(node, MappingNode):
            self.fail(
                f"{what} must be a mapping {example}, got {self.describe(node)}", node
            )
        seen: dict[str, Node] = {}
        items: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            key = self.key(key_node, what)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.fail(
                    f"duplicate key {_clip(key)!r} in {what} (first at line {first})",
                    key_node,
                )
            seen[key] = key_node
            items.append((key, key_node, value_node))
        return items

    def key(self, node: Node, what: str) -> str:
        """A mapping key, which must be a string scalar."""
        if not isinstance(node, ScalarNode):
            self.fail(
                f"keys of {what} must be plain names, got {self.describe(node)}", node
            )
        value = self.string(node, f"key {_clip(str(node.value))!r} in {what}",
                            f"keys of {what} must be names")
        self.check_chars(value, f"key in {what}", node)
        return value

    def string(self, node: Node, subject: str, must: str) -> str:
        """A scalar YAML reads as a string; else fail: '<subject> is read by YAML as ...; quote
        it' for a boolean or null that quotes would make a string, '<must>, got ...' otherwise."""
        value = self.value(node)
        if isinstance(value, bool) or (value is None and node.value):
            self.fail(f"{subject} is read by YAML as {self.describe(node)}; quote it", node)
        if not isinstance(value, str):
            self.fail(f"{must}, got {self.describe(node)}", node)
        return value

    def sequence(self, node: Node, what: str, example: str) -> list[Node]:
        """Items of a sequence node."""
        if not isinstance(node, SequenceNode):
            self.fail(
                f"{what} must be a list {example}, got {self.describe(node)}", node
            )
        return list(node.value)

    def check_keys(
        self, items: list[tuple[str, Node, Node]], allowed: tuple[str, ...], where: str
    ) -> None:
        """Reject keys not in allowed, suggesting the closest allowed key."""
        for key, key_node, _ in items:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(
                    f"unknown key {_clip(key)!r} in {where} (allowed: {', '.join(allowed)}){hint}",
                    key_node,
                )

    def positive_int(self, node: Node, what: str) -> int:
        """An integer in [1, MAX_DIM]; booleans and floats are rejected."""
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(
                f"{what} must be a positive integer, got {self.describe(node)}", node
            )
        if value < 1:
            self.fail(f"{what} must be a positive integer (>= 1), got {value}", node)
        if value > MAX_DIM:
            self.fail(
                f"{what} is {_clip(str(value))}, larger than the limit {MAX_DIM}", node
            )
        return value


def identifier_problem(name: str) -> str | None:
    """Why name is unusable as a generated-code identifier, or None if it is fine."""
    if not name:
        return "is empty"
    if not name.isascii():
        return "must use only ASCII letters, digits and '_'"
    if not name.isidentifier():
        return "is not a valid Python identifier"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if name.startswith("_"):
        return "must not start with '_' (reserved for generated code)"
    return None


def reserved_problem(name: str) -> str | None:
    """Why name would shadow something generated modules use, or None."""
    if name in VOCABULARY:
        return "is reserved (a function of the step vocabulary)"
    if name in RESERVED_NAMES:
        return (
            f"is reserved (generated modules use: {', '.join(sorted(RESERVED_NAMES))})"
        )
    return None


def _clip(text: str, limit: int = 60) -> str:
    """Shorten text for a diagnostic."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- schema


def _lookup(items: list[tuple[str, Node, Node]]) -> dict[str, tuple[Node, Node]]:
    """Map key -> (key node, value node)."""
    return {key: (key_node, value_node) for key, key_node, value_node in items}


def _load_module(w: _Walker, fields: dict[str, tuple[Node, Node]], root: Node) -> str:
    """The module name: explicit `module:` or the file's stem."""
    if "module" in fields:
        node = fields["module"][1]
        value = w.value(node)
        if not isinstance(value, str):
            w.fail(
                f"module must be a string (a Python module name), got {w.describe(node)}",
                node,
            )
        w.check_chars(value, "module", node)
        if any(c in value for c in "/\\.:"):
            w.fail(
                f"module {_clip(value)!r} must be a plain module name, not a path or dotted name",
                node,
            )
        problem = _module_problem(value)
        if problem:
            w.fail(f"module {_clip(value)!r} {problem}", node)
        return value
    if w.path.startswith("<"):  # a pseudo-path such as "<string>" has no stem
        return "spec"
    stem = Path(w.path).stem
    problem = _module_problem(stem)
    if problem:
        w.fail(
            f"module name defaults to the file's stem {_clip(stem)!r}, which {problem}; set 'module:' to a valid name",
            w.loc(root),
        )
    return stem


def _module_problem(name: str) -> str | None:
    """Why name is unusable as a generated module name, or None."""
    problem = identifier_problem(name)
    if problem:
        return problem
    if len(name) > MAX_MODULE_CHARS:
        return f"is {len(name)} characters long; the limit is {MAX_MODULE_CHARS}"
    for candidate in (name, name + "_numba"):  # the NumPy module's name, the Numba module's
        if candidate in shadowed_modules():
            return (f"would shadow the module {candidate!r}, which generated code imports "
                    "(directly or through Numba) or Python provides")
    return None


# Packages Numba imports when they are installed (numba.core.config reads YAML; np.linalg calls
# SciPy's LAPACK), beyond its requirements.
_OPTIONAL_IMPORTS = ("scipy", "yaml")


@functools.cache
def shadowed_modules() -> frozenset[str]:
    """Top-level module names a generated module must not take: Python's standard library,
    codegen, and every installed package that generated code imports directly or through Numba
    (the requirement closure of NumPy and Numba, by their installed metadata)."""
    from importlib import metadata

    names = set(sys.stdlib_module_names) | set(RESERVED_MODULES) | set(_OPTIONAL_IMPORTS)

    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    try:
        top_level = metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - broken metadata: the fixed names still apply
        return frozenset(names)
    wanted: set[str] = set()
    todo = ["numpy", "numba"]
    while todo:
        dist = key(todo.pop())
        if dist in wanted:
            continue
        wanted.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra" in requirement.partition(";")[2]:
                continue  # an optional extra
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match:
                todo.append(match.group(1))
    for module, dists in top_level.items():
        if any(key(d) in wanted for d in dists):
            names.add(module)
    return frozenset(names)


def _load_dtype(w: _Walker, fields: dict[str, tuple[Node, Node]]) -> str:
    """The dtype: float64 (default) or float32."""
    if "dtype" not in fields:
        return "float64"
    node = fields["dtype"][1]
    value = w.value(node)
    if not isinstance(value, str) or value not in DTYPES:
        w.fail(
            f"dtype must be one of {', '.join(DTYPES)}, got {w.describe(node)}", node
        )
    return value


def _load_doc(w: _Walker, fields: dict[str, tuple[Node, Node]], what: str) -> str:
    """An optional doc string (default empty)."""
    if "doc" not in fields:
        return ""
    return w.text(fields["doc"][1], what)


def _load_dims(
    w: _Walker, fields: dict[str, tuple[Node, Node]]
) -> tuple[tuple[str, int], ...]:
    """Example sizes: name -> positive int, in file order."""
    if "dims" not in fields:
        return ()
    items = w.mapping(
        fields["dims"][1], "dims", "of dim name to example size, like {N: 64, D: 8}"
    )
    dims: list[tuple[str, int]] = []
    for _, key_node, value_node in items:
        name = w.name(key_node, "dim name", " in dims")
        dims.append((name, w.positive_int(value_node, f"dim {name!r}")))
    return tuple(dims)


def _load_shape(w: _Walker, node: Node, where: str) -> tuple[Dim, ...]:
    """A shape: a list of at most MAX_RANK positive ints or dim names."""
    entries = w.sequence(node, f"shape of {where}", "like [N, D], or [] for a scalar")
    shape: list[Dim] = []
    for index, entry in enumerate(entries):
        if index >= MAX_RANK:
            w.fail(
                f"shape of {where} has {len(entries)} dimensions; at most {MAX_RANK} are supported "
                "(ranks 0 to 4); merge axes with reshape(...) or split the input",
                entry,
            )
        value = w.value(entry)
        what = f"dimension {index + 1} of {where}"
        if isinstance(value, int) and not isinstance(value, bool):
            shape.append(w.positive_int(entry, what))
        elif isinstance(value, str):
            shape.append(w.name(entry, "dim name", f" ({what})"))
        else:
            w.fail(
                f"{what} must be a positive integer or a dim name, got {w.describe(entry)}",
                entry,
            )
    return tuple(shape)


def _load_inputs(w: _Walker, fname: str, node: Node) -> tuple[InputSpec, ...]:
    """The inputs of a function: a non-empty mapping name -> shape."""
    items = w.mapping(
        node,
        f"inputs of function {fname!r}",
        "of input name to shape, like {X: [N, D]}",
    )
    if not items:
        w.fail(f"inputs of function {fname!r} must not be empty", node)
    inputs: list[InputSpec] = []
    for _, key_node, value_node in items:
        name = w.name(key_node, "input name", f" in function {fname!r}")
        if name == fname:
            w.fail(f"input {name!r} has the same name as its function", key_node)
        where = f"input {name!r} of function {fname!r}"
        dtype = ""
        if isinstance(value_node, MappingNode):  # {shape: [N, 1], dtype: int64}
            fields = _lookup(_checked_items(w, value_node, where))
            if "shape" not in fields:
                w.fail(f"{where} is missing required key 'shape' (like {{shape: [N, 1], "
                       "dtype: int64}})", value_node)
            shape = _load_shape(w, fields["shape"][1], where)
            if "dtype" in fields:
                dtype = _load_input_dtype(w, fields["dtype"][1], where)
        else:
            shape = _load_shape(w, value_node, where)
        inputs.append(InputSpec(name=name, shape=shape, loc=w.loc(key_node), dtype=dtype))
    return tuple(inputs)


def _a(dtype: str) -> str:
    """'an int64', 'a bool'."""
    return ("an " if dtype[0] in "aeiou" else "a ") + dtype


def _checked_items(w: _Walker, node: Node, where: str) -> list[tuple[str, Node, Node]]:
    items = w.mapping(node, where, "like {shape: [N, 1], dtype: int64}")
    w.check_keys(items, INPUT_KEYS, where)
    return items


def _load_input_dtype(w: _Walker, node: Node, where: str) -> str:
    """An input's dtype: the spec's float dtype (written as its name or "float"; "" here), int64
    (integer labels) or bool (masks)."""
    value = w.value(node)
    spec_dtype = w.float_dtype
    allowed = (spec_dtype, "float") + INPUT_DTYPES
    if isinstance(value, str) and value in DTYPES and value != spec_dtype:
        w.fail(f"dtype of {where} is {value}, but the spec's dtype is {spec_dtype}: float inputs "
               f"have the spec's dtype (write dtype: {spec_dtype}, or leave dtype out)", node)
    if not isinstance(value, str) or value not in allowed:
        w.fail(f"dtype of {where} must be one of {', '.join(allowed)}, got {w.describe(node)}",
               node)
    return value if value in INPUT_DTYPES else ""


def _load_name_list(w: _Walker, node: Node, what: str, example: str) -> list[NameRef]:
    """A non-empty list of names without duplicates."""
    entries = w.sequence(node, what, example)
    if not entries:
        w.fail(f"{what} must not be empty", node)
    refs: list[NameRef] = []
    seen: dict[str, int] = {}
    for entry in entries:
        name = w.name(entry, "name", f" in {what}")
        if name in seen:
            w.fail(f"{what} lists {name!r} twice (first at line {seen[name]})", entry)
        seen[name] = entry.start_mark.line + 1
        refs.append(NameRef(name=name, loc=w.loc(entry)))
    return refs


def _load_wrt(
    w: _Walker,
    fname: str,
    fields: dict[str, tuple[Node, Node]],
    inputs: tuple[InputSpec, ...],
) -> tuple[NameRef, ...]:
    """Inputs to differentiate; default: all inputs (located at the function key)."""
    if "wrt" not in fields:
        return ()
    refs = _load_name_list(
        w, fields["wrt"][1], f"wrt of function {fname!r}", "of input names, like [W, b]"
    )
    names = {spec.name for spec in inputs}
    kinds = {spec.name: spec.dtype for spec in inputs}
    for ref in refs:
        if ref.name not in names:
            w.fail(f"wrt names {ref.name!r}, which is not an input of {fname}", ref.loc)
        if kinds[ref.name] in INPUT_DTYPES:
            w.fail(f"wrt names {ref.name!r}, {_a(kinds[ref.name])} input of {fname}: integer and "
                   "boolean inputs are never differentiated; leave it out of wrt (the default "
                   "wrt is every float input)", ref.loc)
    return tuple(refs)


def _load_steps(w: _Walker, fname: str, node: Node) -> tuple[StepSpec, ...]:
    """The forward steps: a non-empty list of one-line strings."""
    entries = w.sequence(
        node, f"steps of function {fname!r}", "of assignments, like ['Z = X @ W']"
    )
    if not entries:
        w.fail(f"steps of function {fname!r} must not be empty", node)
    steps: list[StepSpec] = []
    for index, entry in enumerate(entries):
        if index >= MAX_STEPS:
            w.fail(
                f"function {fname!r} has {len(entries)} steps; the limit is {MAX_STEPS}",
                entry,
            )
        steps.append(_load_step(w, fname, entry))
    return tuple(steps)


def _load_step(w: _Walker, fname: str, node: Node) -> StepSpec:
    """One step: a string scalar, stripped, on one line."""
    value = w.value(node)
    if not isinstance(value, str):
        hint = " (quote the step if it contains ': ' or starts with a YAML special character)"
        hint = hint if value in (dict, list) else ""
        w.fail(
            f"{STEP_EXAMPLE} in function {fname!r}, got {w.describe(node)}{hint}", node
        )
    w.check_chars(value, f"step in function {fname!r}", node)
    text = value.strip()
    if not text:
        w.fail(f"{STEP_EXAMPLE} in function {fname!r}, got an empty step", node)
    if any(c in text for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        w.fail(
            f"step in function {fname!r} spans several lines; write one assignment per step",
            node,
        )
    if len(text) > MAX_STEP_CHARS:
        w.fail(
            f"step in function {fname!r} is {len(text)} characters long; the limit is {MAX_STEP_CHARS}",
            node,
        )
    return StepSpec(text=text, loc=w.loc(node))


def _step_target(text: str) -> str | None:
    """The text before the first '=' of a step, stripped (for output membership only)."""
    head, sep, _ = text.partition("=")
    return head.strip() if sep else None


def _load_outputs(
    w: _Walker,
    fname: str,
    node: Node,
    inputs: tuple[InputSpec, ...],
    steps: tuple[StepSpec, ...],
) -> tuple[NameRef, ...]:
    """Outputs: inputs or step targets, no duplicates."""
    listed = {entry.value for entry in getattr(node, "value", ()) if isinstance(entry, ScalarNode)}
    for step in steps:  # an unusable name that a step assigns: the mistake is in the step
        target = _step_target(step.text)
        if target and target in listed:
            problem = identifier_problem(target) or reserved_problem(target)
            if problem:
                w.fail(f"{fname}: step {_clip(step.text)!r}: the name {target!r} {problem}", step.loc)
    refs = _load_name_list(
        w, node, f"outputs of function {fname!r}", "of names, like [loss]"
    )
    targets = [_step_target(s.text) for s in steps]
    if not all(t and t.isidentifier() and t.isascii() for t in targets):
        return tuple(refs)  # a malformed step: the step parser reports it, at the step
    known = {spec.name for spec in inputs} | {t for t in targets if t}
    for ref in refs:
        if ref.name not in known:
            w.fail(
                f"output {ref.name!r} of function {fname!r} is neither an input nor assigned by a step",
                ref.loc,
            )
    return tuple(refs)


def _load_derivatives(w: _Walker, node: Node, what: str) -> tuple[NameRef, ...]:
    """A list of derivative kinds (jvp, jacobian, hvp, hessian), each at most once."""
    entries = w.sequence(node, what, "of derivative kinds, like [jvp, hvp]")
    refs: list[NameRef] = []
    seen: dict[str, int] = {}
    for entry in entries:
        value = w.value(entry)
        if not isinstance(value, str) or value not in DERIVATIVES:
            shown = repr(value) if isinstance(value, str) else w.describe(entry)
            close = difflib.get_close_matches(str(value), DERIVATIVES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            w.fail(f"unknown derivative kind {_clip(shown)} in {what} "
                   f"(known: {', '.join(DERIVATIVES)}){hint}", entry)
        if value in seen:
            w.fail(f"{what} lists {value!r} twice (first at line {seen[value]})", entry)
        seen[value] = entry.start_mark.line + 1
        refs.append(NameRef(name=value, loc=w.loc(entry)))
    return tuple(refs)


def _load_function(w: _Walker, fname: str, key_node: Node, node: Node,
                   default_derivatives: tuple[NameRef, ...] = ()) -> FunctionSpec:
    """One function definition."""
    where = f"function {fname!r}"
    items = w.mapping(node, where, f"with keys {', '.join(FUNCTION_KEYS)}")
    w.check_keys(items, FUNCTION_KEYS, where)
    fields = _lookup(items)

    def required(key: str) -> Node:
        """The value node of a required key, or an error at the function's key."""
        if key not in fields:
            w.fail(f"{where} is missing required key {key!r}", key_node)
        return fields[key][1]

    doc = _load_doc(w, fields, f"doc of {where}")
    inputs = _load_inputs(w, fname, required("inputs"))
    wrt = _load_wrt(w, fname, fields, inputs)
    if not wrt:  # every float input (integer and boolean inputs are never differentiated)
        wrt = tuple(NameRef(name=spec.name, loc=w.loc(key_node)) for spec in inputs
                    if spec.dtype not in INPUT_DTYPES)
        if not wrt:
            w.fail(f"{where} has no float input to differentiate (integer and boolean inputs "
                   "never are); add one", required("inputs"))
    steps = _load_steps(w, fname, required("steps"))
    outputs = _load_outputs(w, fname, required("outputs"), inputs, steps)
    derivatives = default_derivatives
    if "derivatives" in fields:
        derivatives = _load_derivatives(w, fields["derivatives"][1], f"derivatives of {where}")
    return FunctionSpec(name=fname, doc=doc, inputs=inputs, wrt=wrt, steps=steps, outputs=outputs,
                        loc=w.loc(key_node), derivatives=derivatives)


def _load_functions(
    w: _Walker, fields: dict[str, tuple[Node, Node]], root: Node
) -> tuple[FunctionSpec, ...]:
    """The required, non-empty `functions` mapping."""
    default: tuple[NameRef, ...] = ()
    if "derivatives" in fields:  # the module-level default of every function's derivatives
        default = _load_derivatives(w, fields["derivatives"][1], "derivatives")
    if "functions" not in fields:
        w.fail("spec is missing required key 'functions'", w.loc(root))
    node = fields["functions"][1]
    items = w.mapping(node, "functions", "of function name to definition")
    if not items:
        w.fail("functions must define at least one function", node)
    functions: list[FunctionSpec] = []
    owners: dict[str, str] = {}  # generated name -> function that generates it
    for index, (_, key_node, value_node) in enumerate(items):
        if index >= MAX_FUNCTIONS:
            w.fail(
                f"spec defines {len(items)} functions; the limit is {MAX_FUNCTIONS}",
                key_node,
            )
        fname = w.name(key_node, "function name")
        if len(fname) > MAX_FUNCTION_NAME_CHARS:
            w.fail(
                f"function name {_clip(fname)!r} is {len(fname)} characters long; "
                f"the limit is {MAX_FUNCTION_NAME_CHARS}",
                key_node,
            )
        _claim_generated_names(w, fname, key_node, owners)
        functions.append(_load_function(w, fname, key_node, value_node, default))
    return tuple(functions)


def _claim_generated_names(
    w: _Walker, fname: str, key_node: Node, owners: dict[str, str]
) -> None:
    """Reject a function whose generated names (f, f_forward, _F_INPUTS, ...) clash with
    another's or with a name the templates bind."""
    generated = function_names(fname)
    for name in generated:
        if name in template_names():
            w.fail(
                f"function {fname!r} would generate {name!r}, a name generated modules use",
                key_node,
            )
        if name in owners:
            w.fail(
                f"function {fname!r} clashes with function {owners[name]!r}: both would generate {name!r}",
                key_node,
            )
    for name in generated:
        owners[name] = fname


def _build_spec(text: str, path: str, digest: str) -> Spec:
    """Compose, validate and convert text into a Spec (may raise SpecError or anything else)."""
    root = _compose(text, path)
    _check_tags(path, root)
    w = _Walker(path)
    if isinstance(root, ScalarNode) and w.value(root) is None:
        w.fail("empty spec: expected a mapping with a 'functions' key", Loc(path, 1, 1))
    items = w.mapping(root, "the spec", f"with keys {', '.join(TOP_KEYS)}")
    w.check_keys(items, TOP_KEYS, "the spec")
    fields = _lookup(items)
    module = _load_module(w, fields, root)
    w.float_dtype = dtype = _load_dtype(w, fields)  # (the functions' inputs default to it)
    # (keyword arguments are evaluated in order: the doc's errors before the dims', ...)
    return Spec(path=path, module=module, dtype=dtype, doc=_load_doc(w, fields, "doc"),
                dims=_load_dims(w, fields), functions=_load_functions(w, fields, root),
                sha256=digest, loc=w.loc(root))


def _guarded(path: str, build: Callable[[], Spec]) -> Spec:
    """Run build, converting any non-SpecError failure into a SpecError at path:1:1."""
    try:
        return build()
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("spec is too deeply nested to load", Loc(path, 1, 1)) from None
    except MemoryError:
        raise SpecError(
            "spec is too large to load (out of memory)", Loc(path, 1, 1)
        ) from None
    except Exception as err:  # last resort: never let a traceback reach the user
        raise SpecError(
            f"could not load spec ({type(err).__name__}: {err})", Loc(path, 1, 1)
        ) from None


def _encode(text: str, path: str) -> bytes:
    """UTF-8 bytes of text; unencodable characters (lone surrogates) are a located SpecError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SpecError(
            "spec contains an invalid Unicode character (lone surrogate)",
            _index_loc(path, text, err.start),
        ) from None


# --------------------------------------------------------------------------- public API


def load_spec(text: str, path: str) -> Spec:
    """Parse and validate spec text; ``path`` is used for diagnostics, the default module name and Spec.path."""
    path = str(path)

    def build() -> Spec:
        """Hash and build."""
        if not isinstance(text, str):
            raise SpecError(
                f"spec text must be a string, got {type(text).__name__}",
                Loc(path, 1, 1),
            )
        if (
            len(text) > MAX_SPEC_BYTES
        ):  # cheap early check before encoding a huge string
            raise SpecError(_too_large(len(text)), Loc(path, 1, 1))
        data = _encode(text, path)
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError(_too_large(len(data)), Loc(path, 1, 1))
        return _build_spec(text, path, hashlib.sha256(data).hexdigest())

    return _guarded(path, build)


def load_spec_file(path: str | os.PathLike[str]) -> Spec:
    """Read a spec file (UTF-8) and load it; unreadable or undecodable files are a SpecError at path:1:1."""
    try:
        name = os.fsdecode(path)
    except Exception:  # not a path-like object at all
        name = str(path)

    def build() -> Spec:
        """Read, decode, hash and build."""
        data = _read_bytes(name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(
                f"spec is not valid UTF-8 (invalid byte at offset {err.start})",
                Loc(name, 1, 1),
            ) from None
        return _build_spec(text, name, hashlib.sha256(data).hexdigest())

    return _guarded(name, build)


def _read_bytes(name: str) -> bytes:
    """Read at most MAX_SPEC_BYTES + 1 bytes of a file, converting OS errors to SpecError.

    Only a regular file is opened (a named pipe or a device is refused, never read: no hang).
    """
    try:
        if os.path.isdir(name):
            raise SpecError("is a directory, not a spec file", Loc(name, 1, 1))
        data = read_regular(name, MAX_SPEC_BYTES + 1)
    except SpecError:
        raise
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise SpecError(f"cannot read spec file: {reason}", Loc(name, 1, 1)) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(len(data), exact=False), Loc(name, 1, 1))
    return data


def _too_large(size: int, exact: bool = True) -> str:
    """Message for a spec over the size limit."""
    amount = f"{size} bytes" if exact else f"more than {MAX_SPEC_BYTES} bytes"
    return f"spec is too large ({amount}); the limit is {MAX_SPEC_BYTES} bytes (1 MiB)"
