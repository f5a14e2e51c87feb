"""systemd units for a production install (runners/install.py): a `letterhead.target` with one
service per part (runners/parts.py), each restarted when it dies, started in order after a
oneshot that migrates the schema and applies the checked configuration; and the `letterhead`
command on PATH. Checked by `systemd-analyze verify` in the tests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from controlplane.render import _environment
from controlplane.settings import TEMPLATE_ROOT

UNIT_DIR = "etc/systemd/system"
COMMAND_FILE = "usr/local/bin/letterhead"
# What may reach a unit file or the shell script: no spaces, quotes or newlines.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")


@dataclasses.dataclass(frozen=True)
class UnitPart:
    name: str
    description: str


def checked_path(path: str | Path) -> str:
    text = str(path)
    if not _SAFE_PATH.fullmatch(text):
        raise ValueError(f"Not a plain absolute path: {text!r}")
    return text


def render_units(
    *,
    hostname: str,
    home: Path,
    python: str,
    parts: list[UnitPart],
    database_service: str = "",
    template_root: Path = TEMPLATE_ROOT,
) -> dict[str, str]:
    """Files by their path under the root of the machine (or of a throwaway tree)."""
    env = _environment(template_root)
    command = "/" + COMMAND_FILE
    context = {
        "hostname": hostname,
        "home": checked_path(home),
        "python": checked_path(python),
        "command": command,
        "parts": parts,
        "database_service": database_service,
    }
    files = {
        COMMAND_FILE: env.get_template("systemd/letterhead-command.sh.j2").render(context),
        f"{UNIT_DIR}/letterhead.target": env.get_template("systemd/letterhead.target.j2").render(context),
        f"{UNIT_DIR}/letterhead-prepare.service": env.get_template(
            "systemd/letterhead-prepare.service.j2"
        ).render(context),
    }
    part_template = env.get_template("systemd/letterhead-part.service.j2")
    previous = ""
    for part in parts:
        files[f"{UNIT_DIR}/letterhead-{part.name}.service"] = part_template.render(
            context, part=part, previous=previous
        )
        previous = part.name
    return files
