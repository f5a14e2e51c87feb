"""An import's rows written to SQLite by a second process while the first reads the log.

Measured on a million-line log (docs/benchmarks.md): SQLite's own work on the rows was 37% of
an import, and everything else already ran as fast as pflogsumm. pflogsumm uses one core; the
machine has two. A thread could not use the second (binding and conversion hold the GIL), a
forked process can: the reading side parses, assembles and converts each batch's rows for
SQLite, then hands them over a pipe; the writer inserts them while the next batch is read.

What stays true with two processes:
- A batch's rows and its checkpoint commit in one transaction, the writer's, and only when the
  reading side hands the checkpoint over. Either side dying leaves whole batches: the writer
  rolls back what it holds when the pipe closes or a statement fails, and the next run reads
  the rest of the file.
- Ids are never guessed. Each batch's new rows take ids the writer sets aside, in its
  transaction, from the tables' AUTOINCREMENT counters; a log follower writing between the
  import's batches takes ids after them.
- Every read of rows the import wrote (an evicted message read back, a late failure reason)
  runs in the writer, after everything handed over before it, so it sees what the same read
  saw in one process. The domains and the log's checkpoints are read by the reading side.
- A failure in the writer is raised on the reading side: a concurrent reader's commit as
  StaleDataError (so ConcurrentRead, as in one process), anything else as WriterFailed.

SQLite only, for `letterhead logs ingest` of much unread log; the follower and PostgreSQL write
in their own process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import marshal
import os
import pickle
import queue
import signal
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from controlplane.db import database_problem, make_engine
from controlplane.errors import LetterheadError
from controlplane.logs import search_indexes
from controlplane.logs.store import BulkWriter, table_of, tune_for_ingest
from controlplane.models import LogCheckpoint

_LENGTH = struct.Struct("<I")
# What the writer answers (the others it runs without a word, unless they fail). A commit is
# answered so that the reading side runs at most one batch ahead (WriterProcess.commit).
_ANSWERED = frozenset(
    {"reserve_ids", "stored_entry", "stored_open_ids", "transaction_rows", "sync", "commit_checkpoint"}
)
_UNANSWERED = frozenset(
    {"insert_values", "insert_numbered", "execute_many", "set_login_reason", "write_dialogue"}
)


class WriterFailed(LetterheadError):
    """The process writing an import's rows failed or ended; no batch it held was committed."""


@dataclasses.dataclass
class CheckpointProgress:
    """A checkpoint as the writer process commits it (the session's own object stays as read)."""

    id: int | None
    version: int
    offset: int
    head: str
    updated_at: dt.datetime | None


def worth_a_writer_process(session: Session, unread_bytes: int) -> bool:
    """Whether a read of `unread_bytes` should have its rows written by a writer process: a
    bulk import (search_indexes.py: smaller reads cost less than a fork and a connection) into
    an SQLite database file."""
    url = session.get_bind().url
    return (
        unread_bytes >= search_indexes.BULK_IMPORT_BYTES
        and url.get_backend_name() == "sqlite"
        and bool(url.database)
        and url.database != ":memory:"
    )


