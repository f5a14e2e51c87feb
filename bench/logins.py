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

    .venv/bin/python bench/logins.py [--quick] [--dovecot-alone]

`--dovecot-alone` also measures IMAPS on a bare Dovecot beside the stack: the same Dovecot, TLS
in its own login processes with the same certificate, one SQLite table of the same users and
hashes behind the same SQL driver, and no Letterhead (no nginx, no views, no quota, no plugins):
once with Dovecot's defaults, once with the stack's process settings: what this Dovecot gives
for the same logins without Letterhead, and so how much of the stack's figure is Letterhead's.

The last lines are the headlines `imaps_ratio=` and `submissions_ratio=` (logins per second over
raw per second; the target is at least 0.8).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing
import os
import pwd
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402

from controlplane.runners.scratch import ScratchStack, free_ports  # noqa: E402
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


_DOVECOT_ALONE = """\
protocols = imap
listen = 127.0.0.1
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
auth_failure_delay = 0
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = sql
  args = {directory}/sql.conf.ext
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={directory}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
  }}
{login_settings}}}
{imap_settings}
"""
_STACKS_LOGIN_SETTINGS = "  service_count = 0\n  process_min_avail = 2\n  vsz_limit = 1G\n"
_STACKS_IMAP_SETTINGS = "service imap {\n  service_count = 100\n  process_min_avail = 2\n}\nservice auth {\n  client_limit = 2048\n}\n"


@contextlib.contextmanager
def dovecot_alone(cert: str, key: str, hashes: list[str], tuned: bool):
    """A bare Dovecot serving IMAPS for the same users and hashes; yields its port."""
    vmail = pwd.getpwnam("vmail")
    with tempfile.TemporaryDirectory(prefix="dovecot-alone-") as directory:
        os.chmod(directory, 0o755)  # the mail user reaches the homes under it
        (mail := Path(directory, "mail")).mkdir()
        os.chown(mail, vmail.pw_uid, vmail.pw_gid)
        with sqlite3.connect(Path(directory, "users.db")) as database:
            database.execute("CREATE TABLE users (userid TEXT PRIMARY KEY, password TEXT NOT NULL)")
            database.executemany(
                "INSERT INTO users VALUES (?, ?)",
                [(f"user{index}@{DOMAIN}", "{SHA512-CRYPT}" + hashed) for index, hashed in enumerate(hashes)],
            )
        os.chmod(Path(directory, "users.db"), 0o644)
        Path(directory, "sql.conf.ext").write_text(
            f"driver = sqlite\nconnect = {directory}/users.db\n"
            "password_query = SELECT userid AS user, password FROM users WHERE userid = '%u'\n"
        )
        (port,) = free_ports(1)
        config = Path(directory, "dovecot.conf")
        config.write_text(
            _DOVECOT_ALONE.format(
                directory=directory,
                cert=cert,
                key=key,
                uid=vmail.pw_uid,
                gid=vmail.pw_gid,
                port=port,
                login_settings=_STACKS_LOGIN_SETTINGS if tuned else "",
                imap_settings=_STACKS_IMAP_SETTINGS if tuned else "",
            )  # fmt: skip
        )
        subprocess.run(["dovecot", "-c", str(config)], check=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    imaps_login(port, f"user0@{DOMAIN}", _password(0), _client_context())
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            yield port
        finally:
            subprocess.run(["doveadm", "-c", str(config), "stop"], check=False)


def measure(pool, worker, argument_sets: list[tuple]) -> float:
    started = time.perf_counter()
    counts = pool.map(worker, argument_sets)
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 s (else 3 of 15 s)")
    parser.add_argument(
        "--dovecot-alone", action="store_true", help="also IMAPS on a bare Dovecot, its defaults and tuned"
    )
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
        alone: dict[str, int] = {}
        with contextlib.ExitStack() as bare:
            if args.dovecot_alone:
                for name, tuned in (("dovecot_alone_defaults", False), ("dovecot_alone_tuned", True)):
                    alone[name] = bare.enter_context(dovecot_alone(cert, key, hashes, tuned))
                    rates[name] = []
            run_rounds(stack, cert, key, hashes, rounds, seconds, rates, alone)
        raw = statistics.median(rates["raw"])
        print(
            f"\n{CLIENTS} clients, {MAILBOXES} users, {os.cpu_count()} cores, medians of {rounds} rounds of {seconds:.0f} s:"
        )
        print(f"raw (SHA512-CRYPT verify + TLS handshake): {raw:7.1f}/s")
        for service in (*alone, "imaps", "submissions"):
            print(f"{service:11} logins: {statistics.median(rates[service]):7.1f}/s")
        for service in (*alone, "imaps", "submissions"):
            print(f"{service}_ratio={statistics.median(rates[service]) / raw:.2f}")
        return 0
    finally:
        stack.stop()


def run_rounds(
    stack: ScratchStack,
    cert: str,
    key: str,
    hashes: list[str],
    rounds: int,
    seconds: float,
    rates: dict[str, list[float]],
    alone: dict[str, int],
) -> None:
    """Rounds of the reference, each bare Dovecot (`alone`: name to IMAPS port) and the stack."""
    targets = {name: ("imaps", port) for name, port in alone.items()}
    targets |= {service: (service, stack.ports[service]) for service in ("imaps", "submissions")}
    with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
        # Warm-up: processes started, Dovecot's login and auth processes spawned.
        for service, port in targets.values():
            if service == "imaps":
                measure(pool, _stack_worker, [(service, port, n, 1.0) for n in range(CLIENTS)])
        for round_number in range(1, rounds + 1):
            rates["raw"].append(
                measure(pool, _raw_worker, [(cert, key, hashes, n, seconds) for n in range(CLIENTS)])
            )
            for name, (service, port) in targets.items():
                rates[name].append(
                    measure(pool, _stack_worker, [(service, port, n, seconds) for n in range(CLIENTS)])
                )
            print(
                f"round {round_number}: raw {rates['raw'][-1]:7.1f}/s  "
                + "  ".join(f"{name} {rates[name][-1]:7.1f}/s" for name in targets),
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
