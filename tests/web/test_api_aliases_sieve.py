"""The API's aliases and Sieve filters through Flask's test client: real app, real database,
Dovecot's real Sieve compiler, filter files written into a temporary mail root."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controlplane import create_app
from controlplane.daemons.layout import vmail_account
from controlplane.models import Alias, AliasDestination, AuditEntry, Mailbox
from controlplane.render import ADMIN_SIEVE_SCRIPT
from controlplane.services import domains, mailboxes, passwords, tokens
from controlplane.services.scope import OPERATOR
from tests.factories import make_alias, make_domain, make_mailbox, make_tenant

KB = 1024
INVOICES = 'require ["fileinto","mailbox"];\nif header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n'
ANN_FILTER = "/api/v1/domains/a.test/mailboxes/ann/filter"
BOB_FILTER = "/api/v1/domains/b.test/mailboxes/bob/filter"
BROKEN = 'require ["fileinto"];\nif header :contains "subject" "invoice" { fileinto "Invoices" }\n'


@pytest.fixture
def app(settings, installation):
    settings.mail_root.mkdir()
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["letterhead"].dispose()


@pytest.fixture
def world(installation):
    """Tenant One: a.test (ann, amy; alias team) and b.test (bob; alias info). Tenant Two: c.test (cid).
    Bearer secrets: one (tenant One), a (domain a.test), two (tenant Two)."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One", pool=1000 * KB)
        two = make_tenant(session, name="Two", pool=1000 * KB)
        a = make_domain(session, tenant=one, name="a.test", max_aliases=5)
        b = make_domain(session, tenant=one, name="b.test")
        c = make_domain(session, tenant=two, name="c.test")
        for domain, local_part in ((a, "ann"), (a, "amy"), (b, "bob"), (c, "cid")):
            make_mailbox(session, domain=domain, local_part=local_part)
        make_alias(session, domain=a, local_part="team", destinations=["ann@a.test", "amy@a.test"])
        make_alias(session, domain=b, local_part="info", destinations=["bob@b.test"])
        secrets = {
            "one": tokens.create_token(session, OPERATOR, tenant=one, kind="tenant", name="one")[1],
            "a": tokens.create_token(session, OPERATOR, tenant=one, kind="domain", domain=a, name="a")[1],
            "two": tokens.create_token(session, OPERATOR, tenant=two, kind="tenant", name="two")[1],
        }
    installation.secrets = secrets
    return installation


def call(app, world, method: str, url: str, token: str = "one", json=None):
    headers = {"Authorization": f"Bearer {world.secrets[token]}"}
    return app.test_client().open(url, method=method, headers=headers, json=json)


def alias_rows(world) -> list:
    with world.sessions() as session:
        return sorted(
            session.execute(
                select(Alias.domain_id, Alias.local_part, AliasDestination.address).join(AliasDestination)
            ).all()
        )


def home_of(world, address: str) -> Path:
    with world.sessions() as session:
        return world.settings.mail_root / mailboxes.find_mailbox(session, address).storage_key


def file_times(home: Path) -> list:
    return sorted((p.name, p.lstat().st_mtime_ns) for p in home.rglob("*"))


def audit_count(world, action: str) -> int:
    with world.sessions() as session:
        return session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == action))


# --- aliases -------------------------------------------------------------------------------------


def test_aliases_are_listed_a_page_at_a_time_with_the_total(app, world) -> None:
    for local_part in ("sales", "billing"):
        response = call(app, world, "POST", "/api/v1/domains/a.test/aliases",
                        json={"local_part": local_part, "destinations": ["ann@a.test"]})  # fmt: skip
        assert response.status_code == 201
    page = call(app, world, "GET", "/api/v1/domains/a.test/aliases?per_page=2&page=1").json
    assert page["total"] == 3 and [item["local_part"] for item in page["items"]] == ["billing", "sales"]
    page = call(app, world, "GET", "/api/v1/domains/a.test/aliases?per_page=2&page=2").json
    assert page["items"] == [
        {"address": "team@a.test", "local_part": "team", "active": True,
         "destinations": ["amy@a.test", "ann@a.test"]}
    ]  # fmt: skip


