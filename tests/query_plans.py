"""Query plans on either engine, for tests that a query reads an index rather than a table.

SQLite's `EXPLAIN QUERY PLAN` says `SCAN table` for a full read; PostgreSQL's `EXPLAIN` says
`Seq Scan on table`. PostgreSQL prefers a sequential read of a table of a few rows (all a
test holds) even where an index serves: with sequential scans priced out, it still chooses
one only where no index can serve the query, which is what these tests look for.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection


def query_plan(connection: Connection, statement: str, parameters: Any = None) -> list[str]:
    """The plan's lines for `statement`, as the driver received it (with its parameters)."""
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters or ()).fetchall()
        return [row[3] for row in rows]
    connection.exec_driver_sql("SET enable_seqscan = off")
    try:
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters or {}).fetchall()
    finally:
        connection.exec_driver_sql("RESET enable_seqscan")
    return [row[0].strip() for row in rows]


def full_scans(plan: list[str], tables: Collection[str]) -> list[str]:
    """The lines of `plan` that read one of `tables` whole."""
    scans = []
    for line in plan:
        sqlite = re.match(r"SCAN (\w+)", line)
        postgres = re.search(r"Seq Scan on (\w+)", line)
        match = sqlite or postgres
        if match and match.group(1) in tables:
            scans.append(line)
    return scans
