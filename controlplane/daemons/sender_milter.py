"""A milter for the submission ports: a logged-in user's From: header names only addresses they own.

Postfix already refuses an envelope sender the login does not own (`reject_sender_login_mismatch`
over the `mail_sender_logins` view); recipients see the From: header, which Postfix cannot compare
with the login. This milter reads the SASL login (the `{auth_authen}` macro Postfix sends at MAIL
FROM) and the From: header, and refuses the message at the end of the headers when an address in
From: is not one the login may send as, by the same view Postfix uses. It sees no body.

It speaks the Sendmail milter protocol (version 6) on a unix socket readable by Postfix only, one
thread per SMTP session. Postfix tempfails (4xx) when it cannot reach the milter
(`milter_default_action = tempfail`): a client retries later, nothing is sent unchecked.

It is a daemon adapter like the maps: it reads the daemons' SQL view, never the services.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import socketserver
import struct
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.postfix_socket import accepting, serve_to_postfix
from controlplane.settings import Settings

log = logging.getLogger(__name__)

PID_FILE = "sender-milter.pid"
SENDER_MILTER = BackgroundProcess(
    "The sender milter", PID_FILE, "sender-milter.log", ("sender-milter", "--daemon")
)

MILTER_VERSION = 6
# Protocol steps we ask Postfix to skip (SMFIP_*): no body chunks, no reply to what we ignore.
SKIP_BODY = 0x00000010
NO_UNKNOWN = 0x00000100
MAX_PACKET = 1024 * 1024
SENDER_LOGINS = text(
    "SELECT login FROM mail_sender_logins WHERE local_part = :local_part AND domain = :domain"
)


def may_send_as(engine: Engine, login: str, address: str) -> bool:
    """Whether `login` may use `address` as its sender, as Postfix's smtpd_sender_login_maps decides."""
    local_part, _, domain = address.lower().rpartition("@")
    if not local_part or not domain:
        return False
    with engine.connect() as connection:
        logins = connection.execute(SENDER_LOGINS, {"local_part": local_part, "domain": domain}).scalars()
        return login.lower() in {found.lower() for found in logins}


def from_header_refusal(engine: Engine, login: str, from_values: list[str]) -> str | None:
    """The SMTP reply refusing a message whose From: the login may not use; None when it may."""
    addresses = [address for _name, address in email.utils.getaddresses(from_values) if address]
    if len(from_values) != 1 or not addresses:
        return "550 5.7.1 The message needs exactly one From: header naming your address"
    for address in addresses:
        if not may_send_as(engine, login, address):
            shown = "".join(ch for ch in address if ch.isprintable())[:200]
            return f"550 5.7.1 You may not send as {shown} in the From: header: use an address of yours"
    return None


class _MilterSession(socketserver.BaseRequestHandler):
    server: _MilterServer

    def handle(self) -> None:
        login = ""
        from_values: list[str] = []
        try:
            while True:
                command, data = self._read()
                if command == b"O":
                    _version, _actions, offered = struct.unpack("!III", data[:12])
                    self._send(
                        b"O", struct.pack("!III", MILTER_VERSION, 0, offered & (SKIP_BODY | NO_UNKNOWN))
                    )
                elif command == b"D":
                    macros = data[1:].split(b"\0")
                    for name, value in zip(macros[::2], macros[1::2], strict=False):
                        if name in (b"{auth_authen}", b"auth_authen"):
                            login = value.decode("utf-8", "replace")
                elif command == b"L":
                    name, _, rest = data.partition(b"\0")
                    if name.decode("ascii", "replace").lower() == "from":
                        from_values.append(rest.rstrip(b"\0").decode("utf-8", "replace"))
                    self._send(b"c")
                elif command == b"N":
                    refusal = from_header_refusal(self.server.engine, login, from_values) if login else None
                    if refusal:
                        log.info("refused From: %r for login %s", from_values, login)
                        self._send(b"y", refusal.encode() + b"\0")
                    else:
                        self._send(b"c")
                elif command in (b"A",):
                    from_values = []  # the next message of the session starts afresh
                elif command == b"K":
                    login, from_values = "", []
                elif command == b"Q":
                    return
                elif command == b"M":
                    from_values = []
                    self._send(b"c")
                else:
                    self._send(b"c")
        except (ConnectionError, EOFError, struct.error, OSError):
            return

    def _read(self) -> tuple[bytes, bytes]:
        header = self._read_exactly(4)
        (length,) = struct.unpack("!I", header)
        if not 1 <= length <= MAX_PACKET:
            raise EOFError("bad milter packet length")
        packet = self._read_exactly(length)
        return packet[:1], packet[1:]

    def _read_exactly(self, count: int) -> bytes:
        chunks = b""
        while len(chunks) < count:
            chunk = self.request.recv(count - len(chunks))
            if not chunk:
                raise EOFError("connection closed")
            chunks += chunk
        return chunks

    def _send(self, command: bytes, data: bytes = b"") -> None:
        self.request.sendall(struct.pack("!I", len(command) + len(data)) + command + data)


class _MilterServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    # Every submission session connects at its start; socketserver's default backlog of 5 made
    # the sixth of a burst fail to connect, and Postfix answered its AUTH with 454 "try again".
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: Path, engine: Engine) -> None:
        self.engine = engine
        super().__init__(str(path), _MilterSession)


def serve(settings: Settings, stop: threading.Event) -> None:
    """Serve until `stop` is set, to Postfix alone (daemons/postfix_socket.py)."""
    path = settings.sender_milter_socket
    path.unlink(missing_ok=True)
    engine = create_engine(settings.sqlalchemy_url, pool_pre_ping=True)
    server = _MilterServer(path, engine)
    try:
        serve_to_postfix(path, server, stop)
    finally:
        engine.dispose()


def run_sender_milter(settings: Settings, *, daemon: bool = False) -> None:
    with SENDER_MILTER.running(settings, daemon=daemon) as stop:
        serve(settings, stop)


def ready(settings: Settings) -> bool:
    return accepting(settings.sender_milter_socket)