def test_an_alias_is_created_read_changed_and_deleted(app, world) -> None:
    created = call(app, world, "POST", "/api/v1/domains/a.test/aliases", token="a",
                   json={"local_part": "Sales", "destinations": ["ann@a.test", "boss@elsewhere.test"]})  # fmt: skip
    assert created.status_code == 201, created.json
    assert created.json["address"] == "sales@a.test"
    assert created.json["destinations"] == ["ann@a.test", "boss@elsewhere.test"]
    assert call(app, world, "GET", "/api/v1/domains/a.test/aliases/sales", token="a").json == created.json
    changed = call(app, world, "PATCH", "/api/v1/domains/a.test/aliases/sales", token="a",
                   json={"destinations": ["amy@a.test"]})  # fmt: skip
    assert changed.status_code == 200 and changed.json["destinations"] == ["amy@a.test"]
    assert call(app, world, "DELETE", "/api/v1/domains/a.test/aliases/sales", token="a").status_code == 204
    assert call(app, world, "GET", "/api/v1/domains/a.test/aliases/sales", token="a").status_code == 404
    with world.sessions() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.target == "sales@a.test").order_by(AuditEntry.id)
        ).all()
    assert actions == ["alias.create", "alias.destinations", "alias.delete"]


def test_the_catch_all_is_the_local_part_at(app, world) -> None:
    created = call(app, world, "POST", "/api/v1/domains/a.test/aliases",
                   json={"local_part": "@", "destinations": ["ann@a.test"]})  # fmt: skip
    assert created.status_code == 201
    assert created.json["local_part"] == "@" and created.json["address"] == "@a.test"
    assert call(app, world, "GET", "/api/v1/domains/a.test/aliases/@").json["destinations"] == ["ann@a.test"]
    listed = call(app, world, "GET", "/api/v1/domains/a.test/aliases").json["items"]
    assert listed[0]["local_part"] == "@"
    assert call(app, world, "DELETE", "/api/v1/domains/a.test/aliases/@").status_code == 204
    assert call(app, world, "GET", "/api/v1/domains/a.test/aliases/@").status_code == 404


def test_refused_aliases_are_problems_and_change_nothing(app, world) -> None:
    before = alias_rows(world)
    taken = call(app, world, "POST", "/api/v1/domains/a.test/aliases",
                 json={"local_part": "ann", "destinations": ["amy@a.test"]})  # fmt: skip
    assert taken.status_code == 409 and taken.mimetype == "application/problem+json"
    unknown = call(app, world, "POST", "/api/v1/domains/a.test/aliases",
                   json={"local_part": "x", "destinations": ["ghost@a.test"]})  # fmt: skip
    assert unknown.status_code == 422 and "neither a mailbox nor an alias" in unknown.json["detail"]
    loop = call(app, world, "PATCH", "/api/v1/domains/a.test/aliases/team",
                json={"destinations": ["team@a.test"]})  # fmt: skip
    assert loop.status_code == 422 and "loop" in loop.json["detail"]
    empty = call(app, world, "POST", "/api/v1/domains/a.test/aliases",
                 json={"local_part": "x", "destinations": []})  # fmt: skip
    assert empty.status_code == 422
    assert alias_rows(world) == before


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("GET", "/api/v1/domains/b.test/aliases", None),
        ("POST", "/api/v1/domains/b.test/aliases", {"local_part": "new", "destinations": ["bob@b.test"]}),
        ("GET", "/api/v1/domains/b.test/aliases/info", None),
        ("PATCH", "/api/v1/domains/b.test/aliases/info", {"destinations": ["ann@a.test"]}),
        ("DELETE", "/api/v1/domains/b.test/aliases/info", None),
    ],
)
def test_a_domain_token_cannot_touch_another_domains_aliases(app, world, method, url, body) -> None:
    before = alias_rows(world)
    response = call(app, world, method, url, token="a", json=body)
    assert response.status_code == 404 and response.json["detail"] == "No such domain: b.test."
    assert alias_rows(world) == before


def test_another_tenant_sees_no_aliases_of_ours(app, world) -> None:
    before = alias_rows(world)
    assert call(app, world, "GET", "/api/v1/domains/a.test/aliases/team", token="two").status_code == 404
    assert call(app, world, "DELETE", "/api/v1/domains/a.test/aliases/team", token="two").status_code == 404
    assert alias_rows(world) == before


# --- Sieve filters -------------------------------------------------------------------------------


def test_a_filter_set_on_a_mailbox_is_compiled_active_and_owned_by_the_storage_user(app, world) -> None:
    response = call(app, world, "PUT", ANN_FILTER, json={"name": "invoices", "script": INVOICES})
    assert response.status_code == 200, response.json
    assert response.json == {"address": "ann@a.test", "active": True, "name": "invoices", "script": INVOICES}
    home = home_of(world, "ann@a.test")
    vmail = vmail_account(world.settings)
    # The admins' filter has a place of its own: the user's scripts (ManageSieve) stay theirs.
    script = home / ADMIN_SIEVE_SCRIPT
    assert script.read_text() == "# Letterhead admin filter: invoices\n" + INVOICES
    assert not os.path.lexists(home / ".dovecot.sieve")
    for path, mode in ((home, 0o700), (script, 0o600)):
        info = path.lstat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (vmail.uid, vmail.gid, mode), path
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]
    assert call(app, world, "GET", ANN_FILTER).json == response.json
    assert audit_count(world, "sieve.apply") == 1


