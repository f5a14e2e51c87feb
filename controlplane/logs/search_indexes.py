"""Search indexes built after a bulk import instead of kept up row by row during it.

A large `letterhead logs ingest` (an operator importing months of old logs) spent two thirds
of SQLite's time keeping fifteen search indexes up to date, one random page at a time; built
once after the rows are in, the same indexes cost a sixth of that. Only indexes the ingestion
itself never reads are set aside: the queue entries' (a message's later lines find it through
them), the recipients' by transaction (an evicted message is read back through it), the
failed logins' by login (a late reason is matched through it), and every unique index.

Crash safety: an import holds `<database>-log-import.lock` shared for as long as the indexes
may be missing, and whoever builds them holds it exclusively. So an import never has its
indexes built under it by another process, two imports at once leave the build to the one
that ends last, and an import killed before its build leaves the lock free: the log follower
(each minute) and the next ingest build what is missing. Search reads the tables all the same
while an index is missing, only by scanning them.

SQLite only. On PostgreSQL several nodes write the same tables, and a lock file on one of them
cannot tell the others that an import is under way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Index, bindparam, text
from sqlalchemy.orm import Session

from controlplane.models import AuthEvent, MailRecipientResult, MailTransaction

# Below this much unread log, or fewer new rows than a quarter of the rows already stored
# (rebuilding an index reads every row, new or old), the indexes are kept up as usual.
BULK_IMPORT_BYTES = 32 * 1024 * 1024
# About one stored transaction per this many bytes of a Postfix log (measured: 139 MB of
# syslog made 135,925 transactions).
LOG_BYTES_PER_TRANSACTION = 1000
# The indexes the ingestion reads while it writes: never set aside.
_READ_BY_INGESTION = frozenset({"ix_mail_recipient_result_transaction_id", "ix_auth_event_login"})


def deferrable_indexes() -> list[Index]:
    """The search indexes of the log tables that a bulk import builds at its end."""
    found = []
    for model in (MailTransaction, MailRecipientResult, AuthEvent):
        for index in sorted(model.__table__.indexes, key=lambda index: index.name or ""):  # type: ignore[attr-defined]
            if not index.unique and index.name not in _READ_BY_INGESTION:
                found.append(index)
    return found


def _database_path(session: Session) -> Path | None:
    url = session.get_bind().url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + "-log-import.lock")


def _open_lock(database: Path) -> int:
    return os.open(_lock_path(database), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def missing_indexes(session: Session) -> list[Index]:
    """The deferrable indexes the database lacks now (none on other databases than SQLite)."""
    if _database_path(session) is None:
        return []
    wanted = deferrable_indexes()
    present = set(
        session.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'index' AND name IN :names").bindparams(
                bindparam("names", expanding=True)
            ),
            {"names": [index.name for index in wanted]},
        ).scalars()
    )
    return [index for index in wanted if index.name not in present]


def build_missing(session: Session) -> int:
    """Build the deferrable indexes a killed import left missing, unless an import is still
    under way; commits. The number built."""
    database = _database_path(session)
    if database is None or not missing_indexes(session):
        return 0
    session.rollback()  # no read transaction held while waiting for the write lock
    descriptor = _open_lock(database)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # an import runs: it builds them when it ends
        return _build(session)
    finally:
        os.close(descriptor)


def _build(session: Session) -> int:
    missing = missing_indexes(session)
    for index in missing:
        index.create(session.connection(), checkfirst=True)
        # One commit per index: each build holds SQLite's write lock (readers go on under WAL),
        # and the panel's writes wait for it only as long as one index takes.
        session.commit()
    return len(missing)


def worth_deferring(session: Session, unread_bytes: int) -> bool:
    """Whether reading `unread_bytes` of log is a bulk import that should build the search
    indexes at its end: enough new rows to outweigh rebuilding over the rows already stored."""
    if _database_path(session) is None or unread_bytes < BULK_IMPORT_BYTES:
        return False
    stored = session.execute(text("SELECT max(id) FROM mail_transaction")).scalar() or 0
    return unread_bytes // LOG_BYTES_PER_TRANSACTION * 4 >= stored


@contextlib.contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Set the deferrable indexes aside for the block and build them after it (the last of
    several imports at once builds them). Commits the session before and after."""
    database = _database_path(session)
    if database is None:
        yield
        return
    session.commit()
    descriptor = _open_lock(database)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        connection = session.connection()
        for index in deferrable_indexes():
            index.drop(connection, checkfirst=True)
        session.commit()
        try:
            yield
        finally:
            session.rollback()  # a batch the block failed in is not kept; its rows are not built over
            # Shared to exclusive is not atomic: another import may take it in between, and
            # then it builds at its end. Whoever gets it builds over every row stored.
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                _build(session)
    finally:
        os.close(descriptor)
