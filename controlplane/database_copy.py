"""Move an installation's database to PostgreSQL without losing a row.

`letterhead db copy --to postgresql+psycopg://...`: the target is migrated to the same schema, must
hold no rows yet, and receives every table in foreign-key order, in batches, in one transaction.
Each table is then counted and checksummed on both sides (its rows in key order, as the models
read them, so a moment or a flag compares the same on either engine); any difference rolls the
copy back. Storage usage, kept by Dovecot beside an SQLite installation, is carried over too.

What it does not carry, and why: the mail itself (files in the state directory, which stay where
they are), brand certificates for Postfix's SNI (each machine's own file, rebuilt from the
certificates at the next `letterhead up`) and the daemons' database logins (made for the target by
`letterhead db upgrade`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, func, make_url, pool, select, text

from controlplane.daemons import usage
from controlplane.db import server_reason
from controlplane.errors import LetterheadError
from controlplane.models import Base
from controlplane.schema import upgrade_database
from controlplane.settings import Settings, checked_database_url

BATCH_ROWS = 2000
# Kept by the counting triggers (migration 0003) as mailboxes and aliases arrive: copied as zero,
# then checked against the source like every other column.
TRIGGER_COUNTED = {"domain": ("mailbox_count", "alias_count", "allocated_bytes")}
# The daemons' logins belong to the database they were made for: `letterhead db upgrade` on the
# target makes its own. The state generation's one row is made by the migrations: its number is
# carried over, not its row.
NOT_COPIED = {"daemon_login"}
SEEDED = {"state_generation"}


class CopyRefused(LetterheadError):
    """The copy cannot be made (the target is not empty, not PostgreSQL, or not reachable)."""


@dataclasses.dataclass(frozen=True)
class CopiedTable:
    name: str
    rows: int
    checksum: str


def _value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _ordered_rows(connection: Connection, table: Table) -> Iterator[tuple[Any, ...]]:
    order = list(table.primary_key.columns) or list(table.columns)
    # On this statement only: Connection.execution_options() would change the connection itself.
    yield from connection.execute(select(table).order_by(*order), execution_options={"yield_per": BATCH_ROWS})


def table_checksum(connection: Connection, table: Table) -> tuple[int, str]:
    """Rows and a SHA-256 over them in key order, each value as the models read it."""
    digest, rows = hashlib.sha256(), 0
    for row in _ordered_rows(connection, table):
        digest.update(("\x1f".join(_value(value) for value in row) + "\x1e").encode())
        rows += 1
    return rows, digest.hexdigest()


def _copied_tables() -> list[Table]:
    return [table for table in Base.metadata.sorted_tables if table.name not in NOT_COPIED]


def _require_empty(connection: Connection) -> None:
    for table in _copied_tables():
        if table.name in SEEDED:
            continue
        if connection.execute(select(func.count()).select_from(table)).scalar():
            raise CopyRefused(
                f"The target database already holds data (table {table.name}): copy only into an empty database."
            )


def _copy_table(source: Connection, target: Connection, table: Table) -> None:
    if table.name in SEEDED:
        target.execute(table.delete())
    zeroed = TRIGGER_COUNTED.get(table.name, ())
    batch: list[dict[str, Any]] = []
    for row in _ordered_rows(source, table):
        values = dict(row._mapping)
        for column in zeroed:
            values[column] = 0
        batch.append(values)
        if len(batch) >= BATCH_ROWS:
            target.execute(table.insert(), batch)
            batch = []
    if batch:
        target.execute(table.insert(), batch)
    # Ids were copied as they were: the target's sequence must continue after the highest.
    for column in table.primary_key.columns:
        if column.autoincrement is True or (
            column.autoincrement == "auto" and column.type.python_type is int
        ):
            target.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"coalesce((SELECT max({column.name}) FROM {table.name}), 0) + 1, false)"
                )
            )


def _copy_usage(settings: Settings, source: Connection, target: Connection) -> int:
    if not settings.is_postgresql:
        measured = usage.all_measurements(settings.usage_database_path)
    elif source.exec_driver_sql("SELECT to_regclass('mailbox_usage')").scalar() is None:
        measured = []
    else:
        measured = source.exec_driver_sql(
            "SELECT address, bytes, messages, measured_at_ms FROM mailbox_usage ORDER BY address"
        ).all()
    usage.create_usage_table(target)
    for address, used, messages, at_ms in measured:
        target.execute(
            text(
                "INSERT INTO mailbox_usage (address, bytes, messages, measured_at_ms) "
                "VALUES (:address, :bytes, :messages, :at)"
            ),
            {"address": address, "bytes": used, "messages": messages, "at": at_ms},
        )
    return len(measured)


def copy_database(
    settings: Settings, target_url: str, *, progress: Callable[[str], None] = lambda _line: None
) -> list[CopiedTable]:
    """Copy the installation's database into the empty PostgreSQL database at `target_url`."""
    try:
        target_url = checked_database_url(target_url)
    except ValueError as error:
        raise CopyRefused(str(error)) from None
    if not target_url.startswith("postgresql"):
        raise CopyRefused("The target must be a PostgreSQL database (postgresql+psycopg://...).")
    if make_url(target_url) == make_url(settings.sqlalchemy_url):
        raise CopyRefused("The target is the database this installation already uses.")
    try:
        upgrade_database(target_url)
    except Exception as error:  # noqa: BLE001 - any driver or server failure: said in words
        raise CopyRefused(f"Cannot prepare the target database: {server_reason(error)}") from error
    source_engine: Engine = create_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    target_engine: Engine = create_engine(target_url, poolclass=pool.NullPool)
    copied: list[CopiedTable] = []
    try:
        with source_engine.connect() as source, target_engine.begin() as target:
            _require_empty(target)
            tables = _copied_tables()
            for table in tables:
                _copy_table(source, target, table)
                progress(f"copied {table.name}")
            for table in tables:
                rows, checksum = table_checksum(source, table)
                target_rows, target_checksum = table_checksum(target, table)
                if (rows, checksum) != (target_rows, target_checksum):
                    raise CopyRefused(
                        f"Table {table.name} differs after the copy ({rows} rows here, {target_rows} there): "
                        "nothing was kept."
                    )
                copied.append(CopiedTable(table.name, rows, checksum))
            measured = _copy_usage(settings, source, target)
            progress(f"copied {measured} storage usage measurements")
    except LetterheadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise CopyRefused(f"The copy failed and nothing was kept: {server_reason(error)}") from error
    finally:
        source_engine.dispose()
        target_engine.dispose()
    return copied