def test_setting_another_filter_replaces_the_active_one(app, world) -> None:
    call(app, world, "PUT", ANN_FILTER, json={"name": "first", "script": "keep;\n"})
    response = call(app, world, "PUT", ANN_FILTER, json={"name": "second", "script": INVOICES})
    assert response.json["name"] == "second"
    home = home_of(world, "ann@a.test")
    assert (home / ADMIN_SIEVE_SCRIPT).read_text().startswith("# Letterhead admin filter: second\n")
    # A binary Dovecot compiled for the first filter must not outlive it.
    assert not (home / ADMIN_SIEVE_SCRIPT.replace(".sieve", ".svbin")).exists()


def test_a_deactivated_filter_no_longer_runs(app, world) -> None:
    call(app, world, "PUT", ANN_FILTER, json={"name": "invoices", "script": INVOICES})
    assert call(app, world, "DELETE", ANN_FILTER).status_code == 204
    home = home_of(world, "ann@a.test")
    assert not (home / ADMIN_SIEVE_SCRIPT).exists()
    assert call(app, world, "GET", ANN_FILTER).json == {
        "address": "ann@a.test", "active": False, "name": None, "script": None,
    }  # fmt: skip
    assert call(app, world, "DELETE", ANN_FILTER).status_code == 204
    assert audit_count(world, "sieve.deactivate") == 1


def test_a_script_the_compiler_refuses_gets_its_message_and_nothing_is_written(app, world) -> None:
    response = call(app, world, "POST", "/api/v1/filters/apply",
                    json={"name": "invoices", "script": BROKEN, "domain": "a.test"})  # fmt: skip
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    detail = response.json["detail"]
    assert "invoices: line 2: error: expected end of command ';'" in detail, detail
    assert "/tmp" not in detail and "lh-sievec" not in detail
    assert response.json["errors"] == {"script": [detail]}
    single = call(app, world, "PUT", ANN_FILTER,
                  json={"name": "invoices", "script": 'require "nonexistent";\n'})  # fmt: skip
    assert single.status_code == 422 and "unknown Sieve capability" in single.json["detail"]
    piped = call(app, world, "PUT", ANN_FILTER,
                 json={"name": "invoices", "script": 'require "vnd.dovecot.pipe";\npipe "learn-ham.sh";\n'})  # fmt: skip
    assert piped.status_code == 422 and "vnd.dovecot" in piped.json["detail"]
    assert list(world.settings.mail_root.iterdir()) == []
    assert audit_count(world, "sieve.apply") == 0


@pytest.mark.parametrize("name", ["", ".hidden", "../up", "a/b", "with space", "x" * 65, "é"])
def test_a_filter_name_that_is_not_a_plain_file_name_is_refused(app, world, name) -> None:
    response = call(app, world, "PUT", ANN_FILTER, json={"name": name, "script": "keep;\n"})
    assert response.status_code == 422
    assert list(world.settings.mail_root.iterdir()) == []


def test_a_script_over_64_kb_is_refused(app, world) -> None:
    script = "keep;\n" + "#" * (64 * KB) + "\n"
    response = call(app, world, "PUT", ANN_FILTER, json={"name": "big", "script": script})
    assert response.status_code == 422 and "64 KB" in response.json["detail"]
    assert list(world.settings.mail_root.iterdir()) == []


def test_a_filter_applied_to_addresses_reports_each_and_failures_do_not_stop_the_rest(app, world) -> None:
    response = call(app, world, "POST", "/api/v1/filters/apply", token="a", json={
        "name": "invoices", "script": INVOICES,
        "addresses": ["ann@a.test", "bob@b.test", "ghost@a.test", "cid@c.test", "not an address", "AMY@a.test"],
    })  # fmt: skip
    assert response.status_code == 200, response.json
    body = response.json
    statuses = {result["address"]: result["status"] for result in body["results"]}
    assert statuses == {
        "ann@a.test": 200, "amy@a.test": 200, "bob@b.test": 404, "ghost@a.test": 404, "cid@c.test": 404,
        "not an address": 422,
    }  # fmt: skip
    assert (body["applied"], body["failed"]) == (2, 4)
    errors = {result["address"]: result["error"] for result in body["results"]}
    # Outside the token's domain reads exactly like a mailbox that does not exist.
    assert errors["bob@b.test"]["detail"] == "No such mailbox: bob@b.test."
    assert errors["ghost@a.test"]["detail"] == "No such mailbox: ghost@a.test."
    for address in ("ann@a.test", "amy@a.test"):
        assert (home_of(world, address) / ADMIN_SIEVE_SCRIPT).read_text().endswith(INVOICES)
    for address in ("bob@b.test", "cid@c.test"):
        assert not home_of(world, address).exists()
    with world.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "sieve.apply")).all()
    assert len(entries) == 1
    assert entries[0].details["addresses"] == ["ann@a.test", "amy@a.test"]
    assert entries[0].domain_id is not None


