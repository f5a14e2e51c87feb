"""The one compiled part: everything else is declared in setup.cfg."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "controlplane.logs._postfix_lines",
            ["controlplane/logs/_postfix_lines.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
