"""The floor under Postfix's PostgreSQL lookups: the simplest possible map on each engine.

`bench/delivery.py --database postgresql` compares Letterhead's own recipient maps (views and
PL/pgSQL functions). This asks what any map could reach: one table of 20,000 addresses with a
primary key, the same rows in SQLite and in a private durable PostgreSQL cluster on loopback,
looked up by `postmap -q -` (one process, one connection, half the keys hitting) with
`query = SELECT target FROM lookup WHERE address='%s'`, and on PostgreSQL also through a
PL/pgSQL function (what migration 0019 does). Rounds alternate; medians are reported.

    .venv/bin/python bench/lookup_floor.py [--rounds N]

Headline: `floor_ratio=<PostgreSQL lookups/s / SQLite lookups/s>` for the plain query. If it is
far under 0.9, no map design reaches 0.9 of SQLite on one connection: each PostgreSQL lookup is
a network round trip, each SQLite lookup a read in the caller's own process.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.daemons.postgres import SUPERUSER, PrivatePostgres  # noqa: E402
from controlplane.runners.scratch import free_ports  # noqa: E402

POSTMAP = "/usr/sbin/postmap"
ROWS = 20_000
KEYS = 10_000
PLAIN_QUERY = "SELECT target FROM lookup WHERE address='%s'"


def _fill_postgresql(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as connection:
        connection.execute("CREATE TABLE lookup (address text PRIMARY KEY, target text NOT NULL)")
        connection.execute(
            "INSERT INTO lookup SELECT 'user' || n || '@example.com', 'x' FROM generate_series(1, %s) n",
            (ROWS,),
        )
        connection.execute(
            "CREATE FUNCTION lookup_target(key text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS"
            " $$ BEGIN RETURN QUERY SELECT target FROM lookup WHERE address = key; END $$"
        )
        connection.execute("ANALYZE lookup")


def _fill_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE lookup (address text PRIMARY KEY, target text NOT NULL)")
    connection.executemany(
        "INSERT INTO lookup VALUES (?, 'x')", [(f"user{n}@example.com",) for n in range(1, ROWS + 1)]
    )
    connection.commit()
    connection.close()


def _rate(config_dir: Path, table: str, keys: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [POSTMAP, "-c", str(config_dir), "-q", "-", table], input=keys, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    # Exit 1 only says some keys were not found; a map that fails says so on stderr.
    if result.returncode not in (0, 1) or result.stderr.strip():
        raise SystemExit(f"postmap {table} failed: {result.stderr.strip() or result.returncode}")
    return KEYS / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lh-lookup-floor-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)  # postmap may drop to the postfix user to read the map files
        (root / "main.cf").write_text(f"compatibility_level = 3.6\nqueue_directory = {root}\n")
        _fill_sqlite(root / "lookup.db")
        (root / "sqlite.cf").write_text(f"dbpath = {root / 'lookup.db'}\nquery = {PLAIN_QUERY}\n")

        port = free_ports(1)[0]
        cluster = PrivatePostgres(port=port, durable=True)
        cluster.start()
        try:
            _fill_postgresql(cluster.url())
            login = f"hosts = inet:127.0.0.1:{port}\nuser = {SUPERUSER}\npassword = {cluster.password}\ndbname = postgres\n"
            (root / "pgsql.cf").write_text(login + f"query = {PLAIN_QUERY}\n")
            (root / "pgsql-function.cf").write_text(login + "query = SELECT lookup_target('%s')\n")
            tables = {
                "sqlite": f"sqlite:{root / 'sqlite.cf'}",
                "postgresql": f"pgsql:{root / 'pgsql.cf'}",
                "postgresql_function": f"pgsql:{root / 'pgsql-function.cf'}",
            }
            keys = [f"user{n % ROWS + 1}@example.com" for n in range(KEYS // 2)]
            keys += [f"nobody{n}@example.com" for n in range(KEYS - len(keys))]
            lines = "\n".join(keys) + "\n"
            for table in tables.values():
                _rate(root, table, lines)  # warm the caches and the page cache
            rates: dict[str, list[float]] = {name: [] for name in tables}
            for _ in range(arguments.rounds):
                for name, table in tables.items():
                    rates[name].append(_rate(root, table, lines))
        finally:
            cluster.stop()

    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:20}: {value:8.0f} lookups/s (median of {arguments.rounds})")
    print(f"function_ratio={median['postgresql_function'] / median['sqlite']:.2f}")
    print(f"floor_ratio={median['postgresql'] / median['sqlite']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
