"""A bulk import's rows written by a second process (controlplane/logs/writer_process.py).

Each test reads the same log both ways, through the writer process and in one process, and
compares what the database holds; the failures are made real: processes killed with SIGKILL,
a statement failing inside the writer, another reader committing the same file first.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from controlplane.daemons.process import wait_until
from controlplane.db import make_engine
from controlplane.logs import ingest as ingest_module
from controlplane.logs import search_indexes, store, writer_process
from controlplane.logs.ingest import ConcurrentRead, ingest_file, ingest_files
from controlplane.logs.search_indexes import no_mail_daemons
from controlplane.logs.writer_process import WriterFailed, WriterProcess
from controlplane.models import LogCheckpoint

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
FIXTURES = ROOT / "tests" / "fixtures" / "logs"
BATCH = 500
# Every table the ingestion writes, in a stable order.
TABLES = (
    "mail_transaction",
    "mail_queue_entry",
    "mail_recipient_result",
    "auth_event",
    "smtp_dialogue_line",
    "unparsed_log_line",
)


@pytest.fixture
def small_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # Few messages kept in memory: evicted ones are read back from the database, through the
    # writer when it runs. Every read counts as a bulk import.
    monkeypatch.setattr(store, "MAX_OPEN_ENTRIES", 2)
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 0)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A generated log of every kind of line, the SMTP dialogue, Dovecot's logins, and lines
    no parser understands, dated from REFERENCE."""
    from bench.loggen import generate_log

    path = tmp_path / "mail.log"
    generate_log(path, 20_000)
    with path.open("a") as file:
        file.write((FIXTURES / "dialogue.log").read_text())
        file.write((FIXTURES / "dovecot.log").read_text())
        file.write("Nov 29 10:00:00 mail postfix/smtpd[77]: NOQUEUE: a format nobody knows\n")
        file.write("no time stamp: status=sent\n")
    os.utime(path, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    return path


def _rows(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(row) for row in session.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
        for table in TABLES
    }


def _plain(database: str, *paths: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a read in one process stores (no bulk import: no writer process)."""
    with Session(make_engine(database)) as session:
        for path in paths:
            ingest_file(session, path, reference=REFERENCE, batch_lines=BATCH)
        return _rows(session)


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the messages the reading side sends the writer."""
    sent: list[str] = []
    send = WriterProcess._send

    def counting(self: WriterProcess, *message: Any) -> None:
        sent.append(message[0])
        send(self, *message)

    monkeypatch.setattr(WriterProcess, "_send", counting)
    return sent


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_the_writer_process_stores_row_for_row_what_one_process_stores(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _calls(monkeypatch)
    [result] = ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert result.unparsed == 2 and result.logins > 0

    expected = _plain(second_database, log)
    assert all(expected[table] for table in TABLES)
    assert _rows(db) == expected
    # It went through the writer, reads of evicted messages and dialogue included.
    assert {"insert_numbered", "commit_checkpoint", "write_dialogue", "stored_entry"} <= set(sent)
    assert sent.count("commit_checkpoint") == -(-result.lines // BATCH)
    checkpoint = db.scalars(select(LogCheckpoint)).one()
    assert checkpoint.offset == log.stat().st_size
    assert checkpoint.version == sent.count("commit_checkpoint") + 1


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_a_second_read_through_the_writer_stores_nothing_twice(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _calls(monkeypatch)
    lines = log.read_bytes().splitlines(keepends=True)
    whole = log.read_bytes()
    log.write_bytes(b"".join(lines[: len(lines) // 2]))
    os.utime(log, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    log.write_bytes(whole)  # the file grew: the rest is read from the checkpoint
    os.utime(log, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert sent.count("reserve_ids") > 2  # both reads went through the writer
    assert _rows(db) == _plain(second_database, log)


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_several_files_and_a_rotation_in_one_import_store_what_one_process_stores(
    db: Session, second_database: str, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files in one import, then the first renamed away by logrotate with lines it got
    after the last read, and a new file in its place: the rest of the renamed one is read
    first, in this process (its checkpoint's new name commits with its rows)."""
    lines = log.read_bytes().splitlines(keepends=True)
    first_part, rest, after = lines[:9_000], lines[9_000:12_000], lines[12_000:]
    logins = tmp_path / "dovecot.log"
    logins.write_bytes((FIXTURES / "dovecot.log").read_bytes())

    def write(path: Path, chunks: list[bytes]) -> None:
        path.write_bytes(b"".join(chunks))
        os.utime(path, (REFERENCE.timestamp(), REFERENCE.timestamp()))

    def rounds(read: Any) -> None:
        live = log.parent / "rotating.log"
        write(live, first_part)
        read([logins, live])
        with live.open("ab") as file:
            file.write(b"".join(rest))
        live.rename(live.with_name("rotating.log.1"))
        os.utime(live.with_name("rotating.log.1"), (REFERENCE.timestamp(), REFERENCE.timestamp()))
        write(live, after)
        read([live])

    sent = _calls(monkeypatch)
    rounds(lambda paths: ingest_files(db, paths, batch_lines=BATCH, daemons_reading=no_mail_daemons))
    assert sent.count("reserve_ids") > 2
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 1 << 60)  # one process, the same reads
    with Session(make_engine(second_database)) as plain:
        rounds(lambda paths: ingest_files(plain, paths, batch_lines=BATCH, daemons_reading=no_mail_daemons))
        expected = _rows(plain)
    assert all(expected[table] for table in ("mail_transaction", "auth_event"))
    assert _rows(db) == expected
    names = sorted(db.scalars(select(LogCheckpoint.path)))
    assert [Path(name).name for name in names] == ["dovecot.log", "rotating.log", "rotating.log.1"]


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_an_import_stopped_in_a_rotated_files_rest_reads_that_rest_the_next_time(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C before the first batch of a renamed file's rest commits: that file's checkpoint
    must not have moved to its new name alone, or the next run would never find the rest."""
    lines = log.read_bytes().splitlines(keepends=True)
    live, renamed = log.parent / "rotating.log", log.parent / "rotating.log.1"

    def write(path: Path, chunks: list[bytes]) -> None:
        path.write_bytes(b"".join(chunks))
        os.utime(path, (REFERENCE.timestamp(), REFERENCE.timestamp()))

    def rotated() -> Iterator[None]:
        write(live, lines[:9_000])
        yield
        write(live, lines[:12_000])
        live.rename(renamed)
        write(live, lines[12_000:])

    steps = rotated()
    next(steps)
    ingest_files(db, [live], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    next(steps, None)
    read = ingest_module._LineReader.read
    stopped: list[str] = []

    def stopping_in_the_rest(self: Any, raw: bytes, scanned: object) -> None:
        if self.source.endswith(".1") and not stopped:
            stopped.append(self.source)
            raise KeyboardInterrupt
        read(self, raw, scanned)

    monkeypatch.setattr(ingest_module._LineReader, "read", stopping_in_the_rest)
    with pytest.raises(KeyboardInterrupt):
        ingest_files(db, [live], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    db.rollback()
    ingest_files(db, [live], batch_lines=BATCH, daemons_reading=no_mail_daemons)  # the next run
    assert stopped

    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 1 << 60)  # one process, no stop
    steps = rotated()
    next(steps)
    with Session(make_engine(second_database)) as plain:
        ingest_files(plain, [live], batch_lines=BATCH, daemons_reading=no_mail_daemons)
        next(steps, None)
        ingest_files(plain, [live], batch_lines=BATCH, daemons_reading=no_mail_daemons)
        expected = _rows(plain)
    assert _rows(db) == expected


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_ids_are_set_aside_so_a_follower_writing_between_batches_takes_others(
    db: Session,
    second_database: str,
    migrated_template: str,
    log: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = tmp_path / "other.log"
    other.write_bytes((FIXTURES / "postfix.log").read_bytes())
    os.utime(other, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    database = str(db.get_bind().url)
    commit = WriterProcess.commit
    followed: list[int] = []

    def follower_between_batches(self: WriterProcess, progress: Any) -> None:
        commit(self, progress)
        if not followed:
            self.sync()  # the first batch is committed: the follower writes before the next one
            with Session(make_engine(database)) as follower:
                # Another process's read: outside this import's context (its writer process).
                read = contextvars.Context().run(ingest_file, follower, other, reference=REFERENCE)
                followed.append(read.postfix_events)

    monkeypatch.setattr(WriterProcess, "commit", follower_between_batches)
    ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert followed[0] > 0

    # Each read's rows, whole, as each read stores them alone (ids aside).
    def content(rows: dict[str, list[tuple[Any, ...]]]) -> list[str]:
        recipients: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows["mail_recipient_result"]:
            recipients.setdefault(row[1], []).append(row[2:])  # (id, transaction_id, ...)
        return [repr((row[1:], recipients.get(row[0], []))) for row in rows["mail_transaction"]]

    third = tmp_path / "third.db"
    shutil.copy(migrated_template, third)
    alone, follower_alone = _plain(second_database, log), _plain(f"sqlite:///{third}", other)
    stored = _rows(db)
    assert sorted(content(stored)) == sorted(content(alone) + content(follower_alone))
    ids = [row[0] for row in stored["mail_transaction"]]
    assert len(set(ids)) == len(alone["mail_transaction"]) + len(follower_alone["mail_transaction"])
    # The follower's took the ids right after the import's first batch; the import's went on after.
    first_batch = len(_plain_head(f"sqlite:///{tmp_path / 'head.db'}", migrated_template, log, 1))
    theirs = {row[1:] for row in follower_alone["mail_transaction"]}
    follower_ids = [row[0] for row in stored["mail_transaction"] if row[1:] in theirs]
    assert follower_ids == list(range(first_batch + 1, first_batch + 1 + len(theirs)))
    assert max(ids) == len(ids)  # no id left unused: each batch set aside as many as it wrote


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_the_reading_side_runs_at_most_one_batch_ahead_of_a_slow_writer(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log of logins alone asks the writer nothing between commits: the commits themselves
    keep the rows waiting in the writer to one batch's."""
    logins = tmp_path / "dovecot.log"
    line = (
        "2026-11-29 10:00:{:02d} imap-login: Info: Login: user=<u{}@a.test>, method=PLAIN,"
        " rip=192.0.2.{}, lip=127.0.0.1, mpid=9601, secured, session=<abcDEF12>\n"
    )
    logins.write_text("".join(line.format(n % 60, n, n % 250) for n in range(6 * BATCH)))
    os.utime(logins, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    insert = store.BulkWriter.insert_values

    def slow(self: store.BulkWriter, *arguments: Any) -> None:
        time.sleep(0.3)  # in the writer process, which has this patch from the fork
        insert(self, *arguments)

    monkeypatch.setattr(store.BulkWriter, "insert_values", slow)
    database = str(db.get_bind().url)
    commit = WriterProcess.commit
    behind: list[int] = []

    def measuring(self: WriterProcess, progress: Any) -> None:
        commit(self, progress)
        if progress is not None:
            with Session(make_engine(database)) as other:
                committed = other.scalars(select(LogCheckpoint.version)).one()
            behind.append(progress.version - committed)  # batches handed over, not yet committed

    monkeypatch.setattr(WriterProcess, "commit", measuring)
    [result] = ingest_files(db, [logins], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert result.logins == 6 * BATCH
    assert len(behind) == 6 and max(behind) == 1


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_a_failing_statement_in_the_writer_is_raised_here_and_keeps_only_whole_batches(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert = store.BulkWriter.insert_numbered
    calls = [0]

    def failing_on_the_fifth(self: store.BulkWriter, *arguments: Any) -> None:
        calls[0] += 1  # counted in the writer process, which has this patch from the fork
        if calls[0] == 5:
            raise RuntimeError("disk full (made up)")
        insert(self, *arguments)

    monkeypatch.setattr(store.BulkWriter, "insert_numbered", failing_on_the_fifth)
    with pytest.raises(WriterFailed, match=r"RuntimeError: disk full \(made up\)"):
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    db.rollback()
    _assert_whole_batches_then_the_rest(db, second_database, log, monkeypatch)


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_a_failure_met_in_a_read_back_mid_batch_is_raised_not_kept_as_a_line(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(self: store.BulkWriter, *arguments: Any) -> None:
        raise RuntimeError("lost (made up)")  # in the writer, reading back an evicted message

    monkeypatch.setattr(store.BulkWriter, "stored_entry", lost)
    with pytest.raises(WriterFailed, match=r"RuntimeError: lost \(made up\)"):
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    db.rollback()
    assert not _rows(db)["unparsed_log_line"]
    _assert_whole_batches_then_the_rest(db, second_database, log, monkeypatch)


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_the_databases_failure_in_the_writer_is_told_in_words_without_the_statement(
    db: Session, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: store.BulkWriter, sql: str, *arguments: Any) -> None:
        raise OperationalError(sql, None, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(store.BulkWriter, "insert_values", disk_full)
    with pytest.raises(WriterFailed) as failed:
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert "The disk holding the database is full" in failed.value.message
    assert "INSERT" not in failed.value.message


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_a_writer_that_cannot_start_is_raised_here(
    db: Session, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*arguments: Any, **options: Any) -> None:
        raise RuntimeError("no database here (made up)")

    monkeypatch.setattr(
        writer_process, "make_engine", refused
    )  # in the writer only: this side has its engine
    with pytest.raises(WriterFailed, match=r"no database here \(made up\)"):
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_no_connection_to_the_database_crosses_the_fork(
    db: Session, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Path(db.get_bind().url.database or "").resolve()
    open_at_fork: list[list[str]] = []
    fork = os.fork

    def recording_fork() -> int:
        links = []
        for descriptor in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
                links.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        open_at_fork.append(
            [link for link in links if link in {f"{database}{end}" for end in ("", "-wal", "-shm")}]
        )
        return fork()

    db.execute(text("SELECT 1"))  # the session holds a connection, as a command's would
    monkeypatch.setattr(writer_process.os, "fork", recording_fork)
    ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert open_at_fork == [[]]
    assert db.execute(text("SELECT count(*) FROM mail_transaction")).scalar_one() > 0  # and on it goes


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_a_killed_writer_is_raised_here_and_keeps_only_whole_batches(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = WriterProcess.commit
    commits = [0]

    def killing_the_writer_after_two(self: WriterProcess, progress: Any) -> None:
        commit(self, progress)
        commits[0] += 1
        if commits[0] == 2:
            os.kill(self.pid, signal.SIGKILL)

    monkeypatch.setattr(WriterProcess, "commit", killing_the_writer_after_two)
    with pytest.raises(WriterFailed, match="ended unexpectedly"):
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    db.rollback()
    _assert_whole_batches_then_the_rest(db, second_database, log, monkeypatch)


@pytest.mark.usefixtures("sqlite_only")
def test_an_import_killed_between_a_hand_over_and_its_commit_keeps_only_whole_batches(
    db: Session, second_database: str, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the reading side after the third batch's rows went over, before its commit:
    the writer rolls them back, and the next import reads them again, once."""
    pid_file = tmp_path / "writer.pid"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from sqlalchemy.orm import Session
        from controlplane.db import make_engine
        from controlplane.logs import search_indexes, store
        from controlplane.logs.ingest import ingest_files
        from controlplane.logs.writer_process import WriterProcess

        store.MAX_OPEN_ENTRIES = 2
        search_indexes.BULK_IMPORT_BYTES = 0
        commit, commits = WriterProcess.commit, [0]

        def dying_before_the_third(self, progress):
            commits[0] += 1
            if commits[0] == 3:
                Path({str(pid_file)!r}).write_text(str(self.pid))
                os.kill(os.getpid(), signal.SIGKILL)
            commit(self, progress)

        WriterProcess.commit = dying_before_the_third
        with Session(make_engine(sys.argv[1])) as session:
            ingest_files(session, [Path(sys.argv[2])], batch_lines={BATCH}, daemons_reading=search_indexes.no_mail_daemons)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(db.get_bind().url), str(log)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    writer = int(pid_file.read_text())
    wait_until(lambda: _ended(writer), timeout=30)  # it saw the pipe close
    db.rollback()
    checkpoint = db.scalars(select(LogCheckpoint)).one()
    assert checkpoint.offset == sum(
        len(line) for line in log.read_bytes().splitlines(keepends=True)[: 2 * BATCH]
    )
    monkeypatch.setattr(store, "MAX_OPEN_ENTRIES", 2)
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 0)
    _assert_whole_batches_then_the_rest(db, second_database, log, monkeypatch)


@pytest.mark.usefixtures("sqlite_only", "small_memory")
def test_another_reader_committing_first_is_a_concurrent_read_and_keeps_its_lines(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = str(db.get_bind().url)
    commit = WriterProcess.commit

    def another_reader_after_the_first(self: WriterProcess, progress: Any) -> None:
        commit(self, progress)
        self.sync()
        if progress.version == 2:  # the first batch is in: another reader moves the checkpoint
            with Session(make_engine(database)) as other:
                other.execute(text("UPDATE log_checkpoint SET version = version + 1, offset = 1"))
                other.commit()

    monkeypatch.setattr(WriterProcess, "commit", another_reader_after_the_first)
    with pytest.raises(ConcurrentRead):
        ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    db.rollback()
    # The other reader's checkpoint stands, and no row of the refused batch was kept.
    assert db.scalars(select(LogCheckpoint.offset)).one() == 1
    first_batch = _plain_head(second_database, None, log, 1)
    assert first_batch and _rows(db)["mail_transaction"] == first_batch


def _ended(pid: int) -> bool:
    """Whether `pid` exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _plain_head(database: str, template: str | None, log: Path, batches: int) -> list[tuple[Any, ...]]:
    """The transactions one process stores from the first `batches` batches of `log`, in
    `database` (copied from `template` first, if given)."""
    if template is not None:
        shutil.copy(template, database.removeprefix("sqlite:///"))
    head = log.parent / "head.log"
    head.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[: batches * BATCH]))
    os.utime(head, (REFERENCE.timestamp(), REFERENCE.timestamp()))
    with Session(make_engine(database)) as session:
        ingest_file(session, head, reference=REFERENCE, batch_lines=BATCH)
        return _rows(session)["mail_transaction"]


def _assert_whole_batches_then_the_rest(
    db: Session, second_database: str, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database holds whole batches only, and reading on from its checkpoint stores the
    rest: row for row what one process stores from the whole log."""
    checkpoint = db.scalars(select(LogCheckpoint)).one()
    lines = log.read_bytes().splitlines(keepends=True)
    done = 0
    while sum(len(line) for line in lines[:done]) < checkpoint.offset:
        done += BATCH
    assert sum(len(line) for line in lines[:done]) == checkpoint.offset  # a batch's end
    assert 0 < checkpoint.offset < log.stat().st_size
    monkeypatch.undo()
    monkeypatch.setattr(store, "MAX_OPEN_ENTRIES", 2)
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 0)
    ingest_files(db, [log], batch_lines=BATCH, daemons_reading=no_mail_daemons)
    assert _rows(db) == _plain(second_database, log)


def test_a_small_read_or_another_database_writes_in_its_own_process(db: Session) -> None:
    small, bulk = search_indexes.BULK_IMPORT_BYTES - 1, search_indexes.BULK_IMPORT_BYTES
    assert not writer_process.worth_a_writer_process(db, small)
    assert writer_process.worth_a_writer_process(db, bulk) == (db.get_bind().dialect.name == "sqlite")
    with Session(make_engine("sqlite://")) as in_memory:  # no file a second process could open
        assert not writer_process.worth_a_writer_process(in_memory, bulk)
