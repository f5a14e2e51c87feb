"""Fixtures of the web tests: the real app over a fresh migrated database, and a small world in it."""

from __future__ import annotations

import pytest

from controlplane import create_app
from tests.factories import make_admin, make_alias, make_domain, make_mailbox, make_tenant

KB = 1024


@pytest.fixture
def app(settings, installation):
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["letterhead"].dispose()


@pytest.fixture
def world(installation):
    """Two tenants; tenant one has domains a.test (with a domain admin) and b.test."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One", pool=1000 * KB)
        two = make_tenant(session, name="Two", pool=1000 * KB)
        make_admin(session, tenant=one, login="boss")
        make_admin(session, tenant=two, login="rival")
        a = make_domain(session, tenant=one, name="a.test", max_mailboxes=3, max_aliases=3)
        b = make_domain(session, tenant=one, name="b.test")
        make_domain(session, tenant=two, name="c.test")
        make_mailbox(session, domain=a, local_part="ann", is_domain_admin=True)
        make_mailbox(session, domain=b, local_part="bob")
        make_alias(session, domain=b, local_part="team", destinations=["bob@b.test"])
    return installation
