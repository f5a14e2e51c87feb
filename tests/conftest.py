"""Fixtures: a migrated database per test, and a real private mail stack per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controlplane.daemons.scratch import ScratchStack
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.settings import Settings, load_settings

KB = 1024


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite the golden files from the current renderers."
    )


# The discard port: nothing listens on loopback, so a query fails at once.
SILENT_PORT = 9


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated through Alembic; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "letterhead.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_template: Path) -> Settings:
    # DNS checks ask a loopback port where nothing answers (records come out "unchecked"),
    # never the machine's resolver: tests send no packet off the box. Tests that check
    # DNS point `dns_resolver` at their own dnsmasq.
    settings = load_settings(
        environ={}, home=tmp_path, min_mailbox_bytes=KB, testing=True, dns_resolver=f"127.0.0.1:{SILENT_PORT}"
    )
    settings.database_path.parent.mkdir()
    shutil.copy(migrated_template, settings.database_path)
    return settings


@pytest.fixture
def installation(settings: Settings) -> Iterator[Installation]:
    installation = Installation(settings)
    installation.sessions.configure(info={"min_mailbox_bytes": KB})
    yield installation
    installation.dispose()


@pytest.fixture
def db(installation: Installation) -> Iterator[Session]:
    """A session whose work is rolled back at the end of the test."""
    with installation.sessions() as session:
        yield session
        session.rollback()


@pytest.fixture(scope="module")
def mail_stack() -> Iterator[ScratchStack]:
    if not shutil.which("postfix") and not Path("/usr/sbin/postfix").exists():
        pytest.fail(
            "Postfix is not installed: run `make install-system` (the e2e tests need the real daemons)."
        )
    scratch = ScratchStack(min_mailbox_bytes=KB)
    try:
        scratch.start()
        yield scratch
    finally:
        scratch.stop()
