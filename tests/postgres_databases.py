"""The suite's second pass runs on PostgreSQL: `LETTERHEAD_TEST_DATABASE=postgresql pytest ...`.

A private cluster (daemons/postgres.py) serves the whole run; each test gets a database of its
own, created from a migrated template (a file copy inside PostgreSQL), and dropped afterwards.
"""

from __future__ import annotations

import itertools
import os

import sqlalchemy as sa

from controlplane.daemons.postgres import PrivatePostgres

TESTING_ON_POSTGRES = os.environ.get("LETTERHEAD_TEST_DATABASE", "sqlite") == "postgresql"
TEMPLATE_DATABASE = "letterhead_template"
_numbers = itertools.count(1)
_admin_engines: dict[str, sa.Engine] = {}


def _run(server: PrivatePostgres, statement: str) -> None:
    # One open administrative connection per cluster: a new login costs more than the statement.
    url = server.url("postgres")
    if url not in _admin_engines:
        _admin_engines[url] = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    with _admin_engines[url].connect() as connection:
        connection.exec_driver_sql(statement)


def create(server: PrivatePostgres, name: str | None = None, *, template: str | None = None) -> str:
    name = name or f"letterhead_test_{os.getpid()}_{next(_numbers)}"
    _run(server, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop(server: PrivatePostgres, name: str) -> None:
    # FORCE ends the sessions a test left open (a daemon's, a thread's) rather than wait for them.
    _run(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
