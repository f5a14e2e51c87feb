"""The compiled assembler (`_assemble.add`) stores exactly what the Python assembler stores, and
changes nothing where it leaves an event to Python."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from controlplane.db import make_engine
from controlplane.logs import store, transactions
from controlplane.logs.dovecot import AuthVerdicts
from controlplane.logs.ingest import ingest_file
from controlplane.logs.postfix import PostfixEvent
from controlplane.logs.store import QUEUE_LIFETIME, MailLogStore, QueueEntryRow, RecipientRow, TransactionRow
from controlplane.logs.transactions import TransactionAssembler, _junk_reason, plain_reason

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
TABLES = ("mail_transaction", "mail_queue_entry", "mail_recipient_result", "auth_event", "unparsed_log_line")
MOMENT = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    from bench.loggen import generate_log

    path = tmp_path / "mail.log"
    generate_log(path, 20_000)
    with path.open("a") as file:
        for fixture in sorted(FIXTURES.glob("*.log")):
            file.write(fixture.read_text())
    os.utime(path, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    return path


def _stored(session: Session, log: Path) -> dict[str, list[tuple[Any, ...]]]:
    ingest_file(session, log, reference=REFERENCE, batch_lines=500)
    return {
        table: [tuple(row) for row in session.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
        for table in TABLES
    }


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many events the compiled assembler took, and how many it left to Python."""
    compiled = transactions._compiled_add
    assert compiled is not None, "the compiled assembler is built and configured"
    counts = {"compiled": 0, "python": 0}

    def counted(assembler_store: MailLogStore, event: PostfixEvent, junk_filings: Any) -> Any:
        answer = compiled(assembler_store, event, junk_filings)
        counts["python" if answer is transactions._NOT_DONE else "compiled"] += 1
        return answer

    monkeypatch.setattr(transactions, "_compiled_add", counted)
    return counts


@pytest.mark.parametrize("open_entries", [store.MAX_OPEN_ENTRIES, 2])  # 2: most messages evicted
def test_the_compiled_assembler_stores_row_for_row_what_python_stores(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch, open_entries: int
) -> None:
    monkeypatch.setattr(store, "MAX_OPEN_ENTRIES", open_entries)
    counts = _counting(monkeypatch)
    compiled = _stored(db, log)
    with monkeypatch.context() as python_only, Session(make_engine(second_database)) as other:
        python_only.setattr(transactions, "_compiled_add", None)
        in_python = _stored(other, log)
    assert all(compiled[table] for table in TABLES)
    assert compiled == in_python
    # Both took their share: most lines in C; refusals, expiries, re-injections, a sender's
    # first line, messages read back from the database and the like in Python.
    assert counts["python"] > 1_000 and counts["compiled"] > 4 * counts["python"]


def _event(
    kind: str, queue_id: str | None = "4ABC123", time: dt.datetime = MOMENT, **fields: Any
) -> PostfixEvent:
    return PostfixEvent(kind=kind, time=time, program="qmgr", queue_id=queue_id, **fields)


def _state(assembler_store: MailLogStore) -> Any:
    """Everything the assembler may change: the store's memory and every row's slots."""

    def slots(row: Any) -> tuple[Any, ...]:
        return tuple(
            (name, list(value) if isinstance(value, list) else value)
            for name in type(row).__slots__
            if hasattr(row, name)
            for value in [getattr(row, name)]
        )

    transactions_open = [entry.transaction for entry in assembler_store._open.values()]
    rows = transactions_open + list(assembler_store._open.values())
    rows += [row for transaction in transactions_open for row in getattr(transaction, "recipients", [])]
    return (
        list(assembler_store._open.items()),
        list(assembler_store._changed),
        list(assembler_store._finished),
        list(assembler_store._new_transactions),
        list(assembler_store._new_entries),
        list(assembler_store._new_recipients),
        None if assembler_store._stored_open_ids is None else set(assembler_store._stored_open_ids),
        dict(assembler_store._domain_ids),
        [slots(row) for row in rows],
    )


