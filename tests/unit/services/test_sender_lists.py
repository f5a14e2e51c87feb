"""A mailbox's allow and block lists: what a sender may be, who may change them, and what Dovecot
reads at delivery."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, NotInScope, ValidationError
from controlplane.services import aliases, domains, mailboxes, scope, sender_lists, spam
from controlplane.services.scope import OPERATOR
from tests.factories import make_alias, make_domain, make_mailbox, make_tenant


def _userdb_lists(db: Session, local_part: str, domain: str) -> tuple[str | None, str | None]:
    """What Dovecot's userdb query reads (templates/dovecot/dovecot-sql.conf.ext.j2)."""
    row = db.execute(
        text("SELECT allowed, blocked FROM mail_sender_lists WHERE local_part = :l AND domain = :d"),
        {"l": local_part, "d": domain},
    ).one_or_none()
    return (row.allowed, row.blocked) if row else (None, None)


@pytest.fixture
def world(db: Session) -> dict:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="lists.test")
    other_domain = make_domain(db, tenant=tenant, name="other.test")
    return {
        "tenant": tenant,
        "domain": domain,
        "ann": make_mailbox(db, domain=domain, local_part="ann"),
        "bob": make_mailbox(db, domain=domain, local_part="bob"),
        "olga": make_mailbox(db, domain=other_domain, local_part="olga"),
    }


def _owner(mailbox) -> scope.Actor:
    return scope.mailbox_owner(mailbox.id, name=mailbox.address)


def test_senders_are_normalised_and_move_between_lists(db: Session, world: dict) -> None:
    ann = world["ann"]
    sender_lists.add_sender(db, _owner(ann), ann, " Friend@Example.ORG ", "allow")
    sender_lists.add_sender(db, _owner(ann), ann, "spam.example", "block")
    current = sender_lists.add_sender(db, _owner(ann), ann, "@Junk.Example", "block")
    assert (current.allowed, current.blocked) == (["friend@example.org"], ["@junk.example", "@spam.example"])
    allowed, blocked = _userdb_lists(db, "ann", "lists.test")
    assert allowed == ",friend@example.org,"
    assert blocked.startswith(",") and blocked.endswith(",")
    assert sorted(blocked.strip(",").split(",")) == ["@junk.example", "@spam.example"]
    assert _userdb_lists(db, "bob", "lists.test") == (None, None)

    moved = sender_lists.add_sender(db, _owner(ann), ann, "friend@example.org", "block")
    assert (moved.allowed, moved.blocked) == ([], ["@junk.example", "@spam.example", "friend@example.org"])
    assert _userdb_lists(db, "ann", "lists.test")[0] is None

    left = sender_lists.remove_sender(db, _owner(ann), ann, "SPAM.example")
    assert left.blocked == ["@junk.example", "friend@example.org"]
    with pytest.raises(NotFound, match="neither list"):
        sender_lists.remove_sender(db, _owner(ann), ann, "spam.example")


@pytest.mark.parametrize(
    "sender", ["", "   ", "not an address", "a@b@c.test", "ann@", "@", "x,y@z.test", "a@-bad-.test"]
)
def test_nonsense_is_refused_and_changes_nothing(db: Session, world: dict, sender: str) -> None:
    with pytest.raises(ValidationError):
        sender_lists.add_sender(db, OPERATOR, world["ann"], sender, "block")
    assert sender_lists.lists_of(db, OPERATOR, world["ann"]).blocked == []


def test_an_unknown_list_is_refused(db: Session, world: dict) -> None:
    with pytest.raises(ValidationError, match="allow"):
        sender_lists.add_sender(db, OPERATOR, world["ann"], "a@b.test", "trust")


def test_the_lists_stop_before_dovecots_userdb_line_would_overflow(db: Session, world: dict) -> None:
    ann = world["ann"]
    added = 0
    with pytest.raises(ValidationError, match="full"):
        while added < 1000:
            sender_lists.add_sender(
                db, OPERATOR, ann, f"sender-number-{added:04d}@a-rather-long-domain.test", "block"
            )
            added += 1
    allowed, blocked = _userdb_lists(db, "ann", "lists.test")
    assert allowed is None and len(blocked) <= sender_lists.MAX_CHARACTERS + 1
    # Moving a listed sender to the other list still works when full.
    sender_lists.add_sender(db, OPERATOR, ann, "sender-number-0000@a-rather-long-domain.test", "allow")


