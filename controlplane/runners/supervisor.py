"""Under `letterhead up`, the watcher that starts again a part that died.

A production install runs every part as a systemd service with `Restart=always`
(runners/install.py). Where systemd does not supervise (a development stack, these test
machines, where it is not PID 1), this process does the same: every second it looks at each part
it has seen running and starts again, in the order `up` uses and the way `up` does
(runners/stack.STARTERS), any whose process is gone, waiting RESTART_SECONDS between two tries
for the same part (systemd's RestartSec). Parts that never ran (the web app under `up --no-web`)
are left alone. `letterhead down` stops it first, so nothing stopped on purpose comes back.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from subprocess import SubprocessError

from sqlalchemy.exc import SQLAlchemyError

from controlplane.daemons.process import DaemonError
from controlplane.errors import LetterheadError
from controlplane.runners import parts, stack
from controlplane.runtime import Installation
from controlplane.settings import Settings

CHECK_SECONDS = 1.0
RESTART_SECONDS = 2.0


def _say(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {message}", file=sys.stderr, flush=True)


def run_supervisor(
    settings: Settings,
    *,
    daemon: bool = False,
    check_seconds: float = CHECK_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    installation = Installation(settings)
    with stack.SUPERVISOR.running(settings, daemon=daemon, stop=stop) as stop:
        watched: set[str] = set()
        last_try: dict[str, float] = {}
        try:
            while not stop.is_set():
                if not settings.home.is_dir():
                    return  # the installation was removed (a test's scratch stack)
                for part in parts.wanted_parts(settings):
                    if stop.is_set():
                        break
                    if part.alive(settings):
                        watched.add(part.name)
                        continue
                    if (
                        part.name not in watched
                        or time.monotonic() - last_try.get(part.name, -1e9) < RESTART_SECONDS
                    ):
                        continue
                    last_try[part.name] = time.monotonic()
                    _say(f"{part.name} is not running: starting it again.")
                    try:
                        stack.STARTERS[part.name](installation)
                        _say(f"{part.name} started again.")
                    except (LetterheadError, DaemonError, OSError, SQLAlchemyError, SubprocessError) as error:
                        _say(f"{part.name} did not start: {error}")
                stop.wait(check_seconds)
        finally:
            installation.dispose()
