"""Search indexes built after a bulk import instead of kept up row by row during it.

A large `letterhead logs ingest` (an operator importing months of old logs) spent two thirds
of SQLite's time keeping the log tables' indexes up to date, one random page at a time; built
once after the rows are in, the same indexes cost a fifth of that. Only indexes nothing needs
while the import runs, and costly to keep up, are set aside (see _KEPT and _CHEAP_TO_KEEP for
the others), and only those of a table the import is expected to grow by a quarter or more:
rebuilding an index reads every row of its table, old and new.

Crash safety: an import holds `<database>-log-import.lock` shared for as long as its indexes
may be missing, and whoever builds them holds it exclusively. So an import never has its
indexes built under it by another process, two imports at once leave the build to the one
that ends last, and an import killed before its build leaves the lock free: the stack's next
start (`stack.prepare`, before Dovecot) and the next `logs ingest` build what is missing. While
an index is missing, searches that would use it scan the table instead: slower, with the same
answers.

No schema change while the mail daemons read the database: Dovecot's SQLite driver fails the
next query of each of its connections after one ("SQL logic error": a login refused, mail
deferred with 450 4.7.1; docs/mail-stack-notes.md). Every function here that drops or builds
an index first asks its caller's `daemons_reading` (Installation.mail_daemons_reading), and
does nothing while it says yes, or while the stack's start is under way, whose own build alone
goes on. The start (before_daemons_start, run by `letterhead up` and by systemd's prepare unit,
which exits before Dovecot starts) leaves a mark beside the database first, which every look
here sees for STARTING_SECONDS after it was last renewed; then it waits for any build under way
(a build looks before each index), and for SQLite's write lock, so that an import's drops looked
at before the mark commit before it goes on (imports drop inside the write lock, after their
last look); then it builds what is missing, renews the mark, and Dovecot starts after it.
Stopping the stack removes the mark (`letterhead down`, or systemd's stop of the prepare unit after
the parts: stack.stopped); a mark a failed start leaves behind expires.

SQLite only. On PostgreSQL several nodes write the same tables, and a lock file on one of them
cannot tell the others that an import is under way.

A migration that drops or changes one of these indexes must allow for it to be missing (an
import killed just before the upgrade): `if_exists=True`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import URL, Index, Table, bindparam, func, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from controlplane.models import AuthEvent, MailRecipientResult, MailTransaction

# Below this much unread log the indexes are kept up as usual.
BULK_IMPORT_BYTES = 32 * 1024 * 1024
# At most one row of a log table per this many bytes of log (measured on bench/logs.py's
# syslog: 139 MB made 135,925 transactions, 182,038 recipient results and 61,072 logins).
LOG_BYTES_PER_ROW = 700
# Indexes read while an import runs, never set aside.
_KEPT = {
    # The daily purge and the domain alerts read transactions by time; a time-ordered import
    # appends at the index's right edge, which costs little.
    "ix_mail_transaction_time": "purge and alerts",
    # The ingestion's own: a late failure reason is matched through it. (An evicted message's
    # recipients are read back through the unique index, which is never set aside.)
    "ix_auth_event_login": "ingestion",
    # Every panel and webmail login counts recent failures by account and network (services/auth.py).
    "ix_auth_event_account": "login throttle",
    "ix_auth_event_network": "login throttle",
    "ix_auth_event_time": "login throttle",
}
# Indexes whose new keys land at the end of one of a few runs: by domain (or the tenant) and
# time, or a value most rows leave empty. Kept up, they cost an import's writer process
# (writer_process.py) a page it holds already; built after it, each reads its whole table
# again on the critical path (0.47 s of 0.80 on bench/logs.py's million lines, measured).
_CHEAP_TO_KEEP = {
    "ix_auth_event_tenant_id_time",
    "ix_auth_event_domain_id_time",
    "ix_mail_recipient_result_domain_id_time",
    "ix_mail_recipient_result_orig_to",
    "ix_mail_transaction_sender_domain_id",
    "ix_mail_transaction_sasl_user",
}
_TABLES = (MailTransaction, MailRecipientResult, AuthEvent)
# Told when an import's end leaves indexes missing.
BUILT_LATER = (
    "The stack's next start builds them (`letterhead down`, then `letterhead up`; on an installed"
    " server `systemctl restart letterhead.target`), or the next `letterhead logs ingest` while it"
    " is stopped."
)
_NOT_WHILE_THE_DAEMONS_RUN = (
    "The log lines are stored; their search indexes are not built while Dovecot or Postfix runs or starts (a"
    f" schema change makes Dovecot fail a query). {BUILT_LATER}"
)


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def deferrable_indexes() -> list[Index]:
    """The log tables' indexes a bulk import may build at its end (unique ones never)."""
    return _indexes(also_cheap_to_keep=False)


