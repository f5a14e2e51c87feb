"""The state directory's folders and the owners and modes the daemons need."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from pathlib import Path

from controlplane.daemons.process import DaemonError
from controlplane.daemons.usage import create_usage_database
from controlplane.render import USAGE_DICT_USER, VmailAccount
from controlplane.settings import Settings


def vmail_account(settings: Settings) -> VmailAccount:
    try:
        entry = pwd.getpwnam(settings.vmail_user)
    except KeyError:
        raise DaemonError(
            f"The mail storage user {settings.vmail_user!r} does not exist: "
            f"create it with `useradd -r -u 5000 -d /nonexistent -s /usr/sbin/nologin {settings.vmail_user}`."
        ) from None
    return VmailAccount(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _chown(path: Path, user: str, group: str) -> None:
    try:
        shutil.chown(path, user, group)
    except (LookupError, PermissionError) as error:
        raise DaemonError(f"Cannot give {path} to {user}:{group}: {error}") from error


def prepare_state_directory(settings: Settings) -> None:
    """Create the folders; Postfix and Dovecot's unprivileged users must traverse them."""
    vmail = vmail_account(settings)
    for path in (settings.home, settings.config_root, settings.run_dir, settings.log_dir, settings.certs_dir):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755)
    # Logs name every sender, recipient and client address, and port 25's dialogue trace holds
    # whatever a client typed (an AUTH line with a password too): root's only. The daemons
    # open their logs as root before dropping privileges.
    os.chmod(settings.log_dir, 0o750)
    # It may name the database with its password (database_url): root's only, as the daemons'
    # users (vmail, dovecot, www-data) can traverse the state directory.
    settings_file = settings.home / "letterhead.toml"
    if settings_file.exists():
        os.chmod(settings_file, 0o600)
    (settings.config_root / "generations").mkdir(exist_ok=True)
    settings.database_path.parent.mkdir(exist_ok=True)
    settings.mail_root.mkdir(exist_ok=True)
    os.chown(settings.mail_root, vmail.uid, vmail.gid)
    os.chmod(settings.mail_root, 0o700)
    settings.tls_report_spool.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.tls_report_spool.parent, 0o755)
    os.chown(settings.tls_report_spool, vmail.uid, vmail.gid)
    os.chmod(settings.tls_report_spool, 0o700)
    settings.postfix_queue.mkdir(parents=True, exist_ok=True)
    settings.postfix_data.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.postfix_queue.parent, 0o755)
    _chown(settings.postfix_data, "postfix", "postfix")
    dovecot_log = settings.log_dir / "dovecot.log"
    # Dovecot creates its log 0600 root; the log follower (and people) need to read it.
    dovecot_log.touch(exist_ok=True)
    os.chmod(dovecot_log, 0o640)


def protect_database(settings: Settings) -> None:
    """Password hashes: readable by root and group postfix (Postfix maps, Dovecot auth-worker).

    In WAL mode the first reader to open the database creates its -wal and -shm files
    beside it, so group postfix may create files in its folder; the sticky bit keeps
    the database itself from being renamed or replaced by anyone but root, and setgid
    gives those files group postfix so every reader can open them.
    """
    folder, path = settings.database_path.parent, settings.database_path
    if folder.exists():
        _chown(folder, "root", "postfix")
        os.chmod(folder, 0o3770)
    if path.exists():
        _chown(path, "root", "postfix")
        os.chmod(path, 0o640)


def prepare_usage_database(settings: Settings) -> None:
    """The usage table, in a folder and file that Dovecot's dict service owns and writes.

    A folder of its own: SQLite writes its journal beside the database. Letterhead
    (root) creates the table once, then only reads it, read-only (daemons/usage.py),
    so it never leaves a root-owned file the dict cannot write. On PostgreSQL the table is in
    the shared database (made with the daemons' logins, daemons/database_logins.py).
    """
    if settings.is_postgresql:
        return
    path = settings.usage_database_path
    path.parent.mkdir(exist_ok=True)
    create_usage_database(path)
    for item, mode in ((path.parent, 0o755), (path, 0o644)):
        _chown(item, USAGE_DICT_USER, USAGE_DICT_USER)
        os.chmod(item, mode)


def postfix_group_exists() -> bool:
    try:
        grp.getgrnam("postfix")
    except KeyError:
        return False
    return True