class WriterProcess:
    """The reading side's end: the store's RowWriter, and the stream's commits."""

    def __init__(self, session: Session, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self._requests = requests
        self._replies = replies
        # Statements and conversions are made here, from this session's tables and dialect.
        self._local = BulkWriter(session)
        self._reserved: dict[str, int] = {}
        # Commits sent whose answer is not read yet (answers come in the order of the messages).
        self._unanswered_commits = 0
        self._closed = False

    # --- the store's writer ----------------------------------------------------------------

    def reserve(self, counts: dict[type, int]) -> None:
        by_table = {table_of(model).name: count for model, count in counts.items() if count}
        if by_table:
            self._reserved.update(self._call("reserve_ids", by_table))

    def insert(
        self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]], *, ids: bool = True
    ) -> Sequence[int]:
        table = table_of(model)
        if not ids:
            sql, values = self._local.packed("insert", table, names, rows)
            self._send("insert_values", sql, len(names), values)
            return []
        first = self._reserved.pop(table.name)
        # The id last: the conversions' positions are the rows' own; the writer appends it.
        sql, values = self._local.packed("insert", table, (*names, "id"), rows)
        self._send("insert_numbered", sql, len(names), values, first)
        return range(first, first + len(rows))

    def update(self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        sql, values = self._local.packed("update", table_of(model), names, rows)
        self._send("execute_many", sql, values)

    def stored_entry(self, queue_id: str, time: dt.datetime, open_only: bool) -> tuple[int, int] | None:
        found = self._call("stored_entry", queue_id, time, open_only)
        return None if found is None else (found[0], found[1])

    def stored_open_ids(self, limit: int) -> list[str]:
        return list(self._call("stored_open_ids", limit))

    def transaction_rows(
        self, transaction_id: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[int, str, dt.datetime, bool]]]:
        values, recipients, entries = self._call("transaction_rows", transaction_id)
        return values, recipients, entries

    def set_login_reason(
        self, service: str, login: str, client_ip: str, time: dt.datetime, was: str, reason: str
    ) -> None:
        self._send("set_login_reason", service, login, client_ip, time, was, reason)

    def write_dialogue(self, claims: list[tuple[str, int | None]], rows: list[dict[str, Any]]) -> None:
        self._send("write_dialogue", claims, rows)

    # --- the stream's -------------------------------------------------------------------------

    @staticmethod
    def track(checkpoint: LogCheckpoint) -> CheckpointProgress:
        """What the writer commits for `checkpoint` (committed as read): the stream moves this
        one on, and the session's object is expired once the stream ends."""
        return CheckpointProgress(
            checkpoint.id, checkpoint.version, checkpoint.offset, checkpoint.head, checkpoint.updated_at
        )

    def commit(self, progress: CheckpointProgress | None) -> None:
        """The rows handed over so far, committed with `progress` (if it moved). Returns once
        the batch before is committed: the rows waiting in the writer are one batch's at most,
        whatever the log (a log of logins alone asks the writer nothing else)."""
        if progress is None:
            self._send("commit_checkpoint", None, 0, 0, "", None)
        else:
            self._send(
                "commit_checkpoint", progress.id, progress.version, progress.offset, progress.head,
                progress.updated_at,
            )  # fmt: skip
            progress.version += 1
        self._unanswered_commits += 1
        while self._unanswered_commits > 1:
            self._read_commit_answer()

    def sync(self) -> None:
        """Wait until everything handed over is done; raises what failed."""
        self._call("sync")

    def close(self) -> None:
        """End the writer and wait for it: it runs what was handed over before (a batch whose
        checkpoint came with it is committed whole) and rolls back the rest."""
        if self._closed:
            return
        self._closed = True
        # Both ends closed first: a writer blocked answering (Ctrl-C in the middle of a call)
        # gets EPIPE and ends, instead of waiting for a reader that waits for it.
        os.close(self._requests)
        os.close(self._replies)
        os.waitpid(self.pid, 0)

    # --- the pipe -------------------------------------------------------------------------------

    def _send(self, *message: Any) -> None:
        try:
            _write_all(self._requests, _frame(message))
        except BrokenPipeError:
            self._raise_failure()

    def _call(self, *message: Any) -> Any:
        self._send(*message)
        while self._unanswered_commits:
            self._read_commit_answer()
        return self._answer(self._reply())

    def _read_commit_answer(self) -> None:
        self._answer(self._reply())
        self._unanswered_commits -= 1

    def _reply(self) -> Any:
        """The writer's next answer, or None if it ended."""
        try:
            return _read_frame(self._replies)
        except OSError:
            return None
        except Exception as error:  # noqa: BLE001 - undecodable: the pipe cannot be trusted after it
            raise WriterFailed(f"The log's writer process answered something unreadable ({error}).") from None

    def _raise_failure(self) -> None:
        """The writer closed its end: raise what it said before it ended, if anything."""
        self._answer(self._reply())

    @staticmethod
    def _answer(reply: Any) -> Any:
        if reply is None:
            raise WriterFailed(
                "The process writing the log's rows ended unexpectedly; nothing after its last commit was kept."
            )
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "stale":
            raise StaleDataError("another reader committed lines of this file first")
        raise WriterFailed(f"Writing the log's rows failed, and their batch was not kept. {reply[1]}")


@contextlib.contextmanager
def started(session: Session) -> Iterator[WriterProcess]:
    """A writer process on `session`'s database (committed first), ended when the block ends:
    its rows all committed when the block ends normally, its uncommitted rows rolled back when
    the block raises."""
    url = session.get_bind().url.render_as_string(hide_password=False)
    node = session.info.get("node_name", "")
    busy_milliseconds = session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    session.commit()
    # No SQLite connection may cross the fork (sqlite.org/howtocorrupt.html, 2.6): the child
    # would inherit this process's record of the open database file and its locks. The
    # session's connection is back in the pool after the commit; the pool closes it here and
    # opens a new one at the next use.
    session.get_bind().dispose()
    requests_read, requests_write = os.pipe()
    replies_read, replies_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        status = 1
        try:
            os.close(requests_write)
            os.close(replies_read)
            # Ctrl-C reaches both processes; the reading side decides, by closing the pipe.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            gc.enable()  # paused for the import's reading side (ingest.py), not for this one
            status = _serve(url, busy_milliseconds / 1000, node, requests_read, replies_write)
        finally:
            # No cleanup of what the parent owns (its temporary files, its exit handlers):
            # only the parent closes them.
            os._exit(status)
    try:
        os.close(requests_read)
        os.close(replies_write)
        writer = WriterProcess(session, pid, requests_write, replies_read)
    except BaseException:
        os.close(requests_write)
        os.close(replies_read)
        os.waitpid(pid, 0)  # the child sees the pipe close and ends
        raise
    try:
        yield writer
        writer.sync()
    finally:
        writer.close()


