from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select

from controlplane.errors import AuthenticationFailed, NotFound, NotInScope
from controlplane.models import AuditEntry
from controlplane.services import audit, auth, mail_logs, scope, tenants
from tests.factories import PASSWORD, make_admin, make_domain, make_mailbox, make_tenant

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(db):
    """Tenant T with domains a.test and b.test, and another tenant O with o.test, each with one entry."""
    tenant, other = make_tenant(db), make_tenant(db)
    a, b = make_domain(db, tenant=tenant, name="a.test"), make_domain(db, tenant=tenant, name="b.test")
    o = make_domain(db, tenant=other, name="o.test")
    db.execute(delete(AuditEntry))  # the services above recorded their own changes: start clean
    for minute, domain in enumerate((a, b, o)):
        audit.record(
            db,
            scope.OPERATOR,
            action="mailbox.create",
            target=f"info@{domain.name}",
            tenant_id=domain.tenant_id,
            domain_id=domain.id,
            now=NOW + dt.timedelta(minutes=minute),
        )
    audit.record(
        db,
        scope.tenant_admin(tenant.id, name="admin:boss"),
        action="domain.create",
        target="b.test",
        tenant_id=tenant.id,
        now=NOW + dt.timedelta(minutes=5),
    )
    return tenant, other, a, b, o


def _targets(entries) -> list[str]:
    return [entry.target for entry in entries]


def test_record_names_the_actor_and_keeps_the_details(db) -> None:
    domain = make_domain(db, name="a.test")
    actor = scope.domain_admin(domain.tenant_id, domain.id, name="ann@a.test")
    entry = audit.record(
        db,
        actor,
        action="mailbox.quota",
        target="bob@a.test",
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        client_ip="192.0.2.1",
        details={"quota_bytes": 2048},
    )
    db.expire_all()
    assert entry.actor == "domain-admin:ann@a.test"
    assert entry.details == {"quota_bytes": 2048}
    assert entry.time.tzinfo is not None and entry.client_ip == "192.0.2.1"


def test_record_changes_writes_one_entry_per_target_like_record_change(db) -> None:
    domain = make_domain(db, name="a.test")
    db.execute(delete(AuditEntry))
    db.info["client_ip"] = "192.0.2.7"
    actor = scope.tenant_admin(domain.tenant_id, name="token:abc123")
    audit.record_changes(
        db, actor, "mailbox.create", [("ann@a.test", {"quota_bytes": 1}), ("bob@a.test", {})],
        tenant_id=domain.tenant_id, domain_id=domain.id,
    )  # fmt: skip
    db.expire_all()
    entries = list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(e.target, e.details, e.action, e.actor) for e in entries] == [
        ("ann@a.test", {"quota_bytes": 1}, "mailbox.create", "token:abc123"),
        ("bob@a.test", {}, "mailbox.create", "token:abc123"),
    ]
    assert {(e.tenant_id, e.domain_id, e.client_ip) for e in entries} == {
        (domain.tenant_id, domain.id, "192.0.2.7")
    }


def test_full_admin_sees_their_tenants_entries_newest_first_with_the_total(db, world) -> None:
    tenant, *_ = world
    admin = scope.tenant_admin(tenant.id)
    entries, total = audit.list_entries(db, admin, tenant=tenant)
    assert (_targets(entries), total) == (["b.test", "info@b.test", "info@a.test"], 3)
    page, total = audit.list_entries(db, admin, tenant=tenant, offset=1, limit=1)
    assert (_targets(page), total) == (["info@b.test"], 3)
    assert entries[0].actor == "admin:boss" and entries[1].actor == "operator"


def test_domain_admin_sees_only_their_domains_entries(db, world) -> None:
    tenant, _, a, b, _ = world
    actor = scope.domain_admin(tenant.id, a.id, name="ann@a.test")
    entries, total = audit.list_entries(db, actor, tenant=tenant, domain=a)
    assert (_targets(entries), total) == (["info@a.test"], 1)
    with pytest.raises(NotFound):
        audit.list_entries(db, actor, tenant=tenant, domain=b)
    with pytest.raises(NotInScope):
        audit.list_entries(db, actor, tenant=tenant)


