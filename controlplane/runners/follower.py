"""The log follower: reads the Postfix and Dovecot logs into the database as they grow.

`letterhead up` starts it as a daemon (`letterhead logs follow --daemon`, PID file in the run
directory); `letterhead down` stops it. Each poll reads what was appended since the file's
checkpoint and commits it in small batches with the checkpoint (controlplane/logs/ingest.py),
so a follower killed at any moment resumes without losing or repeating a record.

Rotation: the follower holds each log open. When the name comes to point at another file
(logrotate renamed the old one and a new one was created), the held file is still read to its
end through the open descriptor, for a grace period in which its writer may still append,
while the new file is read from its start. A file copied and truncated in place is recognised
by its checkpoint (it shrank, or starts differently) and read again from its start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError
from controlplane.errors import LetterheadError
from controlplane.logs.dovecot import AuthVerdicts
from controlplane.logs.ingest import ConcurrentRead, IngestResult, LogFile, ingest_log
from controlplane.runtime import Installation
from controlplane.services.log_retention import PurgeResult, purge_expired_logs
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings

POLL_SECONDS = 0.5
# Small batches: a line is searchable within a poll, and a write transaction never holds
# the database long (Postfix's SQLite lookups set no busy timeout).
BATCH_LINES = 200
# How long a renamed-away log is still read: its writer appends until it reopens its log.
RETIRE_SECONDS = 10.0
PID_FILE = "log-follower.pid"
PURGE_EVERY_SECONDS = 24 * 3600


def followed_logs(settings: Settings) -> list[Path]:
    """Dovecot's log_path, rspamd's output and Postfix's maillog_file, as rendered.

    Dovecot's first: its auth verdicts explain Postfix's failed SASL logins logged after them.
    rspamd's before Postfix's: it logs its verdict before Postfix logs the message's end."""
    return [
        settings.log_dir / "dovecot.log",
        settings.log_dir / "rspamd.log",
        settings.log_dir / "postfix.log",
    ]


@dataclass
class _Retiring:
    log: LogFile
    until: float


