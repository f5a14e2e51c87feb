"""`letterhead backup DIR` and `letterhead restore DIR`: a whole installation, taken while it runs.

A backup folder (root's, 0711 so that the storage user reaches mail/ to write into it) holds:
- database/: SQLite's online backup of the database and of Dovecot's storage measurements (a
  consistent copy of every page while writers go on), or pg_dump's custom format made inside a
  snapshot exported by a REPEATABLE READ transaction that also counts and checksums the rows;
- mail/<storage key>/: each mailbox this node holds. Its Maildir comes from `doveadm backup`
  while Dovecot runs (dsync copies each folder consistently, with flags, dates and UIDs, while
  mail keeps arriving), from a plain copy while Dovecot is stopped; its filters lie beside it;
- state.tar: certificates, certbot's account and renewal settings, DKIM keys, postsrsd's secret
  and the instance's secret key; letterhead.toml: the settings;
- manifest.json, written last (a folder without one is an unfinished backup): the schema's
  revision, each table's rows and checksum, each mailbox's message count, all checked by restore.

The database is taken first, then the mail: mail for a mailbox that arrived in between is in the
backup, a mailbox created in between is not (it is in the next one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import sqlite3
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, inspect, make_url, pool, text

from controlplane.daemons import database_logins, dovecot, postfix, postgres, sieve_files
from controlplane.daemons.layout import vmail_account
from controlplane.daemons.process import DaemonError
from controlplane.database_copy import table_checksum
from controlplane.db import server_reason
from controlplane.errors import LetterheadError
from controlplane.schema import alembic_config, upgrade_database
from controlplane.settings import Settings
from controlplane.version import __version__

FORMAT = 1
MANIFEST = "manifest.json"
# The daemons' logins belong to the database they were made for: restore grants its own.
NOT_CHECKSUMMED = {"daemon_login"}
# Kept from the state directory (whatever else is there is rebuilt at every start).
STATE_FOLDERS = ("certs", "acme", "dkim", "srs")
STATE_FILES = ("secret_key",)
# Challenge files of orders long finished: not kept.
STATE_SKIPPED = ("acme/webroot",)

Progress = Callable[[str], None]


class BackupRefused(LetterheadError):
    """The backup or restore cannot be made as asked (the folder, the target, the backup)."""


@dataclasses.dataclass(frozen=True)
class HeldMailbox:
    address: str
    storage_key: str
    # Dovecot knows only active mailboxes (of active domains and tenants): a suspended one's
    # Maildir, which receives nothing, is copied as files.
    active: bool


@dataclasses.dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


# ---- the database ----------------------------------------------------------------------------


def _reflected_sums(connection: Connection) -> dict[str, TableSum]:
    """Each table's rows and checksum, read through the schema the database has (a backup from
    an older release is checked before it is migrated, so not through today's models)."""
    metadata = MetaData()
    metadata.reflect(connection)
    return {
        name: TableSum(*table_checksum(connection, table))
        for name, table in sorted(metadata.tables.items())
        if name not in NOT_CHECKSUMMED
    }


def _revision(connection: Connection) -> str:
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() or ""


def _held_mailboxes(connection: Connection, node_name: str) -> tuple[list[HeldMailbox], int]:
    """The mailboxes whose mail lies on this machine, and how many lie on other nodes."""
    here = connection.execute(text("SELECT id FROM node WHERE name = :name"), {"name": node_name}).scalar()
    held, elsewhere = [], 0
    for local_part, domain, storage_key, node_id, *active in connection.execute(
        text(
            "SELECT mailbox.local_part, domain.name, mailbox.storage_key, mailbox.node_id, "
            "mailbox.active, domain.active, tenant.active FROM mailbox "
            "JOIN domain ON domain.id = mailbox.domain_id JOIN tenant ON tenant.id = domain.tenant_id "
            "ORDER BY mailbox.id"
        )
    ):
        if node_id is not None and node_id != here:
            elsewhere += 1
            continue
        held.append(HeldMailbox(f"{local_part}@{domain}", storage_key, all(bool(flag) for flag in active)))
    return held, elsewhere


