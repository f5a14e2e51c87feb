"""The log ingest's compiled parts (controlplane/logs/*.c): everything else is declared in setup.cfg."""

from setuptools import Extension, setup

_WARNINGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(f"controlplane.logs.{name}", [f"controlplane/logs/{name}.c"], extra_compile_args=_WARNINGS)
        for name in ("_postfix_lines", "_bind_rows")
    ]
)
