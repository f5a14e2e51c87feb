"""The domains' DKIM private keys and the selector map, in the files rspamd reads.

`<dkim_dir>/<domain>.<selector>.key` holds one private key (PEM), readable by rspamd's user
alone; `<dkim_dir>/selectors.map` names the selector each domain signs with (rspamd's
`selector_map`, re-read within a second of a change). The folder is root's, traversable by
rspamd's group only. The database keeps the public halves (models/dkim_key.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from controlplane.daemons.process import DaemonError

RSPAMD_USER = "_rspamd"
SELECTOR_MAP = "selectors.map"
# An A-label domain and a selector of Letterhead's making: nothing else becomes a file name.
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_SELECTOR = re.compile(r"[a-z0-9]{1,63}")


def key_path(dkim_dir: Path, domain: str, selector: str) -> Path:
    if not _DOMAIN.fullmatch(domain) or ".." in domain or not _SELECTOR.fullmatch(selector):
        raise ValueError(f"Not a DKIM key name: {domain!r}, {selector!r}")
    return dkim_dir / f"{domain}.{selector}.key"


def _write(path: Path, data: bytes, mode: int, owner: str, group: str) -> None:
    """Atomically: rspamd reads either the old file or the whole new one."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        try:
            shutil.chown(temporary, owner, group)
        except LookupError as error:
            raise DaemonError(f"The user {owner!r} does not exist: install rspamd.") from error
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def prepare(dkim_dir: Path) -> None:
    dkim_dir.mkdir(parents=True, exist_ok=True)
    try:
        shutil.chown(dkim_dir, "root", RSPAMD_USER)
    except LookupError as error:
        raise DaemonError(f"The user {RSPAMD_USER!r} does not exist: install rspamd.") from error
    os.chmod(dkim_dir, 0o750)


def write_private_key(dkim_dir: Path, domain: str, selector: str, pem: bytes) -> Path:
    prepare(dkim_dir)
    path = key_path(dkim_dir, domain, selector)
    _write(path, pem, 0o400, RSPAMD_USER, RSPAMD_USER)
    return path


def read_private_key(dkim_dir: Path, domain: str, selector: str) -> bytes:
    return key_path(dkim_dir, domain, selector).read_bytes()


def remove_private_key(dkim_dir: Path, domain: str, selector: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        key_path(dkim_dir, domain, selector).unlink()


def publish_selectors(dkim_dir: Path, selectors: Mapping[str, str]) -> None:
    """Make the selector map name exactly these (domain -> selector); keys must exist."""
    prepare(dkim_dir)
    lines = []
    for domain in sorted(selectors):
        path = key_path(dkim_dir, domain, selectors[domain])
        if not path.exists():
            raise DaemonError(
                f"The DKIM key {path.name} is missing: rotate the domain's key to make a new one."
            )
        lines.append(f"{domain} {selectors[domain]}\n")
    target = dkim_dir / SELECTOR_MAP
    content = "".join(lines).encode()
    if target.exists() and target.read_bytes() == content:
        return  # unchanged: rspamd need not re-read it
    _write(target, content, 0o440, "root", RSPAMD_USER)


def key_files(dkim_dir: Path) -> set[str]:
    """The names of the key files present (to find those no key row needs any more)."""
    if not dkim_dir.is_dir():
        return set()
    return {p.name for p in dkim_dir.iterdir() if p.name.endswith(".key")}
