"""The reports Postfix spooled (master.cf's `tls-reports` pipe writes each message to the
platform's tls-reports@ and dmarc-reports@ into settings.tls_report_spool as its mail account),
read into the database: DMARC aggregate reports (services/dmarc_reports.py) and TLS reports
(services/tls_reports.py), told apart by what the message carries.

One reader at a time (a lock: the periodic runner and an operator's `letterhead tls-reports
read`). Each file is moved into a folder of root's, parsed and stored (services/tls_reports.py)
and deleted. The spool is writable by the mail account, so a file is opened without following
links, must be a regular file and is read up to the size a report may have. Whatever is not a
TLS report, or cannot be read, is kept in `tls-refused/` with the reason printed: no message can
stop the ones after it. A database that does not answer leaves the file for the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.exc import OperationalError

from controlplane.errors import ValidationError
from controlplane.runtime import Installation
from controlplane.services import dmarc_reports, tls_reports

MAX_MESSAGE_BYTES = max(tls_reports.MAX_MESSAGE_BYTES, dmarc_reports.MAX_MESSAGE_BYTES)
# A `.part` file this old is what a pipe left when it failed (Postfix retries under a new name).
STALE_PART_SECONDS = 24 * 3600


def _folder(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _one_reader(folder: Path) -> Iterator[None]:
    with open(folder / "reader.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_message(path: Path) -> bytes:
    """The file's bytes; ValidationError for anything but a regular file of a report's size."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise ValidationError(f"It could not be opened ({error.strerror}).") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValidationError("It is not a regular file.")
        data = file.read(MAX_MESSAGE_BYTES + 1)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValidationError(f"The message is larger than {MAX_MESSAGE_BYTES // 1024**2} MB.")
    return data


def read_spool(installation: Installation) -> list[str]:
    """Read every complete spooled message; one line per message saying what became of it."""
    spool = installation.settings.tls_report_spool
    reading = _folder(spool.parent / "tls-reading")
    refused = _folder(spool.parent / "tls-refused")
    with _one_reader(reading):
        # Left by a run that stopped halfway: read again (a report already kept is kept once).
        claimed = sorted(path for path in reading.iterdir() if path.name != "reader.lock")
        for entry in sorted(spool.iterdir()) if spool.is_dir() else []:
            if entry.name.endswith(".part"):
                with contextlib.suppress(OSError):
                    if time.time() - entry.lstat().st_mtime > STALE_PART_SECONDS:
                        entry.unlink()
                continue  # still being written by Postfix's pipe
            target = reading / entry.name
            os.rename(entry, target)
            claimed.append(target)
        return [_read_one(installation, path, spool, refused) for path in claimed]


def _read_one(installation: Installation, path: Path, spool: Path, refused: Path) -> str:
    kind = "Report"
    try:
        message = _read_message(path)
        with installation.transaction() as session:
            try:
                dmarc = dmarc_reports.receive_message(session, message)
                kind = "DMARC report"
            except dmarc_reports.NoDmarcReport:
                kind = "TLS report"
                kept = tls_reports.receive_message(session, message)
            else:
                kept = tls_reports.Kept([dmarc.domain] if dmarc.domain and not dmarc.already_kept else [],
                                        int(dmarc.already_kept))  # fmt: skip
    except OperationalError:
        os.replace(path, spool / path.name)  # the database is away: next run
        raise
    except ValidationError as error:
        os.replace(path, refused / path.name)
        return f"{kind} {path.name} refused: {error.message}"
    except Exception as error:  # noqa: BLE001 - a hostile message must not stop the ones after it
        os.replace(path, refused / path.name)
        return f"{kind} {path.name} refused: it could not be read ({type(error).__name__})."
    path.unlink()
    if kept.domains:
        return f"{kind} {path.name} kept for {', '.join(sorted(set(kept.domains)))}"
    if kept.already_kept:
        return f"{kind} {path.name} was kept before: nothing new"
    return f"{kind} {path.name} names no domain hosted here: dropped"
