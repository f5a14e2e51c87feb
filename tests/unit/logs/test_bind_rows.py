"""The compiled row conversion stores every value exactly as the columns' bind processors do."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from controlplane.logs import _bind_rows, store
from controlplane.logs.store import BulkWriter, _formats_like_c
from controlplane.models import AuthEvent, MailQueueEntry, MailRecipientResult, MailTransaction
from controlplane.models.base import UTCDateTime

SQLITE = create_engine("sqlite://").dialect


def _processor(column_type: Any) -> Any:
    return column_type.dialect_impl(SQLITE).bind_processor(SQLITE)


UTC_PROCESSOR = _processor(UTCDateTime())
ZONES = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(0))]
)


def _outcome(call: Any) -> Any:
    """What `call` returns, or the class of the error it raises."""
    try:
        return call()
    except (OverflowError, ValueError) as error:
        return type(error)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=ZONES))
def test_a_moment_is_stored_as_the_processor_stores_it(moment: dt.datetime) -> None:
    # Near year 1 a moment ahead of UTC has no UTC time: the processor raises, and so must the
    # conversion (the row is not written).
    stored = _outcome(lambda: _bind_rows.convert([(moment, "x")], ((0, UTC_PROCESSOR, {}, True),)))
    assert stored == _outcome(lambda: [(UTC_PROCESSOR(moment), "x")])
    written = _bind_rows.format_utc(moment)
    assert written == (UTC_PROCESSOR(moment) if moment.tzinfo is dt.UTC else None)


def test_a_moment_without_a_utc_time_is_refused_as_the_processor_refuses_it() -> None:
    moment = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    with pytest.raises(OverflowError):
        UTC_PROCESSOR(moment)
    with pytest.raises(OverflowError):
        _bind_rows.convert([(moment, "x")], ((0, UTC_PROCESSOR, {}, True),))


def test_every_moment_column_of_the_log_tables_takes_the_compiled_path() -> None:
    for model in (MailTransaction, MailRecipientResult, MailQueueEntry, AuthEvent):
        for column in model.__table__.columns:
            if isinstance(column.type, UTCDateTime):
                assert _formats_like_c(_processor(column.type)), column


def test_a_processor_that_writes_otherwise_is_not_given_the_compiled_path() -> None:
    assert not _formats_like_c(lambda moment: moment.isoformat())
    assert not _formats_like_c(_processor(AuthEvent.__table__.c.success.type))


def test_a_naive_moment_is_refused_as_the_orm_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        _bind_rows.convert([(dt.datetime(2026, 1, 1),)], ((0, UTC_PROCESSOR, {}, True),))


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),  # unhashable: converted each time
    st.datetimes(timezones=ZONES),
)


def _in_python(rows: list[tuple[Any, ...]], conversions: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The writer's own loop, as it runs where the compiled part is not built."""
    with patch.object(store, "_bind_rows", None):
        return BulkWriter._processed(conversions, rows)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(VALUES, VALUES, VALUES), max_size=20))
def test_rows_convert_as_the_python_loop_converts_them(rows: list[tuple[Any, ...]]) -> None:
    def tagged(value: Any) -> Any:
        return ("converted", repr(value))

    def conversions() -> tuple[Any, ...]:
        return ((0, tagged, {}, False), (2, tagged, {}, True))

    rows = [row for row in rows if not isinstance(row[2], dt.datetime) or row[2].tzinfo is not dt.UTC]
    assert _bind_rows.convert(rows, conversions()) == _in_python(rows, conversions())


def test_the_writer_shares_one_memory_among_columns_of_one_type() -> None:
    from sqlalchemy.orm import Session

    with Session(create_engine("sqlite://")) as session:
        writer = BulkWriter(session)
        _, transaction = writer._statement("insert", MailTransaction.__table__, ("time", "finished_at"))
        _, entry = writer._statement("insert", MailQueueEntry.__table__, ("time", "removed"))
    memories = {id(conversion[2]) for conversion in (*transaction, entry[0])}
    assert len(memories) == 1 and entry[1][2] is not transaction[0][2]


@pytest.mark.parametrize("variables", [None, 40])  # SQLite's own limit; one that leaves 2 rows a statement
def test_a_batch_is_written_many_rows_a_statement_with_ids_in_order(db: Any, variables: int | None) -> None:
    from sqlalchemy import select

    writer = store.BulkWriter(db)
    if db.get_bind().dialect.name == "sqlite" and variables is not None:
        writer._variables = variables
    moment = dt.datetime(2026, 11, 24, 0, 17, 18, tzinfo=dt.UTC)
    count = 2 * store.ROWS_PER_INSERT + 7
    rows = [
        (moment + dt.timedelta(seconds=n), f"<m{n}@a.test>", "", "", "", "", None, None) for n in range(count)
    ]
    names = ("time", "message_id", "client_name", "client_ip", "helo", "sasl_user", "sender", "size")
    ids = list(writer.insert(MailTransaction, names, rows))
    stored = db.execute(select(MailTransaction.id, MailTransaction.message_id, MailTransaction.time)).all()
    assert [(row.id, row.message_id) for row in stored] == list(
        zip(ids, (row[1] for row in rows), strict=True)
    )
    assert [row.time for row in stored] == [row[0] for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == count
