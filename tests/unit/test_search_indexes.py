"""A bulk import builds the log tables' search indexes after its rows; nothing leaves them missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from controlplane.logs import ingest as ingest_module
from controlplane.logs import search_indexes
from controlplane.logs.ingest import ingest_file
from controlplane.runners.follower import MissingIndexes
from controlplane.runtime import Installation
from controlplane.settings import Settings
from tests.unit.test_log_ingest import FIXTURES, REFERENCE, _counts, _transaction

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _sqlite_only(db: Session) -> None:
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("indexes are set aside only on SQLite (search_indexes.py says why)")


@pytest.fixture
def any_size_is_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture log is small: every read of it counts as a bulk import.
    monkeypatch.setattr(search_indexes, "BULK_IMPORT_BYTES", 0)
    monkeypatch.setattr(search_indexes, "LOG_BYTES_PER_TRANSACTION", 1)


def _log(tmp_path: Path, name: str = "postfix.log") -> Path:
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    return path


def _names(indexes: list) -> set[str]:
    return {index.name for index in indexes}


def _plan(db: Session, sql: str) -> str:
    return " ".join(str(row[-1]) for row in db.execute(text(f"EXPLAIN QUERY PLAN {sql}")))


def test_the_set_aside_indexes_are_search_indexes_the_ingestion_never_reads() -> None:
    names = _names(search_indexes.deferrable_indexes())
    assert len(names) == 15
    assert "ix_mail_recipient_result_recipient" in names and "ix_auth_event_tenant_id_time" in names
    # Read while ingesting: a message's later lines, an evicted message, a late login reason.
    assert not names & {
        "ix_mail_queue_entry_queue_id_removed",
        "ix_mail_recipient_result_transaction_id",
        "ix_auth_event_login",
    }


def test_a_bulk_import_stores_the_same_rows_and_builds_its_indexes_after_them(
    db: Session,
    installation: Installation,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    any_size_is_bulk: None,
) -> None:
    missing_while_reading: list[set[str]] = []
    stream = ingest_module._ingest_stream

    def reading(session: Session, *args: object, **kwargs: object) -> None:
        missing_while_reading.append(_names(search_indexes.missing_indexes(session)))
        stream(session, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "_ingest_stream", reading)
    result = ingest_file(db, _log(tmp_path), reference=REFERENCE, bulk=True)

    assert result.indexes_built_after
    assert missing_while_reading == [_names(search_indexes.deferrable_indexes())]
    assert search_indexes.missing_indexes(db) == []
    assert "ix_mail_recipient_result_recipient" in _plan(
        db, "SELECT id FROM mail_recipient_result WHERE recipient = 'alice@a.test'"
    )
    # Committed, and the rows an ordinary read stores (test_log_ingest.py checks them in detail).
    with installation.sessions() as other:
        assert _counts(other) == _counts(db)
    assert _transaction(db, "delivered-1@client.example").client_ip == "192.0.2.10"
    other_path = tmp_path / "plain"
    other_path.mkdir()
    ordinary = ingest_file(db, _log(other_path, "dovecot.log"), reference=REFERENCE, bulk=False)
    assert not ordinary.indexes_built_after


def test_a_read_of_little_log_keeps_the_indexes_up(db: Session, tmp_path: Path) -> None:
    result = ingest_file(db, _log(tmp_path), reference=REFERENCE, bulk=True)
    assert not result.indexes_built_after
    assert search_indexes.missing_indexes(db) == []


def test_more_stored_rows_than_a_read_would_add_keep_the_indexes_up(
    db: Session, tmp_path: Path, any_size_is_bulk: None
) -> None:
    ingest_file(db, _log(tmp_path), reference=REFERENCE)
    stored = db.execute(text("SELECT max(id) FROM mail_transaction")).scalar_one()
    # Rebuilding reads every stored row: a read adding fewer than a quarter of them keeps them up.
    assert not search_indexes.worth_deferring(db, stored // 4 - 1)
    assert search_indexes.worth_deferring(db, stored // 4 + 1)


def test_an_import_under_way_keeps_every_other_builder_off(installation: Installation) -> None:
    with installation.sessions() as importing, installation.sessions() as other:
        with search_indexes.deferred(importing):
            assert len(search_indexes.missing_indexes(other)) == 15
            # The follower's minute check, and a second import ending first, build nothing.
            assert MissingIndexes(installation).build_if_due() == 0
            with search_indexes.deferred(other):
                pass
            assert len(search_indexes.missing_indexes(other)) == 15
        # The last import to end builds them.
        assert search_indexes.missing_indexes(other) == []


def test_an_import_killed_before_its_build_leaves_them_to_the_follower(
    db: Session, settings: Settings, installation: Installation
) -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from sqlalchemy import create_engine\n"
            "from sqlalchemy.orm import Session\n"
            "from controlplane.logs import search_indexes\n"
            "with Session(create_engine(sys.argv[1])) as session:\n"
            "    with search_indexes.deferred(session):\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n",
            f"sqlite:///{settings.database_path}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert child.returncode == -signal.SIGKILL
    assert len(search_indexes.missing_indexes(db)) == 15
    db.rollback()

    assert MissingIndexes(installation).build_if_due() == 15
    assert search_indexes.missing_indexes(db) == []
