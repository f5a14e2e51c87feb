"""Read Postfix and Dovecot logs into the database from a checkpoint, following rotation.

Each batch of rows is committed together with the checkpoint that says how far the file was
read, so a crash at any point resumes exactly where the last commit left off: no line is
stored twice and none is skipped.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.logs.dovecot import LoginEvent, parse_dovecot_line
from controlplane.logs.postfix import PostfixEvent, parse_postfix_line
from controlplane.logs.transactions import TransactionAssembler
from controlplane.models import AuthEvent, Domain, LogCheckpoint, Mailbox, UnparsedLogLine
from controlplane.services.auth import client_network

HEAD_BYTES = 256
BATCH_LINES = 500
MAX_STORED_LINE = 4000
_TIMESTAMPED = re.compile(
    rb"^(?:[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})"
)
# Lines that name a transaction's parts; when the parser returns None for one, a format
# changed and the line is kept for a person to look at instead of silently dropped.
_MEANINGFUL = (b"NOQUEUE:", b" to=<", b" status=", b"Login: ", b"auth failed")


@dataclass
class IngestResult:
    lines: int = 0
    postfix_events: int = 0
    logins: int = 0
    unparsed: int = 0
    rotated: bool = False


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


def _head_hash(path: Path, length: int) -> str:
    with _open(path) as stream:
        return hashlib.sha256(stream.read(length)).hexdigest()[:32]


def _size(path: Path) -> int:
    """The number of readable bytes, uncompressed for a gzip file."""
    with _open(path) as stream:
        if isinstance(stream, gzip.GzipFile):
            return sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))
    return path.stat().st_size


def _same_file(path: Path, checkpoint: LogCheckpoint) -> bool:
    """Whether `path` is still the file the checkpoint describes, grown or not."""
    length = min(HEAD_BYTES, checkpoint.offset)
    # The head first: it is cheap, while sizing a gzip file means decompressing all of it.
    return _head_hash(path, length) == checkpoint.head and _size(path) >= checkpoint.offset


def _rotated_predecessor(path: Path, checkpoint: LogCheckpoint) -> Path | None:
    """The rotated-away copy of the file last read (logrotate's `name.1`, `name.1.gz`, `name-DATE`)."""
    for candidate in sorted(path.parent.glob(path.name + "[.-]*")):
        try:
            if candidate.stat().st_ino == checkpoint.inode:
                return candidate
            # With nothing read yet every file "starts the same": only the inode can tell.
            if checkpoint.offset > 0 and _same_file(candidate, checkpoint):
                return candidate
        except OSError:
            continue
    return None


def ingest_file(
    session: Session,
    path: Path | str,
    *,
    reference: dt.datetime | None = None,
    batch_lines: int = BATCH_LINES,
) -> IngestResult:
    """Store what `path` logged since its checkpoint, finishing a rotated-away predecessor first.

    `reference` dates year-less syslog stamps (default: the file's modification time, since
    no line in a file is newer than the file). Commits once per batch.
    """
    path = Path(path)
    key = str(path.resolve())
    result = IngestResult()
    checkpoint = session.scalars(select(LogCheckpoint).where(LogCheckpoint.path == key)).first()
    inode = path.stat().st_ino
    if checkpoint is not None and not (checkpoint.inode == inode and _same_file(path, checkpoint)):
        # Renamed away and replaced, or copied and truncated: finish the old copy if it is still
        # next to the file, then read the new file from its start.
        previous = _rotated_predecessor(path, checkpoint)
        if previous is not None:
            _ingest_stream(session, previous, checkpoint, reference, batch_lines, result, complete=True)
        checkpoint.inode, checkpoint.offset, checkpoint.head = inode, 0, _head_hash(path, 0)
        result.rotated = True
    if checkpoint is None:
        checkpoint = LogCheckpoint(path=key, inode=inode, offset=0, head=_head_hash(path, 0))
        session.add(checkpoint)
    # A gzip file never grows, so its last line is complete even without a newline.
    complete = path.suffix == ".gz"
    _ingest_stream(session, path, checkpoint, reference, batch_lines, result, complete=complete)
    checkpoint.inode = inode
    session.commit()
    return result


def _lines(stream: BinaryIO, complete: bool) -> Iterator[tuple[bytes, int]]:
    """(line, its length in bytes); an unfinished last line is left for the next run."""
    for raw in stream:
        if not raw.endswith(b"\n") and not complete:
            return
        yield raw, len(raw)


def _ingest_stream(
    session: Session,
    path: Path,
    checkpoint: LogCheckpoint,
    reference: dt.datetime | None,
    batch_lines: int,
    result: IngestResult,
    *,
    complete: bool,
) -> None:
    if reference is None:
        reference = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    assembler = TransactionAssembler(session)
    logins = _LoginRecorder(session)
    offset = checkpoint.offset
    pending = 0
    with _open(path) as stream:
        stream.seek(offset)
        for raw, length in _lines(stream, complete):
            offset += length
            pending += 1
            result.lines += 1
            _ingest_line(session, raw, str(path), reference, assembler, logins, result)
            if pending >= batch_lines:
                _save_checkpoint(session, path, checkpoint, offset)
                session.commit()
                pending = 0
    _save_checkpoint(session, path, checkpoint, offset)
    session.commit()


def _save_checkpoint(session: Session, path: Path, checkpoint: LogCheckpoint, offset: int) -> None:
    checkpoint.offset = offset
    checkpoint.head = _head_hash(path, min(HEAD_BYTES, offset))
    checkpoint.updated_at = dt.datetime.now(dt.UTC)
    session.flush()


def _ingest_line(
    session: Session,
    raw: bytes,
    source: str,
    reference: dt.datetime,
    assembler: TransactionAssembler,
    logins: _LoginRecorder,
    result: IngestResult,
) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    event = parse_postfix_line(line, reference)
    if event is not None:
        result.postfix_events += 1
        assembler.add(event)
        login = _postfix_login(event)
        if login is not None:
            logins.add(login)
            result.logins += 1
        return
    login = parse_dovecot_line(line, reference)
    if login is not None:
        logins.add(login)
        result.logins += 1
        return
    if not line.strip():
        return
    if not _TIMESTAMPED.match(raw) or any(marker in raw for marker in _MEANINGFUL):
        result.unparsed += 1
        session.add(UnparsedLogLine(time=reference, source=source[:1000], line=line[:MAX_STORED_LINE]))


def _postfix_login(event: PostfixEvent) -> LoginEvent | None:
    # Postfix logs a successful SASL login only on the client= line of each message it then
    # accepts, and a failed one without the user name it was tried for.
    if event.kind == "connect-client" and event.sasl_user:
        return LoginEvent(event.time, "smtp", event.sasl_user, event.client_ip, True, "")
    if event.kind == "sasl-failed":
        return LoginEvent(event.time, "smtp", "", event.client_ip, False, "wrong password or unknown user")
    return None


class _LoginRecorder:
    """Turns login events into AuthEvent rows, attributed to the mailbox's domain and tenant."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._owners: dict[str, tuple[int | None, int | None]] = {}

    def add(self, login: LoginEvent) -> None:
        account = login.user.strip().lower()[:255]
        tenant_id, domain_id = self._owner(account)
        self.session.add(
            AuthEvent(
                time=login.time,
                service=login.service,
                login=login.user[:255],
                account=account,
                tenant_id=tenant_id,
                domain_id=domain_id,
                client_ip=login.client_ip[:64],
                network=client_network(login.client_ip) if login.client_ip else "",
                success=login.success,
                reason=login.reason[:50],
            )
        )

    def _owner(self, account: str) -> tuple[int | None, int | None]:
        if "@" not in account:
            return None, None
        if account not in self._owners:
            local_part, domain_name = account.rsplit("@", 1)
            row = self.session.execute(
                select(Domain.tenant_id, Domain.id)
                .join(Mailbox, Mailbox.domain_id == Domain.id)
                .where(Domain.name == domain_name, Mailbox.local_part == local_part)
            ).first()
            if row is None:  # an unknown user still belongs to the domain it named, if it is ours
                row = self.session.execute(
                    select(Domain.tenant_id, Domain.id).where(Domain.name == domain_name)
                ).first()
            self._owners[account] = (row[0], row[1]) if row else (None, None)
        return self._owners[account]
