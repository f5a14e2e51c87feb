"""Storage used per mailbox, as Dovecot last measured it.

Dovecot's quota_clone plugin writes each user's usage after every change, through
its dict service, into a SQLite file of its own (templates/dovecot/
dovecot-dict-usage.conf.ext.j2). Letterhead only reads that file: one query for a
whole page of mailboxes, no doveadm call per row. A mailbox with no row (never
delivered to, or renamed since its last change) has unknown usage, not an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import sqlite3
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from controlplane.db import after_commit, server_reason
from controlplane.models import Mailbox
from controlplane.settings import Settings

log = logging.getLogger(__name__)

# Dovecot's dict-sql only updates rows; the table is ours. It writes bytes and messages
# with one upsert per change, and the trigger dates each measurement, so a row left by
# an earlier holder of an address can be told apart from the current mailbox's.
_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS mailbox_usage (
        address TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL DEFAULT 0,
        messages INTEGER NOT NULL DEFAULT 0,
        measured_at_ms INTEGER NOT NULL DEFAULT ({_NOW_MS})
    )""",
    # The domain of each row, filled in as Dovecot inserts it, so a tenant's total is an
    # index range per domain rather than a scan of every address on the platform.
    "ALTER TABLE mailbox_usage ADD COLUMN domain TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX IF NOT EXISTS ix_mailbox_usage_domain ON mailbox_usage (domain)",
    "UPDATE mailbox_usage SET domain = substr(address, instr(address, '@') + 1) WHERE domain = ''",
    """CREATE TRIGGER IF NOT EXISTS mailbox_usage_domain
        AFTER INSERT ON mailbox_usage
        BEGIN
            UPDATE mailbox_usage SET domain = substr(NEW.address, instr(NEW.address, '@') + 1)
            WHERE address = NEW.address;
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS mailbox_usage_measured
        AFTER UPDATE OF bytes, messages ON mailbox_usage
        BEGIN
            UPDATE mailbox_usage SET measured_at_ms = {_NOW_MS} WHERE address = NEW.address;
        END""",
)


@dataclasses.dataclass(frozen=True)
class UsedBytes:
    """The storage one mailbox uses (bytes and messages), and when Dovecot measured it."""

    bytes: int
    messages: int
    measured_at: dt.datetime

    def percent_of(self, quota_bytes: int) -> int:
        """Whole percent of `quota_bytes`; above 100 when Dovecot stored past the quota (its warnings)."""
        return round(100 * self.bytes / quota_bytes) if quota_bytes > 0 else 0


# On PostgreSQL the table sits in the shared database, beside the state it measures, so the
# panel of any node sees the usage Dovecot measured on every node. Dovecot's dict writes it as a
# role of its own (daemons/database_logins.py); the domain is a generated column.
_PG_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
POSTGRES_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS mailbox_usage (
        address TEXT PRIMARY KEY,
        bytes BIGINT NOT NULL DEFAULT 0,
        messages BIGINT NOT NULL DEFAULT 0,
        measured_at_ms BIGINT NOT NULL DEFAULT {_PG_NOW_MS},
        domain TEXT GENERATED ALWAYS AS (split_part(address, '@', 2)) STORED
    )""",
    "CREATE INDEX IF NOT EXISTS ix_mailbox_usage_domain ON mailbox_usage (domain)",
    f"""CREATE OR REPLACE FUNCTION mailbox_usage_measured() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.measured_at_ms := {_PG_NOW_MS}; RETURN NEW; END $$""",
    """CREATE OR REPLACE TRIGGER mailbox_usage_measured
        BEFORE UPDATE OF bytes, messages ON mailbox_usage
        FOR EACH ROW EXECUTE FUNCTION mailbox_usage_measured()""",
)


def create_usage_table(connection: Connection) -> None:
    """Create the usage table in a PostgreSQL database (idempotent)."""
    for statement in POSTGRES_SCHEMA:
        connection.exec_driver_sql(statement)


@functools.lru_cache(maxsize=8)
def _postgres_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=2, hide_parameters=True)


def _postgres_url(source: Settings | Path | str) -> str | None:
    """The shared database's URL when usage lives there (PostgreSQL), else None."""
    url = source.sqlalchemy_url if isinstance(source, Settings) else str(source)
    return url if url.startswith("postgresql") else None


def _postgres_rows(url: str, statement: str, parameters: dict[str, Any]) -> list[Any] | None:
    try:
        with _postgres_engine(url).connect() as connection:
            return list(connection.execute(text(statement), parameters))
    except SQLAlchemyError as error:
        # The server's words only: the statement would name the addresses asked about.
        reason = server_reason(error)
        log.warning("Storage usage unknown: cannot read it from the database: %s", reason)
        return None


