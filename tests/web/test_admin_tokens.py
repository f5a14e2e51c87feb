"""API tokens in the admin panel: made with the secret shown once, listed, revoked, within scope."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from controlplane.errors import AuthenticationFailed
from controlplane.models import ApiToken, Domain, Tenant
from controlplane.services import tokens
from controlplane.services.scope import OPERATOR
from tests.web.test_admin_panel import log_in, post, snapshot

KB = 1024


@pytest.fixture
def made(world) -> dict[str, tuple[int, str, str]]:
    """Tokens made by the operator: name -> (id, prefix, secret)."""
    with world.transaction() as session:
        one = session.scalar(select(Tenant).where(Tenant.name == "One"))
        two = session.scalar(select(Tenant).where(Tenant.name == "Two"))
        domain = {d.name: d for d in session.scalars(select(Domain))}
        specs = {
            "one-tenant": dict(tenant=one, kind="tenant"),
            "a-domain": dict(tenant=one, kind="domain", domain=domain["a.test"]),
            "a-signup": dict(tenant=one, kind="signup", domain=domain["a.test"], hourly_limit=3),
            "b-domain": dict(tenant=one, kind="domain", domain=domain["b.test"]),
            "two-tenant": dict(tenant=two, kind="tenant"),
        }
        result = {}
        for name, spec in specs.items():
            token, secret = tokens.create_token(session, OPERATOR, name=name, **spec)
            result[name] = (token.id, token.prefix, secret)
        return result


def token_rows(installation) -> list[tuple]:
    with installation.sessions() as session:
        return sorted(
            session.execute(
                select(ApiToken.id, ApiToken.kind, ApiToken.domain_id, ApiToken.name, ApiToken.revoked_at)
            ).all()
        )


def make_token(client, **form: str):
    return post(client, "/admin/tokens", form)


def flashed(client, response) -> str:
    """The page the form redirects to."""
    assert response.status_code == 302, response.status_code
    return client.get(response.headers["Location"]).get_data(as_text=True)


def flash_messages(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="flash (\w+)"[^>]*>(.*?)</div>', page, re.S)


def test_the_tokens_page_needs_a_login(app, world) -> None:
    response = app.test_client().get("/admin/tokens")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_a_token_form_without_its_csrf_token_is_refused(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    response = client.post("/admin/tokens", data={"kind": "tenant", "name": "forged"})
    assert response.status_code == 400
    assert token_rows(world) == []


def test_a_new_tokens_secret_is_shown_once_and_works_against_the_api(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    page = flashed(
        client, make_token(client, kind="signup", domain="a.test", name="Sign-up form", hourly_limit="5")
    )
    secret = re.search(r"shown once: (lh_[\w-]+)<", page).group(1)
    with world.sessions() as session:
        _actor, token = tokens.authenticate_token(session, secret)
        assert (token.kind, token.domain.name, token.hourly_limit, token.created_by) == (
            "signup", "a.test", 5, "admin:boss",
        )  # fmt: skip
        prefix = token.prefix
    assert f"lh_{prefix}_" in page and 'data-prefix="' + prefix in page
    again = client.get("/admin/tokens").get_data(as_text=True)
    assert secret not in again and "shown once" not in again and prefix in again
    created = app.test_client().post(
        "/api/v1/domains/a.test/mailboxes",
        json={"local_part": "signed-up", "quota_bytes": 10 * KB, "password": "a long password"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert created.status_code == 201
    assert "never" not in client.get("/admin/tokens").get_data(as_text=True)  # its last use is shown


def test_a_full_admin_makes_tenant_and_domain_tokens(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    flashed(client, make_token(client, kind="tenant", domain="", name="billing"))
    flashed(client, make_token(client, kind="domain", domain="b.test", name="b robot"))
    with world.sessions() as session:
        rows = {t.name: t for t in session.scalars(select(ApiToken))}
        assert rows["billing"].kind == "tenant" and rows["billing"].domain_id is None
        assert rows["b robot"].domain.name == "b.test" and rows["b robot"].hourly_limit is None


def test_options_that_do_not_fit_the_kind_are_refused_not_dropped(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    for form, words in (
        (dict(kind="tenant", domain="a.test", name="t"), "name no domain"),
        (dict(kind="domain", domain="a.test", name="d", hourly_limit="5"), "Only sign-up tokens"),
    ):
        [(category, message)] = flash_messages(flashed(client, make_token(client, **form)))
        assert category == "error" and words in message
    assert token_rows(world) == []


def test_a_bad_hourly_limit_is_refused_with_a_plain_message(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    for limit in ("0", "many", "10001"):
        page = flashed(
            client, make_token(client, kind="signup", domain="a.test", name="s", hourly_limit=limit)
        )
        [(category, message)] = flash_messages(page)
        assert category == "error" and "hourly limit" in message
    assert token_rows(world) == []


def test_a_full_admin_sees_every_token_of_the_tenant_and_none_of_another(app, world, made) -> None:
    client = app.test_client()
    log_in(client, "boss")
    page = client.get("/admin/tokens").get_data(as_text=True)
    for name in ("one-tenant", "a-domain", "a-signup", "b-domain"):
        assert made[name][1] in page, name
    assert made["two-tenant"][1] not in page
    assert '<option value="tenant">' in page and '<option value="b.test">' in page


def test_a_domain_admin_sees_only_its_domains_tokens(app, world, made) -> None:
    client = app.test_client()
    log_in(client, "ann@a.test")
    page = client.get("/admin/tokens").get_data(as_text=True)
    assert made["a-domain"][1] in page and made["a-signup"][1] in page
    for name in ("one-tenant", "b-domain", "two-tenant"):
        assert made[name][1] not in page, name
    assert '<option value="tenant">' not in page and '<option value="b.test">' not in page


def test_a_domain_admin_makes_tokens_for_its_own_domain_only(app, world) -> None:
    client = app.test_client()
    log_in(client, "ann@a.test")
    flashed(client, make_token(client, kind="domain", domain="a.test", name="robot"))
    flashed(client, make_token(client, kind="signup", domain="a.test", name="form"))
    before, everything = token_rows(world), snapshot(world)
    assert [row[1:4:2] for row in before] == [("domain", "robot"), ("signup", "form")]
    assert make_token(client, kind="domain", domain="b.test", name="x").status_code == 404
    assert make_token(client, kind="signup", domain="c.test", name="x").status_code == 404
    assert make_token(client, kind="tenant", domain="a.test", name="x").status_code == 403
    assert token_rows(world) == before and snapshot(world) == everything


def test_a_revoked_token_is_refused_by_the_api_and_shown_as_revoked(app, world, made) -> None:
    client = app.test_client()
    log_in(client, "ann@a.test")
    token_id, prefix, secret = made["a-domain"]
    page = flashed(client, post(client, f"/admin/tokens/{token_id}/revoke"))
    assert "revoked" in page
    row = re.search(rf'<tr data-prefix="{prefix}">(.*?)</tr>', page, re.S).group(1)
    assert "Revoke</button>" not in row
    with world.sessions() as session, pytest.raises(AuthenticationFailed):
        tokens.authenticate_token(session, secret)
    response = app.test_client().get("/api/v1/domains", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("attacker", "target", "status"),
    [
        ("ann@a.test", "one-tenant", 403),  # its own tenant's, but not its domain's
        ("ann@a.test", "b-domain", 404),
        ("ann@a.test", "two-tenant", 404),
        ("rival", "one-tenant", 404),
        ("rival", "a-domain", 404),
        ("rival", "a-signup", 404),
    ],
)
def test_nobody_revokes_another_domains_or_tenants_token(
    app,
    world,
    made,
    attacker,
    target,
    status,
) -> None:
    client = app.test_client()
    log_in(client, attacker)
    before = token_rows(world)
    assert post(client, f"/admin/tokens/{made[target][0]}/revoke").status_code == status
    assert token_rows(world) == before
    assert post(client, "/admin/tokens/999999/revoke").status_code == 404


def test_another_tenants_admin_cannot_make_tokens_for_our_domains(app, world) -> None:
    client = app.test_client()
    log_in(client, "rival")
    for kind in ("domain", "signup"):
        assert make_token(client, kind=kind, domain="a.test", name="x").status_code == 404
    assert token_rows(world) == []