def _snapshot(
    url: str, node_name: str, database_folder: Path
) -> tuple[dict[str, Any], list[HeldMailbox], int]:
    """The database as of one moment, its checksums and its mailboxes."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        if engine.dialect.name == "sqlite":
            copy = database_folder / "letterhead.db"
            _sqlite_online_backup(Path(make_url(url).database or ""), copy)
            engine.dispose()
            engine = create_engine(f"sqlite:///{copy}", poolclass=pool.NullPool)
            with engine.connect() as connection:
                return _described(connection, node_name)
        with engine.connect() as connection:
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar() or ""
            postgres.dump_database(
                url,
                database_folder / "letterhead.dump",
                snapshot=snapshot,
                exclude_data=tuple(NOT_CHECKSUMMED),
            )
            return _described(connection, node_name)
    except (LetterheadError, DaemonError):
        raise
    except Exception as error:  # noqa: BLE001 - any driver or server failure: said in words
        raise BackupRefused(f"Cannot read the database: {server_reason(error)}") from error
    finally:
        engine.dispose()


def _described(connection: Connection, node_name: str) -> tuple[dict[str, Any], list[HeldMailbox], int]:
    sums = _reflected_sums(connection)
    held, elsewhere = _held_mailboxes(connection, node_name)
    description = {
        "revision": _revision(connection),
        "tables": {name: dataclasses.asdict(table_sum) for name, table_sum in sums.items()},
    }
    return description, held, elsewhere


def _sqlite_online_backup(source: Path, destination: Path) -> None:
    """SQLite's backup API: every page as of one moment, while Letterhead and the daemons write."""
    source_connection = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    destination_connection = sqlite3.connect(destination)
    try:
        source_connection.backup(destination_connection)
    finally:
        destination_connection.close()
        source_connection.close()


# ---- the mail --------------------------------------------------------------------------------


def _message_count(maildir: Path) -> int:
    """Messages in a Maildir and its folders (Maildir++: .Folder/cur and new)."""
    count = 0
    for folder in [maildir, *(child for child in maildir.glob(".*") if child.is_dir())]:
        for part in (folder / "cur", folder / "new"):
            if part.is_dir():
                count += sum(1 for entry in part.iterdir() if entry.is_file())
    return count


def _reachable_by(path: Path, uid: int) -> bool:
    """Whether the storage user can walk down to `path` (doveadm writes there as that user)."""
    for folder in [*reversed(path.parents)]:
        status = folder.stat()
        if status.st_uid != uid and not status.st_mode & 0o001:
            return False
    return True


# Dovecot's lock files come and go while mail is delivered (the LMTP duplicate check's, for one):
# they are no state to restore, and one removed between the listing and its copy failed a backup
# under load.
_TRANSIENT = shutil.ignore_patterns("*.lock", "*.locks")


def _copy_home_except_maildir(home: Path, destination: Path) -> None:
    """A mailbox's home but its Maildir (doveadm copies that), as it stands while mail arrives:
    lock files are left out, and a file removed since the listing is not an error."""
    for entry in home.iterdir():
        if entry.name == "Maildir" or _TRANSIENT(str(home), [entry.name]):
            continue
        target = destination / entry.name
        try:
            if entry.is_symlink() or entry.is_file():
                shutil.copy2(entry, target, follow_symlinks=False)
            elif entry.is_dir():
                shutil.copytree(
                    entry, target, symlinks=True, ignore=_TRANSIENT, copy_function=_copy_unless_gone
                )
        except FileNotFoundError:
            continue


def _copy_unless_gone(source: str, target: str) -> str:
    try:
        return shutil.copy2(source, target)
    except FileNotFoundError:
        return target


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            os.chown(Path(folder) / name, uid, gid, follow_symlinks=False)


