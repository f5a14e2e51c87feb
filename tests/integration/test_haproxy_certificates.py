"""HAProxy's certificates changed at run time (daemons/haproxy.py): a real HAProxy, each name's
certificate read back from a TLS handshake with that SNI name, and the process never restarted."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from controlplane.daemons.haproxy import AdminSocket, CrtListEntry, update_certificates
from controlplane.daemons.process import DaemonError, read_pid, terminate
from controlplane.runners.scratch import free_ports
from tests.certificates import self_signed

pytestmark = pytest.mark.integration

CONFIG = """\
global
    stats socket {directory}/admin.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend imaps
    bind 127.0.0.1:{port} ssl crt {directory}/default.pem crt-list {directory}/crt-list
    default_backend nowhere
backend nowhere
    server closed 127.0.0.1:9 disabled
"""


def write_certificate(path: Path, common_name: str, *names: str) -> None:
    """A self-signed certificate for `names`, its key first, in one file as the stack serves them."""
    certificate, key = self_signed(common_name, *names)
    # A blank line between the blocks, as files joined by hand have: the socket's payload ends
    # at the first empty line, so the adapter must drop it.
    path.write_text(f"{key}\n{certificate}")


def served_name(port: int, server_name: str) -> str:
    """The common name of the certificate a handshake with SNI `server_name` gets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


