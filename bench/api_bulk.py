"""Bulk mailbox creation through the REST API, against the machine's raw password-hashing rate.

One state directory with an SQLite database migrated by Alembic; the tenant, its domains
and a tenant API token are made through the services (`tokens.create_token` as the
operator). The app is served as `letterhead up` serves it: gunicorn, 2 sync workers,
`controlplane:create_app()`, on a free loopback port. After a few small warm-up requests
(a third domain), a client sends, one after another, requests of 1,000 items to
`POST /api/v1/domains/<name>/mailboxes/bulk`:

- `plain`:  10,000 mailboxes (2,000 with `--quick`) with plain passwords, distinct for
            each mailbox; the app hashes each with `passwords.hash_password`
            (SHA512-CRYPT, 5,000 rounds, passlib);
- `hashed`: as many with `password_hash` items (already hashed, as a migration brings
            them), into a second domain.

Every item must come back 201; the domains' mailbox counts are checked afterwards.

The reference is the machine's raw rate of the same hashing on the same cores, measured
in the same run: a pool of one process per usable core (2 on the standard machine),
started once, hashes as many passwords as one request carries, split evenly between the
processes, half just before the request and half just after it, so that both see the
same machine: other work on it slows both alike.

    .venv/bin/python bench/api_bulk.py [--quick]

It prints each round, mailboxes per second for both kinds of item and the reference; the
last line is the headline `ratio=<plain mailboxes per second / raw hashes per second>`,
each summed over all rounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controlplane.daemons.process import wait_until  # noqa: E402
from controlplane.models import GIB  # noqa: E402
from controlplane.runners.scratch import free_ports  # noqa: E402
from controlplane.runtime import Installation  # noqa: E402
from controlplane.schema import upgrade_database  # noqa: E402
from controlplane.services import domains, passwords, tenants, tokens  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import Settings, load_settings  # noqa: E402

PLAIN_DOMAIN = "plain.test"
HASHED_DOMAIN = "hashed.test"
WARM_UP_DOMAIN = "warm-up.test"
BATCH = 1000  # the bulk endpoint's largest request
WORKERS = 2  # as controlplane/runners/stack.py start_web runs gunicorn


# -- the reference: raw hashing on every core ---------------------------------------------


def _hash_many(count: int) -> None:
    for index in range(count):
        passwords.hash_password(f"reference password {index}")


class RawHashing:
    """One process per usable core, started once, that hash side by side on demand."""

    def __init__(self) -> None:
        self.cores = len(os.sched_getaffinity(0))
        self.pool = multiprocessing.get_context("spawn").Pool(self.cores)
        self.pool.map(_hash_many, [1] * self.cores, chunksize=1)  # every process started and warm

    def seconds_for(self, hashes: int) -> float:
        """How long the processes take to hash `hashes` passwords, split evenly between them."""
        started = time.perf_counter()
        self.pool.map(_hash_many, [hashes // self.cores] * self.cores, chunksize=1)
        return time.perf_counter() - started

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


# -- the installation and its web server --------------------------------------------------


def populate(settings: Settings, mailboxes: int) -> str:
    """Tenant, domains with room for the run, and a tenant token; returns the token."""
    installation = Installation(settings)
    try:
        with installation.transaction() as session:
            tenant = tenants.create_tenant(
                session, OPERATOR, name="Bench", storage_pool_bytes=3 * (mailboxes + 100) * GIB
            )
            for name in (PLAIN_DOMAIN, HASHED_DOMAIN, WARM_UP_DOMAIN):
                domains.create_domain(
                    session, OPERATOR, tenant=tenant, name=name, max_mailboxes=mailboxes + 100, max_aliases=10
                )
            _, secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="bench")
    finally:
        installation.dispose()
    return secret


def mailbox_count(settings: Settings, name: str) -> int:
    installation = Installation(settings)
    try:
        with installation.sessions() as session:
            return domains.domain_counts(session, domains.find_domain(session, name)).mailboxes
    finally:
        installation.dispose()


class WebServer:
    """gunicorn serving the app for one state directory on a free loopback port."""

    def __init__(self, home: Path) -> None:
        (self.port,) = free_ports(1)
        env = {key: value for key, value in os.environ.items() if not key.startswith("LETTERHEAD_")}
        env["LETTERHEAD_HOME"] = str(home)
        self.log = (home / "gunicorn.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(WORKERS), "controlplane:create_app()",
            ],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if not wait_until(self._healthy, timeout=30):
            self.stop()
            raise SystemExit(f"gunicorn did not start; see {home / 'gunicorn.log'}")

    def _healthy(self) -> bool:
        try:
            status, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def request(self, method: str, path: str, body: object = None, token: str = "") -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, json.loads(data) if data else {}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# -- the runs -----------------------------------------------------------------------------


def bulk_request(server: WebServer, token: str, domain: str, batch: list[dict]) -> tuple[float, list[str]]:
    """One bulk request: its seconds, and what failed."""
    started = time.perf_counter()
    status, body = server.request(
        "POST", f"/api/v1/domains/{domain}/mailboxes/bulk", {"mailboxes": batch}, token
    )
    seconds = time.perf_counter() - started
    if status == 200 and body.get("created") == len(batch):
        return seconds, []
    failed = [result for result in body.get("results", []) if result["status"] != 201]
    return seconds, [f"{domain}: HTTP {status}, {len(failed)} items failed, e.g. {(failed[:1] or [body])[0]}"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 mailboxes of each kind (under a minute)")
    parser.add_argument("--mailboxes", type=int, help="mailboxes of each kind (a multiple of 1,000)")
    args = parser.parse_args()
    count = args.mailboxes or (2000 if args.quick else 10_000)
    count -= count % BATCH

    root = Path(tempfile.mkdtemp(prefix="letterhead-bench-api-"))
    server = raw = None
    try:
        settings = load_settings(environ={}, home=root)
        settings.database_path.parent.mkdir(parents=True)
        upgrade_database(settings.sqlalchemy_url)
        token = populate(settings, count)
        raw = RawHashing()
        server = WebServer(root)
        # Warm-up: each worker imports, connects, compiles its queries and starts its hashing
        # pool (once in a worker's life, ~0.3 s) on its first bulk request of plain passwords.
        for number in range(2 * WORKERS):
            warm_up = [
                {"local_part": f"warm{number}.{index}", "password": "warm-up password", "quota_bytes": GIB}
                for index in range(passwords.PARALLEL_FROM)
            ]
            _, failed = bulk_request(server, token, WARM_UP_DOMAIN, warm_up)
            assert not failed, f"warm-up failed: {failed}"

        plain = [
            {"local_part": f"user{index:05d}", "password": f"password of user {index}", "quota_bytes": GIB}
            for index in range(count)
        ]
        # A migration brings hashes made elsewhere: a few distinct ones, reused.
        hashes = [passwords.hash_password(f"imported password {n}") for n in range(10)]
        hashed = [
            {"local_part": f"user{index:05d}", "password_hash": hashes[index % len(hashes)], "quota_bytes": GIB}
            for index in range(count)
        ]  # fmt: skip

        print(f"{count // BATCH} rounds: a bulk request of {BATCH} plain passwords, and {BATCH} raw hashes "
              f"on {raw.cores} processes")  # fmt: skip
        failures: list[str] = []
        plain_seconds = raw_seconds = 0.0
        for number, start in enumerate(range(0, count, BATCH), start=1):
            batch = plain[start : start + BATCH]
            # The reference brackets the request, half before and half after it.
            raw_time = raw.seconds_for(BATCH // 2)
            request_time, failed = bulk_request(server, token, PLAIN_DOMAIN, batch)
            raw_time += raw.seconds_for(BATCH // 2)
            failures += failed
            plain_seconds, raw_seconds = plain_seconds + request_time, raw_seconds + raw_time
            print(f"round {number:2}: request {request_time:5.2f} s = {BATCH / request_time:6.1f} mailboxes/s, "
                  f"raw {raw_time:5.2f} s = {BATCH / raw_time:6.1f} hashes/s, "
                  f"{raw_time / request_time:.2f}")  # fmt: skip
        hashed_seconds = 0.0
        for start in range(0, count, BATCH):
            request_time, failed = bulk_request(server, token, HASHED_DOMAIN, hashed[start : start + BATCH])
            hashed_seconds += request_time
            failures += failed
        for name in (PLAIN_DOMAIN, HASHED_DOMAIN):
            stored = mailbox_count(settings, name)
            if stored != count:
                failures.append(f"{name} holds {stored} mailboxes, not {count}")

        plain_rate, raw_rate, hashed_rate = count / plain_seconds, count / raw_seconds, count / hashed_seconds
        print()
        print(f"raw hashing ({raw.cores} processes): {raw_rate:7.1f} hashes/s")
        print(f"plain passwords  : {count} mailboxes in {plain_seconds:6.2f} s = {plain_rate:7.1f} mailboxes/s "
              f"= {plain_rate / raw_rate:.2f} of raw hashing")  # fmt: skip
        print(
            f"hashed passwords : {count} mailboxes in {hashed_seconds:6.2f} s = {hashed_rate:7.1f} mailboxes/s"
        )
        for failure in failures:
            print(f"FAILURE: {failure}")
        print(f"ratio={plain_rate / raw_rate:.2f}")
        return 1 if failures else 0
    finally:
        if server is not None:
            server.stop()
        if raw is not None:
            raw.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