@pytest.fixture
def written(db: Session) -> tuple[MailLogStore, TransactionRow, QueueEntryRow]:
    """A store holding one message in memory, already written (its rows have ids)."""
    assembler_store = MailLogStore(db)
    transaction = assembler_store.new_transaction(MOMENT)
    entry = assembler_store.new_entry(transaction, "4ABC123", MOMENT)
    assembler_store.flush()
    assert transaction.id is not None and entry.id is not None
    return assembler_store, transaction, entry


def test_an_event_left_to_python_changes_nothing(
    written: tuple[MailLogStore, TransactionRow, QueueEntryRow],
) -> None:
    assembler_store, transaction, entry = written
    add = transactions._compiled_add
    assert add is not None
    stale = MOMENT + QUEUE_LIFETIME + dt.timedelta(seconds=1)

    @dataclasses.dataclass(slots=True)
    class OtherEvent(PostfixEvent):
        pass

    left = [
        _event("queued", sender="new@a.test", size=10),  # the sender's domain not looked up yet
        _event("removed", time=stale),  # an entry too old for the line: the database decides
        _event("message-id", queue_id="4OTHER1", message_id="<m@a.test>"),  # not in memory
        _event("message-id", queue_id=None, message_id="<m@a.test>"),
        _event("message-id", message_id=None),  # type: ignore[arg-type]
        _event("delivery", queue_id="4OTHER1", recipient="r@a.test"),  # a message not in memory
        _event("delivery", time=stale, recipient="r@a.test", status="sent", detail="250 ok"),
        _event("delivery", recipient="r\u00e9@a.test", status="sent", detail="250 ok"),  # not ASCII
        _event("delivery", recipient="r@a.test", status="sent", detail="250 ok\x1c"),  # Python's \\S differs
        _event("expired"),
        OtherEvent(kind="removed", time=MOMENT, program="qmgr", queue_id="4ABC123"),
    ]
    for event in left:
        before = _state(assembler_store)
        assert add(assembler_store, event, AuthVerdicts()) is transactions._NOT_DONE, event
        assert _state(assembler_store) == before, event
    # A new message's line where the store would ask the database: the queue ID open there, or
    # too many open there to remember.
    assembler_store._stored_open().add("4OTHER1")
    new = _event("message-id", queue_id="4OTHER1", message_id="<m@a.test>")
    before = _state(assembler_store)
    assert add(assembler_store, new, AuthVerdicts()) is transactions._NOT_DONE
    assert _state(assembler_store) == before
    assembler_store._stored_open().discard("4OTHER1")
    before = _state(assembler_store)
    assembler_store._ask_each_time = True
    assert add(assembler_store, new, AuthVerdicts()) is transactions._NOT_DONE
    assert _state(assembler_store) == before
    assembler_store._ask_each_time = False
    assert add(assembler_store, new, AuthVerdicts()) is assembler_store._open["4OTHER1"].transaction
    # A transaction whose rows were released (finished) is Python's, which refuses the line.
    del transaction.entries
    before = _state(assembler_store)
    assert add(assembler_store, _event("removed"), AuthVerdicts()) is transactions._NOT_DONE
    assert _state(assembler_store) == before


def _written_message(
    db: Session,
) -> tuple[MailLogStore, TransactionRow, QueueEntryRow, TransactionRow, QueueEntryRow]:
    """A store holding the message the events name, written, and another one opened after it
    (the most recently used entry is last: eviction takes the first)."""
    assembler_store = MailLogStore(db)
    transaction = assembler_store.new_transaction(MOMENT)
    entry = assembler_store.new_entry(transaction, "4ABC123", MOMENT)
    other = assembler_store.new_transaction(MOMENT)
    other_entry = assembler_store.new_entry(other, "4DEF456", MOMENT)
    assembler_store.flush()
    assembler_store.domain_id("new@a.test")
    return assembler_store, transaction, entry, other, other_entry


def _picture(assembler_store: MailLogStore, rows: list[Any], answer: Any) -> Any:
    """The store and `rows` (_written_message's, then the new messages') as the assembler left
    them, rows by position and without their ids (each store's rows took their own)."""
    rows = (
        rows
        + assembler_store._new_transactions
        + assembler_store._new_entries
        + assembler_store._new_recipients
    )

    def slots(row: Any) -> tuple[Any, ...]:
        return tuple(
            (name, [rows.index(item) for item in value] if name in {"entries", "recipients"} else value)
            for name in type(row).__slots__
            if name not in {"id", "transaction"} and hasattr(row, name)
            for value in [getattr(row, name)]
        )

    return (
        None if answer is None else rows.index(answer),
        [slots(row) for row in rows],
        [rows.index(row) for row in assembler_store._changed],
        [rows.index(row) for row in assembler_store._finished],
        [(queue_id, rows.index(entry)) for queue_id, entry in assembler_store._open.items()],
        dict(assembler_store._domain_ids),
        None if assembler_store._stored_open_ids is None else sorted(assembler_store._stored_open_ids),
    )