def _indexes(*, also_cheap_to_keep: bool) -> list[Index]:
    return [
        index
        for model in _TABLES
        for index in sorted(_table(model).indexes, key=lambda index: index.name or "")
        if not index.unique
        and index.name not in _KEPT
        and (also_cheap_to_keep or index.name not in _CHEAP_TO_KEEP)
    ]


def _database_path(session: Session) -> Path | None:
    return _sqlite_file(session.get_bind().url)


def _sqlite_file(url: URL) -> Path | None:
    """The SQLite file `url` names (None for another database, or one in memory)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def _open_lock(database: Path) -> int:
    # flock needs any open descriptor; read-only is enough.
    return os.open(
        database.with_name(database.name + "-log-import.lock"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
    )


def missing_indexes(session: Session) -> list[Index]:
    """The indexes an import may have set aside that the database lacks now (none on other
    databases than SQLite): this version's deferrable ones, and those an earlier version set
    aside too (_CHEAP_TO_KEEP), which an import killed before an upgrade may have left missing."""
    if _database_path(session) is None:
        return []
    wanted = _indexes(also_cheap_to_keep=True)
    present = set(
        session.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'index' AND name IN :names").bindparams(
                bindparam("names", expanding=True)
            ),
            {"names": [index.name for index in wanted]},
        ).scalars()
    )
    return [index for index in wanted if index.name not in present]


def indexes_to_defer(session: Session, unread_bytes: int) -> list[Index]:
    """The indexes a read of `unread_bytes` of log should build at its end: those of each
    table it may grow by a quarter or more, when it is large enough to be a bulk import."""
    if _database_path(session) is None or unread_bytes < BULK_IMPORT_BYTES:
        return []
    new_rows = unread_bytes // LOG_BYTES_PER_ROW
    growing = set()
    for model in _TABLES:
        table = _table(model)
        # Ids are consecutive but for purged old rows: the span is about the rows kept.
        first, last = session.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
        stored = 0 if first is None else last - first + 1
        if new_rows * 4 >= stored:
            growing.add(table.name)
    return [
        index for index in deferrable_indexes() if index.table is not None and index.table.name in growing
    ]


# How long the stack's start counts as under way after it marked itself (before_daemons_start):
# the rest of it (the configuration, then systemd starting the daemons' units) takes seconds,
# after which Dovecot's pid file says it runs. A mark a failed start leaves behind expires.
STARTING_SECONDS = 300


def _starting_mark(database: Path) -> Path:
    return database.with_name(database.name + "-daemons-starting")


def _starting(database: Path) -> bool:
    try:
        marked = _starting_mark(database).stat().st_mtime
    except FileNotFoundError:
        return False
    return time.time() - marked < STARTING_SECONDS


def _or_starting(database: Path | None, daemons_reading: Callable[[], bool]) -> Callable[[], bool]:
    """`daemons_reading`, or the stack's start under way."""
    if database is None:
        return daemons_reading
    return lambda: daemons_reading() or _starting(database)


def before_daemons_start(session: Session, *, daemons_reading: Callable[[], bool]) -> int:
    """The stack's start, before Dovecot: from now on no import sets an index aside or builds
    one; then, once the builds and drops under way are done, build what is missing (unless the
    daemons run already, or an import still does: its indexes then wait for the next start).
    Commits. The number built."""
    database = _database_path(session)
    if database is None:
        return 0
    mark = _starting_mark(database)
    mark.touch()
    # A build under way first (it looks before each index, and may take long: no time limit
    # here); then SQLite's write lock, up to the busy timeout: an import's drops, looked at
    # before the mark, commit before this goes on (drops take moments).
    wait_for_builds(session)
    session.commit()
    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    session.commit()
    mark.touch()  # the waits may have been long
    built = _build_missing(session, database, daemons_reading)
    mark.touch()  # and the build: the start's rest counts from here
    return built


def daemons_stopped(database_url: str) -> None:
    """The stack stopped (stack.stopped): imports may set indexes aside again at once."""
    database = _sqlite_file(make_url(database_url))
    if database is not None:
        _starting_mark(database).unlink(missing_ok=True)


def no_mail_daemons() -> bool:
    """`daemons_reading` for a database no Dovecot or Postfix reads (a test's, a benchmark's)."""
    return False


def build_missing(session: Session, *, daemons_reading: Callable[[], bool]) -> int:
    """Build the deferrable indexes a killed import left missing, unless an import is still
    under way, or the mail daemons read the database or are starting (saying so); commits. The
    number built."""
    database = _database_path(session)
    if database is None:
        return 0
    return _build_missing(session, database, _or_starting(database, daemons_reading), saying_why=True)


