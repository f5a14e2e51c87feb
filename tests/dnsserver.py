"""DNS servers for tests: dnsmasq on a free loopback port, answering only what it is told, and one
that refuses everything at once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence

import dns.resolver
import pytest

from controlplane.daemons.process import wait_until
from controlplane.dns.checks import make_resolver
from controlplane.runners.scratch import LoopbackDns, free_ports

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


__all__ = ["LoopbackDns", "dnsmasq"]
