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
That process holds a lock on `postfix-reload.due` for as long as it lives. Every change marks a
reload owed (`postfix-reload.owed`) and every reload clears the mark, both under one state lock,
so a change that finds the due process running knows it will reload for it. A due process that
died (a restarted service took it down) leaves the mark, and so does a reload that failed: the
periodic runner and the next change settle it.
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
OWED = "postfix-reload.owed"  # there: a change made since the last reload waits for one
DUE = "postfix-reload.due"
LOG_FILE = "postfix-reloads.log"

# Processes started for a due reload, reaped by the next request (a web worker lives long).
_due_processes: list[subprocess.Popen] = []


def request_reload(settings: Settings) -> None:
    """After a domain change is committed: reload a running Postfix now, or see one is due."""
    _due_processes[:] = [process for process in _due_processes if process.poll() is None]
    if not _postfix_running(settings):
        return
    with _state_lock(settings.run_dir):
        (settings.run_dir / OWED).touch()
        _settle(settings)


def reload_if_owed(settings: Settings) -> None:
    """A reload a change is still owed whose due process is gone: made now, or made due again."""
    if not _postfix_running(settings):
        return
    with _state_lock(settings.run_dir):
        if (settings.run_dir / OWED).exists():
            _settle(settings)


def run_due_reload(settings: Settings, due_lock: int, spacing: float) -> None:
    """The due process: wait out the spell, then reload once for every change made in it.

    `due_lock` is the descriptor holding `postfix-reload.due`'s lock, inherited from the change
    that started this process (`spacing` is that change's too); it is let go on exit. A change
    that reloaded at once meanwhile (one made right at the spell's end) starts a new spell: a
    change made after it waits for that one's end."""
    try:
        while True:
            _sleep(_seconds_until_allowed(settings.run_dir, spacing))
            with _state_lock(settings.run_dir):
                if not (settings.run_dir / OWED).exists() or not _postfix_running(settings):
                    return
                if _seconds_until_allowed(settings.run_dir, spacing) <= 0:
                    _reload(settings)
                    return
    finally:
        with contextlib.suppress(OSError):
            os.close(due_lock)


def _settle(settings: Settings) -> None:
    """Under the state lock, with a reload owed: make it now, or leave it to a due process."""
    if _seconds_until_allowed(settings.run_dir, settings.postfix_reload_spacing_seconds) <= 0:
        _reload(settings)
        return
    due_lock = _take_due_lock(settings.run_dir)
    if due_lock is None:
        return  # the running due process reloads for this change too
    try:
        _start_due_process(settings, due_lock)
    finally:
        os.close(due_lock)


def _postfix_running(settings: Settings) -> bool:
    return postfix.master_pid(settings.postfix_queue) is not None and settings.live_config.exists()


def _seconds_until_allowed(run_dir: Path, spacing: float) -> float:
    try:
        last = (run_dir / LAST_RELOAD).stat().st_mtime
    except FileNotFoundError:
        return 0.0
    # min(): a clock set back must not put the next reload far off.
    return min(spacing, last + spacing - time.time())


def _sleep(seconds: float) -> None:
    # By the monotonic clock: a wall clock set back while waiting does not lengthen the wait.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


def _reload(settings: Settings) -> None:
    # Marked first: a reload that fails (its error goes to the caller) is not tried again at once.
    (settings.run_dir / OWED).unlink(missing_ok=True)
    (settings.run_dir / LAST_RELOAD).touch()
    try:
        postfix.reload(settings.live_config / "postfix")
    except BaseException:
        # Still owed: the changes it was for still need new smtpd processes. The periodic
        # runner (each minute) or the next change tries again, a spell after this attempt.
        (settings.run_dir / OWED).touch()
        raise


def _take_due_lock(run_dir: Path) -> int | None:
    """The due lock, if no due process holds it."""
    descriptor = os.open(run_dir / DUE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _start_due_process(settings: Settings, due_lock: int) -> None:
    """The due process inherits the due lock, held from this moment: a change made before it
    has even started finds the reload on its way."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.log_dir / LOG_FILE, "ab") as output:
        _due_processes.append(
            subprocess.Popen(
                [
                    *settings.cli_command,
                    "postfix-reload-when-due",
                    str(due_lock),
                    repr(settings.postfix_reload_spacing_seconds),
                ],  # fmt: skip
                env=dict(os.environ, LETTERHEAD_HOME=str(settings.home)),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(due_lock,),
                start_new_session=True,
            )
        )


@contextlib.contextmanager
def _state_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / STATE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