def _serve(url: str, busy_seconds: float, node: str, requests: int, replies: int) -> int:
    """The writer's loop: run each message in order; commit only on a checkpoint's word."""
    try:
        session = Session(make_engine(url, busy_seconds=busy_seconds), info={"node_name": node})
        tune_for_ingest(session)
        writer = BulkWriter(session)
    except Exception as error:  # noqa: BLE001 - reported to the reading side, which raises it
        _write_all(replies, _frame(_failure(error)))
        return 1
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    # Reading the pipe in a thread of its own: the reading side never waits on a full pipe
    # while this one runs a statement (sqlite3 releases the GIL while SQLite works).
    threading.Thread(target=_receive, args=(requests, inbox), daemon=True).start()
    while True:
        message = inbox.get()
        if message is None:  # the reading side closed the pipe: finished, failed or killed
            session.rollback()
            return 0
        name, *arguments = message
        try:
            if name == "commit_checkpoint":
                _commit_checkpoint(session, *arguments)
                result = None
            elif name == "sync":
                result = None
            elif name in _ANSWERED or name in _UNANSWERED:
                result = getattr(writer, name)(*arguments)
            else:
                raise ValueError(f"unknown message {name!r}")
        except StaleDataError:
            session.rollback()
            _write_all(replies, _frame(("stale",)))
            return 1
        except Exception as error:  # noqa: BLE001 - reported to the reading side, which raises it
            session.rollback()
            _write_all(replies, _frame(_failure(error)))
            return 1
        if name in _ANSWERED:
            # The reading side may have closed (Ctrl-C) after handing whole batches over: they
            # are still committed, up to the end of the pipe.
            with contextlib.suppress(BrokenPipeError):
                _write_all(replies, _frame(("ok", result)))


def _failure(error: Exception) -> tuple[str, str]:
    """What the reading side raises for `error`: the database's in words (never a statement)."""
    if isinstance(error, SQLAlchemyError):
        return ("error", database_problem(error))
    return ("error", f"{type(error).__name__}: {error}")


def _commit_checkpoint(
    session: Session,
    checkpoint_id: int | None,
    version: int,
    offset: int,
    head: str,
    updated_at: dt.datetime | None,
) -> None:
    if checkpoint_id is not None:
        # As the session's version check does it: another reader's commit makes this one fail.
        table = table_of(LogCheckpoint)
        moved = session.execute(
            update(table)
            .where(table.c.id == checkpoint_id, table.c.version == version)
            .values(offset=offset, head=head, updated_at=updated_at, version=version + 1)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleDataError("the checkpoint moved")
    session.commit()


def _receive(requests: int, inbox: queue.SimpleQueue[Any]) -> None:
    try:
        while True:
            message = _read_frame(requests)
            inbox.put(message)
            if message is None:
                return
    except Exception:  # noqa: BLE001 - a broken pipe is the end, as EOF is
        inbox.put(None)


def _frame(message: tuple[Any, ...]) -> bytes:
    # marshal writes rows of plain values (converted for SQLite) three times as fast as pickle;
    # messages holding datetimes (the reads' arguments, the checkpoint) are pickled.
    try:
        payload = b"M" + marshal.dumps(message)
    except ValueError:
        payload = b"P" + pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def _read_frame(descriptor: int) -> Any:
    """The next message, or None at the end of the pipe."""
    head = _read_exactly(descriptor, _LENGTH.size)
    if head is None:
        return None
    payload = _read_exactly(descriptor, _LENGTH.unpack(head)[0])
    if payload is None:
        return None
    if payload[:1] == b"M":
        return marshal.loads(memoryview(payload)[1:])
    return pickle.loads(memoryview(payload)[1:])  # noqa: S301 - our own child's, over our own pipe


def _read_exactly(descriptor: int, length: int) -> bytes | None:
    chunks = []
    while length:
        chunk = os.read(descriptor, min(length, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
