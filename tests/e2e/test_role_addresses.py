"""postmaster@ and abuse@ of every hosted domain reach someone (RFC 5321 4.5.1, RFC 2142): the
domain's admins, else the tenant's postmaster address; an alias of that name wins; none of it
counts against the domain's alias limit."""

from __future__ import annotations

import smtplib

import pytest

from controlplane.runners.scratch import ScratchStack
from controlplane.services import aliases, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Roles", storage_pool_bytes=4000 * KB)
        tenants.set_sending_limits(session, OPERATOR, tenant, postmaster_address="desk@helpdesk.test")
        helpdesk = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="helpdesk.test", max_mailboxes=5, max_aliases=0,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(
            session, OPERATOR, domain=helpdesk, local_part="desk", password=PASSWORD, quota_bytes=100 * KB
        )
        # A new domain whose one mailbox is its admin, and no alias allowed at all.
        with_admin = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="admin.test", max_mailboxes=5, max_aliases=0,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        boss = mailboxes.create_mailbox(
            session, OPERATOR, domain=with_admin, local_part="boss", password=PASSWORD, quota_bytes=100 * KB
        )
        mailboxes.set_domain_admin(session, OPERATOR, boss, True)
        domains.create_domain(
            session, OPERATOR, tenant=tenant, name="noadmin.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
    return mail_stack


def test_postmaster_and_abuse_of_a_new_domain_reach_its_admin(world: ScratchStack) -> None:
    for role in ("postmaster", "abuse"):
        subject = send(world, "someone@outside.test", [f"{role}@admin.test"])
        assert wait_for_subject(world, "boss@admin.test", PASSWORD, subject), role


def test_without_a_domain_admin_they_reach_the_tenants_postmaster_address(world: ScratchStack) -> None:
    subject = send(world, "someone@outside.test", ["abuse@noadmin.test"])
    assert wait_for_subject(world, "desk@helpdesk.test", PASSWORD, subject)


def test_an_alias_of_that_name_wins_and_the_implicit_ones_use_no_alias_slot(world: ScratchStack) -> None:
    with world.installation.transaction() as session:
        domain = domains.get_domain(session, OPERATOR, "noadmin.test")
        assert domains.domain_counts(session, domain).aliases == 0
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="ops", password=PASSWORD, quota_bytes=100 * KB
        )
        aliases.create_alias(
            session, OPERATOR, domain=domain, local_part="postmaster", destinations=["ops@noadmin.test"]
        )
    subject = send(world, "someone@outside.test", ["postmaster@noadmin.test"])
    assert wait_for_subject(world, "ops@noadmin.test", PASSWORD, subject)
    # abuse@ still goes where the tenant says.
    subject = send(world, "someone@outside.test", ["abuse@noadmin.test"])
    assert wait_for_subject(world, "desk@helpdesk.test", PASSWORD, subject)


def test_other_role_names_are_not_invented(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "someone@outside.test", ["hostmaster@admin.test"])
