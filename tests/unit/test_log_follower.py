"""The log follower: a real process killed with SIGKILL mid-file resumes exactly; rotation by
rename and by copy-truncate while it follows; bad lines are kept, never fatal."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.logs.dovecot import AuthVerdict, LoginEvent
from controlplane.logs.ingest import ConcurrentRead
from controlplane.models import (
    LogCheckpoint,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    UnparsedLogLine,
)
from controlplane.runners.follower import LogFollower, follower_pid
from controlplane.runtime import Installation
from controlplane.settings import Settings


def _messages(first: int, count: int) -> str:
    """`count` delivered messages, five lines each, numbered from `first`."""
    lines = []
    for number in range(first, first + count):
        queue_id, clock = f"{number:011X}", f"00:{number // 60 % 60:02d}:{number % 60:02d}"
        lines += [
            f"Nov 24 {clock} mail postfix/smtpd[9470]: {queue_id}: client=c.example[192.0.2.10]",
            f"Nov 24 {clock} mail postfix/cleanup[9476]: {queue_id}: message-id=<m{number}@c.example>",
            f"Nov 24 {clock} mail postfix/qmgr[9460]: {queue_id}: from=<s@c.example>, size=900, nrcpt=1 (queue active)",
            f"Nov 24 {clock} mail postfix/lmtp[9480]: {queue_id}: to=<u{number}@a.test>, relay=mail[private/dovecot-lmtp], "
            f"delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <u{number}@a.test> x Saved)",
            f"Nov 24 {clock} mail postfix/qmgr[9460]: {queue_id}: removed",
        ]
    return "".join(line + "\n" for line in lines)


def _assert_each_message_stored_once(session: Session, count: int) -> None:
    totals = [
        session.scalar(select(func.count()).select_from(model))
        for model in (MailTransaction, MailQueueEntry, MailRecipientResult)
    ]
    assert totals == [count, count, count]
    assert session.scalar(select(func.count(func.distinct(MailTransaction.message_id)))) == count
    delivered = session.scalar(
        select(func.count())
        .select_from(MailRecipientResult)
        .where(MailRecipientResult.outcome == "delivered")
    )
    unfinished = session.scalar(
        select(func.count()).select_from(MailTransaction).where(MailTransaction.finished_at.is_(None))
    )
    assert (delivered, unfinished) == (count, 0)


@pytest.fixture
def home(settings: Settings) -> Settings:
    settings.log_dir.mkdir()
    settings.run_dir.mkdir()
    return settings


def _start(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*settings.cli_command, "logs", "follow", "--poll-seconds", "0.05", "--batch-lines", "50"],
        env=dict(os.environ, LETTERHEAD_HOME=str(settings.home)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _offset(installation: Installation) -> int:
    with installation.sessions() as session:
        return session.scalar(select(func.max(LogCheckpoint.offset))) or 0


def _wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_follower_killed_mid_file_resumes_with_no_record_lost_or_duplicated(
    home: Settings, installation: Installation
) -> None:
    count = 3000
    log = home.log_dir / "postfix.log"
    log.write_text(_messages(0, count))
    size = log.stat().st_size
    offsets_at_kill = []
    for _ in range(2):
        process = _start(home)
        reached = _offset(installation)
        assert _wait_for(lambda reached=reached: _offset(installation) > reached + size // 8), (
            process.stderr.read() if process.poll() is not None else "the follower made no progress"
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        offsets_at_kill.append(_offset(installation))
    assert 0 < offsets_at_kill[0] < offsets_at_kill[1] < size, "both kills must land mid-file"
    with installation.sessions() as session:
        # Every committed batch is whole: as many transactions as complete messages read.
        stored = session.scalar(select(func.count()).select_from(MailTransaction))
        assert 0 < stored < count

    process = _start(home)
    try:
        assert _wait_for(lambda: _offset(installation) == size)
        assert follower_pid(home) == process.pid  # the stale PID file of the killed one is replaced
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not (home.run_dir / "log-follower.pid").exists()
    with installation.sessions() as session:
        _assert_each_message_stored_once(session, count)


def test_a_second_follower_for_the_same_installation_refuses_to_start(
    home: Settings, installation: Installation
) -> None:
    first = _start(home)
    try:
        assert _wait_for(lambda: follower_pid(home) == first.pid, timeout=20)
        second = _start(home)
        assert second.wait(timeout=20) == 1
        assert b"already running" in second.stderr.read()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rename_rotation_finishes_the_old_file_including_late_lines_then_the_new(
    home: Settings, installation: Installation, db: Session
) -> None:
    log = home.log_dir / "postfix.log"
    clock = FakeClock()
    follower = LogFollower(installation, [log], batch_lines=7, clock=clock)
    try:
        log.write_text(_messages(0, 10))
        follower.poll()
        with log.open("a") as old:
            old.write(_messages(10, 5))  # logged before the rotation, not yet read
        log.rename(home.log_dir / "postfix.log.1")
        log.write_text(_messages(15, 10))
        follower.poll()
        with (home.log_dir / "postfix.log.1").open("a") as old:
            old.write(_messages(25, 3))  # the writer had not reopened its log yet
        with log.open("a") as new:
            new.write(_messages(28, 2))
        follower.poll()
        clock.now += 60  # the grace period ends: the old file is read one last time and let go
        follower.poll()
        assert follower._retiring == []
        follower.poll()
    finally:
        follower.close()
    _assert_each_message_stored_once(db, 30)


def test_a_message_logged_across_a_rename_is_read_in_the_order_it_was_logged(
    home: Settings, installation: Installation, db: Session
) -> None:
    """Its first lines at the end of the old file, not yet read; its delivery in the new one. The
    poll that finds the new file reads the old one to its end first, or the delivery would be
    read before the message it belongs to."""
    log = home.log_dir / "postfix.log"
    follower = LogFollower(installation, [log], clock=FakeClock())
    lines = _messages(0, 3).splitlines(keepends=True)
    try:
        log.write_text("".join(lines[:5]))  # message 0
        follower.poll()
        with log.open("a") as old:
            old.write("".join(lines[5:8]))  # message 1's first lines, logged before the rotation
        log.rename(home.log_dir / "postfix.log.1")
        log.write_text("".join(lines[8:]))  # its delivery and removal, then message 2
        # Compressed away before the follower looked (it lags under load): the renamed file is
        # no longer there to be found by name, only through the descriptor the follower holds.
        subprocess.run(["gzip", str(home.log_dir / "postfix.log.1")], check=True)
        follower.poll()
        follower.poll()
    finally:
        follower.close()
    _assert_each_message_stored_once(db, 3)


def test_copy_truncate_while_following_reads_the_rest_from_the_copy_then_the_new_content(
    home: Settings, installation: Installation, db: Session
) -> None:
    log = home.log_dir / "postfix.log"
    follower = LogFollower(installation, [log], batch_lines=7)
    try:
        log.write_text(_messages(0, 10))
        follower.poll()
        with log.open("a") as live:
            live.write(_messages(10, 5))
        (home.log_dir / "postfix.log.1").write_bytes(log.read_bytes())
        with log.open("r+") as live:  # truncated in place: the follower's open file is the same inode
            live.truncate(0)
            live.write(_messages(15, 4))
        follower.poll()
        follower.poll()
    finally:
        follower.close()
    _assert_each_message_stored_once(db, 19)


def test_bad_lines_are_kept_and_counted_and_the_follower_reads_on(
    home: Settings, installation: Installation, db: Session
) -> None:
    log = home.log_dir / "postfix.log"
    log.write_bytes(
        _messages(0, 2).encode()
        + b"\xff\xfe not utf-8 at all\n"
        + b"Nov 24 00:00:01 mail postfix/qmgr[1]: NOQUEUE: reject: to=<half\n"
        + _messages(2, 2).encode()
    )
    follower = LogFollower(installation, [log])
    try:
        result = follower.poll()
    finally:
        follower.close()
    assert result.unparsed == 2
    assert db.scalar(select(func.count()).select_from(UnparsedLogLine)) == 2
    _assert_each_message_stored_once(db, 4)


def test_a_follower_whose_installation_was_removed_exits(home: Settings) -> None:
    process = _start(home)
    try:
        assert _wait_for(lambda: follower_pid(home) == process.pid, timeout=20)

        # A poll in flight may write a file (a database journal) while the tree is removed: retry.
        def removed() -> bool:
            shutil.rmtree(home.home, ignore_errors=True)
            return not home.home.exists()

        assert _wait_for(removed, timeout=20)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_polling_an_unchanged_log_writes_nothing(
    home: Settings, installation: Installation, db: Session
) -> None:
    log = home.log_dir / "postfix.log"
    log.write_text(_messages(0, 3))
    follower = LogFollower(installation, [log])
    try:
        follower.poll()
        version = db.scalar(select(LogCheckpoint.version))
        follower.poll()
        follower.poll()
        db.expire_all()
        assert db.scalar(select(LogCheckpoint.version)) == version
        with log.open("a") as live:
            live.write(_messages(3, 1))
        follower.poll()
        db.expire_all()
        assert db.scalar(select(LogCheckpoint.version)) == version + 1
    finally:
        follower.close()


@pytest.mark.parametrize("failure", [ConcurrentRead("read by another"), RuntimeError("disk gone")])
def test_a_batch_not_kept_leaves_no_verdict_behind_to_be_counted_twice(
    home: Settings, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """The lines of a batch that was rolled back are read again; the verdicts they taught the
    follower must go with them, or one could explain a failure it is not about."""
    (home.log_dir / "dovecot.log").write_text("")
    installation = Installation(home)
    follower = LogFollower(installation, [home.log_dir / "dovecot.log"])
    verdict = AuthVerdict(
        dt.datetime(2026, 11, 24, tzinfo=dt.UTC), "ann@a.test", "198.51.100.9", "", "wrong password"
    )

    def failing_ingest(session, log, *, verdicts, **_options):
        verdicts.add(verdict)
        raise failure

    monkeypatch.setattr("controlplane.runners.follower.ingest_log", failing_ingest)
    try:
        with pytest.raises(type(failure)) if isinstance(failure, RuntimeError) else contextlib.nullcontext():
            follower.poll()
        login = LoginEvent(
            verdict.time, "smtp", "ann@a.test", "198.51.100.9", False, "wrong password or unknown user"
        )
        assert follower._verdicts.reason_for(login) is None
    finally:
        follower.close()
        installation.dispose()
