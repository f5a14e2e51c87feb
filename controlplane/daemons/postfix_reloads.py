"""Postfix reloads after domain changes: at once, or one at the end of a short spell.

smtpd keeps how it classified each address for its process's life (`smtpd_resolve.c`), so a
domain added or removed needs new smtpd processes: a graceful `postfix reload`. Each reload costs
the node about a second of its mail throughput (every Postfix process is replaced; see the churn
runs in docs/benchmarks.md), and a burst of changes (a script adding domains, a node catching
up) needs only the last one. So a change reloads Postfix at once when no reload ran in the last
`postfix_reload_spacing_seconds`; otherwise one reload is made due at the end of that spell and
serves every change made until then.

What the delay touches: only an address some smtpd process classified before the change (a
sender that tried a new domain before it existed). An address no process has seen yet, as almost
every address of a new domain is, is classified from the live SQL at once; Postfix's own resolver
client keeps its last answer 30 s (`resolve_clnt.c`) in any case.

The due reload is made by a small process of its own (`letterhead postfix-reload-when-due`), so
a change made from the CLI, which exits at once, gets it as surely as one made in the web app.
That process holds a lock on `postfix-reload.due` for as long as the reload is still to come;
a change that finds it held knows its domain will be served by that reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from controlplane.daemons import postfix
from controlplane.settings import Settings

STATE_LOCK = "postfix-reload.lock"
LAST_RELOAD = "postfix-reload.last"  # its modification time: when Postfix last reloaded for a change
DUE = "postfix-reload.due"
LOG_FILE = "postfix-reloads.log"

# Processes started for a due reload, reaped by the next request (a web worker lives long).
_due_processes: list[subprocess.Popen] = []


def request_reload(settings: Settings) -> None:
    """After a domain change is committed: reload a running Postfix now, or see one is due."""
    if postfix.master_pid(settings.postfix_queue) is None or not settings.live_config.exists():
        return
    _due_processes[:] = [process for process in _due_processes if process.poll() is None]
    with _state_lock(settings.run_dir):
        last = _last_reload(settings.run_dir)
        # min(): a clock set back must not put the next reload far off.
        due_at = min(
            last + settings.postfix_reload_spacing_seconds,
            time.time() + settings.postfix_reload_spacing_seconds,
        )
        if due_at <= time.time():
            _reload(settings)
        elif not _due_reload_waiting(settings.run_dir):
            _start_due_reload(settings, last, due_at)


def run_due_reload(settings: Settings, due_lock: int, last_seen: float, due_at: float) -> None:
    """The due process: wait out the spell, then reload once for every change made in it.

    `due_lock` is the descriptor holding `postfix-reload.due`'s lock, inherited from the change
    that started this process; it is let go under the state lock, right after the reload."""
    while (wait := due_at - time.time()) > 0:
        time.sleep(wait)
    with _state_lock(settings.run_dir):
        try:
            # A change made exactly at the spell's end may have reloaded already: that reload
            # came after every change this process was waiting for.
            if _last_reload(settings.run_dir) <= last_seen and postfix.master_pid(settings.postfix_queue):
                _reload(settings)
        finally:
            os.close(due_lock)


def _last_reload(run_dir: Path) -> float:
    try:
        return (run_dir / LAST_RELOAD).stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _reload(settings: Settings) -> None:
    # Marked first: a reload that fails (its error goes to the caller) is not tried again at once.
    (settings.run_dir / LAST_RELOAD).touch()
    postfix.reload(settings.live_config / "postfix")


def _due_reload_waiting(run_dir: Path) -> bool:
    descriptor = os.open(run_dir / DUE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def _start_due_reload(settings: Settings, last_seen: float, due_at: float) -> None:
    """Start the due process holding the due lock from this moment: a change made before it
    has even started already finds the reload on its way."""
    descriptor = os.open(settings.run_dir / DUE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.log_dir / LOG_FILE, "ab") as output:
            _due_processes.append(
                subprocess.Popen(
                    [
                        *settings.cli_command,
                        "postfix-reload-when-due",
                        str(descriptor),
                        repr(last_seen),
                        repr(due_at),
                    ],  # fmt: skip
                    env=dict(os.environ, LETTERHEAD_HOME=str(settings.home)),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(descriptor,),
                    start_new_session=True,
                )
            )
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _state_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / STATE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
