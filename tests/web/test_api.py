"""The REST API through Flask's test client: real app, real database, real tokens.

The world (tests/web/conftest.py): tenant One (pool 1000 KB) with a.test (at most 3 mailboxes,
ann is its admin) and b.test (bob, alias team); tenant Two with c.test. Each domain's largest
mailbox is 100 KB.
"""

from __future__ import annotations

import pytest
from passlib.hash import sha512_crypt
from sqlalchemy import func, select

from controlplane.models import AuditEntry, Domain, Mailbox, Tenant
from controlplane.services import mailboxes, passwords, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests.web.test_admin_panel import snapshot

KB = 1024
PROBLEM = "application/problem+json"
GOOD_PASSWORD = "a long enough password"


@pytest.fixture
def secrets(world) -> dict[str, str]:
    """Bearer secrets of tokens the operator made, by name; `revoked` is revoked."""
    with world.transaction() as session:
        one = tenants.get_tenant(session, OPERATOR, "One")
        two = tenants.get_tenant(session, OPERATOR, "Two")
        domain = {d.name: d for d in session.scalars(select(Domain))}
        specs = {
            "one": dict(tenant=one, kind="tenant"),
            "two": dict(tenant=two, kind="tenant"),
            "a": dict(tenant=one, kind="domain", domain=domain["a.test"]),
            "b": dict(tenant=one, kind="domain", domain=domain["b.test"]),
            "signup": dict(tenant=one, kind="signup", domain=domain["a.test"], hourly_limit=1),
            "revoked": dict(tenant=one, kind="tenant"),
        }
        made = {}
        for name, spec in specs.items():
            token, made[name] = tokens.create_token(session, OPERATOR, name=name, **spec)
            if name == "revoked":
                tokens.revoke_token(session, OPERATOR, token)
        return made


@pytest.fixture
def api(app, secrets):
    """call(token_name, method, path, **kwargs): a request to /api/v1 with that token."""
    client = app.test_client()

    def call(token: str | None, method: str, path: str, **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {secrets[token]}"
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    return call


def problem_of(response, status: int) -> dict:
    """The problem+json body of an error response, checked to be one (RFC 9457)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"] == "about:blank"
    return body


def mailbox_count(installation) -> int:
    with installation.sessions() as session:
        return session.scalar(select(func.count(Mailbox.id)))


def mailbox(installation, address: str) -> Mailbox | None:
    with installation.sessions() as session:
        return mailboxes.find_mailbox(session, address)


def migrated_hash(password: str) -> str:
    """A hash as another mail server stored it, Dovecot's scheme prefix in front."""
    return "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash(password)


def new_mailbox(local_part: str, quota: int = 10 * KB, **extra) -> dict:
    return {"local_part": local_part, "quota_bytes": quota, "password": GOOD_PASSWORD, **extra}


# --- the tenant and its domains --------------------------------------------------------------------


def test_a_tenant_token_reads_its_plan_and_pool(api) -> None:
    response = api("one", "GET", "/tenant")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["active"]) == ("One", True)
    assert body["pool"] == {
        "total_bytes": 1000 * KB, "allocated_bytes": 20 * KB, "free_bytes": 980 * KB, "used_bytes": None,
    }  # fmt: skip


def test_domains_are_listed_a_page_at_a_time_within_the_tenant(api) -> None:
    body = api("one", "GET", "/domains").get_json()
    assert [d["name"] for d in body["items"]] == ["a.test", "b.test"] and body["total"] == 2
    page = api("one", "GET", "/domains?per_page=1&page=2").get_json()
    assert [d["name"] for d in page["items"]] == ["b.test"] and (page["page"], page["per_page"]) == (2, 1)
    assert [d["name"] for d in api("two", "GET", "/domains").get_json()["items"]] == ["c.test"]
    assert [d["name"] for d in api("a", "GET", "/domains").get_json()["items"]] == ["a.test"]
    problem_of(api("one", "GET", "/domains?per_page=1001"), 422)


