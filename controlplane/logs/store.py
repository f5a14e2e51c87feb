"""The ingestion's write path: log rows held in memory per batch and written in a few statements.

The assembler (transactions.py) works on plain row objects instead of ORM instances: a
million log lines would otherwise cost a million unit-of-work flushes. New rows are inserted
with one multi-row INSERT per table and batch, their ids read back from the table's
AUTOINCREMENT counter (RETURNING on PostgreSQL); rows changed by later lines are updated by
primary key. All of it goes
to a RowWriter: BulkWriter, on the caller's session, so that it commits with the checkpoint in
the same transaction and a crash keeps both or neither; or, for a bulk import, the writer
process (writer_process.py), which sets the ids aside first and commits the same way.

Messages in flight are cached by queue ID (bounded: the oldest are evicted once written),
and the queue IDs the database holds open are read once per store, so a new message costs
no query. A queue ID not in memory but open in the database (a message whose first lines an
earlier run read) is loaded with its transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, false, insert, select, update
from sqlalchemy.orm import Session

from controlplane.logs.compiled import load as load_compiled
from controlplane.logs.dialogue import store_dialogue
from controlplane.models import (
    AuthEvent,
    Domain,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    UnparsedLogLine,
)

_bind_rows = load_compiled("_bind_rows")

# Postfix's maximal_queue_lifetime is 5 days by default; a day's slack for deferred retries.
QUEUE_LIFETIME = dt.timedelta(days=6)
# Messages in flight kept in memory; beyond this the oldest (already written) are evicted
# and read back from the database if a line names them again.
MAX_OPEN_ENTRIES = 20_000
# More queue IDs than this left open in the database (their "removed" never logged) are not
# remembered: each unknown queue ID is then looked up instead.
MAX_KNOWN_OPEN = 200_000
# Addresses whose domain is remembered (a year of logs names more; the memory starts again).
MAX_KNOWN_ADDRESSES = 100_000
# Rows in one INSERT on SQLite (fewer when the row's values would pass SQLite's limit).
ROWS_PER_INSERT = 200

_TRANSACTION_FIELDS = (
    "time", "client_name", "client_ip", "helo", "sasl_user", "sender", "sender_domain_id",
    "message_id", "size", "finished_at", "spam_action", "spam_score", "spam_symbols", "node",
)  # fmt: skip
_RECIPIENT_FIELDS = (
    "time", "recipient", "orig_to", "domain_id", "queue_id", "outcome", "relay", "status_code",
    "reason", "detail", "attempts",
)  # fmt: skip
_RECIPIENT_COLUMNS = (*_RECIPIENT_FIELDS, "transaction_id")
_ENTRY_COLUMNS = ("queue_id", "time", "removed", "transaction_id")
_LOGIN_FIELDS = (
    "time", "service", "login", "account", "tenant_id", "domain_id", "client_ip", "network",
    "user_agent", "success", "reason", "password_fingerprint", "node",
)  # fmt: skip


class TransactionRow:
    """A mail_transaction row being assembled; `recipients` and `entries` are its children."""

    __slots__ = (*_TRANSACTION_FIELDS, "id", "recipients", "entries", "dirty")

    # Every column a keyword of its own: a loop of setattr over **values cost more than the
    # assignments (a row per message of a log).
    def __init__(
        self,
        time: dt.datetime,
        *,
        id: int | None = None,  # the column's name
        client_name: str = "",
        client_ip: str = "",
        helo: str = "",
        sasl_user: str = "",
        sender: str | None = None,
        sender_domain_id: int | None = None,
        message_id: str = "",
        size: int | None = None,
        finished_at: dt.datetime | None = None,
        spam_action: str = "",
        spam_score: float | None = None,
        spam_symbols: str = "",
        node: str = "",
    ) -> None:
        self.id = id
        self.time = time
        self.client_name = client_name
        self.client_ip = client_ip
        self.helo = helo
        self.sasl_user = sasl_user
        self.sender = sender
        self.sender_domain_id = sender_domain_id
        self.message_id = message_id
        self.size = size
        self.finished_at = finished_at
        self.spam_action = spam_action
        self.spam_score = spam_score
        self.spam_symbols = spam_symbols
        self.node = node
        self.recipients: list[RecipientRow] = []
        self.entries: list[QueueEntryRow] = []
        self.dirty = False


class RecipientRow:
    __slots__ = (*_RECIPIENT_FIELDS, "id", "transaction", "dirty")

    def __init__(
        self,
        transaction: TransactionRow,
        *,
        id: int | None = None,  # the column's name
        time: dt.datetime | None = None,
        recipient: str = "",
        orig_to: str = "",
        domain_id: int | None = None,
        queue_id: str = "",
        outcome: str = "",
        relay: str = "",
        status_code: str = "",
        reason: str = "",
        detail: str = "",
        attempts: int = 0,
    ) -> None:
        self.id = id
        self.transaction = transaction
        self.time = time
        self.recipient = recipient
        self.orig_to = orig_to
        self.domain_id = domain_id
        self.queue_id = queue_id
        self.outcome = outcome
        self.relay = relay
        self.status_code = status_code
        self.reason = reason
        self.detail = detail
        self.attempts = attempts
        self.dirty = False


class QueueEntryRow:
    __slots__ = ("id", "transaction", "queue_id", "time", "removed", "dirty")

    def __init__(
        self, transaction: TransactionRow, queue_id: str, time: dt.datetime, removed: bool = False
    ) -> None:
        self.id: int | None = None
        self.transaction = transaction
        self.queue_id = queue_id
        self.time = time
        self.removed = removed
        self.dirty = False


def table_of(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


class RowWriter(Protocol):
    """Where a store's rows go: BulkWriter (this session) or writer_process.WriterProcess."""

    def reserve(self, counts: dict[type, int]) -> None: ...
    def insert(
        self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]], *, ids: bool = True
    ) -> Sequence[int]: ...
    def update(self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None: ...
    def stored_entry(self, queue_id: str, time: dt.datetime, open_only: bool) -> tuple[int, int] | None: ...
    def stored_open_ids(self, limit: int) -> list[str]: ...
    def transaction_rows(
        self, transaction_id: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[int, str, dt.datetime, bool]]]: ...
    def set_login_reason(
        self, service: str, login: str, client_ip: str, time: dt.datetime, was: str, reason: str
    ) -> None: ...
    def write_dialogue(self, claims: list[tuple[str, int | None]], rows: list[dict[str, Any]]) -> None: ...


