""" "In service" is decided once on the models; the SQL views the daemons read are their copy of
the rule. The two must agree on every combination of active flags."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import make_admin, make_alias, make_domain, make_mailbox, make_tenant

FLAGS = list(itertools.product([True, False], repeat=4))


@pytest.mark.parametrize(("tenant_on", "domain_on", "mailbox_on", "alias_on"), FLAGS)
def test_the_models_and_the_daemons_views_agree(
    db: Session, tenant_on: bool, domain_on: bool, mailbox_on: bool, alias_on: bool
) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="svc.test")
    mailbox = make_mailbox(db, domain=domain, local_part="box")
    alias = make_alias(db, domain=domain, local_part="list", destinations=["box@svc.test"])
    admin = make_admin(db, tenant=tenant)
    tenant.active, domain.active, mailbox.active, alias.active = tenant_on, domain_on, mailbox_on, alias_on
    db.flush()

    def listed(query: str) -> bool:
        return db.execute(text(query)).first() is not None

    assert domain.in_service == (tenant_on and domain_on)
    assert mailbox.in_service == (tenant_on and domain_on and mailbox_on)
    assert alias.in_service == (tenant_on and domain_on and alias_on)
    assert admin.in_service == tenant_on
    assert listed("SELECT 1 FROM mail_domains WHERE domain = 'svc.test'") == domain.in_service
    assert listed("SELECT 1 FROM mail_users WHERE local_part = 'box'") == mailbox.in_service
    assert listed("SELECT 1 FROM mail_aliases WHERE local_part = 'list'") == alias.in_service
    assert listed("SELECT 1 FROM mail_sender_logins WHERE login = 'box@svc.test'") == (
        mailbox.in_service or alias.in_service
    )