def _back_up_mail(
    settings: Settings, held: list[HeldMailbox], mail_folder: Path, progress: Progress
) -> dict[str, int]:
    vmail = vmail_account(settings)
    mail_folder.mkdir(mode=0o700)
    os.chown(mail_folder, vmail.uid, vmail.gid)
    running = dovecot.master_pid(settings.run_dir / "dovecot") is not None
    if running and not _reachable_by(mail_folder, vmail.uid):
        raise BackupRefused(
            f"The mail storage user {vmail.name} cannot reach {mail_folder}: choose a backup folder "
            "whose parent folders others may enter (chmod o+x), as doveadm writes the mail as that user."
        )
    config_file = settings.live_config / "dovecot" / "dovecot.conf"
    counts: dict[str, int] = {}
    for number, mailbox in enumerate(held, start=1):
        if number % 50 == 0 or number == len(held):
            progress(f"mail: {number} of {len(held)} mailboxes")
        home = settings.mail_root / mailbox.storage_key
        if not home.is_dir():
            counts[mailbox.storage_key] = 0  # no mail received yet: Dovecot makes the home at the first
            continue
        destination = mail_folder / mailbox.storage_key
        destination.mkdir(mode=0o700)
        # Root copies into a folder of its own, then hands it to the storage user for doveadm.
        _copy_home_except_maildir(home, destination)
        _chown_tree(destination, vmail.uid, vmail.gid)
        if running and mailbox.active and (home / "Maildir").is_dir():
            dovecot.backup_mailbox(config_file, mailbox.address, destination / "Maildir")
        elif (home / "Maildir").is_dir():
            shutil.copytree(home / "Maildir", destination / "Maildir", symlinks=True)
            _chown_tree(destination, vmail.uid, vmail.gid)
        counts[mailbox.storage_key] = _message_count(destination / "Maildir")
    return counts


# ---- state files -----------------------------------------------------------------------------


def _state_members(home: Path) -> Iterable[Path]:
    for name in STATE_FOLDERS + STATE_FILES:
        if (home / name).exists():
            yield home / name


