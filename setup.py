"""The log ingest's compiled parts (controlplane/logs/*.c): everything else is declared in setup.cfg."""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

_WARNINGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def _extension(name: str) -> Extension:
    source = f"controlplane/logs/{name}.c"
    # The build names its source: controlplane/logs/compiled.py refuses a build of another version.
    digest = hashlib.sha256((Path(__file__).parent / source).read_bytes()).hexdigest()
    return Extension(
        f"controlplane.logs.{name}",
        [source],
        define_macros=[("SOURCE_HASH", f'"{digest}"')],
        extra_compile_args=_WARNINGS,
        # Without a compiler the install goes on: the Python code gives the same answers, slower
        # (the tests import both modules, so a build that fails there fails them).
        optional=True,
    )


setup(ext_modules=[_extension("_postfix_lines"), _extension("_bind_rows"), _extension("_assemble")])