def test_each_sees_only_what_it_manages(db: Session, world: dict) -> None:
    ann, bob, olga = world["ann"], world["bob"], world["olga"]
    sender_lists.add_sender(db, OPERATOR, bob, "secret-friend@example.org", "allow")
    # A user reaches their own mailbox only, with the words used for one that does not exist.
    for action in (
        lambda: sender_lists.lists_of(db, _owner(ann), bob),
        lambda: sender_lists.add_sender(db, _owner(ann), bob, "x@y.test", "block"),
        lambda: sender_lists.remove_sender(db, _owner(ann), bob, "secret-friend@example.org"),
    ):
        with pytest.raises(NotFound) as refused:
            action()
        assert str(refused.value) == "No such mailbox."
    # A domain admin of lists.test manages its mailboxes, not another domain's.
    admin = scope.domain_admin(world["tenant"].id, world["domain"].id, name="ann@lists.test")
    assert sender_lists.lists_of(db, admin, bob).allowed == ["secret-friend@example.org"]
    with pytest.raises(NotFound):
        sender_lists.add_sender(db, admin, olga, "x@y.test", "block")
    # Another tenant's admin learns nothing.
    stranger = scope.tenant_admin(make_tenant(db).id)
    with pytest.raises(NotFound) as refused:
        sender_lists.lists_of(db, stranger, bob)
    assert "bob" not in str(refused.value)
    assert sender_lists.lists_of(db, OPERATOR, bob).allowed == ["secret-friend@example.org"]


def test_a_mailbox_owner_is_no_admin_of_its_domain(db: Session, settings, world: dict) -> None:
    owner = _owner(world["ann"])
    assert not scope.domain_in_scope(owner, world["domain"])
    with pytest.raises(NotFound):
        scope.require_tenant(owner, world["tenant"])
    with pytest.raises(NotFound):
        scope.viewed_records(owner, tenant=world["tenant"], domain=world["domain"])
    with pytest.raises((NotFound, NotInScope)):
        spam.update(db, owner, settings, world["domain"], junk_score=2)
    # Checks that narrow a query by the actor's tenant or domain find nothing for it.
    assert domains.list_domains(db, owner) == []
    with pytest.raises(NotFound):
        scope.viewer_target(db, owner)


def test_rspamd_is_told_what_each_receiving_address_allows(db: Session, world: dict) -> None:
    ann, bob, olga = world["ann"], world["bob"], world["olga"]
    for mailbox in (ann, bob):
        sender_lists.add_sender(db, OPERATOR, mailbox, "friend@example.org", "allow")
    sender_lists.add_sender(db, OPERATOR, ann, "@example.net", "allow")
    sender_lists.add_sender(db, OPERATOR, ann, "@spam.example", "block")
    sender_lists.add_sender(db, OPERATOR, olga, "@example.com", "block")
    make_alias(
        db, domain=world["domain"], local_part="team", destinations=["ann@lists.test", "bob@lists.test"]
    )
    make_alias(
        db, domain=world["domain"], local_part="out", destinations=["ann@lists.test", "x@elsewhere.test"]
    )
    other = world["olga"].domain
    make_alias(db, domain=other, local_part="", destinations=["team@lists.test"])
    make_mailbox(db, domain=world["domain"], local_part="c+d")
    db.flush()
    published = {address: sorted(senders) for address, senders in sender_lists.allowed_senders(db).items()}
    assert published == {
        "ann@lists.test": ["@example.net", "friend@example.org"],
        "bob@lists.test": ["friend@example.org"],
        # An alias allows what all its destinations allow; an outside one allows nobody.
        "team@lists.test": ["friend@example.org"],
        # The catch-all of other.test, through the alias, and so every other address there
        # has a set of its own, allowing nobody: olga must not be judged by the catch-all's.
        "@other.test": ["friend@example.org"],
        "olga@other.test": [""],
        # Postfix would try c@lists.test after c+d@lists.test.
        "c+d@lists.test": [""],
    }


def test_every_change_to_an_address_refreshes_rspamds_copy(db: Session, world: dict) -> None:
    """Not only list edits: a deleted mailbox's or domain's sets must go, an alias's follow it."""
    told = []
    db.info["on_sender_lists_changed"] = lambda: told.append(1)
    db.commit()
    ann = db.merge(world["ann"])
    changes = [
        lambda: sender_lists.add_sender(db, OPERATOR, ann, "friend@example.org", "allow"),
        lambda: make_alias(db, domain=ann.domain, local_part="team", destinations=[ann.address]),
        lambda: aliases.delete_alias(db, OPERATOR, aliases.find_alias(db, "team@lists.test")),
        lambda: mailboxes.delete_mailbox(db, OPERATOR, mailboxes.find_mailbox(db, "bob@lists.test")),
        lambda: domains.delete_domain(db, OPERATOR, domains.find_domain(db, "other.test")),
    ]
    for number, change in enumerate(changes, start=1):
        change()
        db.commit()
        assert len(told) == number, f"change {number} was not published"
    # A change that touches no address publishes nothing.
    mailboxes.set_mailbox_quota(db, OPERATOR, mailboxes.find_mailbox(db, ann.address), 50 * 1024)
    db.commit()
    assert len(told) == len(changes)