def _build_missing(
    session: Session, database: Path, daemons_reading: Callable[[], bool], *, saying_why: bool = False
) -> int:
    if not missing_indexes(session):
        return 0
    if daemons_reading():
        if saying_why:
            print(_NOT_WHILE_THE_DAEMONS_RUN, file=sys.stderr)
        return 0
    descriptor = _open_lock(database)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # an import runs: it builds them when it ends
        return _build(session, daemons_reading)
    finally:
        os.close(descriptor)


def wait_for_builds(session: Session) -> None:
    """Return once no process builds search indexes (an import that ended while the stack was
    stopped): the stack's start waits here before it starts Dovecot, which each of the build's
    schema changes would fail a query of."""
    database = _database_path(session)
    if database is None:
        return
    descriptor = _open_lock(database)
    try:
        # Shared: imports under way hold it shared too; only a build holds it exclusively.
        _lock_shared(descriptor, "Waiting for a log import to finish building search indexes…")
    finally:
        os.close(descriptor)


def _lock_shared(descriptor: int, waiting: str) -> None:
    """Take the lock shared, saying `waiting` first when a build holds it."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        print(waiting, file=sys.stderr)
        fcntl.flock(descriptor, fcntl.LOCK_SH)


def _build(session: Session, daemons_reading: Callable[[], bool]) -> int:
    missing = missing_indexes(session)
    for built, index in enumerate(missing):
        if daemons_reading():
            # Started since the import began (`letterhead up` meanwhile).
            print(_NOT_WHILE_THE_DAEMONS_RUN, file=sys.stderr)
            return built
        index.create(session.connection(), checkfirst=True)
        # One commit per index: each build holds SQLite's write lock (readers go on under WAL),
        # and other writers wait for one index at a time: at most 0.15 s per million log lines
        # stored (measured, docs/benchmarks.md), inside their 30 s busy timeout up to about
        # 200 million lines.
        session.commit()
    return len(missing)


@contextlib.contextmanager
def deferred(session: Session, unread_bytes: int, *, daemons_reading: Callable[[], bool]) -> Iterator[None]:
    """Set aside the indexes worth deferring for a read of `unread_bytes` during the block, and
    build every missing one after it (unless another import still runs: the last to end builds).
    Commits the session before the block and after it. While `daemons_reading()`, nothing is set
    aside and nothing built (the module's docstring says why)."""
    database = _database_path(session)
    daemons_reading = _or_starting(database, daemons_reading)
    indexes = [] if daemons_reading() else indexes_to_defer(session, unread_bytes)
    if database is None or not indexes:
        yield
        # Left by an import killed earlier.
        _after_the_rows(session, lambda: build_missing(session, daemons_reading=daemons_reading))
        return
    session.commit()
    descriptor = _open_lock(database)
    try:
        _lock_shared(descriptor, "Waiting for another process to finish building search indexes…")
        # The last look inside SQLite's write lock, the drops under the same: a start that marks
        # itself after this look waits for them (before_daemons_start).
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        if daemons_reading():
            session.rollback()
            yield  # started while this waited: nothing set aside, nothing to build
            return
        for index in indexes:
            index.drop(session.connection(), checkfirst=True)
        session.commit()
        try:
            yield
        except Exception:
            # The rows committed before the failure still need their indexes; a failed build
            # must not hide why the import failed (the next start or import tries again).
            session.rollback()
            with contextlib.suppress(Exception):
                _build_if_last(session, descriptor, daemons_reading)
            raise
        # Not reached when interrupted (Ctrl-C, SystemExit): no build holds the operator up
        # then; the stack's next start or the next import makes it.
        _after_the_rows(session, lambda: _build_if_last(session, descriptor, daemons_reading))
    finally:
        os.close(descriptor)


def _after_the_rows(session: Session, build: Callable[[], object]) -> None:
    """Run `build` once every row is committed: its failure (another writer holding the lock
    past the busy timeout, a full disk) must not make the import look failed, or undone."""
    try:
        build()
    except (SQLAlchemyError, OSError) as error:
        session.rollback()
        print(
            f"The log lines are stored, but building their search indexes failed ({error.__class__.__name__})."
            f" {BUILT_LATER}",
            file=sys.stderr,
        )


def _build_if_last(session: Session, descriptor: int, daemons_reading: Callable[[], bool]) -> None:
    # Shared to exclusive is not atomic: another holder may take the lock in between. Another
    # import builds at its end; the stack's start (before_daemons_start) builds before Dovecot, or,
    # when the daemons run already, leaves them to the next start. Whoever builds builds over
    # every row stored.
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if daemons_reading():
            print(_NOT_WHILE_THE_DAEMONS_RUN, file=sys.stderr)
        return
    _build(session, daemons_reading)
