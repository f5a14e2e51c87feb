"""The admin panel through Flask's test client: real app, real database, CSRF on."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from controlplane.models import (
    Admin,
    Alias,
    AliasDestination,
    AuditEntry,
    AuthEvent,
    Domain,
    Mailbox,
    SenderRule,
    Tenant,
)
from controlplane.services import mailboxes, scope, sender_lists, tenants
from tests.factories import PASSWORD

KB = 1024


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def log_in(client, login: str, password: str = PASSWORD):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"login": login, "password": password, "csrf_token": token})


def post(client, url: str, data: dict | None = None):
    token = csrf_from(client.get("/admin/", follow_redirects=True).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def count(installation, model) -> int:
    with installation.sessions() as session:
        return session.scalar(select(func.count(model.id)))


def snapshot(installation) -> tuple:
    with installation.sessions() as session:
        return (
            sorted(session.execute(select(Mailbox.id, Mailbox.local_part, Mailbox.quota_bytes, Mailbox.active,
                                          Mailbox.is_domain_admin, Mailbox.password_hash)).all()),
            sorted(session.execute(select(Domain.id, Domain.name, Domain.max_mailboxes, Domain.max_aliases,
                                          Domain.max_mailbox_bytes, Domain.active)).all()),
            sorted(session.execute(select(Alias.id, Alias.local_part)).all()),
            sorted(session.execute(select(Tenant.id, Tenant.storage_pool_bytes)).all()),
            sorted(session.execute(select(Admin.id, Admin.login, Admin.totp_secret)).all()),
            sorted(session.execute(select(AliasDestination.alias_id, AliasDestination.address)).all()),
            sorted(session.execute(select(SenderRule.mailbox_id, SenderRule.sender, SenderRule.verdict)).all()),
            sorted(session.execute(select(Mailbox.id, Mailbox.hourly_messages)).all()),
        )  # fmt: skip


def test_every_route_declares_who_may_call_it(app) -> None:
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not getattr(app.view_functions[rule.endpoint], "allowed_roles", None)
    ]
    assert undeclared == []


def test_pages_need_a_login(app, world) -> None:
    client = app.test_client()
    response = client.get("/admin/domains/a.test")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_a_form_without_its_csrf_token_is_refused(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    before = count(world, Domain)
    response = client.post(
        "/admin/domains", data={"name": "new.test", "max_mailboxes": "1", "max_aliases": "1"}
    )
    assert response.status_code == 400
    assert count(world, Domain) == before


def test_full_admin_creates_a_domain_and_a_mailbox_and_sees_the_pool(app, world) -> None:
    client = app.test_client()
    assert log_in(client, "boss").status_code == 302
    response = post(client, "/admin/domains", {"name": "Bücher.test", "max_mailboxes": "2", "max_aliases": "2",
                                               "max_mailbox_size": "100KB"})  # fmt: skip
    assert response.status_code == 302
    response = post(client, "/admin/domains/xn--bcher-kva.test/mailboxes",
                    {"local_part": "Carla", "quota": "50KB", "password": "a long password"})  # fmt: skip
    assert response.status_code == 302
    with world.sessions() as session:
        mailbox = mailboxes.find_mailbox(session, "carla@xn--bcher-kva.test")
        assert mailbox is not None and mailbox.quota_bytes == 50 * KB
        entry = session.scalar(select(AuditEntry).where(AuditEntry.target == "carla@xn--bcher-kva.test"))
        assert (entry.action, entry.actor, entry.client_ip) == ("mailbox.create", "admin:boss", "127.0.0.1")
    page = client.get("/admin/").get_data(as_text=True)
    assert "bücher.test" in page and "1 of 2" in page
    assert "70 KB given to mailboxes of 1000 KB" in page  # 10 + 10 from the fixtures, 50 here


def test_a_generated_password_is_shown_once_and_works(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    response = post(client, "/admin/domains/a.test/mailboxes", {"local_part": "gen", "quota": "10KB"})
    shown = re.search(r"shown once: (\S+)<", client.get(response.headers["Location"]).get_data(as_text=True))
    assert shown
    with world.sessions() as session:
        from controlplane.services import passwords

        assert passwords.verify_password(
            shown.group(1), mailboxes.find_mailbox(session, "gen@a.test").password_hash
        )
    assert "shown once" not in client.get("/admin/domains/a.test").get_data(as_text=True)


def test_domain_admin_is_refused_at_the_mailbox_limit_with_a_plain_message(app, world) -> None:
    client = app.test_client()
    assert log_in(client, "ann@a.test").status_code == 302
    for name in ("m1", "m2"):
        post(
            client,
            "/admin/domains/a.test/mailboxes",
            {"local_part": name, "quota": "10KB", "password": PASSWORD},
        )
    before = snapshot(world)
    response = post(client, "/admin/domains/a.test/mailboxes", {"local_part": "m3", "quota": "10KB",
                                                               "password": PASSWORD})  # fmt: skip
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "may have at most 3 mailboxes" in page
    assert snapshot(world) == before


def test_domain_admin_sees_limits_read_only(app, world) -> None:
    client = app.test_client()
    log_in(client, "ann@a.test")
    page = client.get("/admin/domains/a.test").get_data(as_text=True)
    assert "3 mailboxes" in page and "Save limits" not in page
    assert client.get("/admin/").headers["Location"].endswith("/admin/domains/a.test")


def test_a_wrong_password_is_refused_recorded_and_then_throttled(app, world) -> None:
    client = app.test_client()
    for attempt in range(5):
        response = log_in(client, "boss", f"wrong guess {attempt}")
        assert response.status_code == 401 and "Wrong login or password" in response.get_data(as_text=True)
    response = log_in(client, "boss", PASSWORD)
    assert response.status_code == 429 and "minute" in response.get_data(as_text=True)
    with world.sessions() as session:
        events = session.scalars(select(AuthEvent).where(AuthEvent.login == "boss")).all()
        assert len(events) == 6 and not any(event.success for event in events)
        assert all(event.client_ip == "127.0.0.1" and event.service == "admin" for event in events)


def test_alias_destinations_are_edited_and_a_loop_is_refused(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    post(client, "/admin/domains/b.test/aliases", {"local_part": "all", "destinations": "team@b.test"})
    with world.sessions() as session:
        team = session.scalar(select(Alias).where(Alias.local_part == "team"))
        team_id = team.id
    response = post(
        client, f"/admin/aliases/{team_id}/destinations", {"destinations": "bob@b.test, x@elsewhere.test"}
    )
    assert response.status_code == 302
    with world.sessions() as session:
        assert sorted(session.get(Alias, team_id).destination_addresses) == ["bob@b.test", "x@elsewhere.test"]
    before = snapshot(world)
    response = post(client, f"/admin/aliases/{team_id}/destinations", {"destinations": "all@b.test"})
    assert "alias loop" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert snapshot(world) == before


def test_logout_ends_the_session(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302


# --- isolation: every route against objects the user does not own -----------------------------------


def _foreign_targets(installation) -> dict[str, int]:
    with installation.sessions() as session:
        bob = mailboxes.find_mailbox(session, "bob@b.test")
        team = session.scalar(select(Alias).where(Alias.local_part == "team"))
        boss = session.scalar(select(Admin).where(Admin.login == "boss"))
        return {"mailbox": bob.id, "alias": team.id, "admin": boss.id}


ATTACKS = [
    ("GET", "/admin/domains/{domain}", {}),
    ("GET", "/admin/domains/{domain}/tls-reports", {}),
    (
        "POST",
        "/admin/domains/{domain}/limits",
        {"max_mailboxes": "999", "max_aliases": "999", "max_mailbox_size": "1KB"},
    ),
    ("POST", "/admin/domains/{domain}/delete", {"confirm": "{domain}"}),
    ("POST", "/admin/domains/{domain}/active", {"active": "0"}),
    (
        "POST",
        "/admin/domains/{domain}/mailboxes",
        {"local_part": "evil", "quota": "10KB", "password": PASSWORD},
    ),
    ("POST", "/admin/domains/{domain}/aliases", {"local_part": "evil", "destinations": "x@elsewhere.test"}),
    ("POST", "/admin/mailboxes/{mailbox}/quota", {"quota": "11KB"}),
    ("POST", "/admin/mailboxes/{mailbox}/password", {"password": "taken over password"}),
    ("POST", "/admin/mailboxes/{mailbox}/reset-password", {}),
    ("POST", "/admin/mailboxes/{mailbox}/active", {"active": "0"}),
    ("POST", "/admin/mailboxes/{mailbox}/domain-admin", {"granted": "1"}),
    ("POST", "/admin/mailboxes/{mailbox}/delete", {}),
    ("POST", "/admin/aliases/{alias}/delete", {}),
    ("POST", "/admin/admins/{admin}/delete", {}),
    ("POST", "/admin/aliases/{alias}/destinations", {"destinations": "x@elsewhere.test"}),
    ("POST", "/admin/mailboxes/{mailbox}/senders", {"sender": "x@elsewhere.test", "list": "allow"}),
    ("POST", "/admin/mailboxes/{mailbox}/senders/remove", {"sender": "friend@elsewhere.test"}),
    ("POST", "/admin/mailboxes/{mailbox}/hourly-limit", {"hourly_messages": "5"}),
]


@pytest.mark.parametrize("attacker", ["ann@a.test", "rival"])
@pytest.mark.parametrize(("method", "template", "data"), ATTACKS)
def test_nobody_reaches_another_domains_or_tenants_objects(
    app, world, attacker, method, template, data
) -> None:
    client = app.test_client()
    assert log_in(client, attacker).status_code == 302
    targets = {**_foreign_targets(world), "domain": "b.test"}
    url = template.format(**targets)
    before = snapshot(world)
    if method == "GET":
        response = client.get(url)
    else:
        response = post(client, url, {key: value.format(**targets) for key, value in data.items()})
    assert response.status_code in (403, 404), (url, response.status_code)
    assert snapshot(world) == before


@pytest.mark.parametrize("attacker", ["ann@a.test", "rival"])
@pytest.mark.parametrize(
    ("method", "template", "data"), [attack for attack in ATTACKS if "{domain}" not in attack[1]]
)
def test_another_tenants_object_by_id_answers_exactly_like_one_that_does_not_exist(
    app, world, attacker, method, template, data
) -> None:
    """Walking IDs must not list other tenants' domains, mailboxes or admins."""
    client = app.test_client()
    assert log_in(client, attacker).status_code == 302
    targets = _foreign_targets(world)
    nowhere = dict.fromkeys(targets, 999_999)
    real = post(client, template.format(**targets), data)
    missing = post(client, template.format(**nowhere), data)
    assert real.status_code == missing.status_code
    assert real.status_code in (403, 404)  # 403: the role may not use the page at all, whatever the ID
    # The same page but for its CSRF token, which carries the second it was made in.
    assert _without_csrf_tokens(real.get_data(as_text=True)) == _without_csrf_tokens(
        missing.get_data(as_text=True)
    )
    assert "b.test" not in real.get_data(as_text=True) and "boss" not in real.get_data(as_text=True)