def _back_up_state(settings: Settings, backup: Path) -> list[str]:
    skipped = {settings.home / name for name in STATE_SKIPPED}

    def without_skipped(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if any(settings.home / member.name == path for path in skipped) else member

    names = []
    with tarfile.open(backup / "state.tar", "w") as archive:
        for path in _state_members(settings.home):
            archive.add(path, arcname=path.name, filter=without_skipped)
            names.append(path.name)
    os.chmod(backup / "state.tar", 0o600)
    settings_file = settings.home / "letterhead.toml"
    if settings_file.exists():
        shutil.copy(settings_file, backup / "letterhead.toml")
        os.chmod(backup / "letterhead.toml", 0o600)
    return names


# ---- backup ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackupSummary:
    tables: int
    rows: int
    mailboxes: int
    messages: int
    mailboxes_elsewhere: int


def _prepare_folder(backup: Path) -> None:
    if backup.is_symlink() or (backup.exists() and (not backup.is_dir() or any(backup.iterdir()))):
        raise BackupRefused(f"{backup} is not an empty folder: back up into a new one.")
    backup.mkdir(parents=True, exist_ok=True)
    if backup.stat().st_uid != os.geteuid():
        # Password hashes and private keys go in: only into a folder no one else controls.
        raise BackupRefused(f"{backup} belongs to another user: back up into a folder of your own.")
    os.chmod(backup, 0o711)


def back_up(settings: Settings, backup: Path, *, progress: Progress = lambda _line: None) -> BackupSummary:
    """A consistent backup of the running (or stopped) installation into the new folder `backup`."""
    backup = backup.absolute()
    # Every file made here is root's alone (keys, hashes, the settings with their secrets); the
    # mail folders are handed to the storage user explicitly.
    previous_umask = os.umask(0o077)
    try:
        return _back_up(settings, backup, progress)
    finally:
        os.umask(previous_umask)


def _back_up(settings: Settings, backup: Path, progress: Progress) -> BackupSummary:
    _prepare_folder(backup)
    database_folder = backup / "database"
    database_folder.mkdir(mode=0o700)
    progress("database: taking a snapshot")
    description, held, elsewhere = _snapshot(settings.sqlalchemy_url, settings.node_name, database_folder)
    if not settings.is_postgresql and settings.usage_database_path.exists():
        _sqlite_online_backup(settings.usage_database_path, database_folder / "usage.db")
    rows = sum(table["rows"] for table in description["tables"].values())
    progress(f"database: {len(description['tables'])} tables, {rows} rows")
    counts = _back_up_mail(settings, held, backup / "mail", progress)
    state = _back_up_state(settings, backup)
    progress(f"state: {', '.join(state) or 'nothing'}")
    manifest = {
        "format": FORMAT,
        "letterhead": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "node": settings.node_name,
        "home": str(settings.home),
        "engine": "postgresql" if settings.is_postgresql else "sqlite",
        "database": description,
        "mailboxes": [
            {
                "address": mailbox.address,
                "storage_key": mailbox.storage_key,
                "messages": counts[mailbox.storage_key],
            }
            for mailbox in held
        ],
        "state": state,
    }
    unfinished = backup / (MANIFEST + ".new")
    unfinished.write_text(json.dumps(manifest, indent=1))
    unfinished.rename(backup / MANIFEST)
    return BackupSummary(
        tables=len(description["tables"]),
        rows=rows,
        mailboxes=len(held),
        messages=sum(counts.values()),
        mailboxes_elsewhere=elsewhere,
    )


# ---- restore ---------------------------------------------------------------------------------


def read_manifest(backup: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupRefused(
            f"{backup} holds no {MANIFEST}: it is not a Letterhead backup, or the backup did not finish."
        ) from None
    except (OSError, ValueError) as error:
        raise BackupRefused(f"Cannot read {backup / MANIFEST}: {error}") from None
    if manifest.get("format") != FORMAT:
        raise BackupRefused(
            f"This backup's format ({manifest.get('format')}) is not one this Letterhead reads."
        )
    return manifest


def settings_to_restore(home: Path, backup: Path) -> str:
    """Put the backup's settings in place on a machine that has none; else keep them beside."""
    saved = backup / "letterhead.toml"
    if not saved.exists():
        return "no settings in the backup"
    target = home / "letterhead.toml"
    if target.exists():
        shutil.copy(saved, home / "letterhead.toml.restored")
        os.chmod(home / "letterhead.toml.restored", 0o600)
        return "this machine's settings kept; the backup's are in letterhead.toml.restored"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(saved, target)
    os.chmod(target, 0o600)
    return "the backup's settings restored"


def _known_revision(settings: Settings, revision: str) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(settings.sqlalchemy_url))
    try:
        known = scripts.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        known = False
    if not known:
        raise BackupRefused(
            f"The backup was made by a newer Letterhead (schema {revision or 'unknown'}): restore it with "
            "that release or a later one."
        )


def _require_empty_target(settings: Settings) -> None:
    """No mail, and no database or one without tenants (as `letterhead install` leaves it without
    a first tenant), whose schema the backup's then replaces."""
    if settings.mail_root.is_dir() and any(settings.mail_root.iterdir()):
        raise BackupRefused(f"{settings.mail_root} already holds mail: restore only into a new installation.")
    if not settings.is_postgresql and not settings.database_path.exists():
        return
    engine = create_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            if not inspect(connection).has_table("tenant"):
                return
            if connection.exec_driver_sql("SELECT count(*) FROM tenant").scalar():
                raise BackupRefused(
                    "The database already holds an installation with tenants: restore only into a new one."
                )
            if settings.is_postgresql:
                # pg_restore creates every table, view and function: none may exist yet.
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
    except LetterheadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise BackupRefused(f"Cannot prepare the database to restore into: {server_reason(error)}") from error
    finally:
        engine.dispose()


def _remove_sqlite_files(settings: Settings) -> None:
    """An empty database (checked) and its journals, or a restored copy that failed its check."""
    for path in (settings.database_path, settings.usage_database_path):
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)


def _load_database(settings: Settings, backup: Path, manifest: dict[str, Any]) -> None:
    if settings.is_postgresql:
        postgres.restore_dump(settings.sqlalchemy_url, backup / "database" / "letterhead.dump")
    else:
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_sqlite_files(settings)
        shutil.copy(backup / "database" / "letterhead.db", settings.database_path)
        if (backup / "database" / "usage.db").exists():
            settings.usage_database_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(backup / "database" / "usage.db", settings.usage_database_path)
    engine = create_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            restored = _reflected_sums(connection)
    finally:
        engine.dispose()
    expected = {name: TableSum(**values) for name, values in manifest["database"]["tables"].items()}
    differing = sorted(
        name for name in expected.keys() | restored.keys() if expected.get(name) != restored.get(name)
    )
    if differing:
        if not settings.is_postgresql:
            _remove_sqlite_files(settings)
        raise BackupRefused(
            f"The restored database differs from the backup in {', '.join(differing)}: the backup is damaged. "
            + ("Drop the database and make a new one before trying again." if settings.is_postgresql else "")
        )


