"""Sieve scripts in a mailbox's home, where Dovecot's LMTP looks for them
(templates/dovecot/dovecot.conf.j2: `sieve = file:~/sieve;active=~/.dovecot.sieve`): the
script in `<home>/sieve/<name>.sieve`, the symlink `<home>/.dovecot.sieve` naming the
active one, and Dovecot's compiled binary `<home>/.dovecot.svbin`.

Every change is a rename or an unlink, so a delivery meanwhile runs the old filter or the new
one; nothing follows a link out of the mail root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path

# A filter's name, the only user text that becomes part of a path.
FILTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ACTIVE_LINK = ".dovecot.sieve"
ACTIVE_BINARY = ".dovecot.svbin"
SCRIPT_FOLDER = "sieve"


def mailbox_home(mail_root: Path, storage_key: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{1,64}", storage_key):  # ours, but it names a folder
        raise OSError(errno.EINVAL, "Invalid storage key")
    return mail_root / storage_key


def _ensure_folder(path: Path, owner: tuple[int, int]) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):  # never follow a link out of the mail root
            raise OSError(errno.ENOTDIR, "Not a folder", str(path)) from None
        return
    os.chown(path, *owner)
    os.chmod(path, 0o700)


def _write_atomically(path: Path, data: bytes, owner: tuple[int, int], mtime: float) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        try:
            os.fchown(descriptor, *owner)
            os.fchmod(descriptor, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.utime(descriptor, (mtime, mtime))
        finally:
            os.close(descriptor)
        os.rename(temporary, path)
    except BaseException:
        remove_file(temporary)
        raise


def _link_atomically(path: Path, target: str, owner: tuple[int, int], mtime: float) -> None:
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    os.symlink(target, temporary)
    try:
        os.lchown(temporary, *owner)
        os.utime(temporary, (mtime, mtime), follow_symlinks=False)
        os.rename(temporary, path)
    except BaseException:
        remove_file(temporary)
        raise


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def install_active_script(
    mail_root: Path, storage_key: str, name: str, script: bytes, owner: tuple[int, int]
) -> None:
    """Write the script, drop the old binary, then point the active link at the script; each
    step is a rename or an unlink, so a delivery meanwhile runs the old filter or the new one."""
    if not FILTER_NAME.fullmatch(name):  # it becomes part of a path
        raise OSError(errno.EINVAL, "Invalid filter name")
    home = mailbox_home(mail_root, storage_key)
    folder = home / SCRIPT_FOLDER
    _ensure_folder(home, owner)
    _ensure_folder(folder, owner)
    now = time.time()
    _write_atomically(folder / f"{name}.sieve", script, owner, now)
    remove_file(home / ACTIVE_BINARY)
    _link_atomically(home / ACTIVE_LINK, f"{SCRIPT_FOLDER}/{name}.sieve", owner, now)


def active_script(home: Path) -> tuple[str, Path | None] | None:
    """The active filter's name and, if Letterhead may read it, its script's path."""
    try:
        target = os.readlink(home / ACTIVE_LINK)
    except OSError:  # no link (no filter), or a plain file, which Dovecot does not take as one
        return None
    folder, _, filename = target.rpartition("/")
    name = filename.removesuffix(".sieve")
    if folder != SCRIPT_FOLDER or not filename.endswith(".sieve") or not FILTER_NAME.fullmatch(name):
        return filename or target, None  # set by another client under a name we do not make
    return name, home / SCRIPT_FOLDER / f"{name}.sieve"


def read_script(path: Path, limit: int) -> bytes | None:
    """The script at `path` (at most `limit` bytes), or None for a link to nothing."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        return file.read(limit)


def deactivate(home: Path) -> None:
    """Remove the active link and the binary compiled from it; the script stays.
    Raises FileNotFoundError when no filter was active."""
    os.unlink(home / ACTIVE_LINK)
    remove_file(home / ACTIVE_BINARY)
