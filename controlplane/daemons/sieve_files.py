"""Sieve scripts in a mailbox's home, where Dovecot's LMTP looks for them
(templates/dovecot/dovecot.conf.j2).

- The admins' filter (the API and the CLI): `<home>/.letterhead-admin.sieve`, run before the
  user's own (`sieve_before2`), compiled by Dovecot into `.letterhead-admin.svbin` beside it.
  Its first line names it.
- The user's own scripts, which ManageSieve clients and the webmail's settings keep:
  `<home>/sieve/<name>.sieve`, the symlink `<home>/.dovecot.sieve` naming the active one, and
  Dovecot's compiled binary `<home>/.dovecot.svbin`. Before admins' filters had a place of their
  own, they were written here as the active script: `move_active_to_admin` moves them.

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

from controlplane.render import ADMIN_SIEVE_SCRIPT

# A filter's name, the only user text that becomes part of a path.
FILTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ACTIVE_LINK = ".dovecot.sieve"
ACTIVE_BINARY = ".dovecot.svbin"
SCRIPT_FOLDER = "sieve"
ADMIN_SCRIPT = ADMIN_SIEVE_SCRIPT
ADMIN_BINARY = ADMIN_SIEVE_SCRIPT.removesuffix(".sieve") + ".svbin"
_ADMIN_NAME_LINE = "# Letterhead admin filter: "


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


# --- the admins' filter ----------------------------------------------------------------------------


def install_admin_script(
    mail_root: Path, storage_key: str, name: str, script: bytes, owner: tuple[int, int]
) -> None:
    """Make `script` the mailbox's admin filter (its first line names it `name`); the old
    binary goes, so Dovecot compiles the new script, never runs the old one."""
    if not FILTER_NAME.fullmatch(name):
        raise OSError(errno.EINVAL, "Invalid filter name")
    home = mailbox_home(mail_root, storage_key)
    _ensure_folder(home, owner)
    _write_atomically(
        home / ADMIN_SCRIPT, (_ADMIN_NAME_LINE + name + "\n").encode() + script, owner, time.time()
    )
    remove_file(home / ADMIN_BINARY)


def admin_script(home: Path, limit: int) -> tuple[str, bytes] | None:
    """The admin filter's name and script (without its naming line), or None."""
    data = read_script(home / ADMIN_SCRIPT, limit + 200)
    if data is None:
        return None
    first, _, script = data.partition(b"\n")
    name = first.decode("utf-8", "replace").removeprefix(_ADMIN_NAME_LINE)
    return (name if FILTER_NAME.fullmatch(name) else "filter"), script[:limit]


def remove_admin_script(home: Path) -> bool:
    """Stop running the admin filter. Returns whether there was one."""
    try:
        os.unlink(home / ADMIN_SCRIPT)
    except FileNotFoundError:
        return False
    remove_file(home / ADMIN_BINARY)
    return True


def move_active_to_admin(home: Path, names: set[str], owner: tuple[int, int]) -> str | None:
    """If the active script is one of `names` (filters the admins set when they were written
    as the user's active script), make it the admin filter, leaving the user no active script;
    the user's own scripts stay. Returns the name moved, or None."""
    active = active_script(home)
    if active is None or active[1] is None or active[0] not in names or (home / ADMIN_SCRIPT).exists():
        return None
    name, path = active
    data = read_script(path, 1024 * 1024)
    if data is None:
        return None
    _write_atomically(
        home / ADMIN_SCRIPT, (_ADMIN_NAME_LINE + name + "\n").encode() + data, owner, time.time()
    )
    remove_file(home / ADMIN_BINARY)
    deactivate(home)
    remove_file(path)
    return name
