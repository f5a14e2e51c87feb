"""Domain changes reload Postfix at once, or once at the end of a spell (daemons/postfix_reloads.py).

Each reload replaces every Postfix process and costs the node about a second of mail; a burst of
domain changes must cost one. A domain added during the spell takes mail at once all the same:
only an address some smtpd classified before the change waits for the reload.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator

import pytest

from controlplane.daemons import postfix_reloads
from controlplane.runners.scratch import ScratchStack
from controlplane.runtime import Installation
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
SPELL_SECONDS = 20.0


@pytest.fixture(scope="module")
def spell(mail_stack: ScratchStack) -> Iterator[Installation]:
    """The stack's own installation, with production's rule: at most one reload a spell."""
    settings = dataclasses.replace(mail_stack.settings, postfix_reload_spacing_seconds=SPELL_SECONDS)
    installation = Installation(settings)
    with installation.transaction() as session:
        tenants.create_tenant(session, OPERATOR, name="Spell", storage_pool_bytes=10000 * KB)
    yield installation
    installation.dispose()


def reloads(stack: ScratchStack) -> int:
    return (stack.settings.log_dir / "postfix.log").read_text(errors="replace").count("reload -- version")


def add_domain_with_mailbox(installation: Installation, name: str) -> None:
    with installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Spell")
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name=name, max_mailboxes=1, max_aliases=1
        )
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="new", password=PASSWORD, quota_bytes=500 * KB
        )


def wait_for_reloads(stack: ScratchStack, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while reloads(stack) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return reloads(stack) >= count


def test_changes_in_a_spell_share_one_reload_and_their_domains_take_mail_at_once(
    mail_stack: ScratchStack, spell: Installation
) -> None:
    # A spell of its own: the module's earlier reloads (with no spell) lie further back.
    (mail_stack.settings.run_dir / postfix_reloads.LAST_RELOAD).unlink(missing_ok=True)
    before = reloads(mail_stack)

    add_domain_with_mailbox(spell, "first.spell.test")
    started = time.monotonic()
    assert wait_for_reloads(mail_stack, before + 1, timeout=5), "the first change did not reload at once"

    add_domain_with_mailbox(spell, "second.spell.test")
    add_domain_with_mailbox(spell, "third.spell.test")
    for address in ("new@first.spell.test", "new@second.spell.test", "new@third.spell.test"):
        subject = send(mail_stack, "someone@elsewhere.test", [address])
        assert wait_for_subject(mail_stack, address, PASSWORD, subject)
    # Delivered without a reload of their own (the spell's reload comes at its end).
    assert reloads(mail_stack) == before + 1

    # The two later changes: one reload at the end of the spell, made by the due process.
    assert wait_for_reloads(mail_stack, before + 2, timeout=SPELL_SECONDS + 10)
    # Not before the spell's end (less the time the first reload took after its mark).
    assert time.monotonic() - started >= SPELL_SECONDS - 3
    time.sleep(3)
    assert reloads(mail_stack) == before + 2
    subject = send(mail_stack, "someone@elsewhere.test", ["new@third.spell.test"])
    assert wait_for_subject(mail_stack, "new@third.spell.test", PASSWORD, subject)


def test_a_change_after_the_spell_reloads_at_once(mail_stack: ScratchStack, spell: Installation) -> None:
    last_reload = mail_stack.settings.run_dir / postfix_reloads.LAST_RELOAD
    # As if the spell of the test before had ended.
    past = time.time() - SPELL_SECONDS - 1
    last_reload.touch()
    os.utime(last_reload, (past, past))
    before = reloads(mail_stack)
    add_domain_with_mailbox(spell, "later.spell.test")
    assert wait_for_reloads(mail_stack, before + 1, timeout=5)
