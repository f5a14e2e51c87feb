"""The log ingest's compiled parts (`_postfix_lines`, `_bind_rows`), loaded only when built from
the source beside them: a build left from another version would parse by other rules, or lack
what the Python code calls. Without one, the Python code does the same work, slower."""

from __future__ import annotations

import hashlib
import importlib
import warnings
from pathlib import Path
from types import ModuleType


def load(name: str, source: Path | None = None) -> ModuleType | None:
    """The compiled module `name`, or None (with a warning when a stale build was refused).
    `source` is its C file (controlplane/logs/<name>.c unless a test names another)."""
    try:
        module = importlib.import_module(f"controlplane.logs.{name}")
    except ImportError:
        return None
    source = source or Path(__file__).with_name(f"{name}.c")
    try:
        written = source.read_bytes()
    except OSError:  # an install without the sources (or unreadable): nothing to compare with
        return module
    if getattr(module, "SOURCE_HASH", None) != hashlib.sha256(written).hexdigest():
        warnings.warn(
            f"controlplane/logs/{name} was built from another version of {source.name}; the log "
            "ingest uses its Python code until it is rebuilt (make install, or pip install -e .)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return module
