"""Storage used per mailbox, read from where Dovecot's dict service writes it: an SQLite file of
its own, or the shared PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from controlplane.daemons import usage
from controlplane.daemons.usage import UsedBytes, create_usage_database, usage_of, usage_of_mailboxes
from tests.factories import make_domain, make_mailbox

KB = 1024


def _execute(source: Path | str, statement: str, parameters: dict | None = None) -> None:
    """Run SQL on the usage table where it is: an SQLite file, or the PostgreSQL database."""
    url = source if isinstance(source, str) else f"sqlite:///{source}"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement), parameters or {})
    finally:
        engine.dispose()


def record(source: Path | str, address: str, used: int, messages: int = 1) -> None:
    """Write a measurement the way Dovecot's dict-sql does: one upsert of both values."""
    _execute(
        source,
        "INSERT INTO mailbox_usage (address, bytes, messages) VALUES (:address, :bytes, :messages)"
        " ON CONFLICT (address) DO UPDATE SET bytes = excluded.bytes, messages = excluded.messages",
        {"address": address, "bytes": used, "messages": messages},
    )


def age_measurements(source: Path | str, milliseconds: int) -> None:
    _execute(source, "UPDATE mailbox_usage SET measured_at_ms = measured_at_ms - :ms", {"ms": milliseconds})


@pytest.fixture
def usage_db(settings) -> Path | str:
    return usage_database(settings)


