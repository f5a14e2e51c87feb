"""Per-domain spam thresholds: who may set them, what is refused, and what Dovecot then reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, NotInScope, ValidationError
from controlplane.services import scope, spam, tenants
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings
from tests.factories import make_domain, make_tenant

SETTINGS = Settings(home=Path("/nonexistent"), spam_reject_score=15.0, spam_junk_score=6.0)


def _junk_hundredths(db: Session, domain: str) -> int | None:
    """What Dovecot's userdb query reads (templates/dovecot/dovecot-sql.conf.ext.j2)."""
    return db.scalar(
        text(
            "SELECT CAST(ROUND(junk_score * 100) AS INTEGER) FROM mail_domain_spam_scores WHERE domain = :d"
        ),
        {"d": domain},
    )


def test_a_full_admin_sets_both_and_defaults_come_back_with_none(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="spam.test")
    admin = scope.tenant_admin(tenant.id)
    current = spam.update(db, admin, SETTINGS, domain, reject_score=20, junk_score=4.5)
    assert (current.reject_score, current.junk_score, current.reject_is_own, current.junk_is_own) == (
        20, 4.5, True, True,
    )  # fmt: skip
    assert _junk_hundredths(db, "spam.test") == 450
    assert spam.own_reject_scores(db) == {"spam.test": 20}
    current = spam.update(db, admin, SETTINGS, domain, reject_score=None, junk_score=None)
    assert (current.reject_score, current.junk_score, current.reject_is_own) == (15.0, 6.0, False)
    assert _junk_hundredths(db, "spam.test") is None
    assert spam.own_reject_scores(db) == {}
    # A field not given stays as it is; greylisting alone changes only greylisting.
    spam.update(db, admin, SETTINGS, domain, junk_score=3)
    current = spam.update(db, admin, SETTINGS, domain, greylisting=True)
    assert (current.junk_score, current.junk_is_own, current.reject_is_own, current.greylisting) == (
        3, True, False, True,
    )  # fmt: skip
    assert spam.greylisted_domains(db) == ["spam.test"]


def test_rspamd_is_told_only_of_a_change(db: Session) -> None:
    """Publishing rewrites the policy in Redis: showing the thresholds, or setting what they
    already are, must not."""
    told = []
    db.info["on_spam_policy_changed"] = lambda: told.append(1)
    domain = make_domain(db, tenant=make_tenant(db), name="quiet.test")
    db.commit()
    spam.update(db, OPERATOR, SETTINGS, domain)
    spam.update(db, OPERATOR, SETTINGS, domain, reject_score=None, greylisting=False)
    db.commit()
    assert told == []
    spam.update(db, OPERATOR, SETTINGS, domain, reject_score=12)
    db.commit()
    assert told == [1]


@pytest.mark.parametrize(
    ("reject", "junk", "field"),
    [
        (20, 25, "junk_score"),  # junk above reject
        (None, 15, "junk_score"),  # not below the default reject score
        (0.5, None, "reject_score"),
        (101, None, "reject_score"),
        (float("nan"), None, "reject_score"),
        (True, None, "reject_score"),
    ],
)
def test_nonsense_is_refused_and_changes_nothing(db: Session, reject, junk, field: str) -> None:
    domain = make_domain(db, name="nonsense.test")
    with pytest.raises(ValidationError) as refused:
        spam.update(db, OPERATOR, SETTINGS, domain, reject_score=reject, junk_score=junk)
    assert refused.value.field == field
    assert (domain.spam_reject_score, domain.spam_junk_score) == (None, None)


def test_domain_admins_and_other_tenants_may_not(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="mine.test")
    with pytest.raises(NotInScope):
        spam.update(db, scope.domain_admin(tenant.id, domain.id), SETTINGS, domain, reject_score=9)
    stranger = scope.tenant_admin(make_tenant(db).id)
    with pytest.raises(NotFound):
        spam.update(db, stranger, SETTINGS, domain, reject_score=9, junk_score=None)
    assert domain.spam_reject_score is None


def test_sending_limits_are_the_operators_and_must_be_positive(db: Session) -> None:
    tenant = make_tenant(db)
    with pytest.raises(NotInScope):
        tenants.set_sending_limits(db, scope.tenant_admin(tenant.id), tenant, mailbox_hourly_messages=10**6)
    for bad in (
        {"mailbox_hourly_messages": 0},
        {"max_recipients_per_message": 10**6},
        {"tenant_hourly_messages": "5"},
    ):
        with pytest.raises(ValidationError):
            tenants.set_sending_limits(db, OPERATOR, tenant, **bad)
    tenants.set_sending_limits(
        db, OPERATOR, tenant, mailbox_hourly_messages=5, postmaster_address="Ops@Example.org"
    )
    assert (tenant.mailbox_hourly_messages, tenant.tenant_hourly_messages, tenant.postmaster_address) == (
        5, 3000, "ops@example.org",
    )  # fmt: skip
