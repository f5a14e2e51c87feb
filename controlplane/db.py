"""Engine and session handling.

Services flush but never commit: the request, the CLI command or the test owns the
transaction. Work that must follow a commit (reloading Postfix after a domain change)
is queued on the session with `after_commit()` and runs only once the rows are visible
to the daemons.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_PENDING_KEY = "letterhead.after_commit"


def make_engine(url: str, *, busy_seconds: float = 30.0) -> Engine:
    if url.startswith("sqlite"):
        # Postfix's SQLite client sets no busy timeout and dies on SQLITE_BUSY, deferring
        # mail: in WAL mode readers never wait for a writer, so a commit here cannot fail
        # a lookup there. Our own writers wait for each other rather than fail.
        # hide_parameters: a failed statement's message must not carry a password hash or key.
        engine = create_engine(url, connect_args={"timeout": busy_seconds}, hide_parameters=True)
        in_memory = url in ("sqlite://", "sqlite:///:memory:")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        return engine
    # Days are counted in UTC (the log viewers group by date), whatever the server's TimeZone.
    # A lock held by a long writer is waited for as long as SQLite's busy timeout, not forever.
    options = f"-c timezone=UTC -c lock_timeout={int(busy_seconds * 1000)}"
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args={"options": options})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_rollback", _drop_after_commit)
    return factory


def after_commit(session: Session, key: str, action: Callable[[], None]) -> None:
    """Run `action` once after the session's next commit; the same key runs once."""
    session.info.setdefault(_PENDING_KEY, {})[key] = action


def _run_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, {})
    for action in pending.values():
        action()


def _drop_after_commit(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def server_reason(error: BaseException) -> str:
    """The first line of what the database server said: never the statement or its
    parameters, which SQLAlchemy appends below it and which can name secrets or addresses."""
    said = str(getattr(error, "orig", None) or error).strip()
    return said.splitlines()[0] if said else type(error).__name__


DISK_FULL_SIGNS = (
    "database or disk is full",
    "no space left on device",
    "could not extend file",
    "disk full",
)
BUSY_SIGNS = ("database is locked", "lock timeout", "could not obtain lock")


def database_problem(error: BaseException) -> str:
    """A database error in words for whoever acted: what happened, that nothing was changed
    (the transaction is rolled back), and what to do; never the statement or its values."""
    said = server_reason(error)
    lowered = said.lower()
    if any(sign in lowered for sign in DISK_FULL_SIGNS):
        return "The disk holding the database is full: nothing was changed. Free some space, then try again."
    if any(sign in lowered for sign in BUSY_SIGNS):
        return "The database is busy with a long write: nothing was changed. Try again in a moment."
    return f"The database refused the change, and nothing was changed: {said}"