class MailLogStore:
    """Rows the log ingestion makes, written to `session` at each `flush()` (before a commit),
    or handed at each `flush()` to `writer`, a process that writes and commits them
    (writer_process.py); every read of rows this store wrote goes through the writer too."""

    def __init__(self, session: Session, writer: RowWriter | None = None) -> None:
        self.session = session
        # Rows are tagged with the mail node whose logs these are (the installation's sessions say).
        self.node: str = session.info.get("node_name", "")
        self._new_transactions: list[TransactionRow] = []
        self._new_entries: list[QueueEntryRow] = []
        self._new_recipients: list[RecipientRow] = []
        self._changed: list[TransactionRow | RecipientRow | QueueEntryRow] = []
        self._logins: list[tuple[Any, ...]] = []
        self._unparsed: list[tuple[Any, ...]] = []
        self._finished: list[TransactionRow] = []
        self.writer: RowWriter = writer if writer is not None else BulkWriter(session)
        self._open: dict[str, QueueEntryRow] = {}
        self._stored_open_ids: set[str] | None = None
        self._ask_each_time = False
        self._domains: dict[str, tuple[int | None, int | None]] = {}
        self._domain_ids: dict[str | None, int | None] = {}

    # --- reading -------------------------------------------------------------------------------

    def domain_id(self, address: str | None) -> int | None:
        """The hosted domain an address belongs to, or None."""
        try:
            return self._domain_ids[address]  # addresses recur: each is split once
        except KeyError:
            pass
        found = (
            None if not address or "@" not in address else self._domain(address.rsplit("@", 1)[1].lower())[1]
        )
        if len(self._domain_ids) >= MAX_KNOWN_ADDRESSES:
            self._domain_ids.clear()
        self._domain_ids[address] = found
        return found

    def owner(self, account: str) -> tuple[int | None, int | None]:
        """(tenant id, domain id) of a login name: its domain's, if the domain is ours (an
        unknown user of a hosted domain still belongs to that domain)."""
        if "@" not in account:
            return None, None
        return self._domain(account.rsplit("@", 1)[1])

    def _domain(self, name: str) -> tuple[int | None, int | None]:
        if name not in self._domains:
            row = self.session.execute(select(Domain.tenant_id, Domain.id).where(Domain.name == name)).first()
            self._domains[name] = (row[0], row[1]) if row else (None, None)
        return self._domains[name]

    def open_entry(self, queue_id: str, time: dt.datetime) -> QueueEntryRow | None:
        """The open queue entry `queue_id` names at `time`, from memory or the database."""
        entry = self._open.get(queue_id)
        if entry is not None and entry.time > time - QUEUE_LIFETIME:
            return entry
        if not self._ask_each_time and queue_id not in self._stored_open():
            return None  # a new message: the usual case, and no query
        found = self._stored_entry(queue_id, time, open_only=True)
        if found is None:
            return None  # a new message after all
        # What this batch changed is written first: the message is read back as it stands (an
        # entry of it that was removed since it was evicted is removed, or it is never finished).
        self.flush()
        found = self._stored_entry(queue_id, time, open_only=True)
        return None if found is None else self._read_back(found)

    def latest_entry(self, queue_id: str, time: dt.datetime) -> QueueEntryRow | None:
        """The entry `queue_id` names at `time`, open or already removed: for what another log
        says of a message (rspamd's verdict), which may be read after Postfix's last line."""
        entry = self.open_entry(queue_id, time)
        if entry is not None:
            return entry
        self.flush()  # a message finished within this batch is written, then found
        found = self._stored_entry(queue_id, time, open_only=False)
        return None if found is None else self._read_back(found)

    def _stored_entry(self, queue_id: str, time: dt.datetime, *, open_only: bool) -> tuple[int, int] | None:
        return self.writer.stored_entry(queue_id, time, open_only)

    def _read_back(self, found: Any) -> QueueEntryRow:
        """The stored entry `found` names, with its whole transaction."""
        entry_id, transaction_id = found
        transaction = self._load_transaction(transaction_id)
        return next(entry for entry in transaction.entries if entry.id == entry_id)

    def _stored_open(self) -> set[str]:
        """Queue IDs open in the database and not in memory, read on first need."""
        if self._stored_open_ids is None:
            queue_ids = set(self.writer.stored_open_ids(MAX_KNOWN_OPEN + 1))
            # Too many "removed" lines lost to remember them all: look each queue ID up.
            self._ask_each_time = len(queue_ids) > MAX_KNOWN_OPEN
            self._stored_open_ids = set() if self._ask_each_time else queue_ids
        return self._stored_open_ids

    def _load_transaction(self, transaction_id: int) -> TransactionRow:
        # Another open entry of the same transaction may already be in memory.
        for entry in self._open.values():
            if entry.transaction.id == transaction_id:
                return entry.transaction
        values, recipients, entries = self.writer.transaction_rows(transaction_id)
        transaction = TransactionRow(**values)
        for stored in recipients:
            transaction.recipients.append(RecipientRow(transaction, **stored))
        for entry_id, queue_id, time, removed in entries:
            entry = QueueEntryRow(transaction, queue_id, time, removed)
            entry.id = entry_id
            transaction.entries.append(entry)
        return transaction

    # --- writing -------------------------------------------------------------------------------

    def new_transaction(self, time: dt.datetime, **values: Any) -> TransactionRow:
        transaction = TransactionRow(time, node=self.node, **values)
        self._new_transactions.append(transaction)
        if transaction.finished_at is not None:
            self._finished.append(transaction)  # a refusal before queueing: nothing names it again
        return transaction

    def finish(self, transaction: TransactionRow, time: dt.datetime) -> None:
        """The last of `transaction`'s queue entries was removed at `time`: no line names it again."""
        transaction.finished_at = time
        self.changed(transaction)
        self._finished.append(transaction)

    def new_entry(self, transaction: TransactionRow, queue_id: str, time: dt.datetime) -> QueueEntryRow:
        """A queue ID `transaction`'s message now has; it is the open entry for that ID."""
        entry = QueueEntryRow(transaction, queue_id, time)
        transaction.entries.append(entry)
        self._new_entries.append(entry)
        self.remember(entry)
        return entry

    def new_recipient(self, transaction: TransactionRow, **values: Any) -> RecipientRow:
        recipient = RecipientRow(transaction, **values)
        transaction.recipients.append(recipient)
        self._new_recipients.append(recipient)
        return recipient

    def changed(self, row: TransactionRow | RecipientRow | QueueEntryRow) -> None:
        """Note that a row already written has new values to write."""
        if row.id is not None and not row.dirty:
            row.dirty = True
            self._changed.append(row)

    def remember(self, entry: QueueEntryRow) -> None:
        self._open.pop(entry.queue_id, None)  # most recently used last, for eviction
        self._open[entry.queue_id] = entry

    def forget(self, entry: QueueEntryRow) -> None:
        """`entry` was removed from the queue: no line will name it again."""
        if self._open.get(entry.queue_id) is entry:
            del self._open[entry.queue_id]
        if self._stored_open_ids:
            self._stored_open_ids.discard(entry.queue_id)

    def add_login(self, **values: Any) -> None:
        """An AuthEvent row, given every column of _LOGIN_FIELDS but the node."""
        values["node"] = self.node
        self._logins.append(_login_values(values))

    def set_login_reason(
        self, *, service: str, login: str, client_ip: str, time: dt.datetime, was: str, reason: str
    ) -> None:
        """Give one failed login row (the first with these values and reason `was`) `reason`."""
        self.flush()  # the row may be among this batch's
        self.writer.set_login_reason(service, login, client_ip, time, was, reason)

    def add_unparsed(self, time: dt.datetime, source: str, line: str) -> None:
        self._unparsed.append((time, source, line))

    def flush(self) -> None:
        """Write everything made or changed since the last flush, in the session's transaction
        (or hand it to the writer process, to commit with the next checkpoint)."""
        writer = self.writer
        writer.reserve(
            {
                MailTransaction: len(self._new_transactions),
                MailQueueEntry: len(self._new_entries),
                MailRecipientResult: len(self._new_recipients),
            }
        )
        if self._new_transactions:
            rows = list(map(_transaction_values, self._new_transactions))
            _assign(self._new_transactions, writer.insert(MailTransaction, _TRANSACTION_FIELDS, rows))
        if self._new_entries:
            rows = list(map(_new_entry_values, self._new_entries))
            _assign(self._new_entries, writer.insert(MailQueueEntry, _ENTRY_COLUMNS, rows))
        if self._new_recipients:
            rows = list(map(_new_recipient_values, self._new_recipients))
            _assign(self._new_recipients, writer.insert(MailRecipientResult, _RECIPIENT_COLUMNS, rows))
        if self._changed:
            self._update_changed()
        if self._logins:
            writer.insert(AuthEvent, _LOGIN_FIELDS, self._logins, ids=False)
        if self._unparsed:
            writer.insert(UnparsedLogLine, ("time", "source", "line"), self._unparsed, ids=False)
        self._new_transactions, self._new_entries, self._new_recipients = [], [], []
        self._changed, self._logins, self._unparsed = [], [], []
        self._release_finished()
        self._evict()

    def _release_finished(self) -> None:
        # A row and its transaction point at each other: a cycle only the garbage collector
        # frees, and its full passes over hundreds of thousands of rows took a tenth of an
        # import. A finished transaction's rows are written and no line reaches them through it
        # again (a queue ID it had is a new message now; a verdict read later loads it anew), so
        # its lists of children go, and each row is freed as soon as nothing else holds it.
        # Deleted, not emptied: code that reached a released transaction would fail loudly
        # (the line kept as not understood) instead of taking it for a message without rows.
        for transaction in self._finished:
            del transaction.recipients, transaction.entries
        self._finished = []

    def _update_changed(self) -> None:
        transactions, recipients, entries = [], [], []
        for row in self._changed:
            row.dirty = False
            if isinstance(row, TransactionRow):
                transactions.append((*_transaction_values(row), row.id))
            elif isinstance(row, RecipientRow):
                recipients.append((*_recipient_values(row), row.id))
            else:
                entries.append((row.removed, row.id))
        for model, names, rows in (
            (MailTransaction, _TRANSACTION_FIELDS, transactions),
            (MailRecipientResult, _RECIPIENT_FIELDS, recipients),
            (MailQueueEntry, ("removed",), entries),
        ):
            if rows:
                self.writer.update(model, names, rows)

    def _evict(self) -> None:
        excess = len(self._open) - MAX_OPEN_ENTRIES
        if excess <= 0:
            return
        stored = self._stored_open()
        for queue_id in list(self._open)[:excess]:
            del self._open[queue_id]
            if not self._ask_each_time:
                stored.add(queue_id)


