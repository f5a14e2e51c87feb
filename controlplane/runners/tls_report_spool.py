"""The TLS reports Postfix spooled (master.cf's `tls-reports` pipe writes each message into
settings.tls_report_spool as its mail account), read into the database.

Each file is first claimed by renaming it into a folder of root's (so the periodic runner and
an operator's `letterhead tls-reports read` never read one twice), then parsed and stored
(services/tls_reports.py) and deleted. What is not a TLS report is kept in `refused/` with the
reason printed; a database that does not answer leaves the file for the next run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.exc import OperationalError

from controlplane.errors import ValidationError
from controlplane.runtime import Installation
from controlplane.services import tls_reports


def _folder(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def read_spool(installation: Installation) -> list[str]:
    """Read every complete spooled message; one line per message saying what became of it."""
    spool = installation.settings.tls_report_spool
    reading = _folder(spool.parent / "tls-reading")
    refused = _folder(spool.parent / "tls-refused")
    # Left by a run that stopped halfway: read again (a report already kept is kept once).
    claimed = sorted(reading.iterdir())
    for entry in sorted(spool.iterdir()) if spool.is_dir() else []:
        if entry.name.endswith(".part") or not entry.is_file():
            continue  # still being written by Postfix's pipe
        target = reading / entry.name
        with contextlib.suppress(FileNotFoundError):  # another reader claimed it first
            os.rename(entry, target)
            claimed.append(target)
    said = []
    for path in claimed:
        try:
            message = path.read_bytes()
        except FileNotFoundError:
            continue  # a leftover another reader finished meanwhile
        try:
            with installation.transaction() as session:
                domains = tls_reports.receive_message(session, message)
        except ValidationError as error:
            os.replace(path, refused / path.name)
            said.append(f"TLS report {path.name} refused: {error.message}")
            continue
        except OperationalError:
            os.replace(path, spool / path.name)  # the database is away: next run
            raise
        path.unlink()
        if domains:
            said.append(f"TLS report {path.name} kept for {', '.join(sorted(set(domains)))}")
        else:
            said.append(f"TLS report {path.name} names no domain hosted here: dropped")
    return said