def test_a_tenant_token_creates_reads_changes_and_deletes_a_domain(api, world) -> None:
    created = api("one", "POST", "/domains", json={"name": "Bücher.test", "max_mailboxes": 2, "max_aliases": 4,
                                                   "max_mailbox_bytes": 50 * KB})  # fmt: skip
    assert created.status_code == 201
    assert created.get_json() == {
        "name": "xn--bcher-kva.test", "display_name": "bücher.test", "active": True, "max_mailboxes": 2,
        "max_aliases": 4, "max_mailbox_bytes": 50 * KB,
    }  # fmt: skip
    assert api("one", "GET", "/domains/bücher.test").get_json()["name"] == "xn--bcher-kva.test"
    changed = api("one", "PATCH", "/domains/xn--bcher-kva.test", json={"max_mailboxes": 5, "active": False})
    assert changed.status_code == 200
    assert (changed.get_json()["max_mailboxes"], changed.get_json()["active"]) == (5, False)
    response = api("one", "DELETE", "/domains/xn--bcher-kva.test")
    assert response.status_code == 204 and response.get_data() == b""
    problem_of(api("one", "GET", "/domains/xn--bcher-kva.test"), 404)
    with world.sessions() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.actor.like("token:%"))).all()
        assert actions == ["domain.create", "domain.update", "domain.delete"]


def test_a_taken_or_malformed_domain_is_refused_and_nothing_is_made(api, world) -> None:
    before = snapshot(world)
    assert (
        "already"
        in problem_of(
            api("one", "POST", "/domains", json={"name": "a.test", "max_mailboxes": 1, "max_aliases": 1}), 409
        )["detail"]
    )
    problem_of(
        api("one", "POST", "/domains", json={"name": "not a domain", "max_mailboxes": 1, "max_aliases": 1}),
        422,
    )
    missing = problem_of(api("one", "POST", "/domains", json={"name": "new.test"}), 422)
    assert set(missing["errors"]["json"]) == {"max_mailboxes", "max_aliases"}
    assert snapshot(world) == before


def test_a_domain_limit_cannot_drop_below_what_the_domain_holds(api, world) -> None:
    before = snapshot(world)
    body = problem_of(api("one", "PATCH", "/domains/b.test", json={"max_mailboxes": 0}), 422)
    assert "already has 1 mailboxes" in body["detail"] and body["errors"] == {
        "max_mailboxes": [body["detail"]]
    }
    assert snapshot(world) == before


def test_usage_reports_what_a_billing_system_polls(api) -> None:
    api("one", "POST", "/domains/a.test/mailboxes", json=new_mailbox("carla", 30 * KB))
    for token in ("one", "a"):
        assert api(token, "GET", "/domains/a.test/usage").get_json() == {
            "domain": "a.test", "mailboxes": 2, "aliases": 0, "allocated_bytes": 40 * KB, "used_bytes": None,
        }  # fmt: skip
    assert api("one", "GET", "/domains/b.test/usage").get_json()["aliases"] == 1


# --- mailboxes -------------------------------------------------------------------------------------


def test_a_mailbox_is_created_listed_changed_and_deleted(api, world) -> None:
    created = api(
        "a", "POST", "/domains/a.test/mailboxes", json=new_mailbox("Carla", display_name="Carla C.")
    )
    assert created.status_code == 201
    assert created.get_json() == {
        "address": "carla@a.test", "display_name": "Carla C.", "quota_bytes": 10 * KB, "active": True,
        "is_domain_admin": False, "used_bytes": None, "hourly_messages": 300, "hourly_messages_is_default": True,
    }  # fmt: skip
    listed = api("a", "GET", "/domains/a.test/mailboxes?q=car").get_json()
    assert [m["address"] for m in listed["items"]] == ["carla@a.test"] and listed["total"] == 1
    assert api("a", "GET", "/domains/a.test/mailboxes").get_json()["total"] == 2
    assert api("a", "GET", "/domains/a.test/mailboxes/carla").get_json()["address"] == "carla@a.test"
    changed = api("a", "PATCH", "/domains/a.test/mailboxes/carla",
                  json={"display_name": "Carla", "active": False, "password": "another long password"})  # fmt: skip
    assert changed.status_code == 200 and (changed.get_json()["display_name"], changed.get_json()["active"]) == (
        "Carla", False,
    )  # fmt: skip
    assert passwords.verify_password("another long password", mailbox(world, "carla@a.test").password_hash)
    assert api("a", "DELETE", "/domains/a.test/mailboxes/carla").status_code == 204
    assert mailbox(world, "carla@a.test") is None
    problem_of(api("a", "GET", "/domains/a.test/mailboxes/carla"), 404)


