"""Logins per second, IMAPS LOGIN and SMTP AUTH on submissions, over the machine's raw rate of
the same work done directly, measured in the same run.

One private stack (ScratchStack: real Dovecot and Postfix on free loopback ports). MAILBOXES
mailboxes, each with its own password (SHA512-CRYPT, 5,000 rounds, its own salt), so Dovecot's
auth cache never answers from a login made before: every login verifies a password. CLIENTS
processes log in at once, each one login after another, every one on a new TCP connection with a
full TLS handshake (no session resumption), a user not used by the previous login:

- `imaps`:        TLS, greeting, `LOGIN user password`, `LOGOUT`;
- `submissions`:  TLS, greeting, `EHLO`, `AUTH PLAIN`, `QUIT`.

The reference is the same work without the stack, on the same cores with as many processes:
one SHA512-CRYPT verification (the C library's crypt(3), as Dovecot verifies) and one TLS handshake with the
stack's own certificate and key, both ends in the process through memory buffers (client and
server run on this machine in the real case too). Rounds alternate reference and stack.

    .venv/bin/python bench/logins.py [--quick]

The last lines are the headlines `imaps_ratio=` and `submissions_ratio=` (logins per second over
raw per second; the target is at least 0.8).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402

from controlplane.runners.scratch import ScratchStack  # noqa: E402
from controlplane.services import domains, mailboxes, passwords, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402

DOMAIN = "logins.test"
MAILBOXES = 400
CLIENTS = 8
GIB = 1024**3


def _password(index: int) -> str:
    return f"login bench password {index}"


def populate(stack: ScratchStack) -> list[str]:
    hashes = passwords.hash_passwords([_password(index) for index in range(MAILBOXES)])
    with stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Logins", storage_pool_bytes=10_000 * GIB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name=DOMAIN, max_mailboxes=MAILBOXES, max_aliases=1
        )
        for index, password_hash in enumerate(hashes):
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part=f"user{index}", quota_bytes=GIB,
                password_hash=password_hash,
            )  # fmt: skip
    return [hash_.removeprefix("{SHA512-CRYPT}") for hash_ in hashes]


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the stack's self-signed certificate; the handshake is the same work
    return context


def _read_until(tls: ssl.SSLSocket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {data[-200:]!r}")
        data += chunk
    return data


def imaps_login(port: int, user: str, password: str, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        _read_until(tls, b"\r\n")
        tls.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        reply = _read_until(tls, b"a ")
        reply += _read_until(tls, b"\r\n") if not reply.endswith(b"\r\n") else b""
        if b"a OK" not in reply:
            raise RuntimeError(f"IMAP LOGIN refused: {reply[-200:]!r}")
        tls.sendall(b"b LOGOUT\r\n")
        _read_until(tls, b"b OK")


def submissions_login(port: int, user: str, password: str, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        _read_until(tls, b"\r\n")
        tls.sendall(b"EHLO client.test\r\n")
        _read_until(tls, b"250 ")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        tls.sendall(f"AUTH PLAIN {token}\r\n".encode())
        reply = _read_until(tls, b"\r\n")
        if not reply.startswith(b"235"):
            raise RuntimeError(f"AUTH refused: {reply[:200]!r}")
        tls.sendall(b"QUIT\r\n")


def _stack_worker(args: tuple[str, int, int, float]) -> int:
    service, port, first_user, seconds = args
    login = imaps_login if service == "imaps" else submissions_login
    context = _client_context()
    done, index = 0, first_user
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        login(port, f"user{index % MAILBOXES}@{DOMAIN}", _password(index % MAILBOXES), context)
        done += 1
        index += CLIENTS  # never the same user twice in a row anywhere
    return done


# The reference verifies with the C library's crypt(3) (libxcrypt), the very code Dovecot's
# SHA512-CRYPT calls: passlib's own implementation, which the first figures used, took 2.5 ms a
# verification where crypt(3) takes 1.25 ms, and so flattered every ratio.
_LIBCRYPT = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_LIBCRYPT.crypt.restype = ctypes.c_char_p
_LIBCRYPT.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)


def _libc_crypt_verify(password: str, hashed: str) -> bool:
    return _LIBCRYPT.crypt(password.encode(), hashed.encode()) == hashed.encode()


def _raw_worker(args: tuple[str, str, list[str], int, float]) -> int:
    cert, key, hashes, first_user, seconds = args
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = _client_context()
    done, index = 0, first_user
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        number = index % MAILBOXES
        if not _libc_crypt_verify(_password(number), hashes[number]):
            raise RuntimeError("the reference's verification failed")
        _handshake(client_context, server_context)
        done += 1
        index += CLIENTS
    return done


def _handshake(client_context: ssl.SSLContext, server_context: ssl.SSLContext) -> None:
    """One full TLS handshake, both ends in this process, bytes passed through memory."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    client_done = server_done = False
    while not (client_done and server_done):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        to_server.write(from_client.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        to_client.write(from_server.read())


def measure(pool, worker, argument_sets: list[tuple]) -> float:
    started = time.perf_counter()
    counts = pool.map(worker, argument_sets)
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 s (else 3 of 15 s)")
    args = parser.parse_args()
    rounds, seconds = (2, 5.0) if args.quick else (3, 15.0)
    stack = ScratchStack(min_mailbox_bytes=GIB)
    try:
        stack.start()
        hashes = populate(stack)
        cert, key = (
            str(stack.settings.certs_dir / "default.crt"),
            str(stack.settings.certs_dir / "default.key"),
        )
        rates: dict[str, list[float]] = {"raw": [], "imaps": [], "submissions": []}
        with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
            # Warm-up: processes started, Dovecot's login and auth processes spawned.
            measure(pool, _stack_worker, [("imaps", stack.ports["imaps"], n, 1.0) for n in range(CLIENTS)])
            for round_number in range(1, rounds + 1):
                rates["raw"].append(
                    measure(pool, _raw_worker, [(cert, key, hashes, n, seconds) for n in range(CLIENTS)])
                )
                for service in ("imaps", "submissions"):
                    port = stack.ports[service]
                    rates[service].append(
                        measure(pool, _stack_worker, [(service, port, n, seconds) for n in range(CLIENTS)])
                    )
                print(
                    f"round {round_number}: raw {rates['raw'][-1]:7.1f}/s  imaps {rates['imaps'][-1]:7.1f}/s  "
                    f"submissions {rates['submissions'][-1]:7.1f}/s",
                    flush=True,
                )
        raw = statistics.median(rates["raw"])
        print(
            f"\n{CLIENTS} clients, {MAILBOXES} users, {os.cpu_count()} cores, medians of {rounds} rounds of {seconds:.0f} s:"
        )
        print(f"raw (SHA512-CRYPT verify + TLS handshake): {raw:7.1f}/s")
        for service in ("imaps", "submissions"):
            print(f"{service:11} logins: {statistics.median(rates[service]):7.1f}/s")
        for service in ("imaps", "submissions"):
            print(f"{service}_ratio={statistics.median(rates[service]) / raw:.2f}")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
