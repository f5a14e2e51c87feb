"""Bring a database to the newest schema with the Alembic migrations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from controlplane.settings import MIGRATIONS_ROOT, PROJECT_ROOT


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_ROOT))
    # ConfigParser interpolates '%': a percent-encoded password (%40 for '@') must pass as it is.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> bool:
    """Migrate to `revision`; whether any migration ran (the schema changed)."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), revision)
    return current_revision(url) != before


def current_revision(url: str) -> str | None:
    """The database's Alembic revision (None before the first migration)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@contextlib.contextmanager
def sqlite_views_and_triggers_set_aside(op: Any) -> Iterator[None]:
    """Drop every view and trigger, then restore them word for word (in migrations only).

    Rebuilding a table (Alembic's batch mode: copy, drop, rename) would otherwise leave the
    Postfix/Dovecot views and the counting triggers pointing at a dropped table, which
    SQLite refuses at the rename. Foreign keys are off in migrations (SQLite's default),
    so no row cascades meanwhile. Other engines alter tables in place: nothing to set aside.
    """
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    saved = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY type DESC"
            )
        )
        .all()
    )
    for kind, name, _sql in saved:
        op.execute(f'DROP {kind.upper()} "{name}"')
    yield
    for _kind, _name, sql in saved:
        op.execute(sql)
