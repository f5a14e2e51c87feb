"""A bulk import builds the log tables' search indexes after its rows; nothing leaves them missing."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from controlplane.cli import main
from controlplane.db import make_engine
from controlplane.logs import ingest as ingest_module
from controlplane.logs import search_indexes
from controlplane.logs.ingest import ingest_file, ingest_files
from controlplane.logs.search_indexes import no_mail_daemons
from controlplane.models import AuthEvent, MailQueueEntry, MailRecipientResult, MailTransaction
from controlplane.runtime import Installation
from controlplane.settings import Settings
from tests.unit.test_log_ingest import FIXTURES, REFERENCE

ROOT = Path(__file__).resolve().parents[2]
ALL = 5  # the indexes set aside when every log table grows


@pytest.fixture
def any_size_is_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture log is small: every read of it counts as a bulk import growing every table.
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 0)
    monkeypatch.setattr(search_indexes, "LOG_BYTES_PER_ROW", 1)


@pytest.fixture
def missing_at_each_file(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The indexes missing as each file's read begins."""
    seen: list[set[str]] = []
    read = ingest_module.ingest_file

    def reading(session: Session, *args: object, **kwargs: object):
        seen.append(_names(search_indexes.missing_indexes(session)))
        return read(session, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "ingest_file", reading)
    return seen


