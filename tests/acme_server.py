"""A private ACME server for tests: pebble, its DNS (pebble-challtestsrv), and a dnsmasq for Letterhead.

pebble validates HTTP-01 challenges by asking pebble-challtestsrv where a name lives (127.0.0.1
for every name unless told otherwise) and fetching the token from the stack's nginx on its HTTP
port. Letterhead itself asks a separate dnsmasq, holding only the records a test gives it, whether
a brand host points at the platform before it orders. pebble makes a new root at each start and
forgets its accounts: each installation gets a pebble of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.resolver

from controlplane.daemons.process import terminate, wait_until
from controlplane.dns.checks import make_resolver
from controlplane.runners.scratch import ScratchStack, free_ports

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
OPENSSL = "/usr/bin/openssl"
DNSMASQ = "/usr/sbin/dnsmasq"
# Letterhead's platform address in these tests: nginx, Postfix and Dovecot listen there.
PLATFORM_ADDRESS = "127.0.0.1"


def require_binaries() -> None:
    """A missing tool fails the test loudly, never a silent pass."""
    import pytest

    missing = [path for path in (PEBBLE, CHALLTESTSRV, DNSMASQ, OPENSSL) if not Path(path).exists()]
    if missing:
        pytest.fail(f"Missing {', '.join(missing)}: run `make install-test-system` (pebble, dnsmasq-base).")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _started(process: subprocess.Popen, port: int, name: str, log: Path) -> None:
    if not wait_until(lambda: _listening(port) or process.poll() is not None, timeout=15) or process.poll():
        raise RuntimeError(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")


class AcmeTestServer:
    """pebble on 127.0.0.1 with its own TLS certificate, and pebble-challtestsrv as its DNS."""

    def __init__(
        self,
        directory: Path,
        *,
        http_port: int,
        ports: tuple[int, int, int, int] | None = None,
        validity_seconds: int | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port, self.management_port, self.dns_port, self.dns_management_port = ports or free_ports(4)
        self.ca_bundle = directory / "pebble-tls.pem"
        self._make_tls_certificate()
        self.challtestsrv_log = directory / "challtestsrv.log"
        with open(self.challtestsrv_log, "wb") as log:
            self.challtestsrv = subprocess.Popen(
                [CHALLTESTSRV, "-defaultIPv4", PLATFORM_ADDRESS, "-defaultIPv6", "",
                 "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{self.dns_management_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _started(self.challtestsrv, self.dns_management_port, "pebble-challtestsrv", self.challtestsrv_log)
        (tls_port,) = free_ports(1)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.ca_bundle),
                "privateKey": str(directory / "pebble-tls.key"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        if validity_seconds is not None:
            config["pebble"]["certificateValidityPeriod"] = validity_seconds
        config_file = directory / "pebble.json"
        config_file.write_text(json.dumps(config, indent=2))
        self.log = directory / "pebble.log"
        # No random sleeps before validation, and no nonces refused on purpose: tests stay quick
        # and the outcome depends only on what the test sets up.
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [PEBBLE, "-config", str(config_file), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory,
            )  # fmt: skip
        _started(self.process, self.port, "pebble", self.log)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _make_tls_certificate(self) -> None:
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pebble",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.directory / "pebble-tls.key"), "-out", str(self.ca_bundle)],
            check=True, capture_output=True,
        )  # fmt: skip

    def root_certificate(self) -> str:
        """The root pebble signs with in this run (PEM), from its management port."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read().decode()

    def point(self, host: str, address: str) -> None:
        """Make pebble's DNS send validations for `host` to `address` (e.g. where nothing listens)."""
        body = json.dumps({"host": host, "addresses": [address]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.dns_management_port}/add-a", data=body, method="POST"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def issued_count(self) -> int:
        """How many certificates pebble issued, counted from its log."""
        return self.log.read_text(errors="replace").count("Issued certificate serial")

    def stop(self) -> None:
        for process in (self.process, self.challtestsrv):
            terminate(process.pid)
            process.wait(timeout=5)


class TestDns:
    """dnsmasq on a loopback port answering the records given, NXDOMAIN for others in `zones`."""

    __test__ = False

    def __init__(self, records: list[str], *, zones: tuple[str, ...], port: int | None = None) -> None:
        self.port = port or free_ports(1)[0]
        self.process = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}", "--pid-file=",
             "--user=root", *(f"--local=/{zone}/" for zone in zones), *records],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.resolver: dns.resolver.Resolver = make_resolver("127.0.0.1", self.port, timeout=1.0)
        probe = zones[0]

        def answering() -> bool:
            try:
                self.resolver.resolve(probe, "SOA", raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                return True
            except Exception:
                return False
            return True

        if not wait_until(answering, timeout=5):
            raise RuntimeError(f"dnsmasq did not answer: {self.process.stderr.read().decode()[-2000:]}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate(self.process.pid)
        self.process.wait(timeout=5)


@contextlib.contextmanager
def branded_stack(
    records: list[str], *, zones: tuple[str, ...], validity_seconds: int | None = None
) -> Iterator[tuple[ScratchStack, AcmeTestServer, TestDns]]:
    """A running ScratchStack whose settings order certificates from a private pebble and ask
    a dnsmasq with `records` about brand hosts; all of it torn down afterwards."""
    require_binaries()
    acme_ports = tuple(free_ports(4))
    dns = TestDns(records, zones=zones)
    workdir = Path(tempfile.mkdtemp(prefix="lh-acme-", dir="/tmp"))
    extra = (
        f'acme_directory = "https://127.0.0.1:{acme_ports[0]}/dir"\n'
        f'acme_ca_bundle = "{workdir / "pebble-tls.pem"}"\n'
        f'acme_email = "operator@letterhead.test"\n'
        f'dns_resolver = "{dns.address}"\n'
        f'platform_addresses = "{PLATFORM_ADDRESS}"\n'
    )
    scratch = acme = None
    try:
        scratch = ScratchStack(min_mailbox_bytes=1024, extra_settings=extra)
        acme = AcmeTestServer(
            workdir, http_port=scratch.ports["http"], ports=acme_ports, validity_seconds=validity_seconds
        )  # type: ignore[arg-type]
        scratch.start()
        yield scratch, acme, dns
    finally:
        if scratch is not None:
            scratch.stop()
        if acme is not None:
            acme.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)