def test_an_event_taken_changes_what_python_changes(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        _event("connect-client", client_name="c.example", client_ip="192.0.2.1", sasl_user="u@a.test"),
        _event("connect-client", client_name="filter", client_ip="127.0.0.1"),  # a re-injection
        _event("message-id", message_id="<" + "m" * 1200 + ">"),
        _event("queued", sender="new@a.test", size=10),
        _event("queued", sender="new@a.test", size=99),  # the size is the first queueing's
        _event("message-id", queue_id="4DEF456", message_id="<o@a.test>"),
        _event("queued", queue_id="4DEF456", sender="new@a.test", size=5),
        _event("removed", time=MOMENT + dt.timedelta(seconds=5)),
        # A new message, from each of its first lines.
        _event("connect-client", queue_id="4NEW001", client_name="d.example", client_ip="192.0.2.9"),
        _event("message-id", queue_id="4NEW002", message_id="<n@a.test>"),
        _event("queued", queue_id="4NEW003", sender="new@a.test", size=7),
        _event("queued", queue_id="4NEW001", sender="new@a.test", size=8),
    ]
    counts = _counting(monkeypatch)
    compiled_store, *compiled_rows = _written_message(db)
    compiled_store._stored_open()  # read on a first new message, as the Python code does
    compiled = [
        _picture(compiled_store, compiled_rows, TransactionAssembler(compiled_store).add(event))
        for event in events
    ]
    assert counts == {"compiled": len(events), "python": 0}
    monkeypatch.setattr(transactions, "_compiled_add", None)
    python_store, *python_rows = _written_message(db)
    python_store._stored_open()
    in_python = [
        _picture(python_store, python_rows, TransactionAssembler(python_store).add(event)) for event in events
    ]
    assert compiled == in_python
    assert [picture[0] for picture in compiled] == [0, None, 0, 0, 0, 2, 2, 0, 4, 5, 6, 4]
    transaction, entry, other, other_entry = compiled_rows
    assert list(compiled_store._open) == ["4DEF456", "4NEW002", "4NEW003", "4NEW001"]  # last used last
    assert compiled_store._open["4DEF456"] is other_entry
    assert transaction.message_id == "<" + "m" * 997 and transaction.size == 10 and entry.removed
    assert compiled_store._changed == [transaction, other, entry] and compiled_store._finished == [
        transaction
    ]


def _delivery(recipient: str, status: str, detail: str, **fields: Any) -> PostfixEvent:
    fields.setdefault("program", "lmtp")
    fields.setdefault("dsn", "2.0.0" if status == "sent" else "4.4.1")
    program = fields.pop("program")
    return dataclasses.replace(
        _event("delivery", queue_id="4DEF456", recipient=recipient, status=status, detail=detail, **fields),
        program=program,
    )


