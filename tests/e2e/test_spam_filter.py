"""rspamd as Postfix's milter, end to end: refusals at the end of DATA, the headers delivered mail
carries, and what happens to mail while rspamd is down."""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import smtplib
import subprocess
import time

import pytest
import redis
from click.testing import CliRunner

from controlplane import cli
from controlplane.daemons import rspamd
from controlplane.errors import ValidationError
from controlplane.render import SPAM_SCORE_HEADER
from controlplane.runners.scratch import ScratchStack
from controlplane.services import aliases, domains, mail_logs, mailboxes, sender_lists, spam, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import DEFAULT_TIMEOUT, make_message, until_found, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Spam", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="filtered.test", max_mailboxes=10, max_aliases=10,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        for local_part in ("alice", "bob"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=domain,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=200 * KB,
            )
    return mail_stack


def smtp_send(
    stack: ScratchStack,
    message: email.message.EmailMessage,
    recipients: list[str],
    *,
    envelope_sender: str | None = None,
) -> None:
    """Sent from 127.0.0.1, with the From address as envelope sender unless told otherwise."""
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.send_message(message, from_addr=envelope_sender or str(message["From"]), to_addrs=recipients)


def fetch_headers(stack: ScratchStack, user: str, subject: str) -> email.message.Message:
    return fetch_headers_in(stack, user, "INBOX", subject)


def fetch_headers_in(stack: ScratchStack, user: str, folder: str, subject: str) -> email.message.Message:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        client.login(user, PASSWORD)
        client.select(folder, readonly=True)
        _, found = client.search(None, "SUBJECT", f'"{subject}"')
        (number,) = found[0].split()
        _, fetched = client.fetch(number, "(BODY.PEEK[HEADER])")
        return email.message_from_bytes(fetched[0][1], policy=email.policy.default)
    finally:
        client.logout()


def test_gtube_is_refused_at_the_end_of_data_and_logged_as_rejected_as_spam(world: ScratchStack) -> None:
    message = make_message("gtube-sender@outside.test", ["alice@filtered.test"], subject="gtube")
    message.set_content(f"{GTUBE}\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp_send(world, message, ["alice@filtered.test"])
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.7.1")

    def logged(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "gtube-sender@outside.test")
        if (
            found
            and found[0].transaction.spam_action
            and any(line.text.startswith("221") for line in found[0].transaction.dialogue)
        ):
            return found[0], [(line.direction, line.text) for line in found[0].transaction.dialogue]
        return None

    found = until_found(world, logged)
    assert found is not None, "the refusal and rspamd's verdict never reached the database"
    view, dialogue = found
    assert view.spam_verdict == "rejected as spam (the GTUBE test pattern)"
    [recipient] = view.recipients
    assert (recipient.recipient, recipient.outcome, recipient.reason) == (
        "alice@filtered.test", "refused", "rejected as spam (the GTUBE test pattern)",
    )  # fmt: skip
    # The dialogue shows the refusal where the client got it: in answer to the message's end.
    assert (">", "554 5.7.1 Gtube pattern") in dialogue
    shown = CliRunner().invoke(
        cli.main,
        ["logs", "search", "gtube-sender@outside.test", "--json"],
        env={"LETTERHEAD_HOME": str(world.home)},
    )
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)["transactions"]
    assert row["spam_verdict"] == "rejected as spam (the GTUBE test pattern)"


def test_delivered_mail_carries_the_score_and_authentication_results(world: ScratchStack) -> None:
    message = make_message("sender@outside.test", ["alice@filtered.test"])
    # A sender's own score header must never decide where the message is filed.
    message[SPAM_SCORE_HEADER] = "0"
    message["Authentication-Results"] = "filtered.test; dkim=pass"
    smtp_send(world, message, ["alice@filtered.test"])
    subject = str(message["Subject"])
    assert wait_for_subject(world, "alice@filtered.test", PASSWORD, subject)
    headers = fetch_headers(world, "alice@filtered.test", subject)
    scores = headers.get_all(SPAM_SCORE_HEADER)
    assert scores is not None and len(scores) == 1 and scores[0].isdigit()
    results = headers.get_all("Authentication-Results")
    assert results is not None and len(results) == 1
    # rspamd's own, naming this server: the client's was removed.
    assert results[0].startswith(world.settings.hostname + ";")


