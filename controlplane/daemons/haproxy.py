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
import os
import re
import signal
import socket
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool, terminate
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


def _abort_open_transaction(admin: AdminSocket) -> None:
    """HAProxy holds one certificate transaction at a time: one left open (a caller killed between
    `set` and `commit`) would refuse every later `set`, or on 2.6.12 take another file's key
    and chain into itself."""
    reply = admin.command("show ssl cert")
    lines = reply.splitlines()
    if "# transaction" in lines:
        following = lines[lines.index("# transaction") + 1 :]
        if following and following[0].startswith("*"):
            admin.command(f"abort ssl cert {following[0][1:].strip()}")


def _load(admin: AdminSocket, pem: str, *, new: bool) -> None:
    """Load `pem`'s current content into HAProxy's store (new, or in place of the loaded one)."""
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
    renewed: Collection[str | os.PathLike[str]] = (),
) -> None:
    """Serve `wanted` from `crt_list`: added and renewed files loaded, removed ones dropped, all
    at run time when HAProxy runs (`admin`); then the file rewritten from what HAProxy serves.

    `renewed` names files rewritten in place since HAProxy loaded them (a renewal keeps its
    path); the default certificate, on the `bind` line and not in the list, may be among them.
    New certificates go in before old ones go out; a name whose entry changed is dropped and
    added again (about 2 ms without its certificate, the default one answering). An entry that
    fails does not stop the others: every failure is raised together at the end, with HAProxy's
    reasons, and the file then says what HAProxy serves, failures and all."""
    pems = [entry.pem for entry in wanted]
    if len(set(pems)) != len(pems):
        raise ValueError("Each served file may appear once in a crt-list.")
    renewed_files = {os.fspath(path) for path in renewed}
    if unfit := sorted(path for path in renewed_files if not _SERVED_FILE.fullmatch(path)):
        raise ValueError(f"Not a served certificate file HAProxy can be told of: {unfit[0]!r}")
    if admin is None:
        _write_crt_list(crt_list, wanted)
        return
    failures: list[str] = []
    with _one_update_at_a_time(crt_list):
        _abort_open_transaction(admin)
        loaded = loaded_entries(admin, crt_list)
        for entry in wanted:
            try:
                old_names = loaded.get(entry.pem)
                if old_names is None:
                    _load(admin, entry.pem, new=True)
                elif entry.pem in renewed_files:
                    _load(admin, entry.pem, new=False)
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
        for pem in sorted(renewed_files - listed - set(loaded)):
            try:
                _load(admin, pem, new=False)  # the default certificate, renewed
            except DaemonError as error:
                failures.append(str(error))
        for pem in sorted(set(loaded) - listed):
            try:
                admin.expect(
                    f"del ssl crt-list {crt_list} {pem}", f"Entry '{pem}' deleted in crtlist '{crt_list}'!"
                )
                admin.expect(f"del ssl cert {pem}", f"Certificate '{pem}' deleted!")
            except DaemonError as error:
                failures.append(str(error))
        serving = loaded_entries(admin, crt_list)
        _write_crt_list(crt_list, [CrtListEntry(pem, names) for pem, names in serving.items()])
    if failures:
        raise DaemonError("\n".join(failures))


def config_file(settings: Settings) -> Path:
    """Through the live link: a reload reads the generation it names then."""
    return settings.live_config / "haproxy" / "haproxy.cfg"


def crt_list_path(settings: Settings) -> Path:
    return Path(Paths.from_settings(settings).haproxy_crt_list)


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "haproxy.pid"


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


def check_config(config: Path) -> None:
    """`haproxy -c` loads every certificate the crt-list names (3.7 s at 5,000 brands): the
    caller runs it only when haproxy.cfg changed."""
    result = run_tool([HAPROXY, "-c", "-f", str(config)])
    if result.returncode != 0:
        # Without its notices (its version and path), which every run prints.
        alerts = [line for line in output_of(result).splitlines() if not line.startswith("[NOTICE]")]
        raise DaemonError("HAProxy refused the configuration:\n" + ("\n".join(alerts) or "haproxy -c failed"))


def foreground_command(config: Path) -> list[str]:
    return [HAPROXY, "-W", "-f", str(config)]


def master_pid(settings: Settings) -> int | None:
    return read_pid(pid_file(settings))


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


def start(config: Path) -> None:
    result = run_tool([HAPROXY, "-D", *foreground_command(config)[1:]], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"HAProxy did not start: {output_of(result) or 'no message'}")


def reload(settings: Settings) -> None:
    """SIGUSR2 to the master: it reads the configuration and the crt-list again, starts new
    workers and lets the old ones finish their sessions."""
    pid = master_pid(settings)
    if pid is None:
        raise DaemonError("HAProxy did not reload: it does not run.")
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        raise DaemonError(f"HAProxy did not reload: its master (pid {pid}) is gone.") from None


def stop(settings: Settings) -> None:
    """SIGTERM: the master stops its workers, ending their sessions (mail clients reconnect)."""
    pid = master_pid(settings)
    if pid is not None:
        terminate(pid)