class LogFollower:
    """Reads `paths` from their checkpoints at each `poll()`; holds them open between polls."""

    def __init__(
        self,
        installation: Installation,
        paths: list[Path],
        *,
        batch_lines: int = BATCH_LINES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.installation = installation
        self.paths = paths
        self.batch_lines = batch_lines
        self.clock = clock
        self._held: dict[Path, LogFile] = {}
        self._retiring: list[_Retiring] = []
        # Across polls and files: a failed login is often read a poll after its verdict.
        self._verdicts = AuthVerdicts()

    def poll(self) -> IngestResult:
        """Read what every followed log gained since the last poll."""
        result = IngestResult()
        with self.installation.sessions() as session:
            # A file renamed away since the last poll is read to its end before the file now at
            # its name: its lines were logged first (a message's start there, its delivery in the
            # new one), and once it is compressed away the follower's descriptor is all that
            # reaches them.
            current = {path: self._follow(path) for path in self.paths}
            for retiring in list(self._retiring):
                final = self.clock() >= retiring.until
                result.add(self._read(session, retiring.log, complete=final))
                if final:
                    retiring.log.close()
                    self._retiring.remove(retiring)
            for held in current.values():
                if held is not None:
                    result.add(self._read(session, held, complete=False))
        return result

    def _follow(self, path: Path) -> LogFile | None:
        """The file now at `path`, opened once; a file renamed away from it starts retiring."""
        held = self._held.get(path)
        try:
            status = path.stat()
        except FileNotFoundError:
            status = None
        if held is not None and (
            status is None or (status.st_dev, status.st_ino) != (held.device, held.inode)
        ):
            self._retiring.append(_Retiring(held, self.clock() + RETIRE_SECONDS))
            del self._held[path]
            held = None
        if held is None and status is not None:
            try:
                held = self._held[path] = LogFile(path)
            except FileNotFoundError:
                return None
        return held

    def _read(self, session, log: LogFile, *, complete: bool) -> IngestResult:
        try:
            return ingest_log(
                session, log, batch_lines=self.batch_lines, complete=complete, verdicts=self._verdicts
            )
        except ConcurrentRead:
            # An operator's `logs ingest` read these lines first: the next poll goes on from there.
            self._forget_verdicts()
            return IngestResult()
        except BaseException:
            # The batch was rolled back and will be read again: what it taught must not count twice.
            self._forget_verdicts()
            raise

    def _forget_verdicts(self) -> None:
        """Verdicts noted from lines whose batch was not kept: the lines are read again (by this
        follower or whoever kept them), and a verdict remembered twice could explain the wrong
        failure. The few waiting for a failure in the next poll keep the general reason."""
        self._verdicts = AuthVerdicts()

    def close(self) -> None:
        for log in [*self._held.values(), *(r.log for r in self._retiring)]:
            log.close()
        self._held.clear()
        self._retiring.clear()


class _Every:
    """Due at the first call, then again once `seconds` have passed."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self._next: float | None = None

    def due(self) -> bool:
        if self._next is not None and self.clock() < self._next:
            return False
        # Set first: a run that fails is tried again when next due, not at every poll.
        self._next = self.clock() + self.seconds
        return True


class DailyPurge:
    """Deletes records older than the retention setting when the follower starts, then daily."""

    def __init__(
        self, installation: Installation, retention_days: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.installation = installation
        self.retention_days = retention_days
        self._every = _Every(PURGE_EVERY_SECONDS, clock)

    def run_if_due(self) -> PurgeResult | None:
        if not self._every.due():
            return None
        with self.installation.transaction() as session:
            return purge_expired_logs(session, OPERATOR, retention_days=self.retention_days)


class FollowerRunning(DaemonError):
    """Another follower already holds this installation's logs."""


FOLLOWER = BackgroundProcess("The log follower", PID_FILE, "log-follower.log", ("logs", "follow", "--daemon"))


def follower_pid(settings: Settings) -> int | None:
    return FOLLOWER.pid(settings)


def run_follower(
    settings: Settings,
    *,
    daemon: bool = False,
    poll_seconds: float = POLL_SECONDS,
    batch_lines: int = BATCH_LINES,
    stop: threading.Event | None = None,
) -> None:
    """Follow the logs until SIGTERM or SIGINT (or `stop` is set), then read once more and exit.

    Only one follower runs per installation: a second one raises FollowerRunning.
    """
    # Before the PID file says the follower runs: making the installation may write into the
    # state directory (its secret key), which must not bring back a directory removed after that.
    installation = Installation(settings)
    with FOLLOWER.running(settings, daemon=daemon, stop=stop, already_running=FollowerRunning) as stop:
        follower = LogFollower(installation, followed_logs(settings), batch_lines=batch_lines)
        purge = DailyPurge(installation, settings.log_retention_days)
        try:
            while not stop.is_set():
                if not settings.home.is_dir():
                    return  # the installation was removed (a test's scratch stack): nothing to follow
                if _safely(follower.poll):
                    _mark_read(settings)
                _safely(purge.run_if_due)
                stop.wait(poll_seconds)
            _safely(follower.poll)
        finally:
            follower.close()
            installation.dispose()


READ_MARK = "log-follower.read"


def _mark_read(settings: Settings) -> None:
    """The time of the last poll that read every log to its end (the file's mtime): how far
    the follower lags is measured from it (runners/health.py), without a write per poll."""
    with contextlib.suppress(OSError):
        (settings.run_dir / READ_MARK).touch()


def last_complete_read(settings: Settings) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp((settings.run_dir / READ_MARK).stat().st_mtime, dt.UTC)
    except OSError:
        return None


def _safely(action: Callable[[], object]) -> bool:
    """A database that is briefly unavailable, or a log that cannot be read, must not end the
    follower: it reports and tries again at the next poll, from the last committed checkpoint."""
    try:
        action()
        return True
    except (SQLAlchemyError, OSError, LetterheadError):
        print(
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} log follower: retrying after:",
            file=sys.stderr,
        )
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return False


def start_follower(settings: Settings) -> None:
    """Start the follower daemon unless it runs; its output goes to log/log-follower.log."""
    FOLLOWER.start(settings)


def stop_follower(settings: Settings) -> None:
    """Stop the follower; it reads what the logs gained since its last poll before it exits."""
    FOLLOWER.stop(settings)
