"""A throwaway installation on free loopback ports in a temporary directory.

Tests and benchmarks use it to run the real Postfix and Dovecot beside anything
else on the machine; outbound mail goes to a loopback smtp-sink, never off the box.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from sqlalchemy import create_engine, make_url, pool

from controlplane.daemons.process import terminate, wait_until
from controlplane.runners import stack
from controlplane.runtime import Installation
from controlplane.settings import PORT_NAMES, load_settings

SMTP_SINK = "/usr/sbin/smtp-sink"
SHARED_EXPRESSION_CACHE = "/var/tmp/letterhead-scratch-rspamd-cache"


# Ports handed out on this machine are reserved by a lock on a file named after the port, held
# for the life of the process that picked it (the kernel lets it go when the process ends): two
# processes picking ports at once (test workers side by side, a benchmark beside a test) never
# hand out the same one before its listener binds it.
PORT_RESERVATIONS = Path("/var/tmp/letterhead-scratch-ports")
_handed_out: dict[int, int] = {}  # port -> the descriptor holding its lock


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _reserve(port: int) -> bool:
    """Whether this process now holds `port` (no other living process does)."""
    if not PORT_RESERVATIONS.is_dir():
        PORT_RESERVATIONS.mkdir(exist_ok=True)
        os.chmod(PORT_RESERVATIONS, 0o1777)
    descriptor = os.open(PORT_RESERVATIONS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    _handed_out[port] = descriptor
    return True


def free_ports(count: int) -> list[int]:
    """Loopback ports free for TCP and UDP now, never handed out before on this machine by a
    process still running.

    They come from below the kernel's ephemeral range: a port the kernel picks itself (bind to
    port 0) may be picked again for the next caller, or be the local end of a client
    connection, before the daemon it was meant for binds it.
    """
    low, high = _ephemeral_range()
    first, last = (10000, low - 1) if low > 11000 else (high + 1, 65535)
    candidates = list(range(first, last + 1))
    random.shuffle(candidates)
    ports: list[int] = []
    for port in candidates:
        if len(ports) == count:
            break
        if port not in _handed_out and _bindable(port) and _reserve(port):
            ports.append(port)
    if len(ports) < count:
        raise RuntimeError(f"Fewer than {count} free loopback ports in {first}-{last}")
    return ports


def shared_expression_cache() -> str:
    """rspamd's compiled expressions, kept across scratch stacks (about 10 s of CPU each time
    otherwise): one folder per test process, so that stacks in two processes never compile
    into the same files at once (a process's stacks start one after the other)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{SHARED_EXPRESSION_CACHE}-{worker}" if worker else SHARED_EXPRESSION_CACHE


class OutboundSink:
    """Postfix's smtp-sink on loopback: accepts outbound mail and writes each message to a file."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "postfix", "postfix")
        self.process = subprocess.Popen(
            [SMTP_SINK, "-u", "postfix", "-d", f"{directory}/%Y%m%d%H%M%S.", f"127.0.0.1:{port}", "100"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._listening, timeout=5)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def messages(self) -> list[str]:
        return [
            path.read_text(errors="replace") for path in sorted(self.directory.iterdir()) if path.is_file()
        ]

    def stop(self) -> None:
        terminate(self.process.pid)
        self.process.wait(timeout=5)


class LoopbackDns:
    """A DNS server in a thread on loopback that answers the TXT records it is given (`txt`: name -> one record,
    changeable while it runs: SPF and DMARC records of test senders) and refuses every other
    query at once (REFUSED).

    Tests that must never reach a real resolver point `dns_resolver` here: records come out
    "unchecked" without waiting for a resolver's timeout, as a port where nothing listens
    would make them (UDP has no refusal the resolver sees: it waits for its whole timeout).
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.queries = 0
        self.txt: dict[str, str] = {}
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                data, client = self._socket.recvfrom(4096)
            except OSError:
                return  # closed
            try:
                query = dns.message.from_wire(data)
                reply = dns.message.make_response(query)
            except Exception:  # noqa: BLE001 - not a DNS query: nothing to answer
                continue
            self._answer(query, reply)
            self.queries += 1
            with contextlib.suppress(OSError):
                self._socket.sendto(reply.to_wire(), client)

    def _answer(self, query: dns.message.Message, reply: dns.message.Message) -> None:
        if len(query.question) != 1:
            reply.set_rcode(dns.rcode.REFUSED)
            return
        question = query.question[0]
        record = self.txt.get(question.name.to_text(omit_final_dot=True).lower())
        if question.rdtype != dns.rdatatype.TXT or record is None:
            reply.set_rcode(dns.rcode.REFUSED)
            return
        # One record, in strings of at most 255 bytes.
        strings = " ".join(f'"{record[i : i + 250]}"' for i in range(0, len(record), 250))
        # Time to live 0: a test may change a record, and no resolver keeps the old one.
        reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "TXT", strings))

    def close(self) -> None:
        self._socket.close()


