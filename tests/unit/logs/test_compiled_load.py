"""The compiled parts are used only when built from the source beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.logs import compiled

SOURCES = Path(compiled.__file__).parent


@pytest.mark.parametrize("name", ["_postfix_lines", "_bind_rows", "_assemble"])
def test_a_build_of_this_source_is_loaded(name: str) -> None:
    module = compiled.load(name)
    assert module is not None and module.__name__ == f"controlplane.logs.{name}"


@pytest.mark.parametrize("name", ["_postfix_lines", "_bind_rows", "_assemble"])
def test_a_build_of_another_version_is_refused_with_a_warning(name: str, tmp_path: Path) -> None:
    changed = tmp_path / f"{name}.c"
    changed.write_bytes((SOURCES / f"{name}.c").read_bytes() + b"/* changed since the build */\n")
    with pytest.warns(RuntimeWarning, match="built from another version"):
        assert compiled.load(name, source=changed) is None


def test_a_part_never_built_is_none() -> None:
    assert compiled.load("_no_such_part") is None