def test_while_rspamd_is_down_mail_is_deferred_never_lost(world: ScratchStack) -> None:
    settings = world.settings
    rspamd.stop(settings)
    try:
        message = make_message("sender@outside.test", ["bob@filtered.test"])
        with pytest.raises(smtplib.SMTPResponseException) as deferred:
            smtp_send(world, message, ["bob@filtered.test"])
        # A temporary error: the sending server keeps the message and retries.
        assert 400 <= deferred.value.smtp_code < 500, deferred.value
    finally:
        rspamd.start(settings, settings.live_config / "rspamd")
    smtp_send(world, message, ["bob@filtered.test"])
    assert wait_for_subject(world, "bob@filtered.test", PASSWORD, str(message["Subject"]))


def _suspect_message(recipients: list[str], subject: str) -> email.message.EmailMessage:
    """A message rspamd finds somewhat suspect (a subject in capitals, a To: header naming
    someone else than the envelope's recipients: about 2.4 points), with enough words for its
    statistics to learn from. `subject` must be in capitals."""
    assert subject == subject.upper()
    message = email.message.EmailMessage()
    message["From"] = "offers@outside.test"
    message["To"] = "customers@outside.test"
    message["Subject"] = subject
    words = "cheap watches discount pharmacy winner prize claim now limited offer exclusive deal"
    message.set_content((words + " ") * 12 + "\n")
    return message


def _folder_subjects(stack: ScratchStack, user: str, folder: str) -> list[str]:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        client.login(user, PASSWORD)
        client.select(folder, readonly=True)
        _, found = client.search(None, "ALL")
        subjects = []
        for number in found[0].split():
            _, fetched = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects.append(fetched[0][1].decode().strip().removeprefix("Subject:").strip())
        return subjects
    finally:
        client.logout()