# The PostgreSQL server scratch stacks make their databases on, when set (the test suite's
# PostgreSQL pass sets it): a URL whose user may create databases and roles.
SCRATCH_POSTGRES_VARIABLE = "LETTERHEAD_SCRATCH_POSTGRES"


def run_on_postgres_server(server: str, statement: str) -> None:
    engine = create_engine(
        make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


class ScratchStack:
    """A private stack; `start()` runs Dovecot and Postfix (and optionally the web app)."""

    def __init__(
        self,
        *,
        min_mailbox_bytes: int = 1024,
        extra_settings: str = "",
        postgres_server: str | None = None,
        home: Path | None = None,
    ) -> None:
        # Short paths: unix socket paths are limited to 108 bytes. A test may give an empty
        # folder of its own (a small file system, to fill up).
        self.home = home or Path(tempfile.mkdtemp(prefix="lh-", dir="/tmp"))
        self.home.chmod(0o755)
        # On PostgreSQL (a server URL naming no database, or the test run's, from the environment):
        # a database of this stack's own, made empty here and dropped by stop().
        server = (
            postgres_server if postgres_server is not None else os.environ.get(SCRATCH_POSTGRES_VARIABLE, "")
        )
        self._postgres: tuple[str, str] | None = None
        if server and "database_url" not in extra_settings:
            database = "lh_" + self.home.name.removeprefix("lh-").lower().replace("-", "_")
            run_on_postgres_server(server, f'CREATE DATABASE "{database}"')
            self._postgres = (server, database)
            extra_settings += f'\ndatabase_url = "{make_url(server).set(database=database).render_as_string(hide_password=False)}"\n'
        ports = dict(zip([*PORT_NAMES, "sink"], free_ports(len(PORT_NAMES) + 1), strict=True))
        self.sink = OutboundSink(self.home / "sink", ports.pop("sink"))
        self.dns = LoopbackDns()
        port_lines = "\n".join(f"{name} = {port}" for name, port in ports.items())
        (self.home / "letterhead.toml").write_text(
            "testing = true\n"
            f"min_mailbox_bytes = {min_mailbox_bytes}\n"
            f'relayhost = "[127.0.0.1]:{self.sink.port}"\n'
            # DNS lookups (brand checks, rspamd's SPF, DKIM and DMARC) must never leave the machine:
            # a loopback server that refuses everything, unless the test runs one of its own.
            + ("" if "dns_resolver" in extra_settings else f'dns_resolver = "{self.dns.address}"\n')
            + ("" if "auth_penalty" in extra_settings else "auth_penalty = false\n")
            # rspamd asks no blocklist or fuzzy server, and its compiled expressions (10 s of CPU
            # to build) are shared by every scratch stack.
            + ("" if "spam_network_checks" in extra_settings else "spam_network_checks = false\n")
            + f'spam_expression_cache = "{shared_expression_cache()}"\n'
            # Tests run several stacks at once on two cores: one scanning process each.
            + ("" if "spam_workers" in extra_settings else "spam_workers = 1\n")
            # A retry two seconds later passes greylisting: tests wait that long, not five minutes.
            + ("" if "greylist_delay_seconds" in extra_settings else "greylist_delay_seconds = 2\n")
            + ("" if "supervise" in extra_settings else "supervise = false\n")
            # Each test's domain change served at once; the spell has its own tests.
            + ("" if "postfix_reload_spacing" in extra_settings else "postfix_reload_spacing_seconds = 0\n")
            + f"{extra_settings}\n"
            f"[ports]\n{port_lines}\n"
        )
        self.settings = load_settings(environ={}, home=self.home)
        self.installation = Installation(self.settings)

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.settings.ports)

    def start(self, *, web: bool = False) -> ScratchStack:
        stack.up(self.installation, web=web)
        return self

    def prepare(self) -> ScratchStack:
        stack.prepare(self.installation)
        return self

    def stop(self, *, remove: bool = True) -> None:
        try:
            stack.down(self.settings)
        finally:
            self.sink.stop()
            self.dns.close()
            self.installation.dispose()
            if remove:
                shutil.rmtree(self.home, ignore_errors=True)
                if self._postgres is not None:
                    server, database = self._postgres
                    run_on_postgres_server(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