class CountingAdmin(AdminSocket):
    """The admin socket, noting each file loaded (`set ssl cert`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads: list[str] = []

    def command(self, command: str, payload: str | None = None) -> str:
        if command.startswith("set ssl cert "):
            self.loads.append(command.removeprefix("set ssl cert "))
        return super().command(command, payload)


class Front:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.crt_list = directory / "crt-list"
        self.admin = AdminSocket(directory / "admin.sock")

    def pid(self) -> int | None:
        return read_pid(self.directory / "haproxy.pid")

    def serves(self, server_name: str) -> str:
        return served_name(self.port, server_name)


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    (port,) = free_ports(1)
    write_certificate(tmp_path / "default.pem", "default")
    write_certificate(tmp_path / "a.pem", "a", "mail.a.test")
    (tmp_path / "crt-list").write_text(f"{tmp_path}/a.pem mail.a.test\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(directory=tmp_path, port=port))
    started = Front(tmp_path, port)
    try:
        subprocess.run(
            ["haproxy", "-D", "-p", str(tmp_path / "haproxy.pid"), "-f", str(config)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (started.admin.path.exists() and started.pid()):
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.05)
        yield started
    finally:
        if pid := started.pid():
            terminate(pid)


def test_brands_are_added_renewed_renamed_and_removed_without_a_restart(front: Front) -> None:
    pid = front.pid()
    directory = front.directory
    a, b = f"{directory}/a.pem", f"{directory}/b.pem"
    assert front.serves("mail.a.test") == "a"
    assert front.serves("mail.b.test") == "default"

    write_certificate(directory / "b.pem", "b", "mail.b.test")
    update_certificates(
        front.admin, front.crt_list, [CrtListEntry(a, ("mail.a.test",)), CrtListEntry(b, ("mail.b.test",))]
    )
    assert (front.serves("mail.a.test"), front.serves("mail.b.test")) == ("a", "b")

    # Nothing changed on disk: nothing is loaded again.
    wanted = [CrtListEntry(a, ("mail.a.test",)), CrtListEntry(b, ("mail.b.test",))]
    counting = CountingAdmin(front.admin.path)
    update_certificates(counting, front.crt_list, wanted)
    assert counting.loads == []
    # A renewal rewrites a file in place: the next update finds it changed, and loads it alone.
    write_certificate(directory / "a.pem", "a renewed", "mail.a.test")
    update_certificates(counting, front.crt_list, wanted)
    assert front.serves("mail.a.test") == "a renewed" and counting.loads == [a]

    # A certificate that covers one more name, then a brand gone.
    write_certificate(directory / "b.pem", "b and c", "mail.b.test", "mail.c.test")
    update_certificates(front.admin, front.crt_list, [CrtListEntry(b, ("mail.b.test", "mail.c.test"))])
    assert [front.serves(f"mail.{x}.test") for x in "abc"] == ["default", "b and c", "b and c"]
    assert a not in front.admin.command("show ssl cert")
    # And one name fewer: the name dropped falls to the default certificate.
    write_certificate(directory / "b.pem", "b alone", "mail.b.test")
    update_certificates(front.admin, front.crt_list, [CrtListEntry(b, ("mail.b.test",))])
    assert [front.serves(f"mail.{x}.test") for x in "bc"] == ["b alone", "default"]
    write_certificate(directory / "b.pem", "b and c", "mail.b.test", "mail.c.test")
    update_certificates(front.admin, front.crt_list, [CrtListEntry(b, ("mail.b.test", "mail.c.test"))])

    # The default certificate, on the bind line, renewed in place.
    default = f"{directory}/default.pem"
    wanted = [CrtListEntry(b, ("mail.b.test", "mail.c.test"))]
    update_certificates(counting, front.crt_list, wanted, default_pems={default})
    write_certificate(directory / "default.pem", "default renewed")
    counting.loads.clear()
    update_certificates(counting, front.crt_list, wanted, default_pems={default})
    assert front.serves("unknown.test") == "default renewed" and counting.loads == [default]
    # One HAProxy does not hold (a reload brings it) is left to that reload.
    write_certificate(directory / "next-default.pem", "next default")
    update_certificates(front.admin, front.crt_list, wanted, default_pems={f"{directory}/next-default.pem"})
    assert f"{directory}/next-default.pem" not in front.admin.command("show ssl cert")

    assert front.pid() == pid
    # The file a restart loads says the same as HAProxy serves.
    assert front.crt_list.read_text() == f"{b} mail.b.test mail.c.test\n"


def test_a_certificate_that_does_not_load_stops_only_itself(front: Front) -> None:
    directory = front.directory
    a, broken, c = f"{directory}/a.pem", f"{directory}/broken.pem", f"{directory}/c.pem"
    write_certificate(directory / "good.pem", "good", "mail.good.test")
    key_only = (directory / "good.pem").read_text().split("-----BEGIN CERTIFICATE-----")[0]
    (directory / "broken.pem").write_text(key_only)  # a key with no certificate
    write_certificate(directory / "c.pem", "c", "mail.c.test")
    wanted = [
        CrtListEntry(a, ("mail.a.test",)),
        CrtListEntry(broken, ("mail.b.test",)),
        CrtListEntry(c, ("mail.c.test",)),
    ]

    with pytest.raises(DaemonError) as refused:
        update_certificates(front.admin, front.crt_list, wanted)
    assert broken in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value)
    assert [front.serves(f"mail.{x}.test") for x in "abc"] == ["a", "default", "c"]
    assert broken not in front.admin.command("show ssl cert")
    # The file a start loads says what HAProxy serves.
    assert front.crt_list.read_text() == f"{a} mail.a.test\n{c} mail.c.test\n"

    # Mended, the same update goes through: nothing was left half made.
    (directory / "broken.pem").write_text((directory / "good.pem").read_text())
    update_certificates(front.admin, front.crt_list, wanted)
    assert front.serves("mail.b.test") == "good"


def test_a_renewal_whose_key_is_not_its_certificates_keeps_the_old_one(front: Front) -> None:
    directory = front.directory
    a = f"{directory}/a.pem"
    write_certificate(directory / "other.pem", "other", "mail.a.test")
    old_key_new_certificate = (directory / "a.pem").read_text().split("-----BEGIN CERTIFICATE-----")[0] + (
        "-----BEGIN CERTIFICATE-----"
        + (directory / "other.pem").read_text().split("-----BEGIN CERTIFICATE-----")[1]
    )
    (directory / "a.pem").write_text(old_key_new_certificate)

    with pytest.raises(DaemonError, match="commit ssl cert"):
        update_certificates(front.admin, front.crt_list, [CrtListEntry(a, ("mail.a.test",))])
    assert front.serves("mail.a.test") == "a"
    assert "# transaction" not in front.admin.command("show ssl cert")
    # Refused, it is tried again at the next update, and served once mended.
    write_certificate(directory / "a.pem", "a mended", "mail.a.test")
    update_certificates(front.admin, front.crt_list, [CrtListEntry(a, ("mail.a.test",))])
    assert front.serves("mail.a.test") == "a mended"


def test_a_transaction_left_open_is_aborted_before_an_update(front: Front) -> None:
    directory = front.directory
    a, b = f"{directory}/a.pem", f"{directory}/b.pem"
    write_certificate(directory / "stray.pem", "stray", "mail.a.test")
    # A caller killed between `set` and `commit`: HAProxy keeps the transaction open.
    front.admin.expect(
        f"set ssl cert {a}",
        f"Transaction created for certificate {a}!",
        payload=(directory / "stray.pem").read_text(),
    )
    assert "# transaction" in front.admin.command("show ssl cert")

    write_certificate(directory / "b.pem", "b", "mail.b.test")
    update_certificates(
        front.admin, front.crt_list, [CrtListEntry(a, ("mail.a.test",)), CrtListEntry(b, ("mail.b.test",))]
    )
    assert (front.serves("mail.a.test"), front.serves("mail.b.test")) == ("a", "b")
    assert "# transaction" not in front.admin.command("show ssl cert")


def test_without_a_running_haproxy_only_the_file_is_written(tmp_path: Path) -> None:
    crt_list = tmp_path / "crt-list"
    update_certificates(None, crt_list, [CrtListEntry("/x/a.pem", ("mail.a.test", "a.test"))])
    assert crt_list.read_text() == "/x/a.pem mail.a.test a.test\n"