def _restore_state(settings: Settings, backup: Path, old_home: str) -> None:
    archive_path = backup / "state.tar"
    if not archive_path.exists():
        return
    with tarfile.open(archive_path) as archive:
        archive.extractall(settings.home, filter="tar")
    # certbot's renewal settings name their files and the deploy hook's LETTERHEAD_HOME by full
    # path: the old machine's state directory may have been elsewhere.
    if old_home and old_home != str(settings.home):
        for renewal in (settings.acme_dir / "certbot" / "config" / "renewal").glob("*.conf"):
            renewal.write_text(renewal.read_text().replace(old_home, str(settings.home)))


def _restore_mail(
    settings: Settings, backup: Path, manifest: dict[str, Any], known_keys: set[str], progress: Progress
) -> int:
    vmail = vmail_account(settings)
    settings.mail_root.mkdir(parents=True, exist_ok=True)
    os.chown(settings.mail_root, vmail.uid, vmail.gid)
    os.chmod(settings.mail_root, 0o700)
    mailboxes = manifest["mailboxes"]
    messages = 0
    for number, mailbox in enumerate(mailboxes, start=1):
        storage_key = mailbox["storage_key"]
        if storage_key not in known_keys:
            raise BackupRefused(
                f"The backup's mail names a mailbox its database does not hold ({storage_key!r})."
            )
        saved = backup / "mail" / storage_key
        if not saved.is_dir():
            continue
        home = sieve_files.mailbox_home(settings.mail_root, storage_key)  # checks the key's form
        shutil.copytree(saved, home, symlinks=True)
        _chown_tree(home, vmail.uid, vmail.gid)
        restored = _message_count(home / "Maildir")
        if restored != mailbox["messages"]:
            raise BackupRefused(
                f"{mailbox['address']}: {restored} messages restored where the backup counted "
                f"{mailbox['messages']}: the backup's mail is damaged. The database is restored: start again "
                "from a new installation (an empty database and no mail)."
            )
        messages += restored
        if number % 50 == 0 or number == len(mailboxes):
            progress(f"mail: {number} of {len(mailboxes)} mailboxes")
    return messages


def _storage_keys(settings: Settings) -> set[str]:
    engine = create_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT storage_key FROM mailbox")).scalars())
    finally:
        engine.dispose()


@dataclasses.dataclass(frozen=True)
class RestoreSummary:
    tables: int
    rows: int
    mailboxes: int
    messages: int
    revision_from: str


def restore(settings: Settings, backup: Path, *, progress: Progress = lambda _line: None) -> RestoreSummary:
    """Restore `backup` into this (new, stopped) installation."""
    backup = backup.absolute()
    manifest = read_manifest(backup)
    if postfix.master_pid(settings.postfix_queue) or dovecot.master_pid(settings.run_dir / "dovecot"):
        raise BackupRefused("The stack is running: stop it first (letterhead down), then restore.")
    engine = "postgresql" if settings.is_postgresql else "sqlite"
    if manifest["engine"] != engine:
        raise BackupRefused(
            f"The backup is of a {manifest['engine']} installation and this one is set to {engine}: "
            "restore onto the same engine (then, from SQLite, `letterhead db copy` moves to PostgreSQL)."
        )
    revision = manifest["database"]["revision"]
    _known_revision(settings, revision)
    _require_empty_target(settings)
    progress("database: loading")
    _load_database(settings, backup, manifest)
    progress(f"database: every table checked against the backup; migrating from {revision}")
    upgrade_database(settings.sqlalchemy_url)
    if settings.is_postgresql:
        database_logins.grant_daemon_logins(settings.sqlalchemy_url)
    _restore_state(settings, backup, manifest.get("home", ""))
    messages = _restore_mail(settings, backup, manifest, _storage_keys(settings), progress)
    tables = manifest["database"]["tables"]
    return RestoreSummary(
        tables=len(tables),
        rows=sum(table["rows"] for table in tables.values()),
        mailboxes=len(manifest["mailboxes"]),
        messages=messages,
        revision_from=revision,
    )
