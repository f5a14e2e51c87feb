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

    .venv/bin/python bench/logins.py [--quick] [--dovecot-alone] [--fronts] [--c-clients]

`--dovecot-alone` also measures IMAPS on a bare Dovecot beside the stack: the same Dovecot, TLS
in its own login processes with the same certificate, one SQLite table of the same users and
hashes behind the same SQL driver, and no Letterhead (no TLS proxy, no views, no quota, no plugins):
once with Dovecot's defaults, once with the stack's process settings: what this Dovecot gives
for the same logins without Letterhead, and so how much of the stack's figure is Letterhead's.

`--fronts` also measures that bare Dovecot (tuned) behind a TLS proxy, as the stack's IMAPS is
behind HAProxy: nginx's stream module with the certificate named by a variable, the stack's way
until HAProxy replaced it (it serves any brand's certificate without a reload, and loads it at
every handshake), nginx with a fixed certificate (loaded once), and HAProxy with its certificate
loaded once, at its start, as the stack's. Each sends the PROXY header to a plain-text login
listener.

`--c-clients` logs in with `bench/login_client.c` (built with the system's cc and OpenSSL's
headers, `libssl-dev`) instead of Python: the same steps and the same OpenSSL handshake, without
the interpreter's share of the cores (about 0.5 ms a login beyond the handshake, measured per
process). The reference is unchanged, Python calls around its crypt(3) and handshake included,
so these ratios are flattered by that much.

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
import shutil
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

# Debian's libnginx-mod-stream (the Makefile's TEST_PACKAGES), for the nginx fronts of --fronts:
# the stack's own IMAPS and POP3S front is HAProxy.
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

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


def _c_worker(args: tuple[str, str, int, int, float]) -> int:
    client, service, port, first_user, seconds = args
    result = subprocess.run(
        [client, service, str(port), str(first_user), str(CLIENTS), str(MAILBOXES), str(seconds), DOMAIN],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{service} login failed: {result.stderr[-300:]}")
    return int(result.stdout)


def build_c_client(directory: str) -> str:
    client = str(Path(directory, "login_client"))
    source = Path(__file__).with_name("login_client.c")
    subprocess.run(["cc", "-O2", "-o", client, str(source), "-lssl", "-lcrypto"], check=True)
    return client


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
{proxied_service}
"""
# Behind a TLS proxy, as the stack's IMAPS: plain text on loopback, led by the PROXY header.
_PROXIED_SERVICE = """\
haproxy_trusted_networks = 127.0.0.1
service imap-login-proxied {{
  type = login
  protocol = imap
  executable = imap-login -o disable_plaintext_auth=no -o ssl=yes
  user = $default_login_user
  chroot = login
{login_settings}  inet_listener imap-proxied {{
    address = 127.0.0.1
    port = {port}
    haproxy = yes
  }}
}}
"""
_STACKS_LOGIN_SETTINGS = "  service_count = 0\n  process_min_avail = 2\n  vsz_limit = 1G\n"
_STACKS_IMAP_SETTINGS = "service imap {\n  service_count = 100\n  process_min_avail = 2\n}\nservice auth {\n  client_limit = 2048\n}\n"


@contextlib.contextmanager
def dovecot_alone(cert: str, key: str, hashes: list[str], tuned: bool, proxied_port: int | None = None):
    """A bare Dovecot serving IMAPS for the same users and hashes (and, given `proxied_port`,
    IMAP in plain text there for a TLS proxy in front); yields its IMAPS port."""
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
                proxied_service=_PROXIED_SERVICE.format(
                    port=proxied_port, login_settings=_STACKS_LOGIN_SETTINGS if tuned else ""
                )
                if proxied_port
                else "",
            )  # fmt: skip
        )
        subprocess.run(["dovecot", "-c", str(config)], check=True)
        try:
            _wait_for_login(port)
            yield port
        finally:
            subprocess.run(["doveadm", "-c", str(config), "stop"], check=False)


_NGINX_FRONT = """\
load_module {stream_module};
worker_processes auto;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{
    worker_connections 4096;
}}
stream {{
{certificate_map}    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {certificate};
        ssl_certificate_key {certificate};
        ssl_session_cache shared:bench:10m;
        proxy_protocol on;
        proxy_pass 127.0.0.1:{backend};
    }}
}}
"""
# The stack's way: the certificate's file named by SNI, so it is loaded at each handshake.
_CERTIFICATE_MAP = """\
    map $ssl_server_name $certificate {{
        default {pem};
    }}
"""
_HAPROXY_FRONT = """\
global
    nbthread 2
    maxconn 4000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend imaps
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend dovecot
backend dovecot
    server dovecot 127.0.0.1:{backend} send-proxy-v2
