"""Limits hold under concurrent requests: many API calls at the same instant, through gunicorn's
worker processes on the real database, round after round.

Each check (a domain's mailbox and alias limits, the tenant's storage pool, a sign-up token's hourly
allowance) and the write it guards are one unit (services/locks.py). Before, two concurrent bulk
creates made 8 mailboxes where the limit was 5, and 6 concurrent creates left a pool at -1 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from controlplane.daemons.process import terminate, wait_until
from controlplane.models import Alias, Domain, Mailbox, MigrationMailbox, Tenant
from controlplane.runners.scratch import ScratchStack, free_ports
from controlplane.services import scope, storage, tokens
from tests.factories import make_domain, make_mailbox, make_tenant

KB = 1024
ROUNDS = 6
WORKERS = 4

pytestmark = pytest.mark.e2e


class Gunicorn:
    """The app under gunicorn with several worker processes, on the scratch installation."""

    def __init__(self, stack: ScratchStack) -> None:
        self.port = free_ports(1)[0]
        self.pid_file = stack.home / "run" / "concurrency-web.pid"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{self.port}",
                "--pid", str(self.pid_file), "--error-logfile", str(stack.home / "log" / "concurrency-web.log"),
                "controlplane:create_app()",
            ],
            env=dict(os.environ, LETTERHEAD_HOME=str(stack.home)),
        )  # fmt: skip
        assert wait_until(self._answers, timeout=30), "gunicorn did not start"

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        terminate(self.process.pid)
        self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[ScratchStack, Gunicorn]]:
    stack = ScratchStack(min_mailbox_bytes=KB)
    try:
        stack.prepare()
        server = Gunicorn(stack)
        try:
            yield stack, server
        finally:
            server.stop()
    finally:
        stack.stop()


def call(server: Gunicorn, token: str, method: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def all_at_once(*calls) -> list[tuple[int, dict]]:
    """Run the calls in threads released together, so the requests reach the workers at once."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int, make_call) -> None:
        barrier.wait()
        results[index] = make_call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def new_tenant(stack: ScratchStack, name: str, *, pool: int, max_mailboxes: int = 5, max_aliases: int = 3):
    """A tenant with one domain and a tenant token; returns (domain name, token secret)."""
    with stack.installation.transaction() as session:
        tenant = make_tenant(session, name=name, pool=pool)
        domain = make_domain(
            session, tenant=tenant, name=f"{name.lower()}.test", max_mailboxes=max_mailboxes,
            max_aliases=max_aliases, max_mailbox_bytes=10 * KB,
        )  # fmt: skip
        _token, secret = tokens.create_token(session, scope.OPERATOR, tenant=tenant, kind="tenant", name="t")
        return domain.name, secret


def mailbox_count(stack: ScratchStack, domain_name: str) -> int:
    with stack.installation.sessions() as session:
        return session.scalar(select(func.count(Mailbox.id)).join(Domain).where(Domain.name == domain_name))


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_two_concurrent_bulk_creates_never_pass_the_domains_mailbox_limit(web, round_number: int) -> None:
    stack, server = web
    domain, token = new_tenant(stack, f"Bulk{round_number}", pool=1000 * KB, max_mailboxes=5)

    def bulk(prefix: str):
        items = [
            {"local_part": f"{prefix}{n}", "quota_bytes": KB, "password": "a long password"} for n in range(4)
        ]
        return lambda: call(server, token, "POST", f"/domains/{domain}/mailboxes/bulk", {"mailboxes": items})

    results = all_at_once(bulk("x"), bulk("y"))
    assert all(status in (200, 201, 207) for status, _ in results), results
    assert mailbox_count(stack, domain) == 5


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_concurrent_creates_never_overdraw_the_storage_pool(web, round_number: int) -> None:
    stack, server = web
    domain, token = new_tenant(stack, f"Pool{round_number}", pool=5 * KB, max_mailboxes=50)
    body = {"quota_bytes": KB, "password": "a long password"}
    results = all_at_once(
        *[
            (
                lambda n=n: call(
                    server, token, "POST", f"/domains/{domain}/mailboxes", {**body, "local_part": f"u{n}"}
                )
            )
            for n in range(6)
        ]
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 5 + [409], results
    with stack.installation.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == f"Pool{round_number}"))
        assert storage.pool_usage(session, tenant).free_bytes == 0


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_a_signup_token_limited_to_one_an_hour_creates_one_under_concurrency(web, round_number: int) -> None:
    stack, server = web
    domain, _tenant_token = new_tenant(stack, f"Signup{round_number}", pool=100 * KB, max_mailboxes=50)
    with stack.installation.transaction() as session:
        found = session.scalar(select(Domain).where(Domain.name == domain))
        _token, secret = tokens.create_token(
            session,
            scope.OPERATOR,
            tenant=found.tenant,
            kind="signup",
            name="form",
            domain=found,
            hourly_limit=1,
        )
    body = {"quota_bytes": KB, "password": "a long password"}
    results = all_at_once(
        *[
            (
                lambda n=n: call(
                    server, secret, "POST", f"/domains/{domain}/mailboxes", {**body, "local_part": f"s{n}"}
                )
            )
            for n in range(4)
        ]
    )
    assert sorted(status for status, _ in results) == [201, 409, 409, 409], results
    assert mailbox_count(stack, domain) == 1


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_concurrent_alias_creates_never_pass_the_alias_limit(web, round_number: int) -> None:
    stack, server = web
    domain, token = new_tenant(stack, f"Alias{round_number}", pool=100 * KB, max_aliases=3)
    results = all_at_once(
        *[
            (
                lambda n=n: call(
                    server,
                    token,
                    "POST",
                    f"/domains/{domain}/aliases",
                    {"local_part": f"a{n}", "destinations": ["someone@elsewhere.example"]},
                )  # fmt: skip
            )
            for n in range(5)
        ]
    )
    assert sorted(status for status, _ in results) == [201, 201, 201, 409, 409], results
    with stack.installation.sessions() as session:
        assert session.scalar(select(func.count(Alias.id)).join(Domain).where(Domain.name == domain)) == 3


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_concurrent_migrations_into_one_mailbox_queue_one_copy(web, round_number: int) -> None:
    """Two copies into one mailbox would race each other: the busy check and the rows it guards
    are one unit, so of four jobs started at the same instant one is queued."""
    stack, server = web
    domain, token = new_tenant(stack, f"Move{round_number}", pool=100 * KB)
    with stack.installation.transaction() as session:
        make_mailbox(session, domain=domain_named(session, domain), local_part="ann", quota=KB)
    source = {"address": f"ann@{domain}", "old_server": "imap.old.example", "old_login": "ann",
              "old_password": "old secret"}  # fmt: skip
    results = all_at_once(
        *[
            (lambda: call(server, token, "POST", f"/domains/{domain}/migrations", {"mailboxes": [source]}))
            for _ in range(4)
        ]
    )
    assert sorted(status for status, _ in results) == [201, 422, 422, 422], results
    refusals = [body["detail"] for status, body in results if status == 422]
    assert all("still under way" in detail for detail in refusals), refusals
    with stack.installation.sessions() as session:
        queued = session.scalars(
            select(MigrationMailbox.state).join(Mailbox).join(Domain).where(Domain.name == domain)
        ).all()
    assert queued == ["queued"]


def domain_named(session, name: str) -> Domain:
    return session.scalar(select(Domain).where(Domain.name == name))
