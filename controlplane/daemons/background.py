"""Letterhead's own long-running processes (the log follower, the periodic runner).

One of each runs per installation: a lock file refuses a second, a PID file names the
running one. `letterhead up` starts them detached, with their output in a log file, and
`letterhead down` stops them with SIGTERM, which ends their loop cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

from controlplane.daemons.process import DaemonError, read_pid, terminate, wait_until
from controlplane.settings import Settings


@dataclasses.dataclass(frozen=True)
class BackgroundProcess:
    title: str  # "The log follower": how messages name it
    pid_file: str
    log_file: str
    command: tuple[str, ...]  # the `letterhead` arguments that run it detached

    def pid(self, settings: Settings) -> int | None:
        return read_pid(settings.run_dir / self.pid_file)

    def start(self, settings: Settings) -> None:
        """Start it unless it runs; its output goes to the log folder."""
        if self.pid(settings):
            return
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.log_dir / self.log_file, "ab") as output:
            started = subprocess.run(
                [*settings.cli_command, *self.command],
                env=dict(os.environ, LETTERHEAD_HOME=str(settings.home)),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=False,
            )
        if started.returncode != 0 or not wait_until(lambda: self.pid(settings) is not None, timeout=15):
            raise DaemonError(f"{self.title} did not start; see {settings.log_dir / self.log_file}.")

    def stop(self, settings: Settings) -> None:
        pid = self.pid(settings)
        if pid:
            terminate(pid, timeout=30)

    @contextlib.contextmanager
    def running(
        self,
        settings: Settings,
        *,
        daemon: bool,
        stop: threading.Event | None = None,
        already_running: Callable[[str], DaemonError] = DaemonError,
    ) -> Iterator[threading.Event]:
        """Hold the installation's lock and PID file for the body; yield the event that
        SIGTERM or SIGINT sets. A second instance raises `already_running(message)`."""
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(settings.run_dir / (self.pid_file + ".lock"), "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise already_running(f"{self.title} is already running (PID {self.pid(settings)}).") from None
        if daemon:
            _detach()
        pid_path = settings.run_dir / self.pid_file
        pid_path.write_text(f"{os.getpid()}\n")
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda *_: stop.set())
        try:
            yield stop
        finally:
            pid_path.unlink(missing_ok=True)
            lock.close()


def _detach() -> None:
    """Become a daemon: the starting command returns, the process lives on in its own session."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