def test_a_migrated_password_hash_is_kept_as_given_and_logs_in(api, world) -> None:
    hashed = migrated_hash("migrated secret")
    response = api("one", "POST", "/domains/b.test/mailboxes", json={"local_part": "moved", "quota_bytes": 10 * KB,
                                                                    "password_hash": hashed})  # fmt: skip
    assert response.status_code == 201
    stored = mailbox(world, "moved@b.test").password_hash
    assert stored == hashed and passwords.verify_password("migrated secret", stored)
    rehashed = migrated_hash("second secret")
    assert (
        api("one", "PATCH", "/domains/b.test/mailboxes/moved", json={"password_hash": rehashed}).status_code
        == 200
    )
    assert mailbox(world, "moved@b.test").password_hash == rehashed


@pytest.mark.parametrize(
    "secret_fields",
    [
        {"password_hash": "$6$rounds=5000$salt$nothing"},  # no scheme
        {"password_hash": "{MD5}abc"},
        {"password_hash": "{SHA512-CRYPT}$6$salt-only"},
        {"password": GOOD_PASSWORD, "password_hash": migrated_hash("x")},
        {},
    ],
)
def test_a_bad_password_hash_or_password_pair_is_refused(api, world, secret_fields) -> None:
    before = snapshot(world)
    body = {"local_part": "moved", "quota_bytes": 10 * KB, **secret_fields}
    problem_of(api("one", "POST", "/domains/b.test/mailboxes", json=body), 422)
    assert snapshot(world) == before


def test_storage_changes_within_the_pool_and_a_409_names_the_pool(api, world) -> None:
    assert api("one", "PATCH", "/domains/b.test", json={"max_mailbox_bytes": 2000 * KB}).status_code == 200
    grown = api("one", "PATCH", "/domains/b.test/mailboxes/bob", json={"quota_bytes": 990 * KB})
    assert grown.status_code == 200 and grown.get_json()["quota_bytes"] == 990 * KB  # the pool is now full
    before = snapshot(world)
    body = problem_of(
        api("one", "PATCH", "/domains/b.test/mailboxes/bob", json={"quota_bytes": 991 * KB}), 409
    )
    assert "storage pool of One" in body["detail"] and body["errors"] == {"quota_bytes": [body["detail"]]}
    body = problem_of(api("one", "POST", "/domains/a.test/mailboxes", json=new_mailbox("late", 1 * KB)), 409)
    assert "storage pool of One has 0 bytes free" in body["detail"]
    assert snapshot(world) == before
    assert api("one", "GET", "/tenant").get_json()["pool"]["free_bytes"] == 0


def test_a_mailbox_larger_than_the_domain_allows_is_refused(api, world) -> None:
    before = snapshot(world)
    body = problem_of(
        api("one", "PATCH", "/domains/a.test/mailboxes/ann", json={"quota_bytes": 101 * KB}), 409
    )
    assert "at most 100 KB" in body["detail"] and "quota_bytes" in body["errors"]
    problem_of(
        api("one", "PATCH", "/domains/a.test/mailboxes/ann", json={"quota_bytes": 1}), 422
    )  # below 1 KB
    assert snapshot(world) == before


