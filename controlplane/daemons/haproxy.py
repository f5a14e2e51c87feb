"""HAProxy as the mail ports' TLS front: every brand's certificate loaded once, changed at run time.

nginx 1.22 loads a certificate named by a variable at every handshake, about 1 ms of CPU under
load with OpenSSL 3.0, a sixth of an IMAPS login's (docs/benchmarks.md, Logins). HAProxy keeps
each certificate loaded and takes a new, renewed or removed one through its admin socket, with
no reload: 2.3 ms a brand at 5,000 brands, where a restart (or `haproxy -c`) loads them all
again (3.6 s). So a brand change goes through the socket, and the `crt-list` file, which the
socket's changes never reach, is rewritten after them from what HAProxy then serves: the record
a start or a reload loads.

The crt-list lives at one fixed path outside the configuration generations (HAProxy knows it by
the path it started with); the rendered haproxy.cfg names it and the default certificate only,
so it changes, and HAProxy is checked and reloaded, only when a port or the default certificate
does. HAProxy runs master-worker: the master (root) reads the configuration and certificates
again at a reload (SIGUSR2), its workers run as `haproxy` in an empty chroot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool, terminate, wait_until
from controlplane.render import Paths
from controlplane.settings import Settings

HAPROXY = "/usr/sbin/haproxy"

# Served files are named by the stack (render.served_pem_path): nothing in them that the admin
# socket's commands (spaces, `;`, `\`) or a crt-list line (`:line`, `[options]`, `!filters`) read.
_SERVED_FILE = re.compile(r"/[A-Za-z0-9_./-]+\.pem")
_SNI_NAME = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*")
# HAProxy reads a command and its payload into one buffer (`tune.bufsize`, 16 kB by default) and
# closes the connection without a word when they do not fit.
MAX_REQUEST = 16_000


@dataclass(frozen=True)
class CrtListEntry:
    """One served file (private key and chain) and the SNI names it answers."""

    pem: str
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not _SERVED_FILE.fullmatch(self.pem):
            raise ValueError(f"Not a served certificate file HAProxy can be told of: {self.pem!r}")
        for name in self.names:
            if not _SNI_NAME.fullmatch(name):
                raise ValueError(f"Not a host name for a crt-list: {name!r}")

    def line(self) -> str:
        return " ".join((self.pem, *self.names))


def crt_list_text(entries: Sequence[CrtListEntry]) -> str:
    return "".join(f"{entry.line()}\n" for entry in entries)


def shown_reply(reply: str) -> str:
    """HAProxy's reply for an error message: never PEM text, which may hold a private key."""
    if "-----BEGIN" in reply:
        return "(HAProxy's reply quoted the certificate; not shown)"
    return " ".join(reply.split())[:300] or "(no reply)"


