"""`letterhead` imports a command's module only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from controlplane.cli import _COMMANDS, main


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_is_found_by_its_name(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"], prog_name="letterhead")
    assert result.exit_code == 0, result.output
    assert f"Usage: letterhead {name}" in result.output


def test_the_listing_names_every_command_and_nothing_else() -> None:
    result = CliRunner().invoke(main, ["--help"])
    listing = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listing if line.startswith("  ") and line[2] != " "] == sorted(
        _COMMANDS
    )
    assert CliRunner().invoke(main, ["no-such-command"]).exit_code == 2


def test_a_command_imports_its_own_module_and_not_the_others() -> None:
    probe = (
        "import sys\n"
        "from controlplane.cli import main\n"
        "try:\n"
        "    main(['logs', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('controlplane.cli.') or m == 'flask'))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip().splitlines()[-1] == "['controlplane.cli.common', 'controlplane.cli.logs']"
