from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from controlplane.models import Base
from controlplane.schema import alembic_config, upgrade_database
from tests.factories import insert_raw_rows


def _migrated(url: str):
    upgrade_database(url)
    return create_engine(url)


def test_migrations_create_every_model_table_and_column(empty_database: str) -> None:
    engine = _migrated(empty_database)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated_columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated_columns == set(table.columns.keys()), table.name
        migrated_indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        assert migrated_indexes >= {index.name for index in table.indexes}, table.name
    engine.dispose()


def test_migrated_schema_matches_the_models_as_alembic_check_would(empty_database: str) -> None:
    engine = _migrated(empty_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_every_migration_downgrades_and_upgrades_again(empty_database: str) -> None:
    url = empty_database
    upgrade_database(url)
    command.downgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    assert "auth_event" not in inspect(engine).get_table_names()
    engine.dispose()
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert inspect(engine).get_view_names() == []
    engine.dispose()
    upgrade_database(url)
    engine = create_engine(url)
    assert {"auth_event", "audit_entry"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_domain_counts_are_taken_from_existing_rows_and_removed_on_downgrade(empty_database: str) -> None:
    url = empty_database
    upgrade_database(url, "0002")
    engine = create_engine(url)
    with engine.begin() as connection:
        insert_raw_rows(
            connection, domains=("a.test", "b.test"), mailboxes=(("x", "", 3), ("y", "", 4)), aliases=("z",)
        )
    engine.dispose()
    upgrade_database(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name, mailbox_count, alias_count, allocated_bytes FROM domain ORDER BY name"
        ).all()
    engine.dispose()
    assert rows == [("a.test", 2, 1, 7), ("b.test", 0, 0, 0)]
    command.downgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    assert "mailbox_count" not in {column["name"] for column in inspect(engine).get_columns("domain")}
    with engine.connect() as connection:
        catalog = (
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'domain_counts_%'"
            if engine.dialect.name == "sqlite"
            else "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'domain_counts_%%'"
        )
        triggers = connection.exec_driver_sql(catalog).scalar()
    engine.dispose()
    assert triggers == 0


def test_an_installation_with_mailboxes_upgrades_through_the_node_migrations(empty_database: str) -> None:
    url = empty_database
    upgrade_database(url, "0014")
    engine = create_engine(url)
    with engine.begin() as connection:
        insert_raw_rows(connection, mailboxes=(("x", "h", 3),))
    engine.dispose()
    upgrade_database(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT local_part, node_id FROM mailbox").all()
        counts = connection.exec_driver_sql("SELECT mailbox_count FROM domain").scalar()
        users = connection.exec_driver_sql("SELECT local_part FROM mail_users").all()
        if engine.dialect.name == "sqlite":
            # Rebuilt to add its node, the table still never hands a deleted mailbox's id on.
            table_sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'mailbox'"
            ).scalar()
            assert "AUTOINCREMENT" in table_sql
    engine.dispose()
    assert rows == [("x", None)] and counts == 1 and users == [("x",)]
