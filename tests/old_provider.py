"""A customer's old mail provider, played by a second private Dovecot on loopback: IMAPS only,
with a certificate from a CA of its own, users with plain passwords in a passwd-file, and Maildirs
filled over IMAP (APPEND keeps each message's flags and date, as a real account's would be)."""

from __future__ import annotations

import datetime as dt
import imaplib
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.daemons import dovecot
from controlplane.runners.scratch import free_ports
from webmail.mailstore import encode_folder_name

VMAIL = "vmail"


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True)


@dataclass
class OldProvider:
    """`start()`, `add_user(login, password)`, `append(...)`, `stop()`; `ca_file` is what a client
    must trust to check its certificate, which names 127.0.0.1 (where it listens) and `host_name`."""

    host_name: str = "imap.old-provider.test"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lh-old-provider-")))
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def start(self) -> None:
        self.root.chmod(0o755)
        self.port = free_ports(1)[0]
        self._make_certificates()
        (self.root / "mail").mkdir()
        shutil.chown(self.root / "mail", VMAIL, VMAIL)
        (self.root / "users").write_text("")
        self.config_file.write_text(self._config())
        dovecot.start(self.config_file)
        dovecot.wait_ready(self.config_file)

    def stop(self) -> None:
        try:
            dovecot.stop(self.config_file)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self, login: str, password: str) -> None:
        self.users[login] = password
        (self.root / "users").write_text(
            "".join(f"{name}:{{PLAIN}}{secret}\n" for name, secret in self.users.items())
        )

    def client(self, login: str) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=30)
        client.login(login, self.users[login])
        return client

    def append(
        self, login: str, folder: str, message: bytes, *, flags: str = "", date: dt.datetime | None = None
    ) -> None:
        """Put a message in `folder` (created if missing; any Unicode name) with these IMAP flags
        and INTERNALDATE."""
        client = self.client(login)
        try:
            name = _quoted(encode_folder_name(folder))
            if folder != "INBOX":
                client.create(name)  # "already exists" is fine
            when = imaplib.Time2Internaldate((date or dt.datetime.now(dt.UTC)).timestamp())
            status, detail = client.append(name, f"({flags})" if flags else None, when, message)
            if status != "OK":
                raise AssertionError(f"APPEND to {folder} failed: {detail}")
        finally:
            client.logout()

    def _make_certificates(self) -> None:
        ca_key, ca = self.root / "ca-key.pem", self.ca_file
        key, request, cert = self.root / "key.pem", self.root / "request.pem", self.root / "cert.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=Old provider CA",
                 "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={self.host_name}",
                 "-keyout", str(key), "-out", str(request))  # fmt: skip
        extensions = self.root / "san.cnf"
        # Clients reach it by address (nothing outside the machine resolves its name), and check it.
        extensions.write_text(f"subjectAltName=DNS:{self.host_name},IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-days", "30", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
        for pem in (ca, cert):
            pem.chmod(0o644)

    def _config(self) -> str:
        root = self.root
        return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = {VMAIL}
mail_gid = {VMAIL}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
  }}
}}
"""


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
