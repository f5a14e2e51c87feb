"""Alerts a domain admin asks for: more than N bounces or refusals within an hour, a mailbox past
95% of its storage; sent to an address of the domain only, at most once an hour (bounces) or once
per filling (storage)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.logs.ingest import ingest_file
from controlplane.services import domain_alerts, scope
from tests.factories import make_alias, make_domain, make_mailbox, make_tenant
from tests.unit.daemons.test_usage import record, usage_database

KB = 1024
NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
# Two refusals and a bounce for a.test within the hour before NOW, one refusal for rival.test.
LOG = """\
Nov 24 09:10:00 mail postfix/smtpd[9]: NOQUEUE: reject: RCPT from unknown[198.51.100.30]: 550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<spam@bad.example> to=<nobody@a.test> proto=ESMTP helo=<bad.example>
Nov 24 09:20:00 mail postfix/smtpd[9]: NOQUEUE: reject: RCPT from unknown[198.51.100.30]: 550 5.1.1 <ghost@a.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<spam@bad.example> to=<ghost@a.test> proto=ESMTP helo=<bad.example>
Nov 24 09:30:00 mail postfix/smtpd[9]: NOQUEUE: reject: RCPT from unknown[198.51.100.30]: 550 5.1.1 <none@rival.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<spam@bad.example> to=<none@rival.test> proto=ESMTP helo=<bad.example>
Nov 24 09:40:00 mail postfix/smtpd[10]: 5E6F7A8B9C0: client=sender.example[192.0.2.20]
Nov 24 09:40:00 mail postfix/qmgr[11]: 5E6F7A8B9C0: from=<carl@sender.example>, size=900, nrcpt=1 (queue active)
Nov 24 09:40:01 mail postfix/lmtp[12]: 5E6F7A8B9C0: to=<ann@a.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=5.2.2, status=bounced (host mail[private/dovecot-lmtp] said: 552 5.2.2 <ann@a.test> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))
Nov 24 09:40:01 mail postfix/qmgr[11]: 5E6F7A8B9C0: removed
"""


def _sent(db: Session, settings, now: dt.datetime) -> list[domain_alerts.Notice]:
    """What the periodic runner's job would mail now, each recorded as handed over."""
    notices = domain_alerts.due_alerts(db, settings, now=now)
    for notice in notices:
        domain_alerts.mark_sent(db, notice, now=now)
    return notices


def test_an_alert_that_could_not_be_sent_is_due_again(db: Session, settings, world) -> None:
    tenant, a_test, _ = world
    admin = scope.domain_admin(tenant.id, a_test.id, name="ann@a.test")
    domain_alerts.set_alerts(
        db, admin, a_test, recipient="ops@a.test", bounce_threshold=1, storage_warning=False
    )
    (unsent,) = domain_alerts.due_alerts(db, settings, now=NOW)  # not marked: the send failed
    (again,) = domain_alerts.due_alerts(db, settings, now=NOW + dt.timedelta(minutes=5))
    assert unsent.subject == again.subject


@pytest.fixture
def world(db: Session, tmp_path: Path):
    tenant, rival = make_tenant(db, pool=10_000 * KB), make_tenant(db)
    a_test = make_domain(db, tenant=tenant, name="a.test", max_mailbox_bytes=1000 * KB)
    b_test = make_domain(db, tenant=tenant, name="b.test")
    make_domain(db, tenant=rival, name="rival.test")
    make_mailbox(db, domain=a_test, local_part="ann", quota=100 * KB, is_domain_admin=True)
    make_mailbox(db, domain=a_test, local_part="bo", quota=100 * KB)
    make_alias(db, domain=a_test, local_part="ops", destinations=["ann@a.test"])
    make_mailbox(db, domain=b_test, local_part="bea")
    db.commit()
    log = tmp_path / "mail.log"
    log.write_text(LOG)
    ingest_file(db, log, reference=NOW)
    return tenant, a_test, b_test


def test_alerts_go_only_to_an_address_of_the_domain_and_only_its_admins_set_them(db: Session, world) -> None:
    tenant, a_test, b_test = world
    admin = scope.domain_admin(tenant.id, a_test.id, name="ann@a.test")
    for recipient in ("someone@elsewhere.example", "bea@b.test", "nobody@a.test"):
        with pytest.raises(ValidationError):
            domain_alerts.set_alerts(
                db, admin, a_test, recipient=recipient, bounce_threshold=1, storage_warning=False
            )
    with pytest.raises(NotFound):
        domain_alerts.set_alerts(db, scope.domain_admin(tenant.id, b_test.id), a_test, recipient="ops@a.test",
                                 bounce_threshold=1, storage_warning=False)  # fmt: skip
    saved = domain_alerts.set_alerts(
        db, admin, a_test, recipient="Ops@a.test", bounce_threshold=2, storage_warning=True
    )
    assert saved == domain_alerts.AlertSettings("ops@a.test", 2, True)
    assert domain_alerts.get_alerts(db, scope.tenant_admin(tenant.id), a_test) == saved
    domain_alerts.set_alerts(
        db, admin, a_test, recipient="ops@a.test", bounce_threshold=None, storage_warning=False
    )
    assert domain_alerts.get_alerts(db, admin, a_test) is None


def test_more_bounces_than_asked_for_within_the_hour_are_told_once_an_hour(
    db: Session, settings, world
) -> None:
    tenant, a_test, _ = world
    admin = scope.domain_admin(tenant.id, a_test.id, name="ann@a.test")
    domain_alerts.set_alerts(
        db, admin, a_test, recipient="ops@a.test", bounce_threshold=3, storage_warning=False
    )
    assert _sent(db, settings, now=NOW) == []  # three, not more than three
    domain_alerts.set_alerts(
        db, admin, a_test, recipient="ops@a.test", bounce_threshold=2, storage_warning=False
    )
    (notice,) = _sent(db, settings, now=NOW)
    assert notice.recipient == "ops@a.test"
    assert notice.subject == "3 messages to or from a.test bounced or were refused in the last hour"
    assert "2 × recipient not found" in notice.body and "1 × mailbox full" in notice.body
    assert "rival.test" not in notice.body
    assert _sent(db, settings, now=NOW + dt.timedelta(minutes=30)) == []
    # An hour on, only what failed since the last alert counts: nothing new, nothing sent.
    assert _sent(db, settings, now=NOW + dt.timedelta(hours=1, minutes=1)) == []


def test_a_mailbox_past_95_percent_is_told_once_until_it_empties(db: Session, settings, world) -> None:
    tenant, a_test, _ = world
    source = usage_database(settings)
    admin = scope.domain_admin(tenant.id, a_test.id, name="ann@a.test")
    domain_alerts.set_alerts(
        db, admin, a_test, recipient="ann@a.test", bounce_threshold=None, storage_warning=True
    )
    record(source, "bo@a.test", 94 * KB)
    assert _sent(db, settings, now=NOW) == []
    record(source, "bo@a.test", 97 * KB)
    (notice,) = _sent(db, settings, now=NOW)
    assert notice.subject == "bo@a.test is 97% full" and "97 KB of its 100 KB" in notice.body
    assert _sent(db, settings, now=NOW) == []
    record(source, "bo@a.test", 92 * KB)
    assert _sent(db, settings, now=NOW) == []  # not below 90%: still told
    record(source, "bo@a.test", 50 * KB)
    assert _sent(db, settings, now=NOW) == []
    record(source, "bo@a.test", 99 * KB)
    assert [n.subject for n in _sent(db, settings, now=NOW)] == ["bo@a.test is 99% full"]
