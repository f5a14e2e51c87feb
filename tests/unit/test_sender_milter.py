"""The From: rule of the submission milter, against the real database view Postfix also reads."""

from __future__ import annotations

import pytest

from controlplane.daemons.sender_milter import from_header_refusal
from tests.factories import make_alias, make_domain, make_mailbox


@pytest.fixture
def engine(db, installation):
    domain = make_domain(db, name="milter.test")
    make_mailbox(db, domain=domain, local_part="ann")
    make_mailbox(db, domain=domain, local_part="bob")
    make_alias(db, domain=domain, local_part="sales", destinations=["ann@milter.test"])
    db.commit()
    return installation.engine


@pytest.mark.parametrize(
    "header", ["ann@milter.test", "Ann <ANN@milter.test>", '"Sales" <sales@milter.test>']
)
def test_the_login_may_use_its_own_address_and_aliases_leading_to_it(engine, header: str) -> None:
    assert from_header_refusal(engine, "ann@milter.test", [header]) is None


@pytest.mark.parametrize(
    "headers",
    [["bob@milter.test"], ["ann@milter.test, bob@milter.test"], ["boss@elsewhere.example"], [], ["", ""]],
)
def test_any_other_from_is_refused_with_a_5xx(engine, headers: list[str]) -> None:
    refusal = from_header_refusal(engine, "ann@milter.test", headers)
    assert refusal is not None and refusal.startswith("550 5.7.1 ")
