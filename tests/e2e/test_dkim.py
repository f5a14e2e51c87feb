"""DKIM end to end: mail sent through submission leaves signed with the key the DNS page asks the
customer to publish, and verifies (dkimpy) against that record served by a loopback DNS server;
after a rotation, mail signed with either key verifies during the overlap."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import dns.resolver
import pytest

from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e import dkim_check
from tests.e2e.mailclient import send

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
ALICE = "alice@signed.test"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Signers", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="signed.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="alice", password=PASSWORD, quota_bytes=200 * KB
        )
    return mail_stack


def dkim_records_asked_for(stack: ScratchStack) -> list[tuple[str, str]]:
    return dkim_check.dkim_records_asked_for(stack, "signed.test")


@contextlib.contextmanager
def serving(records: list[tuple[str, str]]) -> Iterator[dns.resolver.Resolver]:
    with dkim_check.serving(records, "signed.test") as resolver:
        yield resolver


verifies, selector_of, run_cli = dkim_check.verifies, dkim_check.selector_of, dkim_check.run_cli


def sent_message(stack: ScratchStack, subject: str, timeout: float = 15) -> bytes:
    """The message as the receiving server (the loopback smtp-sink) got it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in stack.sink.messages():
            if f"Subject: {subject}" in text:
                return dkim_check.as_received(text)
        time.sleep(0.1)
    raise AssertionError(f"{subject!r} never reached the outside server")


def submit(stack: ScratchStack) -> bytes:
    subject = send(stack, ALICE, ["someone@outside.test"], port="submission", login=(ALICE, PASSWORD))
    return sent_message(stack, subject)


def test_submitted_mail_is_signed_with_the_published_key_and_verifies(world: ScratchStack) -> None:
    asked = dkim_records_asked_for(world)
    assert len(asked) == 1
    message = submit(world)
    assert b"DKIM-Signature:" in message
    assert selector_of(message) == asked[0][0].split(".")[0]
    with serving(asked) as resolver:
        assert verifies(message, resolver)
    # The same message against a key that is not the one the page asked for does not.
    other = [(asked[0][0], asked[0][1][:-20] + "A" * 20)]
    with serving(other) as resolver:
        assert not verifies(message, resolver)


def test_after_a_rotation_both_selectors_verify_during_the_overlap(world: ScratchStack) -> None:
    before = submit(world)
    rotated = run_cli(world, "domain", "dkim-rotate", "signed.test", "--json")
    assert [row["state"] for row in rotated] == ["active", "retiring"]
    new_selector = rotated[0]["selector"]
    # rspamd re-reads its selector map within about a second.
    deadline = time.monotonic() + 10
    after = submit(world)
    while selector_of(after) != new_selector and time.monotonic() < deadline:
        after = submit(world)
    assert selector_of(after) == new_selector != selector_of(before)
    asked = dkim_records_asked_for(world)
    assert {name.split(".")[0] for name, _ in asked} == {selector_of(before), new_selector}
    with serving(asked) as resolver:
        assert verifies(before, resolver)
        assert verifies(after, resolver)
