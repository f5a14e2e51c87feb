"""Storage used per mailbox (Dovecot's quota_clone -> usage.db -> the panel) and quota warnings.

Real Postfix and Dovecot: mail is delivered over SMTP, warnings are read over IMAP, the
usage is read the way the admin panel reads it.
"""

from __future__ import annotations

import imaplib
import re
import time

import pytest

from controlplane import create_app
from controlplane.daemons.usage import UsedBytes, usage_of, usage_of_mailboxes, used_by_domains
from controlplane.runners.scratch import ScratchStack
from controlplane.services import admins, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import imap_subjects, send, wait_for_subject
from tests.web.test_admin_panel import log_in

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
QUOTA = 100 * KB
WARNING_80 = "Your mailbox is 80% full"
WARNING_95 = "Your mailbox is 95% full"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Usage", storage_pool_bytes=2000 * KB)
        admins.create_admin(session, OPERATOR, tenant=tenant, login="usage-boss", password=PASSWORD)
        domains.create_domain(
            session, OPERATOR, tenant=tenant, name="u.test", max_mailboxes=20, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
    return mail_stack


def make_mailbox(stack: ScratchStack, address: str, quota: int = QUOTA) -> None:
    local_part, domain_name = address.split("@")
    with stack.installation.transaction() as session:
        domain = domains.get_domain(session, OPERATOR, domain_name)
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part=local_part, password=PASSWORD, quota_bytes=quota
        )


def deliver(stack: ScratchStack, address: str, size: int) -> str:
    subject = send(stack, "sender@elsewhere.test", [address], size=size)
    assert wait_for_subject(stack, address, PASSWORD, subject)
    return subject


