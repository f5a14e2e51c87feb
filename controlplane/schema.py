"""Bring a database to the newest schema with the Alembic migrations."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from controlplane.settings import MIGRATIONS_ROOT, PROJECT_ROOT


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_ROOT))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