class AdminSocket:
    """HAProxy's admin socket (`stats socket ... level admin`, no `severity-output`): one command
    a connection, the reply read until HAProxy closes it."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path, self.timeout = path, timeout

    def command(self, command: str, payload: str | None = None) -> str:
        if payload is None:
            request = f"{command}\n"
        else:
            # The payload ends at the first empty line: PEM has none inside its blocks, so the
            # blank lines between blocks go.
            lines = [line for line in payload.splitlines() if line.strip()]
            request = f"{command} <<\n" + "".join(f"{line}\n" for line in lines) + "\n"
        if len(request) > MAX_REQUEST:
            raise DaemonError(f"`{command}` is too large for HAProxy's buffer ({len(request)} bytes).")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout)
                connection.connect(str(self.path))
                connection.sendall(request.encode())
                reply = b""
                while chunk := connection.recv(65536):
                    reply += chunk
        except OSError as error:
            raise DaemonError(f"HAProxy's admin socket {self.path} did not answer: {error}") from error
        return reply.decode(errors="replace")

    def expect(self, command: str, *success: str, payload: str | None = None) -> str:
        """Run `command`; its reply must hold one of the `success` lines, whole: some refusals
        hold a success word ("... in use, can't be deleted!")."""
        reply = self.command(command, payload)
        if not set(success) & {line.strip() for line in reply.splitlines()}:
            raise DaemonError(f"HAProxy refused `{command}`: {shown_reply(reply)}")
        return reply


def loaded_entries(admin: AdminSocket, crt_list: Path) -> dict[str, tuple[str, ...]]:
    """The entries HAProxy serves from `crt_list` now: file to SNI names."""
    reply = admin.command(f"show ssl crt-list -n {crt_list}")
    if not reply.startswith("# "):
        raise DaemonError(f"HAProxy did not list {crt_list}: {shown_reply(reply)}")
    entries: dict[str, tuple[str, ...]] = {}
    for line in reply.splitlines()[1:]:
        if not line.strip():
            continue
        located, _, rest = line.partition(" ")
        # `path:line`, then bind options in one bracketed span (none of ours), then the names.
        if rest.startswith("["):
            rest = rest.partition("]")[2]
        entries[located.rpartition(":")[0]] = tuple(rest.split())
    return entries


def _abort_open_transaction(admin: AdminSocket) -> set[str]:
    """HAProxy holds one certificate transaction at a time: one left open (a caller killed between
    `set` and `commit`) would refuse every later `set`, or on 2.6.12 take another file's key
    and chain into itself. Returns the files HAProxy holds loaded (the default ones included)."""
    reply = admin.command("show ssl cert")
    lines = reply.splitlines()
    if "# transaction" in lines:
        following = lines[lines.index("# transaction") + 1 :]
        if following and following[0].startswith("*"):
            admin.command(f"abort ssl cert {following[0][1:].strip()}")
    if "# filename" not in lines:
        return set()
    return {line.strip() for line in lines[lines.index("# filename") + 1 :] if line.strip()}


# What HAProxy loaded, by each file's identity when it was read: a renewal rewrites a served file
# in place (os.replace: a new inode), and HAProxy must be handed it again. Kept beside the
# crt-list; a start or reload, which loads every file, records them all first.
def _loaded_record(crt_list: Path) -> Path:
    return crt_list.with_name(f".{crt_list.name}.loaded")


def _signature(pem: str) -> list[int] | None:
    try:
        status = os.stat(pem)
    except OSError:
        return None
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _read_record(crt_list: Path) -> dict[str, list[int]]:
    try:
        record = json.loads(_loaded_record(crt_list).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(crt_list: Path, record: dict[str, list[int] | None]) -> None:
    path = _loaded_record(crt_list)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        partial.write_text(
            json.dumps({pem: signature for pem, signature in sorted(record.items()) if signature})
        )
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DaemonError(
            f"The record of HAProxy's certificates {path} could not be written: {error}"
        ) from error


def _changed_since_loaded(pem: str, record: dict[str, list[int]]) -> bool:
    signature = _signature(pem)
    return signature is None or record.get(pem) != signature


def record_as_loaded(crt_list: Path, pems: Collection[str]) -> None:
    """Before HAProxy starts or reloads, which loads every file it names: these are current. (A
    file renewed while it starts differs from this record, and is handed to it again.)"""
    with _one_update_at_a_time(crt_list):
        _write_record(crt_list, {pem: _signature(pem) for pem in pems})


def _load(admin: AdminSocket, pem: str, *, new: bool) -> list[int] | None:
    """Load `pem`'s current content into HAProxy's store (new, or in place of the loaded one).
    Returns the file's identity as read."""
    signature = _signature(pem)
    try:
        content = Path(pem).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DaemonError(f"{pem} cannot be served: {error}") from error
    if new:
        # One already in the store: left there by a change that failed after loading it.
        admin.expect(
            f"new ssl cert {pem}",
            f"New empty certificate store '{pem}'!",
            f"Certificate '{pem}' already exists!",
        )
    try:
        admin.expect(
            f"set ssl cert {pem}",
            f"Transaction created for certificate {pem}!",
            f"Transaction updated for certificate {pem}!",
            payload=content,
        )
        admin.expect(f"commit ssl cert {pem}", "Success!")
    except DaemonError:
        with contextlib.suppress(DaemonError):
            admin.command(f"abort ssl cert {pem}")
            if new:
                admin.command(f"del ssl cert {pem}")
        raise
    return signature


