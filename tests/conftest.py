"""Fixtures: a migrated database per test, and a real private mail stack per module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controlplane.daemons.postgres import PrivatePostgres
from controlplane.runners.scratch import SCRATCH_POSTGRES_VARIABLE, ScratchStack, free_ports
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.settings import Settings, load_settings
from tests import postgres_databases
from tests.dnsserver import LoopbackDns
from tests.postgres_databases import TEMPLATE_DATABASE, TESTING_ON_POSTGRES

KB = 1024


# Tests under these folders start daemons, checkers or a browser: each carries the folder's
# marker, so `-m "not e2e and not integration and not browser"` starts none of them.
FOLDER_MARKERS = ("e2e", "integration", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)
    if os.environ.get("LETTERHEAD_TEST_DATABASE") == "postgresql":
        # The second pass is for what the database changes. A test that brings its own SQLite
        # state directory (a release's, a small disk) runs the same in either pass, and so does
        # one that reaches no database (a parser, a renderer, a form's rules): once, in the
        # SQLite pass, is enough (a minute of the PostgreSQL pass).
        same_in_either = [item for item in items if _same_on_either_database(item)]
        if same_in_either:
            config.hook.pytest_deselected(items=same_in_either)
            items[:] = [item for item in items if not _same_on_either_database(item)]


def _same_on_either_database(item: pytest.Item) -> bool:
    """Whether nothing of the test reaches the run's database: no fixture it uses takes the
    run's PostgreSQL server (the migrated copies, empty databases, the cluster do) and it starts
    no scratch stack (whose daemons' database is on that server)."""
    if item.get_closest_marker("sqlite_state"):
        return True
    if item.path.parent.name in FOLDER_MARKERS:
        return False  # the e2e tests make their stacks in the tests themselves
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is None or "postgres_server" in fixtures.argnames:
        return False
    for name, definitions in fixtures.name2fixturedefs.items():
        if name == "mail_stack" or any("postgres_server" in d.argnames for d in definitions):
            return False
    return True


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite the golden files from the current renderers."
    )


@pytest.fixture(scope="session")
def refusing_dns() -> Iterator[LoopbackDns]:
    server = LoopbackDns()
    yield server
    server.close()


@pytest.fixture(scope="session", autouse=True)
def postgres_server() -> Iterator[PrivatePostgres | None]:
    """The private PostgreSQL cluster of a run on PostgreSQL, or None on SQLite."""
    if not TESTING_ON_POSTGRES:
        yield None
        return
    server = PrivatePostgres(port=free_ports(1)[0])
    server.start()
    # Every scratch stack of the run (the e2e tests' daemons) gets a database on it.
    os.environ[SCRATCH_POSTGRES_VARIABLE] = server.url()
    try:
        yield server
    finally:
        del os.environ[SCRATCH_POSTGRES_VARIABLE]
        server.stop()


@pytest.fixture(scope="module")
def postgres_cluster(postgres_server: PrivatePostgres | None) -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster on either pass: the run's, or (on SQLite) one for this module, for
    tests of what only PostgreSQL does (the daemons' roles, copying into it)."""
    if postgres_server is not None:
        yield postgres_server
        return
    server = PrivatePostgres(port=free_ports(1)[0])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def migrated_template(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PrivatePostgres | None
) -> str:
    """One database migrated through Alembic; each test gets a copy (a file, or a database
    created from it as PostgreSQL's template). Its SQLite path or PostgreSQL database name."""
    if postgres_server is not None:
        postgres_databases.create(postgres_server, TEMPLATE_DATABASE)
        upgrade_database(postgres_server.url(TEMPLATE_DATABASE))
        return TEMPLATE_DATABASE
    path = tmp_path_factory.mktemp("template") / "letterhead.db"
    upgrade_database(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def settings(
    tmp_path: Path,
    migrated_template: str,
    refusing_dns: LoopbackDns,
    postgres_server: PrivatePostgres | None,
) -> Iterator[Settings]:
    # DNS checks ask a loopback server that refuses every query at once (records come out
    # "unchecked"), never the machine's resolver: tests send no packet off the box. Tests
    # that check DNS point `dns_resolver` at their own dnsmasq.
    database_url = ""
    if postgres_server is not None:
        database = postgres_databases.create(postgres_server, template=migrated_template)
        database_url = postgres_server.url(database)
    settings = load_settings(
        environ={},
        home=tmp_path,
        min_mailbox_bytes=KB,
        testing=True,
        dns_resolver=refusing_dns.address,
        database_url=database_url,
    )
    settings.database_path.parent.mkdir()
    if postgres_server is None:
        shutil.copy(migrated_template, settings.database_path)
    else:
        # As an operator sets it: commands run in the test (the CLI) load it from here.
        (tmp_path / "letterhead.toml").write_text(f'database_url = "{database_url}"\n')
    yield settings
    if postgres_server is not None:
        postgres_databases.drop(postgres_server, database)


@pytest.fixture
def empty_database(tmp_path: Path, postgres_server: PrivatePostgres | None) -> Iterator[str]:
    """The URL of a database with no schema yet, on the run's engine."""
    if postgres_server is None:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    database = postgres_databases.create(postgres_server)
    yield postgres_server.url(database)
    postgres_databases.drop(postgres_server, database)


@pytest.fixture
def second_database(
    tmp_path: Path, migrated_template: str, postgres_server: PrivatePostgres | None
) -> Iterator[str]:
    """The URL of another migrated database, empty, on the run's engine."""
    if postgres_server is None:
        path = tmp_path / "second.db"
        shutil.copy(migrated_template, path)
        yield f"sqlite:///{path}"
        return
    database = postgres_databases.create(postgres_server, template=migrated_template)
    yield postgres_server.url(database)
    postgres_databases.drop(postgres_server, database)


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


@pytest.fixture
def sqlite_only(db: Session) -> None:
    """Skips the test in the PostgreSQL pass: what it checks happens in an SQLite file only (the
    log import's set-aside indexes and its writer process, for example)."""
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("SQLite only")


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
