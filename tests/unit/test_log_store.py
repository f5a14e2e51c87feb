"""The ingestion's bulk write path (controlplane/logs/store.py) stores what the ORM would."""

from __future__ import annotations

import datetime as dt
import gc
import shutil
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from controlplane.db import make_engine, make_session_factory
from controlplane.logs import store as store_module
from controlplane.logs.ingest import ingest_file
from controlplane.models import MailQueueEntry, MailRecipientResult, MailTransaction
from tests.factories import make_domain
from tests.query_plans import query_plan

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def _snapshot(session: Session) -> list[tuple]:
    """Every transaction with its recipients and queue entries, ids left out."""
    transactions = []
    for transaction in session.scalars(select(MailTransaction)):
        transactions.append(
            (
                tuple(getattr(transaction, c) for c in ("time", "client_ip", "sender", "message_id", "size")),
                (transaction.sender_domain_id, transaction.finished_at),
                tuple(
                    (r.recipient, r.orig_to, r.domain_id, r.outcome, r.status_code, r.attempts, r.time)
                    for r in transaction.recipients
                ),
                tuple((e.queue_id, e.removed) for e in transaction.queue_entries),
            )
        )
    return sorted(transactions, key=repr)


def _raw(session: Session, sql: str) -> list[tuple]:
    return [tuple(row) for row in session.connection().exec_driver_sql(sql)]


def test_bulk_rows_store_times_and_flags_exactly_as_the_orm_does(db: Session, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)
    [(bulk_time, bulk_removed)] = _raw(
        db,
        "SELECT e.time, e.removed FROM mail_queue_entry e WHERE e.queue_id = 'B8F9120C127'",
    )
    [transaction] = db.scalars(
        select(MailTransaction).where(MailTransaction.message_id == "delivered-1@client.example")
    ).all()
    by_orm = MailQueueEntry(
        queue_id="ORMWRITTEN1", time=transaction.time, removed=True, transaction=transaction
    )
    db.add(by_orm)
    db.flush()
    [(orm_time, orm_removed)] = _raw(
        db, "SELECT time, removed FROM mail_queue_entry WHERE queue_id = 'ORMWRITTEN1'"
    )
    # Same text in the column, so range queries and ordering see one format.
    assert (bulk_time, bulk_removed) == (orm_time, orm_removed)


def test_messages_evicted_from_memory_are_read_back_and_assembled_alike(
    db: Session, tmp_path: Path, second_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_domain(db, name="a.test")
    db.commit()
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)
    expected = _snapshot(db)

    engine = make_engine(second_database)
    try:
        with make_session_factory(engine)(info={"dkim_dir": str(tmp_path / "dkim")}) as other:
            make_domain(other, name="a.test")
            other.commit()
            # Nothing stays in memory between batches of three lines: every later line of a
            # message finds it in the database.
            monkeypatch.setattr(store_module, "MAX_OPEN_ENTRIES", 0)
            ingest_file(other, tmp_path / "postfix.log", reference=REFERENCE, batch_lines=3)
            evicted = _snapshot(other)
            assert other.scalar(select(MailRecipientResult.attempts).where(
                MailRecipientResult.recipient == "dave@remote.example"
            )) == 2  # fmt: skip
    finally:
        engine.dispose()
    assert evicted == expected
    assert len(expected) >= 8


def test_reading_the_open_queue_ids_uses_the_partial_index_not_a_scan(db: Session, tmp_path: Path) -> None:
    statements: list[str] = []
    parameter_sets: list[object] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        statements.append(statement)
        parameter_sets.append(parameters)

    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [read_open] = [
        s for s in statements if s.startswith("SELECT mail_queue_entry.queue_id") and "removed" in s
    ]
    [parameters] = [p for s, p in zip(statements, parameter_sets, strict=True) if s == read_open]
    plan = " ".join(query_plan(db.connection(), read_open, parameters))
    assert "ix_mail_queue_entry_open" in plan, plan


def test_finished_messages_are_freed_without_the_garbage_collector(db: Session, tmp_path: Path) -> None:
    # A finished transaction's rows must not stay in a reference cycle: only the collector's
    # full passes, costly over a big import, would free them.
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    gc.collect()
    alive_before = _rows_alive()
    gc.disable()
    try:
        ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)
        alive = _rows_alive() - alive_before
    finally:
        gc.enable()
    finished = len(
        db.scalars(select(MailTransaction.id).where(MailTransaction.finished_at.is_not(None))).all()
    )
    unfinished = len(
        db.scalars(select(MailTransaction.id).where(MailTransaction.finished_at.is_(None))).all()
    )
    assert finished >= 5
    assert alive == unfinished  # messages still in the queue when the log ends: held by their entries


def _rows_alive() -> int:
    return sum(isinstance(item, store_module.TransactionRow) for item in gc.get_objects())
