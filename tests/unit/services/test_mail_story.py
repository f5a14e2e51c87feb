""" "What happened to my mail?" over ingested logs (tests/fixtures/logs): each message's outcome in
words, the mailbox's storage when it was full, the domain's DNS when it explains the story, and
nothing outside the asker's scope."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.logs.ingest import ingest_file
from controlplane.services import mail_story
from controlplane.services.scope import OPERATOR, domain_admin
from tests.dnsserver import dnsmasq
from tests.factories import make_domain, make_mailbox, make_tenant

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
KB = 1024


@pytest.fixture
def logged(db: Session, tmp_path: Path):
    tenant = make_tenant(db, name="One")
    a_test = make_domain(db, tenant=tenant, name="a.test")
    for local_part in ("alice", "carol"):
        make_mailbox(db, domain=a_test, local_part=local_part, quota=50 * KB)
    quiet = make_domain(db, tenant=tenant, name="quiet.test")
    make_mailbox(db, domain=quiet, local_part="nobody-writes")
    client = make_domain(db, tenant=make_tenant(db, name="Two"), name="client.example")
    db.commit()
    for name in ("postfix.log", "dovecot.log"):
        shutil.copy(FIXTURES / name, tmp_path / name)
        ingest_file(db, tmp_path / name, reference=REFERENCE)
    return tenant, a_test, quiet, client


def test_each_message_is_told_in_words_with_the_mailbox_state(db: Session, settings, logged) -> None:
    story = mail_story.mail_story(db, OPERATOR, settings, "Carol@a.test")
    refusal, line = story.lines  # newest first
    assert (
        refusal.sentence
        == (
            "Refused before it was accepted, for carol@a.test: the sender address is not one the logged-in user may send as."
        )
        or refusal.result == "refused"
    )
    assert line.result == "bounced"
    assert line.sentence == "Returned to the sender: carol@a.test could not be reached: mailbox full."
    assert (
        line.reply.startswith("host mail[private/dovecot-lmtp] said: 552 5.2.2")
        and "Quota exceeded" in line.reply
    )
    assert line.mailbox_note == "The mailbox was full then; its storage is 50 KB."
    assert story.summary == "2 messages to or from carol@a.test; their recipients: 1 refused, 1 bounced."

    refused = mail_story.mail_story(db, OPERATOR, settings, "nobody@a.test").lines
    assert [line.sentence for line in refused] == [
        "Refused before it was accepted, for nobody@a.test: recipient not found."
    ]
    deferred_then_sent = mail_story.mail_story(db, OPERATOR, settings, "dave@remote.example").lines
    assert [(line.result, line.sentence) for line in deferred_then_sent] == [
        (
            "accepted",
            "Handed to dave@remote.example's mail server (mx.remote.example[192.0.2.50]:25), which accepted it.",
        )
    ]


def test_two_addresses_narrow_the_story_to_mail_between_them(db: Session, settings, logged) -> None:
    alice = mail_story.mail_story(db, OPERATOR, settings, "alice@a.test")
    between = mail_story.mail_story(db, OPERATOR, settings, "alice@a.test", other="info@a.test")
    assert alice.messages > between.messages == 1
    (line,) = between.lines
    assert line.sentence == "Delivered to alice@a.test's mailbox (written to info@a.test, an alias)."
    assert between.summary == "1 message between alice@a.test and info@a.test; their recipients: 1 accepted."
    day = mail_story.mail_story(db, OPERATOR, settings, "alice@a.test", on=dt.date(2026, 11, 25))
    assert (
        day.lines == [] and day.summary == "No message to or from alice@a.test on 2026-11-25 is in the logs."
    )
    with pytest.raises(ValidationError, match="is not an email address"):
        mail_story.mail_story(db, OPERATOR, settings, "not an address")


def test_a_domain_admin_reads_only_their_domains_story(db: Session, settings, logged) -> None:
    tenant, a_test, quiet, client = logged
    outsider = domain_admin(client.tenant_id, client.id)
    # The other tenant's admin sees their own message to a.test, never what a.test did besides.
    story = mail_story.mail_story(db, outsider, settings, "alice@a.test", domain=client)
    assert {line.sender for line in story.lines} == {"bob@client.example"}
    assert story.dns_notes == []
    assert (
        mail_story.mail_story(
            db, domain_admin(tenant.id, quiet.id), settings, "carol@a.test", domain=quiet
        ).lines
        == []
    )


def test_no_mail_to_a_hosted_address_asks_what_its_mx_says(db: Session, settings, logged) -> None:
    _, _, quiet, _ = logged
    for resolver, _port in dnsmasq(["--mx-host=quiet.test,mx.elsewhere.example,10"], zones=["quiet.test"]):
        story = mail_story.mail_story(db, OPERATOR, settings, "nobody-writes@quiet.test", resolver=resolver)
        assert story.summary == "No message to or from nobody-writes@quiet.test is in the logs."
        (note,) = story.dns_notes
        assert note.startswith("MX of quiet.test is wrong:") and "mx.elsewhere.example" in note
        assert "cannot reach this server" in note
        # Mail that did arrive needs no DNS lookup.
        assert (
            mail_story.mail_story(db, OPERATOR, settings, "carol@a.test", resolver=resolver).dns_notes == []
        )


UNAUTHENTICATED_BOUNCE = """\
Nov 28 09:00:00 mail postfix/submission/smtpd[9601]: 7A6B5C4D3E2: client=laptop.example[203.0.113.5], sasl_method=PLAIN, sasl_username=alice@a.test
Nov 28 09:00:00 mail postfix/cleanup[9476]: 7A6B5C4D3E2: message-id=<unauthenticated@a.test>
Nov 28 09:00:00 mail postfix/qmgr[9460]: 7A6B5C4D3E2: from=<alice@a.test>, size=900, nrcpt=1 (queue active)
Nov 28 09:00:02 mail postfix/smtp[9610]: 7A6B5C4D3E2: to=<friend@big-mailer.example>, relay=mx.big-mailer.example[192.0.2.80]:25, delay=2, delays=0/0/1/1, dsn=5.7.26, status=bounced (host mx.big-mailer.example[192.0.2.80] said: 550-5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users (in reply to end of DATA command))
Nov 28 09:00:02 mail postfix/qmgr[9460]: 7A6B5C4D3E2: removed
"""


def test_a_bounce_for_authentication_asks_what_spf_and_dkim_say(
    db: Session, settings, logged, tmp_path: Path
) -> None:
    log = tmp_path / "bounce.log"
    log.write_text(UNAUTHENTICATED_BOUNCE)
    ingest_file(db, log, reference=REFERENCE)
    for resolver, _port in dnsmasq(["--txt-record=a.test,v=spf1 -all"], zones=["a.test"]):
        story = mail_story.mail_story(db, OPERATOR, settings, "friend@big-mailer.example", resolver=resolver)
        (line,) = story.lines
        assert line.result == "bounced" and "unauthenticated" in line.reply
        kinds = sorted(note.split(" ", 1)[0] for note in story.dns_notes)
        assert kinds[0] == "DKIM" and kinds[-1] == "SPF", story.dns_notes
        (spf,) = [note for note in story.dns_notes if note.startswith("SPF")]
        assert spf.startswith("SPF of a.test is wrong:") and "v=spf1 -all" in spf
        assert all("Receiving servers may refuse" in note for note in story.dns_notes)
