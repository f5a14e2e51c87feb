"""A ManageSieve client (RFC 5804) for the webmail's settings: the user's own Sieve scripts,
stored by Dovecot where any Sieve client of theirs finds them, and checked by its compiler on the
way in.

Only what the settings need: log in as the user (STARTTLS, then AUTHENTICATE PLAIN in UTF-8),
list the scripts, read one, store one, make one active.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
from collections.abc import Iterator

from controlplane.errors import ValidationError
from controlplane.services.webmail import MailServiceUnavailable
from controlplane.settings import Settings
from webmail.mailstore import TIMEOUT_SECONDS, LoginRefused, server_address, tls_context

_LITERAL = re.compile(rb"\{(\d{1,9})\+?\}\r\n$")
MAX_REPLY_BYTES = 1024 * 1024


class _Reply:
    def __init__(self, status: str, text: str, lines: list[bytes]) -> None:
        self.status, self.text, self.lines = status, text, lines


class SieveClient:
    """One ManageSieve session as the logged-in user; use `SieveClient.open(...)`."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.buffer = b""

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: Settings, address: str, password: str) -> Iterator[SieveClient]:
        """Raises LoginRefused, MailServiceUnavailable."""
        try:
            raw = socket.create_connection(
                (server_address(settings), settings.ports["managesieve"]), timeout=TIMEOUT_SECONDS
            )
        except OSError as error:
            raise MailServiceUnavailable(f"ManageSieve connection: {error}") from error
        client = cls(raw)
        try:
            try:
                client._expect_ok(client._reply(), "greeting")
                client._expect_ok(client._command(b"STARTTLS"), "STARTTLS")
                client.connection = tls_context(settings).wrap_socket(raw, server_hostname=None)
                client.buffer = b""
                client._expect_ok(client._reply(), "capabilities")
                credentials = f"\0{address}\0{password}".encode("utf-8", "surrogatepass")
                reply = client._command(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(credentials) + b'"')
                if reply.status == "NO":
                    raise LoginRefused()
                client._expect_ok(reply, "AUTHENTICATE")
                yield client
                with contextlib.suppress(OSError, MailServiceUnavailable):
                    client._command(b"LOGOUT")
            except (OSError, ssl.SSLError) as error:
                raise MailServiceUnavailable(f"ManageSieve: {error}") from error
        finally:
            client.connection.close()

    # --- what the settings use -------------------------------------------------------------------

    def scripts(self) -> dict[str, bool]:
        """Each script's name, and whether it is the active one."""
        reply = self._command(b"LISTSCRIPTS")
        self._expect_ok(reply, "LISTSCRIPTS")
        found = {}
        for line in reply.lines:
            match = re.match(rb'^"((?:[^"\\]|\\.)*)"( ACTIVE)?$', line)
            if match:
                found[match.group(1).decode("utf-8", "replace")] = bool(match.group(2))
        return found

    def read(self, name: str) -> str | None:
        """The script's text, or None when there is no such script."""
        reply = self._command(b"GETSCRIPT " + _quoted(name))
        if reply.status == "NO":
            return None
        self._expect_ok(reply, "GETSCRIPT")
        return b"".join(reply.lines).decode("utf-8", "replace")

    def store(self, name: str, script: str) -> None:
        """Store the script; Dovecot compiles it first. Raises ValidationError with the compiler's
        words when it refuses."""
        data = script.encode("utf-8")
        reply = self._command(b"PUTSCRIPT " + _quoted(name) + b" {%d+}\r\n" % len(data) + data)
        if reply.status == "NO":
            raise ValidationError(f"The mail server refused the rules: {reply.text}", field="script")
        self._expect_ok(reply, "PUTSCRIPT")

    def activate(self, name: str) -> None:
        self._expect_ok(self._command(b"SETACTIVE " + _quoted(name)), "SETACTIVE")

    # --- the protocol ----------------------------------------------------------------------------

    def _command(self, command: bytes) -> _Reply:
        self.connection.sendall(command + b"\r\n")
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise MailServiceUnavailable("ManageSieve: a reply line too long")
            chunk = self.connection.recv(65536)
            if not chunk:
                raise MailServiceUnavailable("ManageSieve: the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.connection.recv(65536)
            if not chunk:
                raise MailServiceUnavailable("ManageSieve: the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _reply(self) -> _Reply:
        """Lines (a literal as one) up to the OK, NO or BYE that ends the reply."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self._line()
            literal = _LITERAL.search(line)
            if literal:
                size = int(literal.group(1))
                total += size
                if total > MAX_REPLY_BYTES:
                    raise MailServiceUnavailable("ManageSieve: a reply too large")
                data = self._exactly(size)
                if line[: literal.start()].strip():
                    # A status with a literal text, such as NO {12}\r\n...: keep it as its text.
                    status = line.split(b" ", 1)[0].decode(errors="replace").upper()
                    if status in ("OK", "NO", "BYE"):
                        self._line()
                        return _Reply(status, data.decode("utf-8", "replace").strip(), lines)
                lines.append(data)
                continue
            status_match = re.match(rb"^(OK|NO|BYE)\b ?(.*)\r\n$", line, re.IGNORECASE)
            if status_match:
                text = status_match.group(2).decode("utf-8", "replace")
                text = re.sub(r"^\([^)]*\)\s*", "", text).strip().strip('"')
                return _Reply(status_match.group(1).decode().upper(), text, lines)
            lines.append(line.rstrip(b"\r\n"))

    @staticmethod
    def _expect_ok(reply: _Reply, what: str) -> None:
        if reply.status != "OK":
            raise MailServiceUnavailable(f"ManageSieve {what}: {reply.status} {reply.text}")


def _quoted(name: str) -> bytes:
    return b'"' + name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'
