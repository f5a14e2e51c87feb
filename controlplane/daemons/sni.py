"""Brand certificates for Postfix's SNI map, published into their own SQLite file.

Postfix looks the SNI name up on every TLS handshake (`tls_server_sni_maps`), so a
published row is served at the next connection with no reload and no postmap; a
reload every time a brand changes would restart every smtpd and the queue manager.
The file holds private keys: root writes it, group postfix reads it (mode 0640).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import sqlite3
import ssl
from pathlib import Path

from controlplane.daemons.process import DaemonError
from controlplane.render import NGINX_USER, Paths, TlsIdentity, served_pem_path
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


# Pairs that passed, by their files' identity: {"cert\0key": [signature of both files]}.
CHECKED_PAIRS_FILE = "checked-certificates.json"


def _signature(path: str) -> list[int]:
    """What changes whenever the file (or the file a certbot `live/` link leads to) does: a
    rewrite changes its ctime (which no program can set back), a renewal its inode."""
    status = os.stat(path)
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def check_identities(settings: Settings, identities: tuple[TlsIdentity, ...]) -> None:
    """Check each key and certificate pair once (a brand's certificate covers several names);
    a pair whose two files are the very files that passed before is not loaded again.

    Loading thousands of pairs took 5 s at every brand change at 5,000 brands, where one
    brand's pair at most is new. The record lives beside the configuration generations and
    keeps only the pairs served now.
    """
    record_path = settings.config_root / CHECKED_PAIRS_FILE
    try:
        passed = json.loads(record_path.read_text())
        if not isinstance(passed, dict):
            passed = {}
    except (OSError, ValueError):
        passed = {}
    current: dict[str, list[int]] = {}
    for identity in identities:
        key = f"{identity.cert_path}\0{identity.key_path}"
        if key in current:
            continue
        try:
            signature = _signature(identity.cert_path) + _signature(identity.key_path)
        except OSError:
            signature = []
        if not signature or passed.get(key) != signature:
            check_identity(identity)
        current[key] = signature
    if current != passed:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        partial = record_path.with_name(f".{CHECKED_PAIRS_FILE}.{os.getpid()}")
        partial.write_text(json.dumps(current))
        partial.replace(record_path)


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


def publish_served_tls(settings: Settings, identities: tuple[TlsIdentity, ...]) -> set[Path]:
    """Write each certificate's chain and key as the one file nginx's map and HAProxy's crt-list
    name for it (render.served_pem_path), where only nginx's workers (group www-data) and root
    (HAProxy's master) may read it: nginx loads it at each HTTPS handshake, HAProxy once (and
    again when the file is replaced: daemons/haproxy.py). Returns the files that serve now; a
    file is rewritten only when its content changed (a renewal)."""
    paths = Paths.from_settings(settings)
    folder = Path(paths.served_tls)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o750)
    with contextlib.suppress(LookupError, PermissionError):
        shutil.chown(folder, "root", NGINX_USER)
    wanted: dict[Path, TlsIdentity] = {}
    for identity in identities:
        wanted.setdefault(Path(served_pem_path(paths, identity.cert_path, identity.key_path)), identity)
    for target, identity in wanted.items():
        try:
            content = (
                Path(identity.cert_path).read_bytes().rstrip(b"\n")
                + b"\n"
                + Path(identity.key_path).read_bytes()
            )
        except OSError as error:
            raise DaemonError(f"The certificate for {identity.hostname} cannot be served: {error}") from error
        with contextlib.suppress(OSError):
            if target.read_bytes() == content:
                continue
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        try:
            # Neither `nginx -t` (a variable names it) nor HAProxy's admin socket loads it before
            # it serves: it is loaded here.
            check_identity(TlsIdentity(identity.hostname, str(partial), str(partial)))
        except DaemonError:
            partial.unlink(missing_ok=True)
            raise
        with contextlib.suppress(LookupError, PermissionError):
            shutil.chown(partial, "root", NGINX_USER)
        partial.replace(target)
    return set(wanted)


def named_by(settings: Settings, *configs: Path | None) -> set[Path]:
    """The published files these configurations (nginx's, HAProxy's and its crt-list) name: those
    nginx's workers may still load, and those HAProxy loads at its next start or reload."""
    folder = Paths.from_settings(settings).served_tls
    named: set[Path] = set()
    for config in configs:
        if config is None:
            continue
        try:
            text = config.read_text()
        except OSError:
            continue
        named |= {Path(name) for name in re.findall(rf"{re.escape(folder)}/[0-9a-f]+\.pem", text)}
    return named


def prune_served_tls(settings: Settings, keep: set[Path]) -> None:
    """Remove the published files no configuration in use names, and any left half-written.

    `keep` holds what the new configuration names and what the one it replaced named: nginx's
    reload returns before its old workers finish, and they may load their map's files until then.
    A file the previous configuration alone named goes at the next change.
    """
    folder = Path(Paths.from_settings(settings).served_tls)
    for stale in (set(folder.glob("*.pem")) - keep) | set(folder.glob(".*.pem.*")):
        stale.unlink(missing_ok=True)
