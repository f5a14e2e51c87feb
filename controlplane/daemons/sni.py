"""Brand certificates for Postfix's SNI map, published into their own SQLite file.

Postfix looks the SNI name up on every TLS handshake (`tls_server_sni_maps`), so a
published row is served at the next connection with no reload and no postmap; a
reload every time a brand changes would restart every smtpd and the queue manager.
The file holds private keys: root writes it, group postfix reads it (mode 0640).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sqlite3
import ssl
from pathlib import Path

from controlplane.daemons.process import DaemonError
from controlplane.render import TlsIdentity
from controlplane.settings import Settings


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode = WAL")
    return connection


def ensure_sni_database(settings: Settings) -> None:
    """Create the (possibly empty) SNI table, so the map answers its probe from the start."""
    path = settings.sni_database_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(_connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS sni_chains (hostname TEXT PRIMARY KEY, chain TEXT NOT NULL)"
        )
    os.chmod(path, 0o640)
    with contextlib.suppress(LookupError, PermissionError):
        shutil.chown(path, "root", "postfix")


def check_identity(identity: TlsIdentity) -> None:
    """A key that does not match its certificate passes every daemon checker: refuse it here."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    except (OSError, ssl.SSLError) as error:
        raise DaemonError(
            f"The certificate for {identity.hostname} cannot be served ({identity.cert_path}, "
            f"{identity.key_path}): {error}"
        ) from error


def sni_chain(identity: TlsIdentity) -> str:
    """Postfix wants the key, then the leaf and its chain, as base64 of the PEM text."""
    pem = Path(identity.key_path).read_bytes() + Path(identity.cert_path).read_bytes()
    return base64.b64encode(pem).decode("ascii")


def publish_sni_chains(settings: Settings, identities: tuple[TlsIdentity, ...]) -> None:
    """Make the SNI table hold exactly these identities, in one transaction."""
    ensure_sni_database(settings)
    # A brand's certificate covers several names: read its files once.
    chains: dict[tuple[str, str], str] = {}
    wanted = {}
    for identity in identities:
        pair = (identity.cert_path, identity.key_path)
        if pair not in chains:
            chains[pair] = sni_chain(identity)
        wanted[identity.hostname] = chains[pair]
    with contextlib.closing(_connect(settings.sni_database_path)) as connection, connection:
        current = dict(connection.execute("SELECT hostname, chain FROM sni_chains"))
        for hostname in current.keys() - wanted.keys():
            connection.execute("DELETE FROM sni_chains WHERE hostname = ?", (hostname,))
        for hostname, chain in wanted.items():
            if current.get(hostname) != chain:
                connection.execute(
                    "INSERT OR REPLACE INTO sni_chains (hostname, chain) VALUES (?, ?)", (hostname, chain)
                )
