"""Fixtures: a migrated database per test, and a real private mail stack per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controlplane.runners.scratch import ScratchStack
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.settings import Settings, load_settings
from tests.dnsserver import LoopbackDns

KB = 1024


# Tests under these folders start daemons, checkers or a browser: each carries the folder's
# marker, so `-m "not e2e and not integration and not browser"` starts none of them.
FOLDER_MARKERS = ("e2e", "integration", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite the golden files from the current renderers."
    )


@pytest.fixture(scope="session")
def refusing_dns() -> Iterator[LoopbackDns]:
    server = LoopbackDns()
    yield server
    server.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated through Alembic; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "letterhead.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_template: Path, refusing_dns: LoopbackDns) -> Settings:
    # DNS checks ask a loopback server that refuses every query at once (records come out
    # "unchecked"), never the machine's resolver: tests send no packet off the box. Tests
    # that check DNS point `dns_resolver` at their own dnsmasq.
    settings = load_settings(
        environ={}, home=tmp_path, min_mailbox_bytes=KB, testing=True, dns_resolver=refusing_dns.address
    )
    settings.database_path.parent.mkdir()
    shutil.copy(migrated_template, settings.database_path)
    return settings


@pytest.fixture
def installation(settings: Settings) -> Iterator[Installation]:
    # The very wiring production uses (runtime.Installation): the settings above carry the
    # tests' smallest mailbox; the hooks find no daemon running for this state directory.
    installation = Installation(settings)
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