def test_the_domains_mailbox_limit_is_a_409_naming_it(api, world) -> None:
    for name in ("m1", "m2"):
        assert api("a", "POST", "/domains/a.test/mailboxes", json=new_mailbox(name)).status_code == 201
    before = snapshot(world)
    body = problem_of(api("a", "POST", "/domains/a.test/mailboxes", json=new_mailbox("m3")), 409)
    assert "may have at most 3 mailboxes" in body["detail"] and "max_mailboxes" in body["errors"]
    assert snapshot(world) == before


def test_a_taken_address_is_a_409(api, world) -> None:
    assert (
        "taken by an alias"
        in problem_of(api("b", "POST", "/domains/b.test/mailboxes", json=new_mailbox("team")), 409)["detail"]
    )


# --- bulk creation ---------------------------------------------------------------------------------


def test_a_bulk_request_of_1001_mailboxes_is_refused_whole(api, world) -> None:
    items = [new_mailbox(f"user{i}", 1 * KB) for i in range(1001)]
    body = problem_of(api("one", "POST", "/domains/b.test/mailboxes/bulk", json={"mailboxes": items}), 422)
    assert "mailboxes" in body["errors"]["json"]
    assert mailbox_count(world) == 2


def test_bulk_reports_each_item_and_a_refused_item_does_not_stop_the_rest(api, world) -> None:
    hashed = migrated_hash("migrated secret")
    items = [
        new_mailbox("first"),
        new_mailbox("bob"),  # taken by a mailbox
        new_mailbox("has space"),  # not a local part
        {"local_part": "migrated", "quota_bytes": 10 * KB, "password_hash": hashed},
        new_mailbox("huge", 200 * KB),  # larger than the domain allows
        {"local_part": "nopass", "quota_bytes": 10 * KB},  # neither password nor hash
        new_mailbox("first"),  # taken by an earlier item of the same request
        new_mailbox("last"),
    ]
    response = api("one", "POST", "/domains/b.test/mailboxes/bulk", json={"mailboxes": items})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["created"], body["failed"]) == (3, 5)
    assert [r["status"] for r in body["results"]] == [201, 409, 422, 201, 409, 422, 409, 201]
    assert [r["index"] for r in body["results"]] == list(range(8))
    assert body["results"][0] == {"index": 0, "address": "first@b.test", "status": 201, "error": None}
    refused = body["results"][1]["error"]
    assert (
        refused["status"] == 409 and "already taken" in refused["detail"] and refused["type"] == "about:blank"
    )
    for address in ("first@b.test", "migrated@b.test", "last@b.test"):
        assert mailbox(world, address) is not None, address
    assert passwords.verify_password("migrated secret", mailbox(world, "migrated@b.test").password_hash)
    assert mailbox_count(world) == 5


def test_bulk_stops_at_the_domains_limit_item_by_item(api, world) -> None:
    items = [new_mailbox(f"m{i}") for i in range(4)]
    body = api("a", "POST", "/domains/a.test/mailboxes/bulk", json={"mailboxes": items}).get_json()
    assert [r["status"] for r in body["results"]] == [201, 201, 409, 409]
    assert "at most 3 mailboxes" in body["results"][2]["error"]["detail"]
    assert mailbox_count(world) == 4


# --- scope: each token as an attacker -------------------------------------------------------------

B_ROUTES = [
    ("GET", "/domains/b.test", None),
    ("PATCH", "/domains/b.test", {"max_mailboxes": 999}),
    ("DELETE", "/domains/b.test", None),
    ("GET", "/domains/b.test/usage", None),
    ("GET", "/domains/b.test/mailboxes", None),
    ("POST", "/domains/b.test/mailboxes", new_mailbox("evil")),
    ("POST", "/domains/b.test/mailboxes/bulk", {"mailboxes": [new_mailbox("evil")]}),
    ("GET", "/domains/b.test/mailboxes/bob", None),
    ("PATCH", "/domains/b.test/mailboxes/bob", {"password": "taken over password", "active": False}),
    ("DELETE", "/domains/b.test/mailboxes/bob", None),
]


