"""`letterhead` imports a command's module only when that command runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from controlplane import cli as cli_package
from controlplane.cli import _COMMANDS, main


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_is_found_by_its_name(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"], prog_name="letterhead")
    assert result.exit_code == 0, result.output
    assert f"Usage: letterhead {name}" in result.output


def test_every_command_a_module_defines_is_listed() -> None:
    # The commands at the top level of controlplane/cli/*.py, less those another one groups.
    defined: dict[int, str] = {}
    grouped: set[int] = set()
    for module_path in sorted(Path(cli_package.__file__).parent.glob("[!_]*.py")):
        module = importlib.import_module(f"controlplane.cli.{module_path.stem}")
        for value in vars(module).values():
            if isinstance(value, click.Command) and value.callback is not None:
                defined[id(value)] = value.name or ""
                if isinstance(value, click.Group):
                    grouped.update(id(command) for command in value.commands.values())
    top_level = {name for key, name in defined.items() if key not in grouped}
    assert top_level == set(_COMMANDS)
    result = CliRunner().invoke(main, ["--help"])
    listing = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listing if line.startswith("  ") and line[2] != " "] == sorted(
        top_level
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
        # Loaded with the sessions: its flush listener republishes rspamd's allowed senders
        # after any command's address change (an alias made from the CLI).
        "print('controlplane.services.sender_lists' in sys.modules)\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules, listener = loaded.stdout.strip().splitlines()[-2:]
    assert modules == "['controlplane.cli.common', 'controlplane.cli.logs']"
    assert listener == "True"