def _without_csrf_tokens(page: str) -> str:
    return re.sub(r'(name="csrf_token" value=")[^"]*"', r'\1"', page)


def test_a_domain_admin_logged_in_is_logged_out_when_their_tenant_is_deactivated(app, world) -> None:
    client = app.test_client()
    assert log_in(client, "ann@a.test").status_code == 302
    assert client.get("/admin/domains/a.test").status_code == 200
    with world.transaction() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "One"))
        tenants.update_tenant(session, scope.OPERATOR, tenant, active=False)
    response = client.get("/admin/domains/a.test")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    before = snapshot(world)
    assert post(
        client, "/admin/domains/a.test/mailboxes", {"local_part": "late", "quota": "10KB"}
    ).status_code in (
        302,
        400,
    )
    assert snapshot(world) == before


def test_domain_admins_cannot_reach_admin_management_or_two_factor_pages(app, world) -> None:
    client = app.test_client()
    log_in(client, "ann@a.test")
    before = snapshot(world)
    assert client.get("/admin/admins").status_code == 403
    assert client.get("/admin/account").status_code == 403
    assert post(client, "/admin/admins", {"login": "sneaky", "password": PASSWORD}).status_code == 403
    assert snapshot(world) == before and count(world, Admin) == 2


def test_full_admin_adds_and_removes_an_admin_but_not_the_last_one(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    post(client, "/admin/admins", {"login": "helper", "password": "another long password"})
    assert "helper" in client.get("/admin/admins").get_data(as_text=True)
    with world.sessions() as session:
        ids = {a.login: a.id for a in session.scalars(select(Admin))}
    post(client, f"/admin/admins/{ids['helper']}/delete")
    log_in(client, "rival")  # the other tenant's only admin
    response = post(client, f"/admin/admins/{ids['rival']}/delete")
    assert "last full admin" in client.get(response.headers["Location"]).get_data(as_text=True)
    with world.sessions() as session:
        assert sorted(session.scalars(select(Admin.login))) == ["boss", "rival"]


def test_two_factor_login_is_enrolled_with_a_code_and_then_required(app, world) -> None:
    from controlplane.models.base import utcnow
    from controlplane.services import auth

    client = app.test_client()
    log_in(client, "boss")
    page = client.get("/admin/account").get_data(as_text=True)
    secret = re.search(r"<code data-secret>([A-Z2-7]+)</code>", page).group(1)
    response = post(client, "/admin/account/totp", {"secret": secret, "totp_code": "000000"})
    assert "does not match" in client.get(response.headers["Location"]).get_data(as_text=True)
    post(client, "/admin/account/totp", {"secret": secret, "totp_code": auth.totp_code(secret, utcnow())})
    assert "is <strong>on</strong>" in client.get("/admin/account").get_data(as_text=True)
    post(client, "/admin/logout")

    asked = log_in(client, "boss")
    assert asked.status_code == 200 and 'name="totp_code"' in asked.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302  # not logged in yet
    token = csrf_from(asked.get_data(as_text=True))
    wrong = client.post("/admin/login", data={"login": "boss", "password": PASSWORD, "totp_code": "123456",
                                              "csrf_token": token})  # fmt: skip
    assert wrong.status_code == 401
    right = client.post("/admin/login", data={"login": "boss", "password": PASSWORD, "csrf_token": token,
                                              "totp_code": auth.totp_code(secret, utcnow())})  # fmt: skip
    assert right.status_code == 302 and client.get("/admin/").status_code == 200


def test_a_full_admin_deactivates_and_reactivates_a_domain(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    post(client, "/admin/domains/b.test/active", {"active": "0"})
    with world.sessions() as session:
        assert session.scalar(select(Domain.active).where(Domain.name == "b.test")) is False
    assert "(inactive)" in client.get("/admin/").get_data(as_text=True)
    post(client, "/admin/domains/b.test/active", {"active": "1"})
    with world.sessions() as session:
        assert session.scalar(select(Domain.active).where(Domain.name == "b.test")) is True


def test_a_reset_password_is_shown_once_and_replaces_the_old_one(app, world) -> None:
    from controlplane.services import passwords

    client = app.test_client()
    log_in(client, "ann@a.test")
    with world.sessions() as session:
        ann_id = mailboxes.find_mailbox(session, "ann@a.test").id
    response = post(client, f"/admin/mailboxes/{ann_id}/reset-password")
    shown = re.search(r"shown once: (\S+)<", client.get(response.headers["Location"]).get_data(as_text=True))
    with world.sessions() as session:
        stored = mailboxes.find_mailbox(session, "ann@a.test").password_hash
    assert passwords.verify_password(shown.group(1), stored) and not passwords.verify_password(
        PASSWORD, stored
    )


def test_a_mailbox_page_keeps_its_sender_lists_and_sending_limit(app, world) -> None:
    with world.transaction() as session:
        bob = mailboxes.find_mailbox(session, "bob@b.test")
        bob_id = bob.id
        sender_lists.add_sender(session, scope.OPERATOR, bob, "friend@elsewhere.test", "block")
    boss = app.test_client()
    log_in(boss, "boss")
    domain_page = boss.get("/admin/domains/b.test").get_data(as_text=True)
    assert f'href="/admin/mailboxes/{bob_id}"' in domain_page
    listed = post(
        boss, f"/admin/mailboxes/{bob_id}/senders", {"sender": "Friend@Elsewhere.test", "list": "allow"}
    )
    assert listed.status_code == 302
    post(boss, f"/admin/mailboxes/{bob_id}/senders", {"sender": "@spam.example", "list": "block"})
    page = boss.get(f"/admin/mailboxes/{bob_id}").get_data(as_text=True)
    allowed = re.search(r'data-list="allow">(.*?)</ul>', page, re.S).group(1)
    blocked = re.search(r'data-list="block">(.*?)</ul>', page, re.S).group(1)
    assert "friend@elsewhere.test" in allowed and "friend@elsewhere.test" not in blocked
    assert "@spam.example" in blocked

    refused = post(
        boss, f"/admin/mailboxes/{bob_id}/senders", {"sender": "no address at all", "list": "block"}
    )
    assert "is neither an address nor @ and a domain" in boss.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    post(boss, f"/admin/mailboxes/{bob_id}/senders/remove", {"sender": "@spam.example"})
    post(boss, f"/admin/mailboxes/{bob_id}/hourly-limit", {"hourly_messages": "12"})
    wrong = post(boss, f"/admin/mailboxes/{bob_id}/hourly-limit", {"hourly_messages": "lots"})
    assert "whole number" in boss.get(wrong.headers["Location"]).get_data(as_text=True)
    with world.sessions() as session:
        bob = session.get(Mailbox, bob_id)
        assert bob.hourly_messages == 12
        assert sender_lists.lists_of(session, scope.OPERATOR, bob) == sender_lists.SenderLists(
            allowed=["friend@elsewhere.test"], blocked=[]
        )


def test_a_domain_admin_keeps_lists_in_their_domain_but_not_sending_limits(app, world) -> None:
    with world.sessions() as session:
        ann_id = mailboxes.find_mailbox(session, "ann@a.test").id
        bob_id = mailboxes.find_mailbox(session, "bob@b.test").id
    client = app.test_client()
    log_in(client, "ann@a.test")
    assert client.get(f"/admin/mailboxes/{ann_id}").status_code == 200
    post(client, f"/admin/mailboxes/{ann_id}/senders", {"sender": "news@example.org", "list": "block"})
    assert (
        post(client, f"/admin/mailboxes/{ann_id}/hourly-limit", {"hourly_messages": "9999"}).status_code
        == 403
    )
    with world.sessions() as session:
        ann = session.get(Mailbox, ann_id)
        assert sender_lists.lists_of(session, scope.OPERATOR, ann).blocked == ["news@example.org"]
        assert ann.hourly_messages is None
    # Another domain's or tenant's mailbox page is as missing as one that does not exist.
    assert client.get(f"/admin/mailboxes/{bob_id}").status_code == 404
    rival = app.test_client()
    log_in(rival, "rival")
    assert rival.get(f"/admin/mailboxes/{bob_id}").status_code == 404
    assert rival.get("/admin/mailboxes/999999").status_code == 404


def test_a_domains_tls_reports_are_shown_in_words_to_its_admins(app, world) -> None:
    import gzip
    import json
    from email.message import EmailMessage

    from controlplane.services import tls_reports

    document = {
        "organization-name": "Big Mail Co", "report-id": "r-1", "contact-info": "reports@big.example",
        "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": "a.test"},
            "summary": {"total-successful-session-count": 90, "total-failure-session-count": 2},
            "failure-details": [{"result-type": "sts-policy-fetch-error", "sending-mta-ip": "192.0.2.7",
                                 "failed-session-count": 2}],
        }],
    }  # fmt: skip
    message = EmailMessage()
    message.set_content("report")
    message.add_attachment(gzip.compress(json.dumps(document).encode()), maintype="application",
                           subtype="tlsrpt+gzip", filename="r.json.gz")  # fmt: skip
    with world.transaction() as session:
        assert tls_reports.receive_message(session, message.as_bytes()).domains == ["a.test"]
    client = app.test_client()
    assert log_in(client, "ann@a.test").status_code == 302

    page = client.get("/admin/domains/a.test/tls-reports").get_data(as_text=True)

    assert "Big Mail Co" in page and "192.0.2.7" in page
    assert "the sender could not fetch the MTA-STS policy" in page
    assert "Read the TLS reports" in client.get("/admin/domains/a.test").get_data(as_text=True)
