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


# What the log tables' rows hold once converted, and what may reach a packing by mistake.
STORED_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.datetimes(timezones=ZONES),
)


def _typed(rows: list[tuple[Any, ...]]) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 6).flatmap(lambda width: st.lists(st.tuples(*[STORED_VALUES] * width), max_size=12)))
def test_packed_rows_come_back_as_converted_rows_value_for_value(rows: list[tuple[Any, ...]]) -> None:
    def stored(value: Any) -> Any:
        return UTC_PROCESSOR(value) if isinstance(value, dt.datetime) else value

    def conversions() -> tuple[Any, ...]:
        return tuple((position, stored, {}, True) for position in range(len(rows[0]) if rows else 0))

    # Both raise the processor's error alike (a moment with no UTC time near year 1).
    packed = _outcome(lambda: _bind_rows.pack(rows, conversions()))
    converted = _outcome(lambda: _bind_rows.convert(rows, conversions()))
    if isinstance(packed, bytes):
        assert _typed(_bind_rows.unpack(packed)) == _typed(converted)
    else:
        assert packed == converted


@pytest.mark.usefixtures("sqlite_only")  # the writer process's path: SQLite's
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "\ud800", b"raw", 1.5j, dt.date(2026, 1, 1)])
def test_a_value_packing_cannot_carry_goes_over_as_converted(db: Any, value: Any) -> None:
    # The writer process is given the rows converted instead, and writes them alike.
    with pytest.raises((TypeError, ValueError)):
        _bind_rows.pack([("x", value)], ())
    sql, values = BulkWriter(db).packed(
        "insert", AuthEvent.__table__, ("service", "login"), [("imap", value)]
    )
    assert values == [("imap", value)]


def test_packed_rows_cut_short_or_run_on_are_refused() -> None:
    packed = _bind_rows.pack([("a", 1, None), ("b", 2.5, True)], ())
    assert _bind_rows.unpack(packed) == [("a", 1, None), ("b", 2.5, True)]
    for broken in (packed[:-1], packed + b"N", packed[:8] + b"?" + packed[9:]):
        with pytest.raises(ValueError, match="packed rows|not packed"):
            _bind_rows.unpack(broken)


@pytest.mark.usefixtures("sqlite_only")
def test_the_writer_writes_packed_rows_as_it_writes_converted_ones(db: Any) -> None:
    writer = BulkWriter(db)
    table = AuthEvent.__table__
    names = store._LOGIN_FIELDS
    moment = dt.datetime(2026, 12, 7, 10, 0, 1, 250_000, tzinfo=dt.UTC)
    rows = [
        (
            moment,
            "imap",
            f"u{n}@a.test",
            f"u{n}@a.test",
            None,
            None,
            "192.0.2.1",
            "192.0.2.0/24",
            "",
            n % 2 == 0,
        )
        + ("é" * n, "", "node")
        for n in range(5)
    ]
    sql, packed = writer.packed("insert", table, names, rows)
    assert isinstance(packed, bytes)
    writer.insert_values(sql, len(names), packed)
    sql, converted = writer.converted("insert", table, names, rows)
    writer.insert_values(sql, len(names), converted)
    stored = db.execute(table.select().order_by(table.c.id)).all()
    columns = [[getattr(row, name) for name in names] for row in stored]
    assert columns[:5] == columns[5:] == [list(row) for row in rows]


def test_two_conversions_of_one_column_are_left_to_convert() -> None:
    # convert() applies them in turn; the packing does not, and says so (its caller converts).
    twice = ((0, lambda value: value + 1, {}, False), (0, lambda value: value * 10, {}, False))
    assert _bind_rows.convert([(1, "a")], twice) == [(20, "a")]
    with pytest.raises(ValueError, match="two conversions"):
        _bind_rows.pack([(1, "a")], twice)


@pytest.mark.parametrize(
    "rows",
    [[("a", 1), ("b",)], [(), ()]],  # rows of different widths; rows of no value
)
def test_rows_the_packing_refuses_raise_what_its_caller_falls_back_on(rows: list[tuple[Any, ...]]) -> None:
    with pytest.raises(ValueError, match="widths|rows of none"):
        _bind_rows.pack(rows, ())
    assert _bind_rows.unpack(_bind_rows.pack([], ())) == []
