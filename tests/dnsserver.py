"""DNS servers for tests: dnsmasq on a free loopback port, answering only what it is told, and one
that refuses everything at once."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence

import dns.message
import dns.rcode
import dns.resolver
import pytest

from controlplane.daemons.process import wait_until
from controlplane.daemons.scratch import free_ports
from controlplane.dns.checks import make_resolver

PROBE_NAME = "mail.letterhead.test"


def dnsmasq(
    records: Sequence[str], *, zones: Sequence[str], probe_address: str = "127.0.0.10"
) -> Iterator[tuple[dns.resolver.Resolver, int]]:
    """Yield (resolver, port). `zones` are answered authoritatively: unknown names there are
    NXDOMAIN, not refused. `records` are dnsmasq options (--host-record=, --cname=, ...)."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not shutil.which(binary):
        pytest.fail("dnsmasq is not installed: run `make install-test-system`.")
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--pid-file=", "--user=root",
         *(f"--local=/{zone}/" for zone in {*zones, "letterhead.test"}),
         f"--host-record={PROBE_NAME},{probe_address}", *records],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    resolver = make_resolver("127.0.0.1", port, timeout=1.0)

    def answering() -> bool:
        try:
            resolver.resolve(PROBE_NAME, "A")
        except Exception:
            return False
        return True

    try:
        if not wait_until(answering, timeout=5):
            raise RuntimeError(
                f"dnsmasq did not answer: {process.stderr.read().decode() if process.poll() else ''}"
            )
        yield resolver, port
    finally:
        process.terminate()
        process.wait(timeout=5)


class RefusingDns:
    """A DNS server in a thread on loopback that refuses every query at once (REFUSED).

    Tests that must never reach a real resolver point `dns_resolver` here: records come out
    "unchecked" without waiting for a resolver's timeout, as a port where nothing listens
    would make them (UDP has no refusal the resolver sees: it waits for its whole timeout).
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.queries = 0
        self._thread = threading.Thread(target=self._serve, name="refusing-dns", daemon=True)
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
                reply = dns.message.make_response(dns.message.from_wire(data))
            except Exception:  # noqa: BLE001 - not a DNS query: nothing to answer
                continue
            reply.set_rcode(dns.rcode.REFUSED)
            self.queries += 1
            with contextlib.suppress(OSError):
                self._socket.sendto(reply.to_wire(), client)

    def close(self) -> None:
        self._socket.close()
