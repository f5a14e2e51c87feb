"""Running the queued mail migrations (services/mail_migration.py): several mailboxes at a time,
each copied by Dovecot's dsync from its old IMAP server, with progress recorded as it goes.

A copy interrupted by a crash goes back to the queue when the runner starts again; dsync then
resumes, copying only what the mailbox lacks. Only mailboxes this node holds are copied here.

Under a running stack the periodic runner starts one in the background (`letterhead migrate run
--daemon`) when copies are queued; it ends once the queue is empty. `letterhead migrate run`
does the same in the foreground; the two never run at once (one lock).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from controlplane.daemons import imap_migration
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.imap_migration import CopyFailed, OldServer, Totals
from controlplane.daemons.process import DaemonError
from controlplane.runtime import Installation, instance_secret_key
from controlplane.services import mail_homes, mail_migration
from controlplane.services.mail_migration import ClaimedCopy, PasswordSeal
from controlplane.settings import Settings

DEFAULT_PARALLEL = 4
# The reason a copy stops when the runner is stopped: the row goes back to the queue.
STOPPED = "The migration runner stopped; the copy resumes when it starts again."
PROGRESS_SECONDS = 2.0
RUNNER = BackgroundProcess(
    "The mail migration runner", "migrations.pid", "migrations.log", ("migrate", "run", "--daemon")
)


class AlreadyCopying(DaemonError):
    def __init__(self, _message: str) -> None:
        super().__init__(
            "A migration runner is already copying this node's queue; "
            "follow it with `letterhead migrate show JOB`."
        )


def run_queue(
    settings: Settings,
    *,
    daemon: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    ca_file: Path | None = None,
) -> int:
    """Copy the queue under the runner's lock (detached with `daemon`); the number of copies ended.
    Old servers' certificates are checked against `ca_file`, else the installation's
    `migration_ca_bundle`, else the system's authorities."""
    if ca_file is None:
        ca_file = (
            Path(settings.migration_ca_bundle)
            if settings.migration_ca_bundle
            else imap_migration.SYSTEM_CA_FILE
        )
    with RUNNER.running(settings, daemon=daemon, already_running=AlreadyCopying) as stop:
        installation = Installation(settings)
        try:
            return run_pending(installation, parallel=parallel, ca_file=ca_file, stop=stop)
        finally:
            installation.dispose()


def start_if_queued(installation: Installation) -> bool:
    """Start the background runner when copies for this node wait, or were left running by a
    runner that died, and none runs (the periodic runner asks every few seconds). Whether one was
    started."""
    settings = installation.settings
    if RUNNER.pid(settings):
        return False
    with installation.sessions() as session:
        node_id = _this_node(session, settings)
        if not mail_migration.has_work(session, node_id):
            return False
    RUNNER.start(settings)
    return True


def stop_runner(settings: Settings) -> None:
    """Stop the copies under way (they are queued again and resume at the next start)."""
    RUNNER.stop(settings)


def _this_node(session, settings: Settings) -> int | None:
    if not settings.node_name:
        return None
    node_id = mail_homes.find_node_id(session, settings.node_name)
    if node_id is None:
        raise DaemonError(f"This node ({settings.node_name}) is not registered yet: start the stack first.")
    return node_id


def run_pending(
    installation: Installation,
    *,
    parallel: int = DEFAULT_PARALLEL,
    ca_file: Path = imap_migration.SYSTEM_CA_FILE,
    progress_seconds: float = PROGRESS_SECONDS,
    stop: threading.Event | None = None,
) -> int:
    """Copy every queued mailbox this node holds, `parallel` at a time, until none is left. Once
    `stop` is set no copy is claimed and the copies under way are stopped and queued again.
    Returns how many copies ended."""
    settings = installation.settings
    stop = stop or threading.Event()
    seal = PasswordSeal(instance_secret_key(settings))
    # A killed runner's settings files (each holds an old password), then its claimed copies.
    imap_migration.remove_leftover_settings(settings.run_dir / "migrations")
    with installation.transaction() as session:
        node_id = _this_node(session, settings)
        mail_migration.recover_interrupted(session, node_id)
    ended = 0
    running: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="migration") as pool:
        while True:
            while len(running) < max(1, parallel) and not stop.is_set():
                with installation.transaction() as session:
                    claimed = mail_migration.claim_next(session, seal, node_id)
                if claimed is None:
                    break
                running.add(pool.submit(_copy, installation, claimed, ca_file, progress_seconds, stop))
            if not running:
                return ended
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # _copy records every failure itself: anything here is a bug
                ended += 1