@pytest.mark.parametrize("attacker", ["a", "two", "signup"])
@pytest.mark.parametrize(("method", "path", "body"), B_ROUTES)
def test_no_token_reaches_another_domains_or_tenants_objects(
    api, world, attacker, method, path, body
) -> None:
    before = snapshot(world)
    problem_of(api(attacker, method, path, json=body), 404)
    assert snapshot(world) == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/tenant", None),
        ("POST", "/domains", {"name": "new.test", "max_mailboxes": 1, "max_aliases": 1}),
        ("PATCH", "/domains/a.test", {"max_mailboxes": 999}),
        ("DELETE", "/domains/a.test", None),
    ],
)
def test_a_domain_token_cannot_use_the_tenants_routes_on_its_own_domain(
    api, world, method, path, body
) -> None:
    before = snapshot(world)
    problem_of(api("a", method, path, json=body), 404)
    assert snapshot(world) == before


def test_a_domain_token_cannot_grant_or_revoke_the_domain_admin_role(api, world) -> None:
    before = snapshot(world)
    problem_of(
        api("a", "POST", "/domains/a.test/mailboxes", json=new_mailbox("boss", is_domain_admin=True)), 422
    )
    problem_of(api("a", "PATCH", "/domains/a.test/mailboxes/ann", json={"is_domain_admin": False}), 403)
    assert snapshot(world) == before


SIGNUP_ELSEWHERE = [
    ("GET", "/tenant", None),
    ("GET", "/domains", None),
    ("POST", "/domains", {"name": "new.test", "max_mailboxes": 1, "max_aliases": 1}),
    ("GET", "/domains/a.test", None),
    ("PATCH", "/domains/a.test", {"max_mailboxes": 999}),
    ("DELETE", "/domains/a.test", None),
    ("GET", "/domains/a.test/usage", None),
    ("GET", "/domains/a.test/mailboxes", None),
    ("POST", "/domains/a.test/mailboxes/bulk", {"mailboxes": [new_mailbox("evil")]}),
    ("GET", "/domains/a.test/mailboxes/ann", None),
    ("PATCH", "/domains/a.test/mailboxes/ann", {"password": "taken over password"}),
    ("DELETE", "/domains/a.test/mailboxes/ann", None),
    ("POST", "/domains/b.test/mailboxes", new_mailbox("evil")),
    ("POST", "/domains/c.test/mailboxes", new_mailbox("evil")),
]


@pytest.mark.parametrize(("method", "path", "body"), SIGNUP_ELSEWHERE)
def test_a_signup_token_can_do_nothing_but_create_a_mailbox_in_its_domain(
    api, world, method, path, body
) -> None:
    before = snapshot(world)
    problem_of(api("signup", method, path, json=body), 404)
    assert snapshot(world) == before


def test_a_signup_token_creates_a_mailbox_but_cannot_make_it_a_domain_admin(api, world) -> None:
    before = snapshot(world)
    problem_of(
        api("signup", "POST", "/domains/a.test/mailboxes", json=new_mailbox("x", is_domain_admin=True)), 422
    )
    assert snapshot(world) == before
    created = api("signup", "POST", "/domains/a.test/mailboxes", json=new_mailbox("newcomer"))
    assert created.status_code == 201 and created.get_json()["is_domain_admin"] is False
    with world.sessions() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.target == "newcomer@a.test"))
        assert entry.actor.startswith("token:") and entry.action == "mailbox.create"


def test_a_signup_token_is_refused_past_its_hourly_limit(api, world) -> None:
    assert api("signup", "POST", "/domains/a.test/mailboxes", json=new_mailbox("first")).status_code == 201
    before = snapshot(world)
    body = problem_of(api("signup", "POST", "/domains/a.test/mailboxes", json=new_mailbox("second")), 409)
    assert "at most 1 mailboxes an hour" in body["detail"] and "hourly_limit" in body["errors"]
    assert snapshot(world) == before
    # The allowance is the token's own: a full-admin token still creates.
    assert api("one", "POST", "/domains/a.test/mailboxes", json=new_mailbox("second")).status_code == 201


