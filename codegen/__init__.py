"""codegen: compile a YAML description of a forward computation into readable gradient code."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import generate_source, gradcheck, load_module  # noqa: E402
from .errors import SpecError, SpecWarning  # noqa: E402

__all__ = ["SpecError", "SpecWarning", "generate_source", "gradcheck", "load_module", "__version__"]