@contextlib.contextmanager
def _one_update_at_a_time(crt_list: Path) -> Iterator[None]:
    with open(crt_list.with_name(f".{crt_list.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_crt_list(crt_list: Path, entries: Sequence[CrtListEntry]) -> None:
    text = crt_list_text(entries)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        # Every configuration change passes through here, most with no brand changed.
        if crt_list.read_text() == text:
            return
    partial = crt_list.with_name(f".{crt_list.name}.{os.getpid()}")
    try:
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(crt_list)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DaemonError(f"The crt-list {crt_list} could not be written: {error}") from error


def update_certificates(
    admin: AdminSocket | None,
    crt_list: Path,
    wanted: Sequence[CrtListEntry],
    default_pems: Collection[str | os.PathLike[str]] = (),
) -> None:
    """Serve `wanted` from `crt_list`: added and renewed files loaded, removed ones dropped, all
    at run time when HAProxy runs (`admin`); then the file rewritten from what HAProxy serves.

    A file rewritten in place since HAProxy loaded it (a renewal keeps its path) is loaded again,
    found by its identity on disk against the record of what was loaded, whoever rewrote it and
    whether or not an earlier update got through. `default_pems` are the `bind` lines'
    certificates, outside the list: renewed the same way when HAProxy holds them. New
    certificates go in before old ones go out; a name whose entry changed is dropped and added
    again (about 2 ms without its certificate, the default one answering). An entry that fails
    does not stop the others: every failure is raised together at the end, with HAProxy's
    reasons, and the file then says what HAProxy serves, failures and all."""
    pems = [entry.pem for entry in wanted]
    if len(set(pems)) != len(pems):
        raise ValueError("Each served file may appear once in a crt-list.")
    defaults = {os.fspath(path) for path in default_pems}
    if unfit := sorted(path for path in defaults if not _SERVED_FILE.fullmatch(path)):
        raise ValueError(f"Not a served certificate file HAProxy can be told of: {unfit[0]!r}")
    if admin is None:
        _write_crt_list(crt_list, wanted)
        return
    failures: list[str] = []
    with _one_update_at_a_time(crt_list):
        record: dict[str, list[int] | None] = dict(_read_record(crt_list))
        stores = _abort_open_transaction(admin)
        loaded = loaded_entries(admin, crt_list)
        for entry in wanted:
            try:
                old_names = loaded.get(entry.pem)
                if old_names is None:
                    record[entry.pem] = _load(admin, entry.pem, new=True)
                elif _changed_since_loaded(entry.pem, record):
                    record[entry.pem] = _load(admin, entry.pem, new=False)
                if old_names is not None and old_names != entry.names:
                    admin.expect(
                        f"del ssl crt-list {crt_list} {entry.pem}",
                        f"Entry '{entry.pem}' deleted in crtlist '{crt_list}'!",
                    )
                if old_names != entry.names:
                    admin.expect(f"add ssl crt-list {crt_list}", "Success!", payload=entry.line())
            except DaemonError as error:
                failures.append(str(error))
        listed = set(pems)
        # A default certificate HAProxy does not hold yet comes with the reload that names it.
        for pem in sorted((defaults & stores) - listed):
            if _changed_since_loaded(pem, record):
                try:
                    record[pem] = _load(admin, pem, new=False)
                except DaemonError as error:
                    failures.append(str(error))
        for pem in sorted(set(loaded) - listed):
            try:
                admin.expect(
                    f"del ssl crt-list {crt_list} {pem}", f"Entry '{pem}' deleted in crtlist '{crt_list}'!"
                )
                if pem not in defaults:
                    admin.expect(f"del ssl cert {pem}", f"Certificate '{pem}' deleted!")
            except DaemonError as error:
                failures.append(str(error))
        serving = loaded_entries(admin, crt_list)
        _write_crt_list(crt_list, [CrtListEntry(pem, names) for pem, names in serving.items()])
        _write_record(
            crt_list, {pem: sig for pem, sig in record.items() if pem in serving or pem in defaults}
        )
    if failures:
        raise DaemonError("\n".join(failures))


def config_file(settings: Settings) -> Path:
    """Through the live link: a reload reads the generation it names then."""
    return settings.live_config / "haproxy" / "haproxy.cfg"


def crt_list_path(settings: Settings) -> Path:
    return Path(Paths.from_settings(settings).haproxy_crt_list)


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "haproxy.pid"


LOG_FILE = "haproxy.log"


def prepare(settings: Settings) -> None:
    """The workers' empty chroot, and a crt-list to start from (empty: the default certificate
    alone), which HAProxy refuses to start or check without."""
    chroot = settings.run_dir / "haproxy"
    chroot.mkdir(parents=True, exist_ok=True)
    os.chmod(chroot, 0o755)
    crt_list = crt_list_path(settings)
    crt_list.parent.mkdir(parents=True, exist_ok=True)
    if not crt_list.exists():
        _write_crt_list(crt_list, ())


def prepare_start(settings: Settings) -> None:
    """Just before HAProxy starts (or reloads), which loads every served file afresh."""
    prepare(settings)
    served = Path(Paths.from_settings(settings).served_tls)
    record_as_loaded(crt_list_path(settings), [str(path) for path in served.glob("*.pem")])


def check_config(config: Path) -> None:
    """`haproxy -c` loads every certificate the crt-list names (3.7 s at 5,000 brands): the
    caller runs it only when haproxy.cfg changed."""
    result = run_tool([HAPROXY, "-c", "-f", str(config)])
    if result.returncode != 0:
        # Without its notices (its version and path), which every run prints.
        alerts = [line for line in output_of(result).splitlines() if not line.startswith("[NOTICE]")]
        raise DaemonError("HAProxy refused the configuration:\n" + ("\n".join(alerts) or "haproxy -c failed"))


def foreground_command(config: Path) -> list[str]:
    """Master-worker in the foreground: its alerts (a start or reload that failed) on stderr,
    which goes to its log file, under `up` as under systemd."""
    return [HAPROXY, "-W", "-f", str(config)]


def master_pid(settings: Settings) -> int | None:
    """The master's PID, if that process is HAProxy: the file outlives a reboot, and its number
    may be another process's by then (which a reload's SIGUSR2 would kill)."""
    pid = read_pid(pid_file(settings))
    if pid is None:
        return None
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return pid if executable == HAPROXY else None


def _workers(master: int) -> set[int]:
    try:
        return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}
    except OSError:
        return set()


def worker_pids(settings: Settings) -> set[int]:
    """The workers that serve clients: a reload starts a new one (the master keeps its PID)."""
    pid = master_pid(settings)
    return _workers(pid) if pid is not None else set()


def admin_socket(settings: Settings) -> AdminSocket | None:
    """The running HAProxy's admin socket; None when it does not run."""
    if master_pid(settings) is None:
        return None
    return AdminSocket(settings.run_dir / "haproxy-admin.sock")


def answers(settings: Settings) -> bool:
    admin = admin_socket(settings)
    if admin is None:
        return False
    try:
        loaded_entries(admin, crt_list_path(settings))
    except DaemonError:
        return False
    return True


def _log_tail(settings: Settings) -> str:
    try:
        return "\n".join((settings.log_dir / LOG_FILE).read_text(errors="replace").splitlines()[-5:])
    except OSError:
        return ""


def start(settings: Settings) -> None:
    """Detached, in the foreground of its own session, its output to the log folder."""
    prepare_start(settings)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.log_dir / LOG_FILE, "ab") as log:
        try:
            process = subprocess.Popen(
                foreground_command(config_file(settings)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except FileNotFoundError as error:
            raise DaemonError(f"{HAPROXY} is not installed: run `make install-system`.") from error
    if not wait_until(lambda: process.poll() is not None or master_pid(settings) == process.pid, timeout=30):
        raise DaemonError(f"HAProxy did not start within 30 s; see {settings.log_dir / LOG_FILE}.")
    if process.poll() is not None:
        raise DaemonError(f"HAProxy did not start:\n{_log_tail(settings)}")


def reload(settings: Settings) -> None:
    """SIGUSR2 to the master: it reads the configuration and the crt-list again and starts a new
    worker, which loads every certificate (3.6 s at 5,000 brands); the old ones finish their
    sessions. A configuration it cannot load (a port taken, say) leaves the old worker serving
    and no new one, and the master says so in its log: a failed reload, for the caller to roll
    back."""
    pid = master_pid(settings)
    if pid is None:
        raise DaemonError("HAProxy did not reload: it does not run.")
    log = settings.log_dir / LOG_FILE
    try:
        offset = log.stat().st_size
    except OSError:
        offset = 0
    before = _workers(pid)
    prepare_start(settings)
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        raise DaemonError(f"HAProxy did not reload: its master (pid {pid}) is gone.") from None

    def logged_since() -> str:
        try:
            with open(log, "rb") as file:
                file.seek(offset)
                return file.read().decode(errors="replace")
        except OSError:
            return ""

    def outcome() -> str | None:
        said = logged_since()
        if "Loading failure!" in said:
            return "failure"
        if "Loading success." in said or _workers(pid) - before:
            return "success"
        return None

    wait_until(lambda: outcome() is not None, timeout=60)
    if outcome() != "success":
        alerts = [line for line in logged_since().splitlines() if "[ALERT]" in line]
        reason = "\n".join(alerts) or f"no new worker within 60 s; see {log}"
        raise DaemonError(f"HAProxy did not reload (its running workers keep serving):\n{reason}")
    if not wait_until(lambda: answers(settings), timeout=15):
        raise DaemonError("HAProxy reloaded but its admin socket does not answer.")


def stop(settings: Settings) -> None:
    """SIGTERM: the master stops its workers, ending their sessions (mail clients reconnect)."""
    pid = master_pid(settings)
    if pid is not None:
        terminate(pid)
    pid_file(settings).unlink(missing_ok=True)