# --- authentication and the shape of errors -------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer not-a-token",
        "Bearer lh_",
        "Bearer lh_0123456789ab_unknownsecret",
        "Bearer lh_{prefix}_wrongsecret",
        "Bearer lh_{prefix}",
        "Basic {secret}",
        "Bearer {revoked}",
        "Bearer {secret}{secret}",
    ],
)
def test_a_missing_malformed_unknown_or_revoked_token_is_a_401(app, world, secrets, authorization) -> None:
    with world.sessions() as session:
        _actor, token = tokens.authenticate_token(session, secrets["one"])
        prefix = token.prefix
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(
            prefix=prefix, secret=secrets["one"], revoked=secrets["revoked"]
        )
    before = snapshot(world)
    for method, path in (
        ("GET", "/tenant"),
        ("DELETE", "/domains/a.test"),
        ("POST", "/domains/a.test/mailboxes"),
    ):
        response = app.test_client().open(
            f"/api/v1{path}", method=method, headers=headers, json=new_mailbox("x")
        )
        body = problem_of(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["detail"] == "The token is missing, unknown or revoked."  # whatever was wrong with it
    assert snapshot(world) == before


def test_a_token_of_a_deactivated_tenant_is_a_401(api, world) -> None:
    with world.transaction() as session:
        tenants.update_tenant(session, OPERATOR, tenants.get_tenant(session, OPERATOR, "Two"), active=False)
    problem_of(api("two", "GET", "/domains"), 401)


def test_a_tokens_use_is_recorded(api, world) -> None:
    api("one", "GET", "/tenant")
    with world.sessions() as session:
        used = [t.name for t in tokens.list_tokens(session, OPERATOR, session.scalar(select(Tenant)))
                if t.last_used_at is not None]  # fmt: skip
    assert used == ["one"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/nothing-here", {}, 404),
        ("PUT", "/domains", {"json": {}}, 405),
        ("POST", "/domains", {"data": "{not json", "content_type": "application/json"}, 400),
        ("POST", "/domains", {"json": {"name": 7, "max_mailboxes": -1, "max_aliases": "x"}}, 422),
        ("POST", "/domains", {"json": {"name": "a.test", "max_mailboxes": 1, "max_aliases": 1}}, 409),
        ("GET", "/domains?page=0", {}, 422),
        ("GET", "/domains/nowhere.test", {}, 404),
    ],
)
def test_every_error_is_problem_json(api, method, path, kwargs, status) -> None:
    problem_of(api("one", method, path, **kwargs), status)


def test_a_filter_that_cannot_be_written_is_a_clear_refusal_not_a_server_error(api, world) -> None:
    assert not world.settings.mail_root.exists()  # an installation never started: no mail storage
    response = api(
        "one", "PUT", "/domains/a.test/mailboxes/ann/filter", json={"name": "f", "script": "keep;\n"}
    )
    body = problem_of(response, 503)
    assert "mail storage folder" in body["detail"] and "prepare the installation" in body["detail"]


def test_spam_thresholds_and_greylisting_through_the_api(api, world) -> None:
    put = api(
        "one", "PUT", "/domains/a.test/spam", json={"reject_score": 12, "junk_score": 4, "greylisting": True}
    )
    assert put.status_code == 200, put.get_json()
    assert put.get_json() == {
        "reject_score": 12.0, "reject_score_is_default": False, "junk_score": 4.0,
        "junk_score_is_default": False, "greylisting": True,
    }  # fmt: skip
    refused = api("one", "PUT", "/domains/a.test/spam", json={"reject_score": 3, "junk_score": 4})
    assert refused.status_code == 422 and problem_of(refused, 422)
    # A domain token reads its domain's thresholds; changing them is a tenant route (404, as for
    # every tenant route); another tenant sees nothing.
    assert api("a", "GET", "/domains/a.test/spam").get_json()["junk_score"] == 4.0
    assert (
        api("a", "PUT", "/domains/a.test/spam", json={"reject_score": None, "junk_score": None}).status_code
        == 404
    )
    assert api("two", "GET", "/domains/a.test/spam").status_code == 404
    with world.transaction() as session:
        domain = session.scalar(select(Domain).where(Domain.name == "a.test"))
        assert (domain.spam_reject_score, domain.spam_junk_score, domain.greylisting) == (12, 4, True)