def create_usage_database(path: Path) -> None:
    """Create the usage table (idempotent); Dovecot's dict service fills it."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(mailbox_usage)")}
        for statement in SCHEMA:
            if "ADD COLUMN domain" in statement and "domain" in columns:
                continue  # created by an earlier version of this schema
            connection.execute(statement)


def _database_path(source: Settings | Path | str) -> Path:
    return source.usage_database_path if isinstance(source, Settings) else Path(source)


def usage_of(source: Settings | Path | str, addresses: Iterable[str]) -> dict[str, UsedBytes]:
    """The usage Dovecot last reported for each of `addresses` that has any, in one query.

    A missing or unreadable usage database means usage unknown: an empty answer.
    """
    wanted = {address: address.lower() for address in addresses}
    if not wanted:
        return {}
    keys = sorted(set(wanted.values()))
    if url := _postgres_url(source):
        rows = _postgres_rows(
            url,
            "SELECT address, bytes, messages, measured_at_ms FROM mailbox_usage WHERE address = ANY(:keys)",
            {"keys": keys},
        )
        if rows is None:
            return {}
    else:
        path = _database_path(source)
        if not path.is_file():
            return {}
        # Read-only: root must not create journal files in the dict service's folder.
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2)) as connection:
                rows = connection.execute(
                    "SELECT address, bytes, messages, measured_at_ms FROM mailbox_usage"
                    " WHERE address IN (SELECT value FROM json_each(?))",
                    (json.dumps(keys),),
                ).fetchall()
        except sqlite3.Error as error:
            log.warning("Storage usage unknown: cannot read %s: %s", path, error)
            return {}
    measured = {
        address: UsedBytes(
            bytes=int(used), messages=int(messages),
            measured_at=dt.datetime.fromtimestamp(int(at_ms) / 1000, dt.UTC),
        )
        for address, used, messages, at_ms in rows
    }  # fmt: skip
    return {address: measured[key] for address, key in wanted.items() if key in measured}


def all_measurements(path: Path) -> list[tuple[str, int, int, int]]:
    """Every row of an SQLite usage file (address, bytes, messages, measured at ms); none if absent."""
    if not path.is_file():
        return []
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as connection:
        return connection.execute(
            "SELECT address, bytes, messages, measured_at_ms FROM mailbox_usage ORDER BY address"
        ).fetchall()


def usage_of_mailboxes(source: Settings | Path | str, mailboxes: Iterable[Mailbox]) -> dict[str, UsedBytes]:
    """Usage by address for these mailboxes; a measurement older than the mailbox is left out.

    Dovecot keys usage by address, so a deleted or renamed mailbox leaves its row behind;
    a mailbox later created at that address has not been measured yet.
    """
    created = {mailbox.address: _as_utc(mailbox.created_at) for mailbox in mailboxes}
    return _measured_since(usage_of(source, created), created)


def _measured_since(usage: Mapping[str, UsedBytes], since: Mapping[str, dt.datetime]) -> dict[str, UsedBytes]:
    # created_at has whole seconds: a row written in the creating second still counts.
    return {
        address: used
        for address, used in usage.items()
        if used.measured_at >= since[address].replace(microsecond=0)
    }


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps server_default timestamps (CURRENT_TIMESTAMP, UTC) without an offset.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def used_by_domains(source: Settings | Path | str, domain_names: Iterable[str]) -> int | None:
    """The storage Dovecot last measured for every mailbox of these domains, or None if unknown."""
    names = sorted(set(domain_names))
    if url := _postgres_url(source):
        rows = _postgres_rows(
            url,
            "SELECT coalesce(sum(bytes), 0) FROM mailbox_usage WHERE domain = ANY(:names)",
            {"names": names},
        )
        return None if rows is None else int(rows[0][0])
    path = _database_path(source)
    if not path.is_file():
        return None
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2)) as connection:
            (total,) = connection.execute(
                "SELECT coalesce(sum(bytes), 0) FROM mailbox_usage WHERE domain IN (SELECT value FROM json_each(?))",
                (json.dumps(names),),
            ).fetchone()
    except sqlite3.Error as error:
        log.warning("Storage usage unknown: cannot read %s: %s", path, error)
        return None
    return int(total)


def forget_usage(
    source: Settings | Path | str, *, addresses: Iterable[str] = (), domain: str | None = None
) -> None:
    """Drop the measurements of mailboxes that are gone (deleted, renamed, or their domain deleted),
    so totals count only mailboxes that exist. Dovecot writes a fresh row at the next change."""
    if url := _postgres_url(source):
        try:
            with _postgres_engine(url).begin() as connection:
                # The table exists once a stack prepared the database; none yet: nothing to forget.
                if connection.exec_driver_sql("SELECT to_regclass('mailbox_usage')").scalar() is None:
                    return
                addresses = [address.lower() for address in addresses]
                connection.execute(
                    text("DELETE FROM mailbox_usage WHERE address = ANY(:gone) OR domain = :domain"),
                    {"gone": addresses, "domain": domain or ""},
                )
        except SQLAlchemyError as error:
            log.warning("Could not drop old usage rows: %s", error)
        return
    path = _database_path(source)
    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as connection, connection:
            connection.executemany(
                "DELETE FROM mailbox_usage WHERE address = ?", [(address.lower(),) for address in addresses]
            )
            if domain:
                connection.execute("DELETE FROM mailbox_usage WHERE domain = ?", (domain,))
    except sqlite3.Error as error:
        log.warning("Could not drop old usage rows from %s: %s", path, error)


def forget_usage_after_commit(session: Session, **gone: Any) -> None:
    """Once the session commits, drop Dovecot's measurements of mailboxes that are gone."""
    database = session.info.get("usage_database")
    if database:
        after_commit(session, f"forget-usage-{sorted(gone.items())}", lambda: forget_usage(database, **gone))
