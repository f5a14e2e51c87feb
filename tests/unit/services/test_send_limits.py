"""Sending limits as the sending limits service reads them (the mail_send_limits view)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from controlplane.errors import NotInScope, ValidationError
from controlplane.services import mailboxes, scope, tenants
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox, make_tenant


def _limits(db: Session, login: str) -> tuple[int, int, int]:
    return tuple(
        db.execute(
            text(
                "SELECT mailbox_hourly_messages, tenant_hourly_messages, max_recipients_per_message "
                "FROM mail_send_limits WHERE login = :login"
            ),
            {"login": login},
        ).one()
    )


def test_a_mailbox_has_its_tenants_limits_unless_a_full_admin_gives_it_its_own(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="send.test")
    mailbox = make_mailbox(db, domain=domain, local_part="ann")
    assert _limits(db, "ann@send.test") == (300, 3000, 100)
    tenants.set_sending_limits(
        db, OPERATOR, tenant, mailbox_hourly_messages=50, max_recipients_per_message=20
    )
    assert _limits(db, "ann@send.test") == (50, 3000, 20)
    mailboxes.set_hourly_messages(db, scope.tenant_admin(tenant.id), mailbox, 7)
    assert _limits(db, "ann@send.test") == (7, 3000, 20)
    mailboxes.set_hourly_messages(db, OPERATOR, mailbox, None)
    assert _limits(db, "ann@send.test") == (50, 3000, 20)


def test_a_mailbox_limit_stays_within_the_tenants_and_is_not_the_domain_admins_to_set(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="cap.test")
    mailbox = make_mailbox(db, domain=domain, local_part="bob")
    for bad in (0, 3001, True, "5"):
        with pytest.raises(ValidationError):
            mailboxes.set_hourly_messages(db, OPERATOR, mailbox, bad)
    with pytest.raises(NotInScope):
        mailboxes.set_hourly_messages(db, scope.domain_admin(tenant.id, domain.id), mailbox, 5)
    assert mailbox.hourly_messages is None