def _wait_in(stack: ScratchStack, user: str, folder: str, subject: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subject in _folder_subjects(stack, user, folder):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def strict(world: ScratchStack) -> ScratchStack:
    """A second domain whose admin files anything slightly suspect as junk."""
    with world.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Strict", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="strict.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="carol", password=PASSWORD, quota_bytes=200 * KB
        )
    shown = CliRunner().invoke(
        cli.main,
        ["domain", "spam", "strict.test", "--junk-score", "1", "--json"],
        env={"LETTERHEAD_HOME": str(world.home)},
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["junk_score"] == 1.0
    return world


def test_one_message_is_filed_as_junk_for_the_strict_domain_only(strict: ScratchStack) -> None:
    recipients = ["carol@strict.test", "alice@filtered.test"]
    message = _suspect_message(recipients, "SUSPECT FOR TWO")
    smtp_send(strict, message, recipients)
    assert _wait_in(strict, "carol@strict.test", "Junk", "SUSPECT FOR TWO")
    assert _wait_in(strict, "alice@filtered.test", "INBOX", "SUSPECT FOR TWO")
    assert "SUSPECT FOR TWO" not in _folder_subjects(strict, "carol@strict.test", "INBOX")
    assert "SUSPECT FOR TWO" not in _folder_subjects(strict, "alice@filtered.test", "Junk")

    def logged(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "carol@strict.test")
        for view in found:
            reasons = {r.recipient: r.reason for r in view.recipients}
            if reasons.get("carol@strict.test", "").startswith("filed as junk"):
                return reasons
        return None

    reasons = until_found(strict, logged)
    assert reasons is not None, "the junk filing never reached the log"
    assert reasons["carol@strict.test"].startswith("filed as junk (score ")
    assert "forged recipients" in reasons["carol@strict.test"]
    assert reasons["alice@filtered.test"] == ""


def test_a_message_is_refused_only_above_the_most_lenient_recipients_reject_score(
    strict: ScratchStack,
) -> None:
    shown = CliRunner().invoke(
        cli.main,
        ["domain", "spam", "strict.test", "--reject-score", "2", "--json"],
        env={"LETTERHEAD_HOME": str(strict.home)},
    )
    assert shown.exit_code == 0, shown.output
    try:
        # For the strict domain alone: refused, at once (rspamd reads the new score from Redis).
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp_send(strict, _suspect_message(["carol@strict.test"], "SUSPECT ALONE"), ["carol@strict.test"])
        assert refused.value.smtp_code == 554
        assert b"refused as spam" in refused.value.smtp_error
        # With a lenient recipient too: accepted for both, and junk for the strict one.
        recipients = ["carol@strict.test", "alice@filtered.test"]
        smtp_send(strict, _suspect_message(recipients, "SUSPECT WITH COMPANY"), recipients)
        assert _wait_in(strict, "alice@filtered.test", "INBOX", "SUSPECT WITH COMPANY")
        assert _wait_in(strict, "carol@strict.test", "Junk", "SUSPECT WITH COMPANY")
    finally:
        CliRunner().invoke(
            cli.main, ["domain", "spam", "strict.test", "--reject-score", "default"],
            env={"LETTERHEAD_HOME": str(strict.home)},
        )  # fmt: skip


def _learned(stack: ScratchStack) -> tuple[int, int, int]:
    """(messages learned in all, as ham, as spam): rspamd's counter from its controller, and its
    Bayes statistics' counts per class, in Redis."""
    output = subprocess.run(
        ["/usr/bin/rspamc", "-h", f"127.0.0.1:{stack.ports['rspamd_controller']}", "stat"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout  # fmt: skip
    total = int(output.split("Messages learned: ")[1].split()[0])
    client = redis.Redis(host="127.0.0.1", port=stack.ports["redis"], decode_responses=True)
    try:
        counts = client.hgetall("RS")
    finally:
        client.close()
    return total, int(counts.get("learns_ham", 0)), int(counts.get("learns_spam", 0))


def _until_learned(
    stack: ScratchStack, expected: tuple[int, int, int], timeout: float = 15
) -> tuple[int, int, int]:
    deadline = time.monotonic() + timeout
    while (found := _learned(stack)) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return found


def test_moving_a_message_out_of_junk_trains_it_as_ham_and_back_as_spam(strict: ScratchStack) -> None:
    smtp_send(strict, _suspect_message(["carol@strict.test"], "TO BE JUDGED"), ["carol@strict.test"])
    assert _wait_in(strict, "carol@strict.test", "Junk", "TO BE JUDGED")
    total, ham, spam_count = _learned(strict)
    client = imaplib.IMAP4("127.0.0.1", strict.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        client.login("carol@strict.test", PASSWORD)
        client.select("Junk")
        _, found = client.uid("SEARCH", None, 'SUBJECT "TO BE JUDGED"')
        (uid,) = found[0].split()
        assert client.uid("MOVE", uid, "INBOX")[0] == "OK"
        out_of_junk = (total + 1, ham + 1, spam_count)
        assert _until_learned(strict, out_of_junk) == out_of_junk
        client.select("INBOX")
        _, found = client.uid("SEARCH", None, 'SUBJECT "TO BE JUDGED"')
        (uid,) = found[0].split()
        assert client.uid("MOVE", uid, "Junk")[0] == "OK"
        # Learned again as spam: rspamd takes back its ham learning of the same message.
        back_in_junk = (total + 2, ham, spam_count + 1)
        assert _until_learned(strict, back_in_junk) == back_in_junk
    finally:
        client.logout()


def test_greylisting_defers_a_new_sender_once_for_the_domain_that_has_it_on(world: ScratchStack) -> None:
    with world.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Grey", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="grey.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="gus", password=PASSWORD, quota_bytes=200 * KB
        )
    shown = CliRunner().invoke(
        cli.main,
        ["domain", "spam", "grey.test", "--greylisting", "--json"],
        env={"LETTERHEAD_HOME": str(world.home)},
    )
    assert shown.exit_code == 0 and json.loads(shown.output)["greylisting"] is True, shown.output
    # Another domain is not greylisted: the same sender's mail there goes through at once.
    smtp_send(world, make_message("new@sender.test", ["alice@filtered.test"]), ["alice@filtered.test"])
    first = make_message("new@sender.test", ["gus@grey.test"], subject="greylisted first")
    for _ in range(2):  # the first attempt, and a retry too soon
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            smtp_send(world, first, ["gus@grey.test"])
        assert deferred.value.smtp_code == 451 and b"Greylisted" in deferred.value.smtp_error
    time.sleep(2.5)  # the scratch stack's greylisting delay is 2 s
    smtp_send(world, first, ["gus@grey.test"])
    assert _wait_in(world, "gus@grey.test", "INBOX", "greylisted first")
    # Passed: the next message of the same sender is taken at once.
    smtp_send(
        world, make_message("new@sender.test", ["gus@grey.test"], subject="then at once"), ["gus@grey.test"]
    )
    assert _wait_in(world, "gus@grey.test", "INBOX", "then at once")

    def logged(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "gus@grey.test")
        reasons = [r.reason for view in found for r in view.recipients]
        return reasons if any(reason.startswith("greylisted") for reason in reasons) else None

    reasons = until_found(world, logged)
    assert (
        reasons is not None and "greylisted: a sender not seen lately must retry in a few minutes" in reasons
    )


def _senders(stack: ScratchStack, address: str, *options: str) -> dict:
    shown = CliRunner().invoke(
        cli.main,
        ["mailbox", "senders", address, *options, "--json"],
        env={"LETTERHEAD_HOME": str(stack.home)},
    )
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.output)


@pytest.fixture(scope="module")
def listed(world: ScratchStack) -> ScratchStack:
    """A domain filing anything slightly suspect as junk, with two mailboxes: dan keeps lists."""
    with world.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Listed", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="listed.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        for local_part in ("dan", "erin"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=domain,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=200 * KB,
            )
        spam.update(session, OPERATOR, world.settings, domain, junk_score=1)
    # The senders allowed below prove themselves by SPF and DMARC: the client, 127.0.0.1, may
    # send for them; faraway.test's mail comes from elsewhere, so anyone here writing it forges it.
    for sender_domain in ("outside.test", "plain.test", "trusted.test"):
        world.dns.txt[sender_domain] = "v=spf1 ip4:127.0.0.1 -all"
    world.dns.txt["faraway.test"] = "v=spf1 ip4:192.0.2.1 -all"
    world.dns.txt["_dmarc.trusted.test"] = world.dns.txt["_dmarc.faraway.test"] = "v=DMARC1; p=none"
    return world


def test_allow_and_block_lists_apply_per_recipient_at_delivery(listed: ScratchStack) -> None:
    recipients = ["dan@listed.test", "erin@listed.test"]
    assert _senders(listed, "dan@listed.test", "--allow", "Offers@Outside.test")["allowed"] == [
        "offers@outside.test"
    ]
    smtp_send(listed, _suspect_message(recipients, "SUSPECT BUT ALLOWED"), recipients)
    assert _wait_in(listed, "dan@listed.test", "INBOX", "SUSPECT BUT ALLOWED")
    assert _wait_in(listed, "erin@listed.test", "Junk", "SUSPECT BUT ALLOWED")

    # A whole domain blocked: its plain mail goes to dan's Junk, not erin's.
    assert _senders(listed, "dan@listed.test", "--block", "plain.test")["blocked"] == ["@plain.test"]
    smtp_send(listed, make_message("friend@plain.test", recipients, subject="blocked domain"), recipients)
    assert _wait_in(listed, "dan@listed.test", "Junk", "blocked domain")
    assert _wait_in(listed, "erin@listed.test", "INBOX", "blocked domain")

    # An address wins over its domain, and a change applies to the next message.
    _senders(listed, "dan@listed.test", "--allow", "friend@plain.test")
    smtp_send(listed, make_message("friend@plain.test", recipients, subject="allowed address"), recipients)
    assert _wait_in(listed, "dan@listed.test", "INBOX", "allowed address")
    assert "blocked domain" not in _folder_subjects(listed, "dan@listed.test", "INBOX")


def test_an_allowed_sender_is_trusted_only_when_the_message_proves_it(listed: ScratchStack) -> None:
    """Anyone can write an allowed address: a forger's mail is filed as junk all the same, even
    with the headers rspamd uses to say what it proved."""
    _senders(listed, "dan@listed.test", "--allow", "ceo@faraway.test")
    forged = _suspect_message(["dan@listed.test"], "FORGED ENVELOPE")
    forged.replace_header("From", "ceo@faraway.test")
    forged["X-Letterhead-Verified-Envelope"] = "ceo@faraway.test"
    forged["X-Letterhead-Verified-From"] = "ceo@faraway.test"
    # SPF fails for the envelope sender (faraway.test sends from 192.0.2.1 only), and DMARC for
    # the From.
    smtp_send(listed, forged, ["dan@listed.test"])
    forged_from = _suspect_message(["dan@listed.test"], "FORGED FROM")
    forged_from.replace_header("From", "ceo@faraway.test")
    # The envelope passes SPF (outside.test), but it is not the From's domain: DMARC fails.
    smtp_send(listed, forged_from, ["dan@listed.test"], envelope_sender="bulk@outside.test")
    assert _wait_in(listed, "dan@listed.test", "Junk", "FORGED ENVELOPE")
    assert _wait_in(listed, "dan@listed.test", "Junk", "FORGED FROM")
    headers = fetch_headers_in(listed, "dan@listed.test", "Junk", "FORGED ENVELOPE")
    assert headers.get_all("X-Letterhead-Verified-From") is None
    assert headers.get_all("X-Letterhead-Verified-Envelope") is None

    # The same mail from a sender whose SPF names 127.0.0.1 passes both, and is let in.
    _senders(listed, "dan@listed.test", "--allow", "boss@trusted.test")
    proven = _suspect_message(["dan@listed.test"], "PROVEN SENDER")
    proven.replace_header("From", "boss@trusted.test")
    smtp_send(listed, proven, ["dan@listed.test"])
    assert _wait_in(listed, "dan@listed.test", "INBOX", "PROVEN SENDER")
    headers = fetch_headers_in(listed, "dan@listed.test", "INBOX", "PROVEN SENDER")
    assert headers.get_all("X-Letterhead-Verified-From") == ["boss@trusted.test"]


def test_full_lists_still_reach_dovecot_and_one_more_sender_is_refused(listed: ScratchStack) -> None:
    """Both lists ride in one userdb reply: filled to the limit, delivery still works."""
    with listed.installation.transaction() as session:
        mailbox = mailboxes.find_mailbox(session, "erin@listed.test")
        number = 0
        while True:
            try:
                sender_lists.add_sender(
                    session, OPERATOR, mailbox, f"a-long-sender-name-{number:04d}@some-domain.test", "block"
                )
            except ValidationError as full:
                assert "full" in str(full)
                break
            number += 1
    assert number > 50
    smtp_send(
        listed,
        make_message("sender@fine.test", ["erin@listed.test"], subject="full lists"),
        ["erin@listed.test"],
    )
    assert _wait_in(listed, "erin@listed.test", "INBOX", "full lists")
    smtp_send(
        listed,
        make_message("a-long-sender-name-0007@some-domain.test", ["erin@listed.test"], subject="listed last"),
        ["erin@listed.test"],
    )
    assert _wait_in(listed, "erin@listed.test", "Junk", "listed last")


def test_a_recipient_who_allows_the_sender_saves_a_message_over_the_reject_score(
    listed: ScratchStack,
) -> None:
    """rspamd's one verdict for all recipients: refused only if none of them allows the sender."""
    with listed.installation.transaction() as session:
        domain = domains.get_domain(session, OPERATOR, "listed.test")
        spam.update(session, OPERATOR, listed.settings, domain, reject_score=2)
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="fay", password=PASSWORD, quota_bytes=200 * KB
        )
        aliases.create_alias(
            session, OPERATOR, domain=domain, local_part="fans", destinations=["fay@listed.test"]
        )
    try:
        _senders(listed, "fay@listed.test", "--allow", "@outside.test")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp_send(
                listed, _suspect_message(["erin@listed.test"], "REFUSED FOR ERIN"), ["erin@listed.test"]
            )
        assert refused.value.smtp_code == 554
        # One recipient's list does not save it for the others: all of them must allow the sender.
        recipients = ["fay@listed.test", "erin@listed.test"]
        with pytest.raises(smtplib.SMTPDataError):
            smtp_send(listed, _suspect_message(recipients, "NOT SAVED FOR ERIN"), recipients)
        smtp_send(listed, _suspect_message(["fay@listed.test"], "SAVED BY FAY"), ["fay@listed.test"])
        assert _wait_in(listed, "fay@listed.test", "INBOX", "SAVED BY FAY")
        # Her address with an +extension, and an alias reaching only her, are hers too.
        smtp_send(
            listed, _suspect_message(["fay+news@listed.test"], "SAVED BY FAY TOO"), ["fay+news@listed.test"]
        )
        smtp_send(listed, _suspect_message(["fans@listed.test"], "SAVED FOR FANS"), ["fans@listed.test"])
        assert _wait_in(listed, "fay@listed.test", "INBOX", "SAVED BY FAY TOO")
        assert _wait_in(listed, "fay@listed.test", "INBOX", "SAVED FOR FANS")
        # A forger writing a domain she allows is not saved: it sends from 192.0.2.1 only.
        _senders(listed, "fay@listed.test", "--allow", "@faraway.test")
        forged = _suspect_message(["fay@listed.test"], "FORGED FOR FAY")
        forged.replace_header("From", "sales@faraway.test")
        with pytest.raises(smtplib.SMTPDataError):
            smtp_send(listed, forged, ["fay@listed.test"])

        def logged(session):
            found, _ = mail_logs.search_transactions(session, OPERATOR, "fay@listed.test")
            for view in found:
                if "a recipient allows the sender" in (view.spam_verdict or ""):
                    return view
            return None

        assert until_found(listed, logged) is not None, "the log never said why it was let through"
        # Taken off the list, the same message is refused again: the change applies at once.
        _senders(listed, "fay@listed.test", "--remove", "@outside.test")
        with pytest.raises(smtplib.SMTPDataError):
            smtp_send(listed, _suspect_message(["fay@listed.test"], "NO LONGER SAVED"), ["fay@listed.test"])
    finally:
        with listed.installation.transaction() as session:
            domain = domains.get_domain(session, OPERATOR, "listed.test")
            spam.update(session, OPERATOR, listed.settings, domain, reject_score=None)