"""
FRONTS = ("nginx_variable", "nginx_fixed", "haproxy")


@contextlib.contextmanager
def tls_front(kind: str, pem: str, backend: int):
    """A TLS proxy on a free port in front of `backend` (PROXY header on); yields its port."""
    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory(prefix=f"front-{kind}-") as directory:
        if kind == "haproxy":
            config = Path(directory, "haproxy.cfg")
            config.write_text(_HAPROXY_FRONT.format(port=port, pem=pem, backend=backend))
            command = ["haproxy", "-db", "-f", str(config)]
        else:
            config = Path(directory, "nginx.conf")
            config.write_text(
                _NGINX_FRONT.format(
                    stream_module=NGINX_STREAM_MODULE, directory=directory, pem=pem, port=port,
                    backend=backend, certificate="$certificate" if kind == "nginx_variable" else pem,
                    certificate_map=_CERTIFICATE_MAP.format(pem=pem) if kind == "nginx_variable" else "",
                )
            )  # fmt: skip
            command = ["nginx", "-g", "daemon off;", "-c", str(config), "-p", directory]
        # In the foreground, so the process is ours to wait for; its complaints go to the terminal.
        process = subprocess.Popen(command)
        try:
            _wait_for_login(port, process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_for_login(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            imaps_login(port, f"user0@{DOMAIN}", _password(0), _client_context())
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[0]} exited ({process.returncode}) before serving"
                ) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


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
    parser.add_argument(
        "--fronts",
        action="store_true",
        help="also the bare Dovecot behind nginx (variable and fixed certificate) and HAProxy",
    )
    parser.add_argument(
        "--c-clients", action="store_true", help="log in with bench/login_client.c instead of Python"
    )
    args = parser.parse_args()
    if args.fronts and not shutil.which("haproxy"):
        parser.error("--fronts needs HAProxy: apt-get install haproxy")
    rounds, seconds = (2, 5.0) if args.quick else (3, 15.0)
    build = tempfile.TemporaryDirectory(prefix="login-client-")
    # Before anything starts: a missing compiler or libssl-dev fails at once.
    c_client = build_c_client(build.name) if args.c_clients else None
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
                alone["dovecot_alone_defaults"] = bare.enter_context(dovecot_alone(cert, key, hashes, False))
            if args.dovecot_alone or args.fronts:
                (proxied,) = free_ports(1) if args.fronts else (None,)
                alone["dovecot_alone_tuned"] = bare.enter_context(
                    dovecot_alone(cert, key, hashes, True, proxied_port=proxied)
                )
            if args.fronts:
                pem = Path(bare.enter_context(tempfile.TemporaryDirectory(prefix="fronts-")), "tls.pem")
                pem.write_text(Path(key).read_text() + Path(cert).read_text())  # one file, as the stack's
                # nginx's workers (not root) read it at each handshake.
                pem.parent.chmod(0o755)
                pem.chmod(0o644)
                for kind in FRONTS:
                    alone[f"behind_{kind}"] = bare.enter_context(tls_front(kind, str(pem), proxied))
            rates |= {name: [] for name in alone}
            run_rounds(stack, cert, key, hashes, rounds, seconds, rates, alone, c_client)
        raw = statistics.median(rates["raw"])
        print(
            f"\n{CLIENTS} {'C' if args.c_clients else 'Python'} clients, {MAILBOXES} users, {os.cpu_count()} cores, medians of {rounds} rounds of {seconds:.0f} s:"
        )
        print(f"raw (SHA512-CRYPT verify + TLS handshake): {raw:7.1f}/s")
        for service in (*alone, "imaps", "submissions"):
            print(f"{service:11} logins: {statistics.median(rates[service]):7.1f}/s")
        for service in (*alone, "imaps", "submissions"):
            print(f"{service}_ratio={statistics.median(rates[service]) / raw:.2f}")
        return 0
    finally:
        stack.stop()
        build.cleanup()


def run_rounds(
    stack: ScratchStack,
    cert: str,
    key: str,
    hashes: list[str],
    rounds: int,
    seconds: float,
    rates: dict[str, list[float]],
    alone: dict[str, int],
    c_client: str | None = None,
) -> None:
    """Rounds of the reference, each bare Dovecot (`alone`: name to IMAPS port) and the stack,
    logged into by the Python clients or by `c_client`."""

    def logins(service: str, port: int, seconds: float) -> float:
        if c_client:
            return measure(pool, _c_worker, [(c_client, service, port, n, seconds) for n in range(CLIENTS)])
        return measure(pool, _stack_worker, [(service, port, n, seconds) for n in range(CLIENTS)])

    targets = {name: ("imaps", port) for name, port in alone.items()}
    targets |= {service: (service, stack.ports[service]) for service in ("imaps", "submissions")}
    with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
        # Warm-up: processes started, Dovecot's login and auth processes spawned.
        for service, port in targets.values():
            if service == "imaps":
                logins(service, port, 1.0)
        for round_number in range(1, rounds + 1):
            rates["raw"].append(
                measure(pool, _raw_worker, [(cert, key, hashes, n, seconds) for n in range(CLIENTS)])
            )
            # Each round starts one further along the targets: none always runs last, furthest
            # from the reference, when the machine's speed drifts.
            names = list(targets)
            shift = (round_number - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                service, port = targets[name]
                rates[name].append(logins(service, port, seconds))
            print(
                f"round {round_number}: raw {rates['raw'][-1]:7.1f}/s  "
                + "  ".join(
                    f"{name} {rates[name][-1]:7.1f}/s ({rates[name][-1] / rates['raw'][-1]:.2f})"
                    for name in targets
                ),
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
