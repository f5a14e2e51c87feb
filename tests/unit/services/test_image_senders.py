"""Senders whose images a webmail user always sees: the user's own choice, and nobody else's."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.services import image_senders, scope
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox, make_tenant


def _owner(mailbox) -> scope.Actor:
    return scope.mailbox_owner(mailbox.id, name=mailbox.address)


@pytest.mark.parametrize(
    ("header", "address"),
    [
        ("News Desk <News@Letters.test>", "news@letters.test"),
        ("plain@letters.test", "plain@letters.test"),
        ("no address here", ""),
        ("<@letters.test>", ""),
        ("x@localhost", ""),
    ],
)
def test_the_remembered_address_is_the_from_address(header: str, address: str) -> None:
    assert image_senders.sender_address(header) == address


def test_only_the_mailboxs_own_user_chooses_and_sees(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="img.test")
    ann, bob = (
        make_mailbox(db, domain=domain, local_part="ann"),
        make_mailbox(db, domain=domain, local_part="bob"),
    )
    assert image_senders.always_show(db, _owner(ann), ann, "Shop <offers@shop.test>") == "offers@shop.test"
    assert image_senders.shows_images(db, _owner(ann), ann, "offers@shop.test")
    assert not image_senders.shows_images(db, _owner(bob), bob, "offers@shop.test")
    for stranger in (
        _owner(bob),
        OPERATOR,
        scope.tenant_admin(tenant.id),
        scope.domain_admin(tenant.id, domain.id),
    ):
        with pytest.raises(NotFound):
            image_senders.senders(db, stranger, ann)
    with pytest.raises(ValidationError):
        image_senders.always_show(db, _owner(ann), ann, "undisclosed-recipients:;")
    image_senders.stop_showing(db, _owner(ann), ann, "Offers@Shop.test")
    assert image_senders.senders(db, _owner(ann), ann) == []
    with pytest.raises(NotFound):
        image_senders.stop_showing(db, _owner(ann), ann, "offers@shop.test")


def test_a_users_login_history_is_theirs_alone(db: Session) -> None:
    from controlplane.services import webmail

    domain = make_domain(db, name="history.test")
    ann, bob = (
        make_mailbox(db, domain=domain, local_part="ann"),
        make_mailbox(db, domain=domain, local_part="bob"),
    )
    assert webmail.own_login_history(db, _owner(ann), ann) == []
    for stranger in (_owner(bob), OPERATOR, scope.tenant_admin(domain.tenant_id)):
        with pytest.raises(NotFound):
            webmail.own_login_history(db, stranger, ann)