def _copy(
    installation: Installation,
    claimed: ClaimedCopy,
    ca_file: Path,
    progress_seconds: float,
    stop: threading.Event,
) -> None:
    settings = installation.settings
    config_file = settings.live_config.resolve() / "dovecot" / "dovecot.conf"
    server = OldServer(claimed.old_host, claimed.old_port, claimed.old_security, claimed.old_login)
    work_dir = settings.run_dir / "migrations"
    user = claimed.address
    before: Totals | None = None
    try:
        refused = _refused_address(server.host, settings.migration_private_servers)
        if refused:
            raise CopyFailed(refused)
        old = imap_migration.old_totals(
            config_file, user, server, claimed.old_password, work_dir=work_dir, ca_file=ca_file
        )
        before = imap_migration.local_totals(config_file, user)
        with installation.transaction() as session:
            mail_migration.record_totals(session, claimed.row_id, old.messages, old.bytes)
        # What still has to come: the old mailbox less what earlier passes brought.
        still_to_copy = max(old.bytes - claimed.bytes_done, 0)
        too_big = mail_migration.too_big_for_quota(still_to_copy, before.bytes, claimed.quota_bytes)
        if too_big:
            with installation.transaction() as session:
                mail_migration.finish(session, claimed.row_id, error=too_big)
            return
        full = storage_guard(config_file, user, claimed.quota_bytes)
        with _progress(installation, claimed, config_file, before, old, progress_seconds):
            imap_migration.copy_mailbox(
                config_file, user, server, claimed.old_password, work_dir=work_dir, ca_file=ca_file,
                stop_when=lambda: STOPPED if stop.is_set() else full(),
            )  # fmt: skip
        after = imap_migration.local_totals(config_file, user)
        with installation.transaction() as session:
            mail_migration.record_progress(session, claimed.row_id, old.messages, old.bytes)
            mail_migration.finish(session, claimed.row_id, copied_this_pass=after.messages - before.messages)
    except Exception as error:  # noqa: BLE001 - whatever stops a copy is recorded on its row
        words = str(error) if isinstance(error, CopyFailed | DaemonError) else (
            f"The copy stopped on an unexpected error ({type(error).__name__}); run the migration again."
        )  # fmt: skip
        copied = _copied_since(config_file, user, before)
        with installation.transaction() as session:
            if copied is not None:
                mail_migration.record_progress(
                    session, claimed.row_id, claimed.messages_done + copied.messages,
                    claimed.bytes_done + copied.bytes,
                )  # fmt: skip
            if words == STOPPED:
                mail_migration.requeue(session, claimed.row_id)
            else:
                mail_migration.finish(
                    session, claimed.row_id, error=words, copied_this_pass=copied.messages if copied else 0
                )


def _refused_address(host: str, private_allowed: bool) -> str | None:
    """Old servers are on the internet: a name or address leading into this machine or its
    private networks is refused (a tenant must not probe them through us), unless the operator
    allows it (`migration_private_servers`)."""
    if private_allowed:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return None  # doveadm says in words that the name was not found
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return (
                f"The old server {host} is on a private or local network ({ip}): only servers on the "
                "internet can be migrated from here."
            )
    return None


def storage_guard(config_file: Path, user: str, quota_bytes: int) -> Callable[[], str | None]:
    """What stops a copy that filled the mailbox (dsync itself ignores the quota): mail delivered
    meanwhile, or an old mailbox that grew since its totals were read."""

    def full() -> str | None:
        try:
            used = imap_migration.local_totals(config_file, user).bytes
        except DaemonError:
            return None
        if used < quota_bytes:
            return None
        return mail_migration.filled_during_copy(used, quota_bytes)

    return full


def _copied_since(config_file: Path, user: str, before: Totals | None) -> Totals | None:
    if before is None:
        return None
    try:
        now = imap_migration.local_totals(config_file, user)
    except DaemonError:
        return None
    return Totals(max(now.messages - before.messages, 0), max(now.bytes - before.bytes, 0))


class _progress:
    """While the copy runs, record every few seconds how much of the old mailbox is here."""

    def __init__(
        self,
        installation: Installation,
        claimed: ClaimedCopy,
        config_file: Path,
        before: Totals,
        old: Totals,
        seconds: float,
    ) -> None:
        self._arguments = (installation, claimed, config_file, before, old)
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migration-progress", daemon=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        installation, claimed, config_file, before, old = self._arguments
        while not self._stop.wait(self._seconds):
            copied = _copied_since(config_file, claimed.address, before)
            if copied is None:
                continue
            with installation.transaction() as session:
                mail_migration.record_progress(
                    session,
                    claimed.row_id,
                    min(claimed.messages_done + copied.messages, old.messages),
                    min(claimed.bytes_done + copied.bytes, old.bytes),
                )