def usage_after(stack: ScratchStack, address: str, messages: int, timeout: float = 1) -> UsedBytes | None:
    """The usage once Dovecot has counted `messages` messages, waiting at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        used = usage_of(stack.settings, [address]).get(address)
        if (used is not None and used.messages >= messages) or time.monotonic() > deadline:
            return used
        time.sleep(0.02)


def imap_used_kb(stack: ScratchStack, address: str) -> int:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=10)
    try:
        client.login(address, PASSWORD)
        _, data = client.getquotaroot("INBOX")
    finally:
        client.logout()
    line = next(item for item in data[1] if item and b"STORAGE" in item)
    return int(line.split(b"STORAGE")[1].split()[0])


def fill_to(stack: ScratchStack, address: str, percent: int) -> UsedBytes:
    """Deliver one message that brings the mailbox to about `percent` of QUOTA."""
    before = usage_of(stack.settings, [address]).get(address)
    used_before, count_before = (before.bytes, before.messages) if before else (0, 0)
    # The stored size counts CRLF line ends (72 bytes per 71-byte line) and ~400 bytes of headers.
    body = int((QUOTA * percent / 100 - used_before - 400) * 71 / 72)
    assert body > 0, f"{address} is already past {percent}%"
    deliver(stack, address, body)
    used = usage_after(stack, address, count_before + 1)
    assert used is not None
    return used


def warnings_in(stack: ScratchStack, address: str) -> list[str]:
    return [subject for subject in imap_subjects(stack, address, PASSWORD) if subject.endswith("% full")]


# --- usage ------------------------------------------------------------------------------------


def test_usage_reports_the_delivered_amount_within_a_second(world: ScratchStack) -> None:
    make_mailbox(world, "sizes@u.test")
    deliver(world, "sizes@u.test", 20 * KB)
    delivered = time.monotonic()
    used = usage_after(world, "sizes@u.test", messages=1)
    assert used is not None and time.monotonic() - delivered < 1
    assert 20 * KB <= used.bytes <= 22 * KB and used.messages == 1
    deliver(world, "sizes@u.test", 10 * KB)
    used = usage_after(world, "sizes@u.test", messages=2)
    # Each message gains about 1.7 KB on the way (Received, the spam filter's verdict, SPF/DMARC).
    assert used is not None and 30 * KB <= used.bytes <= 34 * KB
    # What IMAP's GETQUOTAROOT says, in KB rounded up.
    assert imap_used_kb(world, "sizes@u.test") == (used.bytes + KB - 1) // KB


def test_a_mailbox_never_delivered_to_has_no_usage(world: ScratchStack) -> None:
    make_mailbox(world, "quiet@u.test")
    make_mailbox(world, "busy@u.test")
    deliver(world, "busy@u.test", 1 * KB)
    assert usage_after(world, "busy@u.test", messages=1) is not None
    assert usage_of(world.settings, ["quiet@u.test", "busy@u.test"]).keys() == {"busy@u.test"}
    with world.installation.sessions() as session:
        quiet = mailboxes.find_mailbox(session, "quiet@u.test")
        assert usage_of_mailboxes(world.settings, [quiet]) == {}


def test_a_recreated_address_does_not_inherit_the_old_mailbox_usage(world: ScratchStack) -> None:
    make_mailbox(world, "again@u.test")
    deliver(world, "again@u.test", 5 * KB)
    assert usage_after(world, "again@u.test", messages=1) is not None
    with world.installation.transaction() as session:
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, "again@u.test"))
    time.sleep(1.1)  # creation times have whole seconds
    make_mailbox(world, "again@u.test")
    with world.installation.sessions() as session:
        again = mailboxes.find_mailbox(session, "again@u.test")
        assert usage_of_mailboxes(world.settings, [again]) == {}
    deliver(world, "again@u.test", 1 * KB)
    assert usage_after(world, "again@u.test", messages=1).bytes < 3 * KB
    with world.installation.sessions() as session:
        again = mailboxes.find_mailbox(session, "again@u.test")
        assert usage_of_mailboxes(world.settings, [again])["again@u.test"].bytes < 3 * KB


def test_hostile_addresses_read_no_usage_and_raise_nothing(world: ScratchStack) -> None:
    hostile = [
        "' OR '1'='1",
        "x' UNION SELECT address FROM mailbox_usage --",
        "%",
        "*",
        '"]}',
        "a\x00@u.test",
    ]
    assert usage_of(world.settings, hostile) == {}


# --- quota warnings -------------------------------------------------------------------------------


def test_crossing_80_percent_warns_once_and_crossing_95_warns_again(world: ScratchStack) -> None:
    make_mailbox(world, "filling@u.test")
    assert fill_to(world, "filling@u.test", 60).percent_of(QUOTA) < 80
    assert warnings_in(world, "filling@u.test") == []

    assert 80 <= fill_to(world, "filling@u.test", 85).percent_of(QUOTA) < 95
    assert wait_for_subject(world, "filling@u.test", PASSWORD, WARNING_80, timeout=5)

    # Later deliveries below 95% warn no one again: a warning they set off would reach the
    # mailbox before the one the next delivery sets off at 95%, so the list checked once that
    # one is in shows it (no pause that could end too early).
    assert fill_to(world, "filling@u.test", 88).percent_of(QUOTA) < 95
    assert fill_to(world, "filling@u.test", 91).percent_of(QUOTA) < 95

    assert fill_to(world, "filling@u.test", 97).percent_of(QUOTA) >= 95
    assert wait_for_subject(world, "filling@u.test", PASSWORD, WARNING_95, timeout=5)
    assert warnings_in(world, "filling@u.test") == [WARNING_80, WARNING_95]


def test_a_warning_is_plain_language_from_the_server_and_stays_on_the_machine(world: ScratchStack) -> None:
    make_mailbox(world, "reader@u.test")
    outbound_before = len(world.sink.messages())
    fill_to(world, "reader@u.test", 85)
    assert wait_for_subject(world, "reader@u.test", PASSWORD, WARNING_80, timeout=5)
    client = imaplib.IMAP4("127.0.0.1", world.ports["imap"], timeout=10)
    try:
        client.login("reader@u.test", PASSWORD)
        client.select("INBOX", readonly=True)
        _, found = client.search(None, "SUBJECT", f'"{WARNING_80}"')
        _, fetched = client.fetch(found[0].split()[0], "(BODY.PEEK[])")
    finally:
        client.logout()
    message = fetched[0][1].decode()
    assert f"From: Mail storage <postmaster@{world.settings.hostname}>" in message
    assert "Auto-Submitted: auto-generated" in message
    assert "Your mailbox reader@u.test is now more than 80% full." in message
    assert len(world.sink.messages()) == outbound_before  # nothing went to the outbound relay
    # The warning counts towards the mailbox's usage like any message.
    assert usage_after(world, "reader@u.test", messages=2).messages == 2


def test_a_delivery_crossing_both_levels_at_once_sends_only_the_95_warning(world: ScratchStack) -> None:
    make_mailbox(world, "leap@u.test")
    assert fill_to(world, "leap@u.test", 96).percent_of(QUOTA) >= 95
    assert wait_for_subject(world, "leap@u.test", PASSWORD, WARNING_95, timeout=5)
    time.sleep(0.5)
    assert warnings_in(world, "leap@u.test") == [WARNING_95]


# --- the admin panel ------------------------------------------------------------------------------


def _storage_cell(page: str, address: str) -> str:
    row = re.search(rf'<tr data-address="{re.escape(address)}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {address}"
    cell = re.search(r'<td class="storage">(.*?)</td>', row.group(1), re.S)
    assert cell
    return " ".join(cell.group(1).split())


def test_the_panel_shows_the_storage_used_next_to_the_quota(world: ScratchStack) -> None:
    make_mailbox(world, "shown@u.test")
    make_mailbox(world, "unseen@u.test")
    deliver(world, "shown@u.test", 30 * KB)
    used = usage_after(world, "shown@u.test", messages=1)
    app = create_app({"LETTERHEAD_SETTINGS": world.settings, "TESTING": True})
    try:
        client = app.test_client()
        assert log_in(client, "usage-boss", PASSWORD).status_code == 302
        response = client.get("/admin/domains/u.test")
        assert response.status_code == 200
        page = response.get_data(as_text=True)
    finally:
        app.extensions["letterhead"].dispose()
    shown = _storage_cell(page, "shown@u.test")
    assert f"{used.bytes / KB:.1f} KB used of" in shown or f"{used.bytes // KB} KB used of" in shown
    assert f"{used.percent_of(QUOTA)}%" in shown and 'class="bar"' in shown
    unseen = _storage_cell(page, "unseen@u.test")
    assert "used of" not in unseen and "not measured yet" in unseen and 'class="bar"' not in unseen


def test_dovecot_logged_no_error_writing_usage_or_running_warnings(world: ScratchStack) -> None:
    log = (world.settings.log_dir / "dovecot.log").read_text(errors="replace")
    problems = [
        line
        for line in log.splitlines()
        if re.search(r"\b(Error|Fatal|Warning):", line) and re.search(r"quota|dict|lda", line)
    ]
    assert problems == []


def test_the_dashboard_shows_the_mail_stored_and_a_deleted_mailbox_leaves_the_total(
    world: ScratchStack,
) -> None:
    make_mailbox(world, "total@u.test")
    deliver(world, "total@u.test", 30 * KB)
    assert usage_after(world, "total@u.test", messages=1) is not None
    before = used_by_domains(world.settings, ["u.test"])
    assert before is not None and before >= 30 * KB
    with world.installation.transaction() as session:
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, "total@u.test"))
    after = used_by_domains(world.settings, ["u.test"])
    assert before - after >= 30 * KB
    # Letterhead's deletion wrote to Dovecot's table: Dovecot still writes it afterwards.
    make_mailbox(world, "later@u.test")
    deliver(world, "later@u.test", 2 * KB)
    assert usage_after(world, "later@u.test", messages=1) is not None
    if not world.settings.is_postgresql:
        # SQLite: no root-owned journal the dict service could not write beside its file.
        assert not [p for p in world.settings.usage_database_path.parent.iterdir() if p.owner() == "root"]
