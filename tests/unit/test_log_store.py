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
    assert alive == unfinished  # an unfinished message keeps its cycle: only the collector frees it


def _rows_alive() -> int:
    return sum(isinstance(item, store_module.TransactionRow) for item in gc.get_objects())


def test_a_forwarded_message_read_back_after_eviction_is_finished_by_its_last_removal(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both queue entries are evicted at the first batch's end; both removals then come in one
    # batch: the second must read the first back as removed.
    lines = [
        "Nov 24 00:23:00 mail postfix/smtpd[9470]: A1B2C3D4E5F: client=client.example[192.0.2.10]",
        "Nov 24 00:23:00 mail postfix/qmgr[9460]: A1B2C3D4E5F: from=<bob@client.example>, size=900, nrcpt=1 (queue active)",
        "Nov 24 00:23:01 mail postfix/smtp[9540]: A1B2C3D4E5F: to=<alice@a.test>, relay=127.0.0.1[127.0.0.1]:10024, "
        "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 0F1E2D3C4B5)",
        "Nov 24 00:23:01 mail postfix/qmgr[9460]: A1B2C3D4E5F: removed",
        "Nov 24 00:23:01 mail postfix/smtpd[9550]: 0F1E2D3C4B5: client=localhost[127.0.0.1]",
        "Nov 24 00:23:02 mail postfix/qmgr[9460]: 0F1E2D3C4B5: removed",
    ]
    (tmp_path / "mail.log").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(store_module, "MAX_OPEN_ENTRIES", 0)
    ingest_file(db, tmp_path / "mail.log", reference=REFERENCE, batch_lines=3)
    [(transaction_id, finished_at)] = db.execute(
        select(MailTransaction.id, MailTransaction.finished_at)
    ).all()
    assert finished_at is not None
    entries = db.execute(
        select(MailQueueEntry.queue_id, MailQueueEntry.removed, MailQueueEntry.transaction_id)
    )
    assert sorted(entries) == [("0F1E2D3C4B5", True, transaction_id), ("A1B2C3D4E5F", True, transaction_id)]