def _log(directory: Path, name: str = "postfix.log") -> Path:
    path = directory / name
    shutil.copy(FIXTURES / name, path)
    # Year-less syslog stamps are dated from the file's time, as the fixtures expect.
    os.utime(path, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    return path


def _names(indexes: list) -> set[str]:
    return {index.name for index in indexes}


def _rows(session: Session) -> list[list[tuple]]:
    return [
        [tuple(row) for row in session.execute(select(model.__table__).order_by(model.__table__.c.id))]
        for model in (MailTransaction, MailQueueEntry, MailRecipientResult, AuthEvent)
    ]


def test_the_set_aside_indexes_are_none_that_logins_or_the_ingestion_read() -> None:
    names = _names(search_indexes.deferrable_indexes())
    assert len(names) == ALL
    assert {"ix_mail_recipient_result_recipient", "ix_mail_transaction_sender"} <= names
    # Read during an import: by the ingestion itself, every login's throttle, the daily purge.
    assert not names & {
        "ix_mail_transaction_time",
        "ix_auth_event_login",
        "ix_auth_event_account",
        "ix_auth_event_network",
        "ix_auth_event_time",
    }
    # Cheap to keep up in the writer process: new keys land at the end of a few runs.
    assert not names & {"ix_auth_event_domain_id_time", "ix_mail_recipient_result_orig_to"}


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_a_bulk_import_stores_what_a_plain_read_stores_and_builds_its_indexes_after(
    db: Session, second_database: str, tmp_path: Path, missing_at_each_file: list[set[str]]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    ingest_files(db, [_log(first), _log(first, "dovecot.log")], daemons_reading=no_mail_daemons)

    # Set aside once for both files, built after the last.
    every = _names(search_indexes.deferrable_indexes())
    assert missing_at_each_file == [every, every]
    assert search_indexes.missing_indexes(db) == []
    plan = db.execute(
        text("EXPLAIN QUERY PLAN SELECT id FROM mail_recipient_result WHERE recipient = 'alice@a.test'")
    ).all()
    assert "ix_mail_recipient_result_recipient" in " ".join(str(row[-1]) for row in plan)
    # An evicted message's recipients are read back through the unique index (the only one
    # on transaction_id since migration 0028), which is never set aside.
    plan = db.execute(
        text("EXPLAIN QUERY PLAN SELECT id FROM mail_recipient_result WHERE transaction_id = 1 ORDER BY id")
    ).all()
    assert "INDEX sqlite_autoindex_mail_recipient_result_1 (transaction_id=?)" in " ".join(
        str(row[-1]) for row in plan
    )

    with Session(make_engine(second_database)) as plain:
        ingest_file(plain, _log(second), reference=REFERENCE)
        ingest_file(plain, _log(second, "dovecot.log"), reference=REFERENCE)
        expected = _rows(plain)
    assert all(expected[:3]) and _rows(db) == expected


@pytest.mark.usefixtures("sqlite_only")
def test_an_index_an_earlier_version_set_aside_is_built_when_missing(db: Session) -> None:
    # Kept up by imports since the writer process; one killed before the upgrade left it out.
    db.execute(text("DROP INDEX ix_auth_event_domain_id_time"))
    db.commit()
    assert _names(search_indexes.missing_indexes(db)) == {"ix_auth_event_domain_id_time"}
    assert search_indexes.build_missing(db, daemons_reading=no_mail_daemons) == 1
    assert search_indexes.missing_indexes(db) == []


def _schema_version(session: Session) -> int:
    return session.execute(text("PRAGMA schema_version")).scalar_one()


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_an_import_beside_running_mail_daemons_changes_no_schema(
    db: Session, tmp_path: Path, missing_at_each_file: list[set[str]]
) -> None:
    # Dovecot's SQLite driver fails its next query after a schema change (search_indexes.py).
    version = _schema_version(db)
    ingest_files(db, [_log(tmp_path)], daemons_reading=lambda: True)
    assert missing_at_each_file == [set()]
    assert _schema_version(db) == version


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_mail_daemons_started_during_an_import_keep_its_indexes_unbuilt_until_they_stop(
    db: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = [False]
    read = ingest_module.ingest_file

    def started_meanwhile(session: Session, *args: object, **kwargs: object):
        result = read(session, *args, **kwargs)  # type: ignore[arg-type]
        running[0] = True  # `letterhead up` while the import reads
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_module, "ingest_file", started_meanwhile)
        [result] = ingest_files(db, [_log(tmp_path)], daemons_reading=lambda: running[0])
    assert result.postfix_events > 0
    assert len(search_indexes.missing_indexes(db)) == ALL
    assert "not built while Dovecot or Postfix runs" in capsys.readouterr().err

    version = _schema_version(db)
    assert search_indexes.build_missing(db, daemons_reading=lambda: running[0]) == 0
    assert _schema_version(db) == version
    running[0] = False
    assert search_indexes.build_missing(db, daemons_reading=lambda: running[0]) == ALL


@pytest.mark.usefixtures("sqlite_only")
def test_a_read_of_little_log_keeps_the_indexes_up(
    db: Session, tmp_path: Path, missing_at_each_file: list[set[str]]
) -> None:
    ingest_files(db, [_log(tmp_path)], daemons_reading=no_mail_daemons)
    assert missing_at_each_file == [set()]
    assert db.scalar(select(func.count()).select_from(MailTransaction)) > 0


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_only_a_table_an_import_grows_by_a_quarter_has_its_indexes_set_aside(
    db: Session, tmp_path: Path
) -> None:
    ingest_files(db, [_log(tmp_path)], daemons_reading=no_mail_daemons)
    transactions = db.scalar(select(func.max(MailTransaction.id)))
    recipients = db.scalar(select(func.max(MailRecipientResult.id)))
    # A quarter of each table, in rows (one row a byte here): the recipients' is larger.
    quarter = -(-transactions // 4)
    assert quarter < -(-recipients // 4)
    # No login stored yet: any import grows auth_event by more than a quarter.
    logins_only = _names(search_indexes.indexes_to_defer(db, quarter - 1))
    assert logins_only and all(name.startswith("ix_auth_event_") for name in logins_only)
    with_transactions = _names(search_indexes.indexes_to_defer(db, quarter))
    assert "ix_mail_transaction_sender" in with_transactions
    assert "ix_mail_recipient_result_recipient" not in with_transactions


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_an_import_under_way_keeps_every_other_builder_off(installation: Installation) -> None:
    with installation.sessions() as importing, installation.sessions() as other:
        with search_indexes.deferred(importing, 1, daemons_reading=no_mail_daemons):
            assert len(search_indexes.missing_indexes(other)) == ALL
            # A stack's start, and a second import ending first, build nothing.
            assert search_indexes.build_missing(other, daemons_reading=no_mail_daemons) == 0
            with search_indexes.deferred(other, 1, daemons_reading=no_mail_daemons):
                pass
            assert len(search_indexes.missing_indexes(other)) == ALL
        # The last import to end builds them.
        assert search_indexes.missing_indexes(other) == []


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_a_failed_import_builds_them_and_an_interrupted_one_leaves_them_to_the_next_start(
    installation: Installation,
) -> None:
    with installation.sessions() as session:
        with (
            pytest.raises(RuntimeError, match="a line tripped"),
            search_indexes.deferred(session, 1, daemons_reading=no_mail_daemons),
        ):
            raise RuntimeError("a line tripped")
        assert search_indexes.missing_indexes(session) == []

        with (
            pytest.raises(KeyboardInterrupt),
            search_indexes.deferred(session, 1, daemons_reading=no_mail_daemons),
        ):
            raise KeyboardInterrupt
        assert len(search_indexes.missing_indexes(session)) == ALL
        assert search_indexes.build_missing(session, daemons_reading=no_mail_daemons) == ALL


@pytest.mark.usefixtures("sqlite_only")
def test_an_import_killed_before_its_build_leaves_them_to_the_next_start_and_the_next_import(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    def killed_import() -> None:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, signal, sys\n"
                "from sqlalchemy import create_engine\n"
                "from sqlalchemy.orm import Session\n"
                "from controlplane.logs import search_indexes\n"
                "search_indexes.BULK_IMPORT_BYTES = 0\n"
                "with Session(create_engine(sys.argv[1])) as session:\n"
                "    with search_indexes.deferred(session, 1, daemons_reading=search_indexes.no_mail_daemons):\n"
                "        os.kill(os.getpid(), signal.SIGKILL)\n",
                f"sqlite:///{settings.database_path}",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        assert child.returncode == -signal.SIGKILL
        assert len(search_indexes.missing_indexes(db)) == ALL

    killed_import()
    assert (
        search_indexes.build_missing(db, daemons_reading=no_mail_daemons) == ALL
    )  # as the stack's start does (integration test)
    assert search_indexes.missing_indexes(db) == []

    killed_import()
    # An operator's next import, too small to set anything aside, builds them.
    result = CliRunner().invoke(
        main, ["logs", "ingest", str(_log(tmp_path))], env={"LETTERHEAD_HOME": str(settings.home)}
    )
    assert result.exit_code == 0, result.output
    assert search_indexes.missing_indexes(db) == []


def test_nothing_is_set_aside_on_postgresql(db: Session, tmp_path: Path, any_size_is_bulk: None) -> None:
    if db.get_bind().dialect.name != "postgresql":
        pytest.skip("the PostgreSQL pass checks this")
    assert search_indexes.indexes_to_defer(db, 10**12) == []
    assert ingest_files(db, [_log(tmp_path)], daemons_reading=no_mail_daemons)[0].postfix_events > 0
    present = {
        index["name"]
        for model in (MailTransaction, MailRecipientResult, AuthEvent)
        for index in inspect(db.connection()).get_indexes(model.__tablename__)
    }
    assert _names(search_indexes.deferrable_indexes()) <= present


def test_unread_bytes_are_counted_from_each_files_checkpoint(db: Session, tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert ingest_module.unread_bytes(db, log) == log.stat().st_size
    ingest_files(db, [log], daemons_reading=no_mail_daemons)
    assert ingest_module.unread_bytes(db, log) == 0
    appended = b"Nov 30 00:00:01 mail postfix/anvil[1]: statistics: nothing\n"
    with log.open("ab") as file:
        file.write(appended)
    assert ingest_module.unread_bytes(db, log) == len(appended)

    # A gzip file is estimated, never unpacked to be sized: eight times its packed size.
    packed = tmp_path / "old" / "dovecot.log.1.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress((FIXTURES / "dovecot.log").read_bytes()))
    assert ingest_module.unread_bytes(db, packed) == packed.stat().st_size * 8
    ingest_files(db, [packed], daemons_reading=no_mail_daemons)
    unpacked = len((FIXTURES / "dovecot.log").read_bytes())
    assert ingest_module.unread_bytes(db, packed) == max(0, packed.stat().st_size * 8 - unpacked)


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_a_failed_build_after_the_rows_says_so_and_keeps_the_import(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def locked(_session: Session, _daemons_reading: object) -> int:
        raise OperationalError("CREATE INDEX", {}, Exception("database is locked"))

    monkeypatch.setattr(search_indexes, "_build", locked)
    [result] = ingest_files(db, [_log(tmp_path)], daemons_reading=no_mail_daemons)
    assert result.postfix_events > 0
    assert db.scalar(select(func.count()).select_from(MailTransaction)) > 0
    assert search_indexes.BUILT_LATER in capsys.readouterr().err
    assert len(search_indexes.missing_indexes(db)) == ALL


def _interrupted_import(installation: Installation) -> None:
    with (
        installation.sessions() as session,
        pytest.raises(KeyboardInterrupt),
        search_indexes.deferred(session, 1, daemons_reading=no_mail_daemons),
    ):
        raise KeyboardInterrupt


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_a_build_stops_at_its_next_index_once_the_mail_daemons_start(
    installation: Installation, db: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupted_import(installation)
    # build_missing's own look, then the first index's; `letterhead up` after that.
    looks = iter([False, False])
    assert search_indexes.build_missing(db, daemons_reading=lambda: next(looks, True)) == 1
    assert len(search_indexes.missing_indexes(db)) == ALL - 1
    assert search_indexes.BUILT_LATER in capsys.readouterr().err


def _build_under_way(settings: Settings) -> int:
    """The lock as a build holds it (another process's, as far as flock is concerned)."""
    descriptor = search_indexes._open_lock(settings.database_path.resolve())
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


class _Waiting:
    """`work` in a thread of its own, expected to wait for a lock the test holds."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._failures: list[BaseException] = []

        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - raised again in the test's thread
                self._failures.append(error)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def still_waiting_after(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return self._thread.is_alive()

    def finished(self) -> None:
        """Once the lock is released: the work ends, and its failure fails the test."""
        self._thread.join(30)
        assert not self._thread.is_alive(), "still waiting"
        if self._failures:
            raise self._failures[0]


@contextlib.contextmanager
def _write_lock_held(settings: Settings) -> Iterator[None]:
    """SQLite's write lock, held by another connection (another process, to SQLite) until the
    block ends."""
    engine = make_engine(settings.sqlalchemy_url)
    connection = engine.raw_connection()
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


@pytest.mark.usefixtures("sqlite_only")
def test_the_stacks_start_waits_for_a_build_under_way(db: Session, settings: Settings) -> None:
    build = _build_under_way(settings)
    waiting = _Waiting(lambda: search_indexes.wait_for_builds(db))
    assert waiting.still_waiting_after(0.5), "returned while a build held the lock"
    os.close(build)
    waiting.finished()


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_an_import_that_waited_for_a_build_sets_nothing_aside_if_the_daemons_started_meanwhile(
    db: Session, settings: Settings
) -> None:
    # Its first look before the wait, the second after it: `letterhead up` in between.
    looks = iter([False])
    build = _build_under_way(settings)
    version = _schema_version(db)

    def import_waiting() -> None:
        with search_indexes.deferred(db, 1, daemons_reading=lambda: next(looks, True)):
            pass

    importing = _Waiting(import_waiting)
    assert importing.still_waiting_after(0.5), "did not wait for the build"
    os.close(build)
    importing.finished()
    assert _schema_version(db) == version
    assert search_indexes.missing_indexes(db) == []


def _mark(settings: Settings) -> Path:
    return search_indexes._starting_mark(settings.database_path.resolve())


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_from_the_stacks_start_on_imports_set_nothing_aside_until_it_stops(
    installation: Installation, db: Session, settings: Settings
) -> None:
    _interrupted_import(installation)
    # The start builds what is missing despite its own mark; the daemons are not up yet.
    assert search_indexes.before_daemons_start(db, daemons_reading=no_mail_daemons) == ALL
    version = _schema_version(db)
    # Between the start and Dovecot's pid file, an import sees the start under way.
    with (
        installation.sessions() as session,
        search_indexes.deferred(session, 1, daemons_reading=no_mail_daemons),
    ):
        assert search_indexes.missing_indexes(session) == []
    assert search_indexes.build_missing(db, daemons_reading=no_mail_daemons) == 0
    assert _schema_version(db) == version
    search_indexes.daemons_stopped(settings.sqlalchemy_url)
    _interrupted_import(installation)
    assert len(search_indexes.missing_indexes(db)) == ALL


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_a_start_that_never_reached_its_daemons_holds_imports_up_for_a_while_only(
    installation: Installation, db: Session, settings: Settings
) -> None:
    search_indexes.before_daemons_start(db, daemons_reading=no_mail_daemons)
    long_ago = _mark(settings).stat().st_mtime - search_indexes.STARTING_SECONDS - 1
    os.utime(_mark(settings), (long_ago, long_ago))
    _interrupted_import(installation)
    assert len(search_indexes.missing_indexes(db)) == ALL


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_an_imports_drops_waiting_for_the_write_lock_as_the_start_marks_itself_drop_nothing(
    installation: Installation, db: Session, settings: Settings
) -> None:
    version = _schema_version(db)

    def importing() -> None:
        with (
            installation.sessions() as session,
            search_indexes.deferred(session, 1, daemons_reading=no_mail_daemons),
        ):
            pass

    # Another writer holds SQLite's write lock as the import comes to set its indexes aside.
    with _write_lock_held(settings):
        waiting = _Waiting(importing)
        assert waiting.still_waiting_after(1.0), "did not wait for the write lock"
        _mark(settings).touch()  # the stack's start, under way meanwhile
    waiting.finished()
    assert _schema_version(db) == version
    assert search_indexes.missing_indexes(db) == []


@pytest.mark.usefixtures("sqlite_only")
def test_the_stacks_start_waits_for_drops_looked_at_before_its_mark(
    installation: Installation, db: Session, settings: Settings
) -> None:
    # An import's drops, inside SQLite's write lock after their last look, not committed yet.
    with _write_lock_held(settings):
        starting = _Waiting(lambda: search_indexes.before_daemons_start(db, daemons_reading=no_mail_daemons))
        assert starting.still_waiting_after(1.0), "went on to start the daemons under the drops"
        assert _mark(settings).exists()  # marked before it waited
    starting.finished()


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_an_import_during_the_stacks_start_says_its_indexes_wait(
    installation: Installation, db: Session, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupted_import(installation)
    _mark(settings).touch()
    assert search_indexes.build_missing(db, daemons_reading=no_mail_daemons) == 0
    assert search_indexes.BUILT_LATER in capsys.readouterr().err
    assert len(search_indexes.missing_indexes(db)) == ALL


@pytest.mark.usefixtures("sqlite_only")
def test_the_stacks_start_itself_waits_for_a_build_under_way(db: Session, settings: Settings) -> None:
    build = _build_under_way(settings)
    starting = _Waiting(lambda: search_indexes.before_daemons_start(db, daemons_reading=no_mail_daemons))
    assert starting.still_waiting_after(0.5), "went on while a build held the lock"
    os.close(build)
    starting.finished()


@pytest.mark.usefixtures("sqlite_only", "any_size_is_bulk")
def test_systemd_stopping_the_stack_lets_imports_set_indexes_aside_at_once(
    installation: Installation, db: Session, settings: Settings
) -> None:
    search_indexes.before_daemons_start(db, daemons_reading=no_mail_daemons)
    # What the prepare unit's ExecStop runs once the parts stopped.
    result = CliRunner().invoke(main, ["service", "stopped"], env={"LETTERHEAD_HOME": str(settings.home)})
    assert result.exit_code == 0, result.output
    assert not _mark(settings).exists()
    _interrupted_import(installation)
    assert len(search_indexes.missing_indexes(db)) == ALL
