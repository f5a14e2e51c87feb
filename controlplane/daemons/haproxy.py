"""HAProxy as the mail ports' TLS front: every brand's certificate loaded once, changed at run time.

nginx 1.22 loads a certificate named by a variable at every handshake, about 1 ms of CPU under
load with OpenSSL 3.0, a sixth of an IMAPS login's (docs/benchmarks.md, Logins). HAProxy keeps
each certificate loaded and takes a new, renewed or removed one through its admin socket, with
no reload: 2.3 ms a brand at 5,000 brands, where a restart (or `haproxy -c`) loads them all
again (3.6 s). So a brand change goes through the socket, and the `crt-list` file, which the
socket's changes never reach, is rewritten after them as the record a start loads.

Not wired into the stack yet (issue 16): this is the part that changes certificates at run time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.daemons.process import DaemonError


@dataclass(frozen=True)
class CrtListEntry:
    """One served file (private key and chain) and the SNI names it answers."""

    pem: str
    names: tuple[str, ...]

    def line(self) -> str:
        return " ".join((self.pem, *self.names))


def crt_list_text(entries: Sequence[CrtListEntry]) -> str:
    return "".join(f"{entry.line()}\n" for entry in entries)


def shown_reply(reply: str) -> str:
    """HAProxy's reply for an error message: never PEM text, which may hold a private key."""
    if "-----BEGIN" in reply:
        return "(HAProxy's reply quoted the certificate; not shown)"
    return " ".join(reply.split())[:300]


class AdminSocket:
    """HAProxy's admin socket (`stats socket ... level admin`): one command a connection, the
    reply read until HAProxy closes it."""

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

    def expect(self, success: str, command: str, payload: str | None = None) -> str:
        reply = self.command(command, payload)
        if success not in reply:
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
        located, *rest = line.split()
        # `path:line`, then bind options in brackets (none of ours), then the names.
        names = tuple(word for word in rest if not word.startswith("[") and not word.endswith("]"))
        entries[located.rpartition(":")[0]] = names
    return entries


def _load(admin: AdminSocket, pem: str, *, new: bool) -> None:
    """Load `pem`'s current content into HAProxy's store (new, or in place of the loaded one)."""
    try:
        content = Path(pem).read_text()
    except OSError as error:
        raise DaemonError(f"{pem} cannot be served: {error}") from error
    if new:
        reply = admin.command(f"new ssl cert {pem}")
        # One already in the store: left there by a change that failed after loading it.
        if "New empty certificate store" not in reply and "already exists" not in reply:
            raise DaemonError(f"HAProxy refused `new ssl cert {pem}`: {shown_reply(reply)}")
    try:
        admin.expect("Transaction", f"set ssl cert {pem}", content)
        admin.expect("Success!", f"commit ssl cert {pem}")
    except DaemonError:
        admin.command(f"abort ssl cert {pem}")
        if new:
            admin.command(f"del ssl cert {pem}")
        raise


def update_certificates(
    admin: AdminSocket | None,
    crt_list: Path,
    wanted: Sequence[CrtListEntry],
    renewed: Collection[str] = (),
) -> None:
    """Serve `wanted` from `crt_list`: added and renewed files loaded, removed ones dropped, all
    at run time when HAProxy runs (`admin`); then the file rewritten for its next start.

    `renewed` names files rewritten in place since HAProxy loaded them (a renewal keeps its
    path); the default certificate, on the `bind` line and not in the list, may be among them.
    New certificates go in before old ones go out, so no name is ever without its certificate
    except one whose names changed (dropped and added again, microseconds apart). A failure
    raises DaemonError with HAProxy's reason, leaves what was applied before it serving, and the
    file unwritten: the next update starts from what HAProxy reports, not from the file."""
    if admin is not None:
        loaded = loaded_entries(admin, crt_list)
        for entry in wanted:
            old_names = loaded.get(entry.pem)
            if old_names is None:
                _load(admin, entry.pem, new=True)
            elif entry.pem in renewed:
                _load(admin, entry.pem, new=False)
            if old_names is not None and old_names != entry.names:
                admin.expect("deleted", f"del ssl crt-list {crt_list} {entry.pem}")
            if old_names != entry.names:
                admin.expect("Success!", f"add ssl crt-list {crt_list}", entry.line())
        listed = {entry.pem for entry in wanted}
        for pem in sorted(set(renewed) - listed - set(loaded)):
            _load(admin, pem, new=False)  # the default certificate, renewed
        for pem in sorted(set(loaded) - listed):
            admin.expect("deleted", f"del ssl crt-list {crt_list} {pem}")
            admin.expect("deleted", f"del ssl cert {pem}")
    partial = crt_list.with_name(f".{crt_list.name}.{os.getpid()}")
    partial.write_text(crt_list_text(wanted))
    partial.replace(crt_list)