def usage_database(settings) -> Path | str:
    """Where the run's engine keeps usage, made ready: the dict's SQLite file, or the shared database."""
    if settings.is_postgresql:
        engine = sa.create_engine(settings.sqlalchemy_url, poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            usage.create_usage_table(connection)
        engine.dispose()
        return settings.sqlalchemy_url
    path = settings.usage_database_path
    path.parent.mkdir(exist_ok=True)
    create_usage_database(path)
    return path


def test_usage_is_read_for_a_page_of_mailboxes_in_one_query(tmp_path: Path, monkeypatch) -> None:
    usage_db = tmp_path / "usage.db"
    create_usage_database(usage_db)
    with sqlite3.connect(usage_db) as connection:
        connection.executemany(
            "INSERT INTO mailbox_usage (address, bytes, messages) VALUES (?, ?, ?)",
            ((f"user{n}@a.test", n * KB, n) for n in range(10_000)),
        )
    connection.close()
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced_connect(*args, **kwargs):
        opened = real_connect(*args, **kwargs)
        opened.set_trace_callback(statements.append)
        return opened

    monkeypatch.setattr(usage.sqlite3, "connect", traced_connect)
    page = [f"user{n}@a.test" for n in range(5000, 5050)]
    found = usage_of(usage_db, page)
    assert sorted(found) == sorted(page)
    assert found["user5001@a.test"].bytes == 5001 * KB and found["user5001@a.test"].messages == 5001
    assert len(statements) == 1 and statements[0].startswith("SELECT")


def test_a_mailbox_never_measured_has_no_usage(usage_db: Path | str) -> None:
    record(usage_db, "alice@a.test", 12 * KB)
    assert set(usage_of(usage_db, ["alice@a.test", "never@a.test"])) == {"alice@a.test"}
    assert usage_of(usage_db, []) == {}


def test_addresses_are_matched_as_dovecot_writes_them_lower_case(usage_db: Path | str) -> None:
    record(usage_db, "alice@a.test", 12 * KB)
    assert usage_of(usage_db, ["Alice@A.test"])["Alice@A.test"].bytes == 12 * KB


@pytest.mark.parametrize(
    "address",
    ["' OR '1'='1", "alice@a.test' --", '"]', "%", "_lice@a.test", "\\", "alice@a.test\x00", "x" * 10_000],
)
def test_hostile_addresses_match_nothing_and_raise_nothing(usage_db: Path | str, address: str) -> None:
    record(usage_db, "alice@a.test", 12 * KB)
    assert usage_of(usage_db, [address]) == {}


def test_a_missing_usage_database_means_usage_unknown_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "usage" / "usage.db"
    assert usage_of(missing, ["alice@a.test"]) == {}
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_an_unreadable_usage_database_means_usage_unknown(tmp_path: Path, content: bytes) -> None:
    broken = tmp_path / "usage.db"
    broken.write_bytes(content)
    assert usage_of(broken, ["alice@a.test"]) == {}


def test_a_database_without_the_usage_table_means_usage_unknown(tmp_path: Path) -> None:
    other = tmp_path / "usage.db"
    sqlite3.connect(other).close()
    assert usage_of(other, ["alice@a.test"]) == {}


def test_settings_name_the_usage_database(settings, usage_db: Path | str) -> None:
    if not settings.is_postgresql:
        assert settings.usage_database_path == usage_db  # both under the test's own directory
    record(usage_db, "alice@a.test", 3 * KB)
    assert usage_of(settings, ["alice@a.test"])["alice@a.test"].bytes == 3 * KB


def test_each_measurement_is_dated_so_a_later_one_is_newer(usage_db: Path | str) -> None:
    record(usage_db, "alice@a.test", 1 * KB)
    first = usage_of(usage_db, ["alice@a.test"])["alice@a.test"].measured_at
    age_measurements(usage_db, 60000)
    record(usage_db, "alice@a.test", 2 * KB, messages=2)
    second = usage_of(usage_db, ["alice@a.test"])["alice@a.test"]
    assert second.bytes == 2 * KB and second.measured_at >= first
    assert abs(second.measured_at - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_usage_left_by_an_earlier_mailbox_at_the_same_address_is_not_shown(db, usage_db: Path | str) -> None:
    domain = make_domain(db, name="a.test")
    record(usage_db, "old@a.test", 50 * KB)
    age_measurements(usage_db, 60000)  # measured a minute before today's mailbox existed
    mailbox = make_mailbox(db, domain=domain, local_part="old")
    db.refresh(mailbox)
    assert usage_of(usage_db, [mailbox.address])  # the row is there...
    assert usage_of_mailboxes(usage_db, [mailbox]) == {}  # ...but describes someone else
    record(usage_db, "old@a.test", 2 * KB)
    assert usage_of_mailboxes(usage_db, [mailbox])["old@a.test"].bytes == 2 * KB


def test_percent_of_the_quota() -> None:
    used = UsedBytes(bytes=81 * KB, messages=3, measured_at=dt.datetime.now(dt.UTC))
    assert used.percent_of(100 * KB) == 81
    assert UsedBytes(bytes=120 * KB, messages=3, measured_at=used.measured_at).percent_of(100 * KB) == 120
    assert used.percent_of(0) == 0


def test_a_tenants_total_sums_its_domains_only(usage_db: Path | str) -> None:
    record(usage_db, "ann@a.test", 10 * KB)
    record(usage_db, "bob@a.test", 5 * KB)
    record(usage_db, "eve@other.test", 99 * KB)
    assert usage.used_by_domains(usage_db, ["a.test"]) == 15 * KB
    assert usage.used_by_domains(usage_db, ["a.test", "other.test"]) == 114 * KB
    assert usage.used_by_domains(usage_db, []) == 0
    assert usage.used_by_domains(Path(usage_db).parent / "missing.db", ["a.test"]) is None


def test_gone_mailboxes_and_domains_are_forgotten(usage_db: Path | str) -> None:
    for address in ("ann@a.test", "bob@a.test", "cy@b.test"):
        record(usage_db, address, KB)
    usage.forget_usage(usage_db, addresses=["ANN@a.test"])
    assert usage_of(usage_db, ["ann@a.test", "bob@a.test"]).keys() == {"bob@a.test"}
    usage.forget_usage(usage_db, domain="a.test")
    assert usage.used_by_domains(usage_db, ["a.test", "b.test"]) == KB


def test_deleting_a_mailbox_forgets_its_usage_once_committed(installation, usage_db: Path | str) -> None:
    # usage_db is where the installation's sessions look.
    with installation.transaction() as session:
        domain = make_domain(session, name="a.test")
        make_mailbox(session, domain=domain, local_part="ann")
    record(usage_db, "ann@a.test", 10 * KB)
    with installation.sessions() as session:
        from controlplane.services import mailboxes
        from controlplane.services.scope import OPERATOR

        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.find_mailbox(session, "ann@a.test"))
        assert usage.used_by_domains(usage_db, ["a.test"]) == 10 * KB  # not before the commit
        session.commit()
    assert usage.used_by_domains(usage_db, ["a.test"]) == 0
