"""A mail node's sync: it keeps this node's daemons up with changes made on any node.

Postfix and Dovecot read mailboxes, aliases, passwords and quotas from the shared database on
every lookup, so those need nothing. What they hold outside SQL (the certificates they serve by
name, rspamd's DKIM selectors, spam policies and allow lists in this node's Redis, Postfix's cache
of hosted domains) follows the state generation (services/nodes.py): the process polls it every
second and, when it moved, re-renders, checks and reloads what changed and republishes the rest.
It also does so every few minutes regardless, so a number missed (its writer died between the
change and the announcement) is caught up, and records the node as seen. Between those looks it
runs, every tenth of a second, the work other nodes asked of this one on the mailbox homes it
holds (services/mail_homes.py).

`letterhead up` starts it on a node (`letterhead node sync --daemon`); `letterhead down` stops it.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

from sqlalchemy.exc import SQLAlchemyError

from controlplane.daemons import apply, postfix_reloads
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError
from controlplane.errors import LetterheadError
from controlplane.runtime import Installation
from controlplane.services import certificates, mail_homes, nodes
from controlplane.settings import Settings

POLL_SECONDS = 1.0
# Work another node asked of this one (services/mail_homes.py) waits at most this long: an
# admin is waiting for the answer.
TASK_POLL_SECONDS = 0.1
FULL_SYNC_SECONDS = 300.0
NODE_SYNC = BackgroundProcess("The node sync", "node-sync.pid", "node-sync.log", ("node", "sync", "--daemon"))


def catch_up(installation: Installation) -> None:
    """Bring this node's daemons to the committed state (idempotent: unchanged files reload nothing)."""
    settings = installation.settings
    with installation.sessions() as session:
        renewed = certificates.write_shared_certificates(session, settings)
    installation.apply_configuration()
    if renewed:
        # A renewed certificate at the same path: Dovecot and nginx read certificates at reload
        # (HAProxy took it through its admin socket as the configuration was applied).
        apply.reload_running_daemons(settings, ("dovecot", "nginx"))
    installation.publish_dkim_selectors()
    installation.publish_spam_policy()
    installation.publish_allowed_senders()
    postfix_reloads.request_reload(installation.settings)


class _Complaints:
    """One traceback per kind of failure a minute: a database that is away for a while must not
    fill the log ten times a second."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def report(self) -> None:
        kind = traceback.format_exc().strip().splitlines()[-1]
        if time.monotonic() - self._last.get(kind, -60.0) >= 60.0:
            self._last[kind] = time.monotonic()
            print(traceback.format_exc(), file=sys.stderr, flush=True)


def _serve_tasks(installation: Installation, stop: threading.Event, complaints: _Complaints) -> None:
    """The work other nodes ask of this one, in a thread of its own: an admin waiting for an
    answer must not wait for a configuration to be checked and reloaded."""
    settings = installation.settings
    next_cleanup = 0.0
    while not stop.is_set():
        try:
            ran = True
            while ran and not stop.is_set():
                with installation.transaction() as session:
                    ran = mail_homes.run_next_task(session, settings)
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + 60.0
                with installation.transaction() as session:
                    mail_homes.drop_uncollected(session, settings)
        except (SQLAlchemyError, OSError, LetterheadError, DaemonError):
            complaints.report()
        stop.wait(TASK_POLL_SECONDS)


def run_node_sync(
    settings: Settings,
    *,
    daemon: bool = False,
    poll_seconds: float = POLL_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    if not settings.node_name:
        raise DaemonError("This installation is not a mail node: set node_name in letterhead.toml.")
    installation = Installation(settings)
    complaints = _Complaints()
    with NODE_SYNC.running(settings, daemon=daemon, stop=stop) as stop:
        tasks = threading.Thread(target=_serve_tasks, args=(installation, stop, complaints), daemon=True)
        tasks.start()
        seen, last_full = -1, 0.0
        try:
            while not stop.is_set():
                if not settings.home.is_dir():
                    return  # the installation was removed (a test's scratch stack)
                try:
                    with installation.sessions() as session:
                        generation = nodes.current_generation(session)
                    due = time.monotonic() - last_full >= FULL_SYNC_SECONDS
                    if generation != seen or due:
                        catch_up(installation)
                        with installation.transaction() as session:
                            nodes.node_caught_up(session, settings.node_name, generation)
                        seen, last_full = generation, time.monotonic()
                except (SQLAlchemyError, OSError, LetterheadError, DaemonError):
                    # The database or a daemon briefly away: try again at the next poll.
                    complaints.report()
                stop.wait(poll_seconds)
        finally:
            stop.set()
            tasks.join(timeout=10)
            installation.dispose()


def start_node_sync(settings: Settings) -> None:
    NODE_SYNC.start(settings)


def stop_node_sync(settings: Settings) -> None:
    NODE_SYNC.stop(settings)
