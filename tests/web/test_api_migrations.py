"""The API's mail migrations through Flask's test client: who may start and see a job, what a bad
request changes (nothing), and that an old password never comes back out."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane import create_app
from controlplane.models import MigrationJob, MigrationMailbox
from controlplane.services import tokens
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox, make_tenant

KB = 1024
OLD_PASSWORD = "the old one, secret"


@pytest.fixture
def app(settings, installation):
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["letterhead"].dispose()


@pytest.fixture
def world(installation):
    """Tenant One: a.test (ann) and b.test (bob); tenant Two: c.test (cid). Tokens: one (tenant
    One), a (domain a.test), b (domain b.test), two (tenant Two)."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One", pool=1000 * KB)
        two = make_tenant(session, name="Two", pool=1000 * KB)
        a = make_domain(session, tenant=one, name="a.test")
        b = make_domain(session, tenant=one, name="b.test")
        c = make_domain(session, tenant=two, name="c.test")
        for domain, local_part in ((a, "ann"), (b, "bob"), (c, "cid")):
            make_mailbox(session, domain=domain, local_part=local_part)
        installation.secrets = {
            "one": tokens.create_token(session, OPERATOR, tenant=one, kind="tenant", name="one")[1],
            "a": tokens.create_token(session, OPERATOR, tenant=one, kind="domain", domain=a, name="a")[1],
            "b": tokens.create_token(session, OPERATOR, tenant=one, kind="domain", domain=b, name="b")[1],
            "two": tokens.create_token(session, OPERATOR, tenant=two, kind="tenant", name="two")[1],
        }
    return installation


def _call(app, world, method: str, url: str, token: str, json=None):
    client = app.test_client()
    return client.open(
        url, method=method, json=json, headers={"Authorization": f"Bearer {world.secrets[token]}"}
    )


def _rows(world) -> int:
    with world.sessions() as session:
        return session.scalar(select(func.count()).select_from(MigrationMailbox))


def test_a_domain_admin_starts_follows_and_closes_a_job_and_never_reads_a_password(app, world) -> None:
    body = {"mailboxes": [{"address": "ann@a.test", "old_server": "imap.old.test", "old_login": "ann",
                           "old_password": OLD_PASSWORD}]}  # fmt: skip
    started = _call(app, world, "POST", "/api/v1/domains/a.test/migrations", "a", body)
    assert started.status_code == 201, started.get_json()
    job = started.get_json()
    assert job["domain"] == "a.test" and job["closed_at"] is None
    (row,) = job["mailboxes"]
    assert (row["address"], row["state"], row["old_server"]) == (
        "ann@a.test",
        "queued",
        "imaps://imap.old.test:993",
    )
    for token in ("a", "one"):
        for url in (f"/api/v1/migrations/{job['id']}", "/api/v1/domains/a.test/migrations"):
            answer = _call(app, world, "GET", url, token)
            assert answer.status_code == 200
            assert OLD_PASSWORD not in answer.get_data(as_text=True)
    with world.sessions() as session:
        sealed = session.scalar(select(MigrationMailbox.old_password_sealed))
    assert sealed and OLD_PASSWORD not in sealed

    # Another domain's admin and another tenant learn nothing, not even that the job exists.
    for token in ("b", "two"):
        for method, url in (("GET", f"/api/v1/migrations/{job['id']}"), ("POST", f"/api/v1/migrations/{job['id']}/close"),
                            ("POST", f"/api/v1/migrations/{job['id']}/again")):  # fmt: skip
            answer = _call(app, world, method, url, token)
            assert answer.status_code == 404, (token, url)
            assert answer.get_json()["detail"] == "No such migration job."
        missing = _call(app, world, "GET", f"/api/v1/migrations/{job['id'] + 1000}", token)
        assert missing.get_json()["detail"] == "No such migration job."

    still_running = _call(app, world, "POST", f"/api/v1/migrations/{job['id']}/again", "a")
    assert still_running.status_code == 422 and "still copying" in still_running.get_json()["detail"]
    closed = _call(app, world, "POST", f"/api/v1/migrations/{job['id']}/close", "a")
    assert closed.status_code == 200 and closed.get_json()["closed_at"] is not None
    with world.sessions() as session:
        assert session.scalar(select(MigrationMailbox.old_password_sealed)) is None
        assert session.scalar(select(MigrationJob.closed_at)) is not None


@pytest.mark.parametrize(
    ("token", "url", "body", "status", "words"),
    [
        # Another tenant's mailbox: the same words as an address that does not exist.
        ("one", "/api/v1/domains/a.test/migrations",
         {"csv": "ann@a.test,imap.old.test,ann,pw\ncid@c.test,imap.old.test,cid,pw\n"}, 422,
         "cid@c.test is not a mailbox of a.test"),
        ("one", "/api/v1/domains/a.test/migrations",
         {"csv": "ann@a.test,imap.old.test,ann\n"}, 422, "line 1: expected 4 fields"),
        ("one", "/api/v1/domains/a.test/migrations",
         {"mailboxes": [{"address": "ann@a.test", "old_server": "imap.old.test:0", "old_login": "a",
                         "old_password": "p"}]}, 422, "is not a number from 1 to 65535"),
        ("b", "/api/v1/domains/a.test/migrations",
         {"csv": "ann@a.test,imap.old.test,ann,pw\n"}, 404, ""),
        ("two", "/api/v1/domains/a.test/migrations",
         {"csv": "ann@a.test,imap.old.test,ann,pw\n"}, 404, ""),
        ("one", "/api/v1/domains/a.test/migrations",
         {"csv": "x", "mailboxes": []}, 422, ""),
    ],
)  # fmt: skip
def test_a_bad_or_foreign_request_changes_nothing(app, world, token, url, body, status, words) -> None:
    answer = _call(app, world, "POST", url, token, body)
    assert answer.status_code == status, answer.get_json()
    text = answer.get_data(as_text=True)
    assert words in text
    assert "c.test" not in text.replace("cid@c.test", "")
    assert _rows(world) == 0
