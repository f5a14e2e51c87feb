from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from controlplane.models import Base
from controlplane.schema import alembic_config, upgrade_database


def _migrated(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_database(url)
    return create_engine(url)


def test_migrations_create_every_model_table_and_column(tmp_path: Path) -> None:
    engine = _migrated(tmp_path)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated_columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated_columns == set(table.columns.keys()), table.name
        migrated_indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        assert migrated_indexes >= {index.name for index in table.indexes}, table.name
    engine.dispose()


def test_migrated_schema_matches_the_models_as_alembic_check_would(tmp_path: Path) -> None:
    engine = _migrated(tmp_path)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_the_newest_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    assert "auth_event" not in inspect(engine).get_table_names()
    engine.dispose()
    upgrade_database(url)
    engine = create_engine(url)
    assert {"auth_event", "audit_entry"} <= set(inspect(engine).get_table_names())
    engine.dispose()