# Rows' values as tuples, made by attrgetter in C (a comprehension per row cost 8% of an ingest).
_transaction_values = attrgetter(*_TRANSACTION_FIELDS)
_recipient_values = attrgetter(*_RECIPIENT_FIELDS)
_new_entry_values = attrgetter("queue_id", "time", "removed", "transaction.id")
_new_recipient_values = attrgetter(*_RECIPIENT_FIELDS, "transaction.id")
_login_values = itemgetter(*_LOGIN_FIELDS)


def _unpacked(values: bytes | list[Any]) -> list[Any]:
    """Rows as converted, from BulkWriter.packed's bytes (or as they came)."""
    if isinstance(values, bytes):
        assert _bind_rows is not None  # only the compiled writer packs
        return _bind_rows.unpack(values)  # type: ignore[no-any-return]
    return values


def _assign(rows: list[Any], ids: Sequence[int]) -> None:
    for row, new_id in zip(rows, ids, strict=True):
        row.id = new_id


class BulkWriter:
    """INSERTs and UPDATEs by primary key for many rows at once, in the session's transaction,
    and the reads of the rows written (the RowWriter of one process, and the statements the
    writer process runs for another).

    On SQLite each statement is compiled once and run with the driver's executemany, values
    converted by the columns' own bind processors (so they are stored exactly as the ORM
    stores them): SQLAlchemy's per-row parameter handling cost more than SQLite's work. The
    conversion loop is compiled (_bind_rows.c): values repeat, and converting each in Python
    (the UTC check and SQLite's string format, 3 µs a moment) took a tenth of an ingest. Other
    databases get the same statements through SQLAlchemy Core.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        # Rows are tagged with the mail node whose logs these are (the installation's sessions say).
        self.node: str = session.info.get("node_name", "")
        self._compiled: dict[tuple[str, str, tuple[str, ...]], tuple[str, tuple[Conversion, ...]]] = {}
        self._remembered: dict[tuple[type, str], dict[Any, Any]] = {}
        self._variables: int | None = None

    def insert(
        self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]], *, ids: bool = True
    ) -> Sequence[int]:
        """Insert `rows` (values in the order of `names`); the new ids in the same order."""
        table = table_of(model)
        connection = self.session.connection()
        if connection.dialect.name != "sqlite":
            statement = insert(table)
            values = [dict(zip(names, row, strict=True)) for row in rows]
            if not ids:
                connection.execute(statement, values)
                return []
            returning = statement.returning(table.c.id, sort_by_parameter_order=True)
            return list(connection.execute(returning, values).scalars())
        sql, values = self.converted("insert", table, names, rows)
        self.insert_values(sql, len(names), values)
        if not ids:
            return []
        # The new rows' ids follow from the table's AUTOINCREMENT counter: this transaction
        # holds SQLite's write lock from its first INSERT on, so they took the ids up to the
        # counter one after another, and no other writer came between.
        last = connection.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)
        ).scalar_one()
        return range(last - len(rows) + 1, last + 1)

    def converted(
        self, kind: str, table: Table, names: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> tuple[str, list[Any]]:
        """SQLite's statement for one row (`kind` "insert" or "update") and `rows` converted for it."""
        sql, conversions = self._statement(kind, table, names)
        return sql, self._processed(conversions, rows)

    def packed(
        self, kind: str, table: Table, names: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> tuple[str, bytes | list[Any]]:
        """converted()'s statement and rows, the rows packed in one bytes object for the writer
        process's pipe (the methods it calls with them unpack them): marshal's work on the rows
        as tuples cost the reading side more than their conversion. Rows holding what cannot be
        packed (an int past 64 bits, a lone surrogate, a subclass of str, for example) come as
        converted() gives them."""
        sql, conversions = self._statement(kind, table, names)
        if _bind_rows is not None:
            try:
                return sql, _bind_rows.pack(rows, conversions)
            except (TypeError, ValueError, OverflowError):
                pass  # converted below, where a processor's own failure is raised again
        return sql, self._processed(conversions, rows)

    def insert_values(self, sql: str, width: int, values: bytes | list[Any]) -> None:
        """Run `sql`, one row's INSERT of `width` values, for every row of converted `values`
        (or packed: see packed())."""
        values = _unpacked(values)
        connection = self.session.connection()
        # Many rows to a statement: the driver's work for each statement run cost more than
        # SQLite's for the row (recipients: 5.7 µs a row one by one, 3.3 µs a hundred at a time).
        per = self._rows_per_statement(width)
        whole = len(values) - len(values) % per
        if whole:
            connection.exec_driver_sql(
                _many_rows(sql, width, per),
                [tuple(chain.from_iterable(values[start : start + per])) for start in range(0, whole, per)],
            )
        if whole < len(values):
            connection.exec_driver_sql(sql, values[whole:])

    def insert_numbered(self, sql: str, width: int, values: bytes | list[Any], first_id: int) -> None:
        """insert_values with ids from `first_id` on, one after another: `sql` names the id last."""
        numbered = [(*row, row_id) for row_id, row in enumerate(_unpacked(values), first_id)]
        self.insert_values(sql, width + 1, numbered)

    def execute_many(self, sql: str, values: bytes | list[Any]) -> None:
        self.session.connection().exec_driver_sql(sql, _unpacked(values))

    def reserve(self, counts: dict[type, int]) -> None:
        """Nothing: in this process each INSERT's ids are read back after it (insert)."""

    def reserve_ids(self, counts: dict[str, int]) -> dict[str, int]:
        """The first of `count` ids set aside for each table named, in this transaction: rows
        inserted with them later (insert_numbered) take no id any other writer can take."""
        connection = self.session.connection()
        firsts = {}
        for name, count in counts.items():
            if not count:
                continue
            # An AUTOINCREMENT table's counter row exists once the table had a row; SQLite's
            # next id is past both the counter and the largest id.
            table = self.session.get_bind().dialect.identifier_preparer.quote(name)
            connection.exec_driver_sql(
                f"INSERT INTO sqlite_sequence (name, seq) SELECT ?, (SELECT COALESCE(MAX(id), 0) FROM {table})"
                " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                (name, name),
            )
            connection.exec_driver_sql(
                f"UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT COALESCE(MAX(id), 0) FROM {table})) + ?"
                " WHERE name = ?",
                (count, name),
            )
            last = connection.exec_driver_sql(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)
            ).scalar_one()
            firsts[name] = last - count + 1
        return firsts

    # --- reads of the rows written (run where they are written) -----------------------------

    def stored_entry(self, queue_id: str, time: dt.datetime, open_only: bool) -> tuple[int, int] | None:
        """(id, transaction_id) of the latest entry the database holds for `queue_id` at `time`
        (`open_only`: not removed), or None."""
        # Short queue IDs are reused; an entry whose "removed" line was never seen (lost in a
        # rotation) must not capture a new message weeks later.
        query = select(MailQueueEntry.id, MailQueueEntry.transaction_id).where(
            MailQueueEntry.queue_id == queue_id, MailQueueEntry.time > time - QUEUE_LIFETIME
        )
        if open_only:
            query = query.where(MailQueueEntry.removed.is_(False))
        found = self.session.execute(query.order_by(MailQueueEntry.id.desc()).limit(1)).first()
        return None if found is None else (found[0], found[1])

    def stored_open_ids(self, limit: int) -> list[str]:
        """Queue IDs of entries not removed, `limit` at most."""
        return list(
            self.session.scalars(
                select(MailQueueEntry.queue_id)
                # "= 0" as the partial index ix_mail_queue_entry_open says it, so SQLite uses it.
                .where(MailQueueEntry.removed == false())
                .limit(limit)
            )
        )

    def transaction_rows(
        self, transaction_id: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[int, str, dt.datetime, bool]]]:
        """A stored transaction's values, its recipients' and (id, queue_id, time, removed) of
        its queue entries."""
        row = self.session.execute(
            select(*(table_of(MailTransaction).c[name] for name in ("id", *_TRANSACTION_FIELDS))).where(
                MailTransaction.id == transaction_id
            )
        ).one()
        recipients = self.session.execute(
            select(*(table_of(MailRecipientResult).c[name] for name in ("id", *_RECIPIENT_FIELDS)))
            .where(MailRecipientResult.transaction_id == transaction_id)
            .order_by(MailRecipientResult.id)
        )
        entries = self.session.execute(
            select(MailQueueEntry.id, MailQueueEntry.queue_id, MailQueueEntry.time, MailQueueEntry.removed)
            .where(MailQueueEntry.transaction_id == transaction_id)
            .order_by(MailQueueEntry.id)
        )
        return (
            row._asdict(),
            [stored._asdict() for stored in recipients],
            [(entry.id, entry.queue_id, entry.time, entry.removed) for entry in entries],
        )

    def set_login_reason(
        self, service: str, login: str, client_ip: str, time: dt.datetime, was: str, reason: str
    ) -> None:
        """Give one failed login row (the first with these values and reason `was`) `reason`."""
        row = self.session.scalars(
            select(AuthEvent.id)
            .where(
                AuthEvent.login == login,
                AuthEvent.client_ip == client_ip,
                AuthEvent.service == service,
                AuthEvent.time == time,
                AuthEvent.success == false(),
                AuthEvent.reason == was,
            )
            .order_by(AuthEvent.id)
            .limit(1)
        ).first()
        if row is not None:
            self.session.execute(update(AuthEvent).where(AuthEvent.id == row).values(reason=reason))

    def write_dialogue(self, claims: list[tuple[str, int | None]], rows: list[dict[str, Any]]) -> None:
        store_dialogue(self.session, claims, rows)

    def _rows_per_statement(self, width: int) -> int:
        if self._variables is None:
            driver = self.session.connection().connection.driver_connection
            self._variables = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(ROWS_PER_INSERT, self._variables // width))

    def update(self, model: type, names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Set the columns `names` of each row whose id ends its tuple of values."""
        table = table_of(model)
        connection = self.session.connection()
        if connection.dialect.name != "sqlite":
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({name: bindparam(name) for name in names})
            )
            connection.execute(statement, [dict(zip((*names, "row_id"), row, strict=True)) for row in rows])
            return
        sql, values = self.converted("update", table, names, rows)
        connection.exec_driver_sql(sql, values)

    def _statement(
        self, kind: str, table: Table, names: tuple[str, ...]
    ) -> tuple[str, tuple[Conversion, ...]]:
        key = (kind, table.name, names)
        if key not in self._compiled:
            dialect = self.session.get_bind().dialect
            quote = dialect.identifier_preparer.quote
            columns = [quote(name) for name in names]
            if kind == "insert":
                sql = f"INSERT INTO {quote(table.name)} ({', '.join(columns)}) VALUES ({', '.join('?' * len(names))})"
            else:
                assignments = ", ".join(f"{column} = ?" for column in columns)
                sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE id = ?"
            conversions = []
            for position, name in enumerate(names):
                column_type = table.c[name].type
                processor = column_type.dialect_impl(dialect).bind_processor(dialect)
                if processor is None:
                    continue
                # Columns of one type convert a value alike: one memory for all of them (a
                # moment is a transaction's, its recipients' and its queue entries' time).
                remembered = self._remembered.setdefault((type(column_type), repr(column_type)), {})
                conversions.append((position, processor, remembered, _formats_like_c(processor)))
            self._compiled[key] = (sql, tuple(conversions))
        return self._compiled[key]

    @staticmethod
    def _processed(conversions: tuple[Conversion, ...], rows: list[tuple[Any, ...]]) -> list[Any]:
        if not conversions:
            return rows
        if _bind_rows is not None:
            return _bind_rows.convert(rows, conversions)
        processed = []
        for row in rows:
            values = list(row)
            for position, processor, remembered, _ in conversions:
                values[position] = _remembered(processor, remembered, values[position])
            processed.append(tuple(values))
        return processed


# (position in the row, the column's bind processor, the values it has converted, whether
# _bind_rows may write an exact UTC datetime itself).
Conversion = tuple[int, Any, dict[Any, Any], bool]
# Moments whose stored text the compiled writer must give exactly as the processor does.
_SAMPLE_MOMENTS = (
    dt.datetime(2026, 11, 24, 0, 17, 18, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 29, 9, 5, 7, 1_020, tzinfo=dt.UTC),
)


@functools.lru_cache(maxsize=64)
def _many_rows(sql: str, width: int, per: int) -> str:
    """`sql` (one row's INSERT) with VALUES for `per` rows."""
    one = "(" + ", ".join("?" * width) + ")"
    return sql[: sql.rindex(" VALUES ")] + " VALUES " + ", ".join([one] * per)


def _formats_like_c(processor: Any) -> bool:
    """Whether `processor` stores UTC datetimes as the text _bind_rows writes for them."""
    if _bind_rows is None:
        return False
    try:
        return all(processor(moment) == _bind_rows.format_utc(moment) for moment in _SAMPLE_MOMENTS)
    except Exception:  # noqa: BLE001 - a processor for some other type: not a moment's column
        return False


def _remembered(processor: Any, remembered: dict[Any, Any], value: Any) -> Any:
    """processor(value), answered from memory when converted before."""
    try:
        return remembered[value]
    except KeyError:
        pass
    except TypeError:  # unhashable: converted each time
        return processor(value)
    if len(remembered) >= 100_000:
        remembered.clear()
    result = remembered[value] = processor(value)
    return result


def tune_for_ingest(session: Session) -> None:
    """SQLite pragmas for a bulk writer, on the session's connection when no transaction is open
    (SQLite refuses them inside one). Under WAL, `synchronous = NORMAL` saves an fsync per
    commit: a killed process loses nothing committed; a power loss or an OS crash may undo
    the last commits, rows and checkpoint together, so the next run reads those lines again."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        driver.execute("PRAGMA synchronous = NORMAL")
        # A batch writes thousands of pages: with the default (1,000 pages) every commit copied
        # the whole WAL back into the database, rewriting the same index pages batch after
        # batch. Up to 10,000 pages (40 MB) of WAL saves a fifth of the ingest's time.
        driver.execute("PRAGMA wal_autocheckpoint = 10000")