def test_a_delivery_taken_changes_what_python_changes(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = {"program": "smtp", "relay": "far.example[192.0.2.1]:25"}
    events = [
        _delivery("r@a.test", "sent", "250 2.0.0 <r@a.test> SESS1 Saved", relay="mail[private/dovecot-lmtp]"),
        _delivery("j@a.test", "sent", "250 2.0.0 <j@a.test> SESS2 Saved"),  # filed into Junk before
        _delivery(
            "x@far.example", "deferred", "connect to far.example[192.0.2.1]:25: Connection timed out", **smtp
        ),
        _delivery("x@far.example", "sent", "250 2.0.0 Ok: queued as ABCDEF123", **smtp),  # the same row again
        _delivery("out@far.example", "sent", "250 2.0.0 ok", orig_to="alias@a.test", **smtp),  # forwarded
        _delivery("OUT@far.example", "sent", "250 2.0 ok", orig_to="out@FAR.example", **smtp),  # relayed
        _delivery(
            "b@far.example", "undeliverable", "550-5.1.1 <b@far.example> no such user", dsn="5.1.1", **smtp
        ),
        _delivery("b@far.example", "bounced", "550 5.1.1234 x", dsn="5.1.1", **smtp),
        _delivery("long@a.test", "sent", "250 2.0.0 <long@a.test> S " + "x" * 400, relay="r" * 300),
        _delivery(
            "y@far.example", "deferred", "lost connection with far.example", dsn="4.4.2.12345678901", **smtp
        ),
        # Left to Python: a recipient whose domain is not looked up yet; the same recipient
        # through another alias; a re-injection on this host; a detail past printable ASCII.
        _delivery("unknown@b.test", "sent", "250 2.0.0 <unknown@b.test> SESS3 Saved"),
        _delivery("x@far.example", "sent", "250 2.0.0 ok", orig_to="alias@a.test", **smtp),
        _delivery(
            "f@a.test", "sent", "250 2.0.0 Ok: queued as 4REINJ1", program="smtp", relay="l[127.0.0.1]:10025"
        ),
        _delivery("r@a.test", "sent", "250 2.0.0 <r@a.test> SESS4 Saved \u00e9"),
    ]
    addresses = ["r@a.test", "j@a.test", "x@far.example", "alias@a.test", "out@FAR.example", "b@far.example"]
    addresses.append("y@far.example")

    def assembled() -> tuple[list[Any], list[str]]:
        assembler_store, *rows = _written_message(db)
        for address in [*addresses, "long@a.test", "f@a.test"]:
            assembler_store.domain_id(address)
        assembler = TransactionAssembler(assembler_store)
        assembler.junk_filings.note_junk_filing("SESS2")
        pictures = [_picture(assembler_store, rows, assembler.add(event)) for event in events]
        return pictures, list(assembler.junk_filings._saved)

    counts = _counting(monkeypatch)
    compiled, compiled_saved = assembled()
    assert counts == {"compiled": len(events) - 4, "python": 4}
    monkeypatch.setattr(transactions, "_compiled_add", None)
    assert (compiled, compiled_saved) == assembled()
    assert compiled_saved == ["SESS1", "SESS3", "SESS4"]
    recipients = [row for row in compiled[-1][1] if dict(row).get("attempts")]
    outcomes = [(dict(row)["recipient"], dict(row)["outcome"], dict(row)["attempts"]) for row in recipients]
    assert ("x@far.example", "relayed", 2) in outcomes and ("out@far.example", "forwarded", 1) in outcomes
    assert ("OUT@far.example", "relayed", 1) in outcomes and ("b@far.example", "bounced", 2) in outcomes
    deferred = next(dict(row) for row in recipients if dict(row)["recipient"] == "y@far.example")
    assert deferred["status_code"] == "4.4.2.1234567890" and "retry" in deferred["reason"]  # the dsn, cut
    junk = next(dict(row) for row in recipients if dict(row)["recipient"] == "j@a.test")
    assert junk["reason"] and "junk" in junk["reason"].lower()


def test_row_classes_it_cannot_work_on_are_refused() -> None:
    assert transactions._assemble is not None

    class WithDict:  # instances with a __dict__: no slots to work on
        def __init__(self, *args: Any) -> None:
            pass

    @dataclasses.dataclass(slots=True)
    class Longer(PostfixEvent):  # its fields' slots are its base's
        extra: str = ""

    try:
        for classes in (
            (PostfixEvent, WithDict, QueueEntryRow),
            (PostfixEvent, TransactionRow, WithDict),
            (Longer, TransactionRow, QueueEntryRow),
        ):
            assert (
                transactions._assemble.configure(
                    *classes, QUEUE_LIFETIME, RecipientRow, plain_reason, _junk_reason
                )
                is False
            )
            # Refused, it takes nothing.
            assert transactions._assemble.add(
                MailLogStore.__new__(MailLogStore), _event("removed"), None
            ) is (transactions._NOT_DONE)
    finally:
        assert transactions._assemble.configure(
            PostfixEvent,
            TransactionRow,
            QueueEntryRow,
            QUEUE_LIFETIME,
            RecipientRow,
            plain_reason,
            _junk_reason,
        )
