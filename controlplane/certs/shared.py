"""Brand certificates obtained by another mail node, written into this node's own folder.

A node that ordered a certificate serves it from certbot's lineage; every other node writes the
chain and key kept in the shared database into `certs/shared/<hostname>/` (the key readable by
root only: nginx's and Dovecot's masters read it as root) and serves them from there.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def shared_paths(certs_dir: Path, hostname: str) -> tuple[Path, Path]:
    if "/" in hostname or hostname in ("", ".", ".."):
        raise ValueError(f"Not a certificate name: {hostname!r}")
    folder = certs_dir / "shared" / hostname
    return folder / "fullchain.pem", folder / "privkey.pem"


def _write(path: Path, content: str, mode: int) -> bool:
    """Write atomically unless the file already holds `content`; whether it changed."""
    data = content.encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


def write_shared_certificate(certs_dir: Path, hostname: str, chain_pem: str, key_pem: str) -> bool:
    """This node's copy of a brand's chain and key; whether either changed."""
    cert, key = shared_paths(certs_dir, hostname)
    key_changed = _write(key, key_pem, 0o600)
    return _write(cert, chain_pem, 0o644) or key_changed


def remove_other_shared_certificates(certs_dir: Path, keep: set[str]) -> bool:
    """Forget the copies of brands that are gone (or now served from a local lineage)."""
    folder = certs_dir / "shared"
    removed = False
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                removed = True
    return removed