def test_another_tenants_admin_gets_not_found(db, world) -> None:
    tenant, other, a, _, o = world
    intruder = scope.tenant_admin(other.id)
    with pytest.raises(NotFound):
        audit.list_entries(db, intruder, tenant=tenant)
    with pytest.raises(NotFound):
        audit.list_entries(db, intruder, tenant=tenant, domain=a)
    with pytest.raises(NotFound):
        audit.list_entries(db, scope.tenant_admin(tenant.id), tenant=tenant, domain=o)


def test_only_the_operator_lists_everything_and_keeps_deleted_tenants_entries(db, world) -> None:
    tenant, other, *_ = world
    with pytest.raises(NotInScope):
        audit.list_entries(db, scope.tenant_admin(tenant.id), tenant=None)
    tenants.delete_tenant(db, scope.OPERATOR, other)
    db.expire_all()
    entries, total = audit.list_entries(db, scope.OPERATOR, tenant=None)
    assert total == 5  # the four above and the deletion, which the service recorded itself
    assert (entries[0].action, entries[0].target, entries[0].tenant_id) == ("tenant.delete", other.name, None)
    assert [entry.tenant_id for entry in entries if entry.target == "info@o.test"] == [None]


def test_login_attempts_are_listed_within_the_viewers_scope(db) -> None:
    tenant, other = make_tenant(db), make_tenant(db)
    a, b = make_domain(db, tenant=tenant, name="a.test"), make_domain(db, tenant=tenant, name="b.test")
    make_admin(db, tenant=tenant, login="boss")
    make_mailbox(db, domain=a, local_part="ann", is_domain_admin=True)
    make_mailbox(db, domain=b, local_part="ben", is_domain_admin=True)
    for login in ("boss", "ann@a.test", "ben@b.test", "nobody"):
        with pytest.raises(AuthenticationFailed):
            auth.authenticate_admin(
                db, login=login, password="wrong guess", client_ip="192.0.2.1", user_agent="ua", now=NOW
            )
    auth.authenticate_admin(
        db,
        login="ann@a.test",
        password=PASSWORD,
        client_ip="192.0.2.1",
        user_agent="ua",
        now=NOW + dt.timedelta(minutes=1),
    )

    tenant_events, total = mail_logs.search_logins(db, scope.tenant_admin(tenant.id), tenant=tenant)
    assert total == 4 and {event.login for event in tenant_events} == {"boss", "ann@a.test", "ben@b.test"}
    ann = scope.domain_admin(tenant.id, a.id, name="ann@a.test")
    domain_events, total = mail_logs.search_logins(db, ann, tenant=tenant, domain=a)
    assert total == 2 and [event.success for event in domain_events] == [True, False]
    with pytest.raises(NotFound):
        mail_logs.search_logins(db, ann, tenant=tenant, domain=b)
    with pytest.raises(NotFound):
        mail_logs.search_logins(db, scope.tenant_admin(other.id), tenant=tenant)
    _, everything = mail_logs.search_logins(db, scope.OPERATOR, tenant=None)
    assert everything == 5


def test_services_record_their_own_changes_with_the_requests_address(db) -> None:
    domain = make_domain(db, name="a.test")
    db.info["client_ip"] = "198.51.100.7"
    try:
        actor = scope.tenant_admin(domain.tenant_id, name="admin:boss")
        make_mailbox(db, domain=domain, local_part="ann")
        from controlplane.services import mailboxes

        mailbox = mailboxes.find_mailbox(db, "ann@a.test")
        mailboxes.set_mailbox_quota(db, actor, mailbox, 20 * 1024)
    finally:
        db.info.pop("client_ip")
    entries, _ = audit.list_entries(db, scope.OPERATOR, tenant=domain.tenant, domain=domain)
    latest = entries[0]
    assert (latest.action, latest.target, latest.actor) == ("mailbox.quota", "ann@a.test", "admin:boss")
    assert latest.client_ip == "198.51.100.7" and latest.details == {"quota_bytes": 20 * 1024}
    assert [entry.action for entry in entries][-2:] == ["mailbox.create", "domain.create"]