def test_a_filter_applied_to_a_domain_reaches_every_mailbox_of_it_and_no_other(app, world) -> None:
    response = call(app, world, "POST", "/api/v1/filters/apply",
                    json={"name": "invoices", "script": INVOICES, "domain": "a.test"})  # fmt: skip
    assert response.status_code == 200
    assert [r["address"] for r in response.json["results"]] == ["amy@a.test", "ann@a.test"]
    assert sorted(p.name for p in world.settings.mail_root.iterdir()) == sorted(
        home_of(world, address).name for address in ("amy@a.test", "ann@a.test")
    )
    assert audit_count(world, "sieve.apply") == 1


def test_apply_needs_exactly_one_target(app, world) -> None:
    for extra in ({}, {"domain": "a.test", "addresses": ["ann@a.test"]}):
        body = {"name": "f", "script": "keep;", **extra}
        assert call(app, world, "POST", "/api/v1/filters/apply", json=body).status_code == 422


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("POST", "/api/v1/filters/apply", {"name": "evil", "script": "discard;\n", "domain": "b.test"}),
        ("PUT", BOB_FILTER, {"name": "evil", "script": "discard;\n"}),
        ("GET", BOB_FILTER, None),
        ("DELETE", BOB_FILTER, None),
    ],
)
def test_a_domain_token_cannot_touch_another_domains_filters(app, world, method, url, body) -> None:
    kept = call(app, world, "PUT", BOB_FILTER, token="one", json={"name": "kept", "script": "keep;\n"})
    assert kept.status_code == 200
    home = home_of(world, "bob@b.test")
    before = file_times(home)
    response = call(app, world, method, url, token="a", json=body)
    assert response.status_code == 404 and response.json["detail"] == "No such domain: b.test."
    assert "admin filter: kept" in (home / ADMIN_SIEVE_SCRIPT).read_text()
    assert file_times(home) == before
    assert call(app, world, "GET", BOB_FILTER, token="two").status_code == 404  # another tenant


def test_sign_up_tokens_may_not_set_filters(app, world) -> None:
    with world.transaction() as session:
        a = domains.get_domain(session, OPERATOR, "a.test")
        _, secret = tokens.create_token(
            session, OPERATOR, tenant=a.tenant, kind="signup", domain=a, name="form"
        )
    world.secrets["signup"] = secret
    response = call(app, world, "PUT", ANN_FILTER, token="signup", json={"name": "x", "script": "keep;"})
    assert response.status_code == 404
    assert list(world.settings.mail_root.iterdir()) == []


def test_a_filter_reaches_two_thousand_mailboxes_in_seconds(app, world, capsys) -> None:
    count = 2000
    hashed = passwords.hash_password("a long enough password")
    with world.transaction() as session:
        tenant = make_tenant(session, name="Big", pool=count * 2 * KB)
        big = make_domain(session, tenant=tenant, name="big.test", max_mailboxes=count, max_mailbox_bytes=KB)
        for number in range(count):
            mailboxes.create_mailbox(session, OPERATOR, domain=big, local_part=f"user{number:05d}",
                                     password_hash=hashed, quota_bytes=KB)  # fmt: skip
        secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="big")[1]
    world.secrets["big"] = secret
    started = time.perf_counter()
    response = call(app, world, "POST", "/api/v1/filters/apply", token="big",
                    json={"name": "invoices", "script": INVOICES, "domain": "big.test"})  # fmt: skip
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json["applied"] == count, response.json["failed"]
    with capsys.disabled():
        print(f"\nA filter applied to {count} mailboxes in {elapsed:.2f} s through the API.")
    assert elapsed < 10
    with world.sessions() as session:
        keys = session.scalars(select(Mailbox.storage_key).where(Mailbox.domain_id == big.id)).all()
    assert all((world.settings.mail_root / key / ADMIN_SIEVE_SCRIPT).exists() for key in keys)
    assert audit_count(world, "sieve.apply") == 1


def test_an_alias_to_another_tenants_domain_answers_alike_for_existing_and_missing_addresses(
    app, world
) -> None:
    """Tenant Two must not learn which addresses tenant One has (ann@a.test exists, nobody@a.test not)."""
    answers = [
        call(app, world, "POST", "/api/v1/domains/c.test/aliases", token="two",
             json={"local_part": local_part, "destinations": [destination]})
        for local_part, destination in (("p1", "ann@a.test"), ("p2", "nobody@a.test"))
    ]  # fmt: skip
    assert [answer.status_code for answer in answers] == [201, 201]
