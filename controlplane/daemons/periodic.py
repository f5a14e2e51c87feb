"""The periodic runner: certificate renewal twice a day, brand DNS checks every hour.

`letterhead up` starts it as a daemon (`letterhead periodic --daemon`, PID file in the run
directory) and `letterhead down` stops it. A job that fails is reported in its log
(log/periodic.log) and tried again at its next time; it never ends the runner.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable

from controlplane.daemons.process import DaemonError, read_pid, terminate, wait_until
from controlplane.runtime import Installation
from controlplane.settings import Settings

PID_FILE = "periodic.pid"
LOG_FILE = "periodic.log"
CERTIFICATE_INTERVAL = 12 * 3600.0
DNS_INTERVAL = 3600.0
# How often the loop looks at the clock; a stop request is seen at once.
TICK_SECONDS = 30.0


def periodic_pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / PID_FILE)


def _say(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {message}", flush=True)


def renew_certificates_job(installation: Installation) -> None:
    from controlplane.services import certificates

    for outcome in certificates.renew_certificates(installation):
        if outcome.result != "current":
            _say(f"certificate {outcome.hostname}: {outcome.result}: {outcome.message}")


def check_brand_dns_job(installation: Installation) -> None:
    from controlplane.services import brands

    with installation.transaction() as session:
        count = brands.check_all_brand_dns(session, installation.settings)
    _say(f"checked the DNS records of {count} branded domains")


def default_jobs() -> list[tuple[str, float, Callable[[Installation], None]]]:
    return [
        ("certificates", CERTIFICATE_INTERVAL, renew_certificates_job),
        ("dns", DNS_INTERVAL, check_brand_dns_job),
    ]


def run_periodic(
    settings: Settings,
    *,
    daemon: bool = False,
    jobs: list[tuple[str, float, Callable[[Installation], None]]] | None = None,
    tick_seconds: float = TICK_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    """Run each job now and then every `interval` seconds until SIGTERM/SIGINT (or `stop`)."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(settings.run_dir / (PID_FILE + ".lock"), "w")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DaemonError(f"The periodic runner is already running (PID {periodic_pid(settings)}).") from None
    if daemon:
        _detach()
    pid_file = settings.run_dir / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
    installation = Installation(settings)
    schedule = [(name, interval, job, [0.0]) for name, interval, job in (jobs or default_jobs())]
    try:
        while not stop.is_set():
            for name, interval, job, next_run in schedule:
                if stop.is_set() or time.monotonic() < next_run[0]:
                    continue
                next_run[0] = time.monotonic() + interval
                try:
                    job(installation)
                except Exception:  # a failing job is retried at its next time
                    _say(f"{name}: failed, retrying in {interval:.0f} s:")
                    traceback.print_exc(file=sys.stdout)
                    sys.stdout.flush()
            stop.wait(tick_seconds)
    finally:
        installation.dispose()
        pid_file.unlink(missing_ok=True)
        lock.close()


def _detach() -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)


def start_periodic(settings: Settings) -> None:
    """Start the runner unless it runs; its output goes to log/periodic.log."""
    if periodic_pid(settings):
        return
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.log_dir / LOG_FILE, "ab") as output:
        started = subprocess.run(
            [sys.executable, "-m", "cli", "periodic", "--daemon"],
            env=dict(os.environ, LETTERHEAD_HOME=str(settings.home)),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=30,
            check=False,
        )
    if started.returncode != 0 or not wait_until(lambda: periodic_pid(settings) is not None, timeout=15):
        raise DaemonError(f"The periodic runner did not start; see {settings.log_dir / LOG_FILE}.")


def stop_periodic(settings: Settings) -> None:
    pid = periodic_pid(settings)
    if pid:
        terminate(pid, timeout=30)
