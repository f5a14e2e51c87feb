"""Checking a password with Dovecot's auth service directly, naming the real client's address.

The webmail logs in to IMAP from the app, so Dovecot would see every webmail user as 127.0.0.1:
a few wrong guesses by one person would make Dovecot's auth penalty slow every webmail user.
Instead the webmail's login asks Dovecot's auth service over a socket of its own (root's only,
`Settings.webmail_auth_socket`), passing the browser's address as `rip`: Dovecot's penalty,
logging and policy then apply to that address, exactly as for a mail client connecting from
it. No other process can claim an address this way: the socket is not reachable by the
network nor by other local users (unlike an IMAP ID from loopback, which any local process
could send).

The protocol is Dovecot's auth client protocol (version 1.2): a handshake, then one AUTH
request with the PLAIN mechanism, answered OK or FAIL.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
from pathlib import Path

TIMEOUT_SECONDS = 30


class AuthServiceUnavailable(Exception):
    """Dovecot's auth service could not be asked, or could not decide (its backend is down)."""


def _field(value: str) -> str:
    # Values are tab-separated: a tab or line break in one would forge another field.
    if any(ch in value for ch in "\t\r\n\0"):
        raise ValueError("an auth field may not hold tabs, line breaks or NULs")
    return value


def password_accepted(socket_path: Path, *, login: str, password: str, client_ip: str, service: str) -> bool:
    """Whether Dovecot accepts this login for `service`, as if `client_ip` had asked.

    Raises AuthServiceUnavailable when Dovecot cannot be asked or cannot answer.
    """
    credentials = base64.b64encode(f"\0{login}\0{password}".encode("utf-8", "surrogatepass")).decode()
    fields = [
        f"service={_field(service)}",
        "secured",
        "no-penalty" if not client_ip else f"rip={_field(client_ip)}",
        # Dovecot's verdict line (auth_verbose) names this session, so a log reader never takes
        # it as the reason for a mail client's failed login from the same address.
        f"session=webmail-{secrets.token_hex(6)}",
    ]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(TIMEOUT_SECONDS)
            connection.connect(str(socket_path))
            stream = connection.makefile("rwb", buffering=0)
            stream.write(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
            mechanisms = set()
            while True:
                line = _read_line(stream)
                if line.startswith("MECH\t"):
                    mechanisms.add(line.split("\t")[1].upper())
                elif line == "DONE":
                    break
            if "PLAIN" not in mechanisms:
                raise AuthServiceUnavailable("Dovecot's auth service offers no PLAIN mechanism")
            request = "\t".join(["AUTH", "1", "PLAIN", *fields, f"resp={credentials}"])
            stream.write(f"{request}\n".encode())
            reply = _read_line(stream)
    except OSError as error:
        raise AuthServiceUnavailable(f"Dovecot's auth service: {error}") from error
    verdict, _, rest = reply.partition("\t")
    if verdict == "OK":
        return True
    if verdict == "FAIL":
        # `temp` means the backend could not be asked (the database): not the user's fault.
        if "\ttemp" in f"\t{rest}":
            raise AuthServiceUnavailable("Dovecot could not check the password (temporary failure)")
        return False
    raise AuthServiceUnavailable(f"Dovecot's auth service answered {verdict!r}")


def _read_line(stream) -> str:
    line = stream.readline()
    if not line.endswith(b"\n"):
        raise AuthServiceUnavailable("Dovecot's auth service closed the connection")
    return line.decode("utf-8", "replace").rstrip("\n")