def test_dkim_keys_through_the_api(api) -> None:
    keys = api("a", "GET", "/domains/a.test/dkim").get_json()
    assert [k["state"] for k in keys] == ["active"]
    rotated = api("one", "POST", "/domains/a.test/dkim/rotate")
    assert rotated.status_code == 200
    assert [k["state"] for k in rotated.get_json()] == ["active", "retiring"]
    assert api("two", "POST", "/domains/a.test/dkim/rotate").status_code == 404


def test_sender_lists_through_the_api(api) -> None:
    base = "/domains/a.test/mailboxes/ann/senders"
    listed = api("a", "PUT", f"{base}/Friend@Example.org", json={"list": "allow"})
    assert listed.status_code == 200, listed.get_json()
    assert listed.get_json() == {"allowed": ["friend@example.org"], "blocked": []}
    moved = api("one", "PUT", f"{base}/friend@example.org", json={"list": "block"})
    assert moved.get_json() == {"allowed": [], "blocked": ["friend@example.org"]}
    assert api("a", "PUT", f"{base}/@spam.example", json={"list": "block"}).get_json()["blocked"] == [
        "@spam.example", "friend@example.org",
    ]  # fmt: skip
    problem_of(api("a", "PUT", f"{base}/not-an-address", json={"list": "block"}), 422)
    problem_of(api("a", "PUT", f"{base}/x@y.test", json={"list": "trust"}), 422)
    # Another domain's token and another tenant's see nothing, in the same words as a missing mailbox.
    for token in ("b", "two"):
        for method, body in (("GET", None), ("PUT", {"list": "allow"}), ("DELETE", None)):
            path = base if method == "GET" else f"{base}/friend@example.org"
            refused = problem_of(api(token, method, path, json=body), 404)
            assert "friend" not in str(refused) and "ann" not in str(refused)
    assert api("a", "DELETE", f"{base}/friend@example.org").get_json() == {
        "allowed": [], "blocked": ["@spam.example"],
    }  # fmt: skip
    problem_of(api("a", "DELETE", f"{base}/friend@example.org"), 404)
    assert api("a", "GET", base).get_json() == {"allowed": [], "blocked": ["@spam.example"]}


def test_a_full_admin_sets_a_mailboxs_hourly_sending_limit_and_a_domain_token_may_not(api) -> None:
    shown = api("a", "GET", "/domains/a.test/mailboxes/ann").get_json()
    assert (shown["hourly_messages"], shown["hourly_messages_is_default"]) == (300, True)
    changed = api("one", "PATCH", "/domains/a.test/mailboxes/ann", json={"hourly_messages": 40})
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["hourly_messages"], changed.get_json()["hourly_messages_is_default"]) == (
        40,
        False,
    )
    problem_of(api("one", "PATCH", "/domains/a.test/mailboxes/ann", json={"hourly_messages": 0}), 422)
    problem_of(api("a", "PATCH", "/domains/a.test/mailboxes/ann", json={"hourly_messages": 5000}), 403)
    problem_of(api("two", "PATCH", "/domains/a.test/mailboxes/ann", json={"hourly_messages": 5}), 404)
    back = api("one", "PATCH", "/domains/a.test/mailboxes/ann", json={"hourly_messages": None}).get_json()
    assert (back["hourly_messages"], back["hourly_messages_is_default"]) == (300, True)
