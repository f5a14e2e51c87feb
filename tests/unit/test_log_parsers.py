from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.logs.dialogue import parse_dialogue_line, redact
from controlplane.logs.dovecot import parse_dovecot_line
from controlplane.logs.postfix import parse_postfix_line, syslog_time
from controlplane.logs.transactions import plain_reason

REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
DIALOGUE = "Nov 25 19:36:23 mail postfix/smtpd[8288]: < localhost[127.0.0.1]: rcpt TO:<r@p.test>"
DELIVERED = (
    "Nov 24 00:17:18 mail postfix/lmtp[9480]: B8F9120C127: to=<alice@a.test>, orig_to=<info@a.test>, "
    "relay=mail[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 <alice@a.test> mOkX Saved)"
)
REJECT = (
    "Nov 24 00:19:40 mail postfix/smtpd[9470]: NOQUEUE: reject: RCPT from client.example[192.0.2.10]: "
    "550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table; "
    "from=<bob@client.example> to=<nobody@a.test> proto=ESMTP helo=<client.example>"
)


def test_delivery_line_gives_recipient_alias_and_status() -> None:
    event = parse_postfix_line(DELIVERED, REFERENCE)
    assert event is not None
    assert (event.kind, event.queue_id, event.recipient, event.orig_to) == (
        "delivery",
        "B8F9120C127",
        "alice@a.test",
        "info@a.test",
    )
    assert (event.status, event.dsn) == ("sent", "2.0.0")
    assert event.time == dt.datetime(2026, 11, 24, 0, 17, 18, tzinfo=dt.UTC)


def test_noqueue_reject_gives_client_sender_recipient_and_code() -> None:
    event = parse_postfix_line(REJECT, REFERENCE)
    assert event is not None
    assert (event.kind, event.queue_id, event.client_ip, event.helo) == (
        "reject",
        None,
        "192.0.2.10",
        "client.example",
    )
    assert (event.sender, event.recipient, event.dsn) == ("bob@client.example", "nobody@a.test", "5.1.1")


def test_submission_client_line_carries_the_sasl_user() -> None:
    line = (
        "Nov 24 00:21:00 mail postfix/submission/smtpd[9501]: E5F6A7B8C9D: "
        "client=laptop.example[203.0.113.5], sasl_method=PLAIN, sasl_username=alice@a.test"
    )
    event = parse_postfix_line(line, REFERENCE)
    assert event is not None
    assert (event.kind, event.client_ip, event.sasl_user) == ("connect-client", "203.0.113.5", "alice@a.test")


def test_postfix_maillog_file_iso_stamps_are_read_with_their_year() -> None:
    event = parse_postfix_line(
        DELIVERED.replace("Nov 24 00:17:18", "2025-11-24T00:17:18.123456+00:00"), REFERENCE
    )
    assert event is not None and event.time.year == 2025


def test_a_december_line_read_in_january_belongs_to_the_previous_year() -> None:
    january = dt.datetime(2027, 1, 2, 8, 0, tzinfo=dt.UTC)
    assert syslog_time("Dec", "31", "23:59:59", january) == dt.datetime(
        2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC
    )
    assert syslog_time("Jan", "2", "07:00:00", january) == dt.datetime(2027, 1, 2, 7, tzinfo=dt.UTC)


def test_leap_day_read_in_a_common_year_is_dated_in_the_leap_year() -> None:
    assert syslog_time("Feb", "29", "12:00:00", dt.datetime(2029, 1, 5, tzinfo=dt.UTC)).year == 2028


def test_dovecot_login_and_auth_failure_lines_become_login_events() -> None:
    success = parse_dovecot_line(
        "Nov 24 00:30:00 imap-login: Info: Login: user=<alice@a.test>, method=PLAIN, rip=192.0.2.10, "
        "lip=127.0.0.1, mpid=9601, secured, session=<abc>",
        REFERENCE,
    )
    failure = parse_dovecot_line(
        "Nov 24 00:30:15 pop3-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): "
        "user=<ghost@a.test>, method=PLAIN, rip=198.51.100.9, lip=127.0.0.1, session=<stu>",
        REFERENCE,
    )
    assert success is not None and (success.service, success.user, success.client_ip, success.success) == (
        "imap",
        "alice@a.test",
        "192.0.2.10",
        True,
    )
    assert failure is not None and (failure.service, failure.user, failure.success, failure.reason) == (
        "pop3",
        "ghost@a.test",
        False,
        "wrong password or unknown user",
    )


def test_a_disconnect_without_any_login_attempt_is_not_a_login() -> None:
    line = (
        "Nov 24 00:30:20 imap-login: Info: Disconnected: Connection closed (no auth attempts in 0 secs): "
        "rip=198.51.100.9, lip=127.0.0.1, session=<yza>"
    )
    assert parse_dovecot_line(line, REFERENCE) is None


def test_plain_reasons_name_the_common_refusals() -> None:
    assert plain_reason("refused", "550 5.1.1 <x@a.test>: Recipient address rejected: User unknown") == (
        "recipient not found"
    )
    assert plain_reason("bounced", "552 5.2.2 <c@a.test> Quota exceeded", "5.2.2") == "mailbox full"
    assert plain_reason("refused", "554 5.7.1 <x@e.example>: Relay access denied") == "relay denied"
    assert plain_reason("refused", "554 5.7.1 <c@a.test>: Sender address rejected: not logged in") == (
        "authentication required"
    )
    assert plain_reason("delivered", "250 2.0.0 Saved") == ""


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        (
            "553 5.7.1 <ceo@bank.example>: Sender address rejected: not owned by user ann@a.test",
            "the sender address is not one the logged-in user may send as",
        ),
        (
            "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied",
            "the sending host is refused by the server's access rules",
        ),
        (
            "451 4.3.5 <ann@a.test>: Recipient address rejected: Quota check unavailable, try again later",
            "the mailbox's quota could not be checked just then (temporary: the sender will retry)",
        ),
        (
            "450 4.7.1 <x@a.test>: Recipient address rejected: some policy",
            "temporarily refused (the sender will retry)",
        ),
    ],
)
def test_each_refusal_says_what_happened_and_a_temporary_one_that_it_is_retried(
    detail: str, reason: str
) -> None:
    assert plain_reason("refused", detail) == reason


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parsers_never_raise_on_arbitrary_text(text: str) -> None:
    parse_postfix_line(text, REFERENCE)
    parse_dovecot_line(text, REFERENCE)
    said = parse_dialogue_line(text, REFERENCE)
    if said is not None:
        redact(said.direction, said.text, answers_challenge=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([DELIVERED, REJECT, DIALOGUE]), st.data())
def test_parsers_never_raise_on_truncated_or_corrupted_lines(line: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(line)))
    noise = data.draw(st.text(max_size=20))
    for candidate in (line[:cut], line[:cut] + noise, noise + line[cut:]):
        parse_postfix_line(candidate, REFERENCE)
        parse_dovecot_line(candidate, REFERENCE)
        parse_dialogue_line(candidate, REFERENCE)


def test_dovecot_lines_with_our_log_timestamp_carry_their_year() -> None:
    line = (
        "2025-11-25 19:03:46 imap-login: Info: Login: user=<alice@a.test>, method=PLAIN, rip=127.0.0.1, "
        "lip=127.0.0.1, mpid=1, session=<x>"
    )
    event = parse_dovecot_line(line, REFERENCE)
    assert event is not None and event.time == dt.datetime(2025, 11, 25, 19, 3, 46, tzinfo=dt.UTC)


def test_a_refusal_with_spaces_inside_its_trailing_fields_is_recognised() -> None:
    line = (
        "Dec  1 10:00:00 mail postfix/smtpd[42]: NOQUEUE: reject: RCPT from laptop[192.0.2.5]: "
        '550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown; from=<"john doe"@b.example> '
        "to=<nobody@a.test> proto=ESMTP helo=<my laptop>"
    )
    event = parse_postfix_line(line, REFERENCE)
    assert event is not None and event.kind == "reject"
    assert (event.sender, event.recipient, event.helo) == (
        '"john doe"@b.example',
        "nobody@a.test",
        "my laptop",
    )


@pytest.mark.parametrize(
    "line",
    [
        # Cut short by a full disk or a crash: it never says who logged in from where.
        "2026-11-25 18:57:28 imap-login: Info: Login: user=<trunc",
        "2026-11-25 18:57:28 imap-login: Info: Login: user=<ann@a.test>, method=PL",
        # A client that left before naming anyone: nobody's password was tried.
        "2026-11-25 18:57:28 imap-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): "
        "user=<>, method=PLAIN, rip=192.0.2.7, lip=127.0.0.1, session=<x>",
    ],
)
def test_dovecot_lines_that_prove_no_login_are_not_logins(line: str) -> None:
    assert parse_dovecot_line(line, REFERENCE) is None


def test_a_failed_smtp_auth_keeps_the_login_it_tried() -> None:
    line = (
        "Dec  5 01:22:15 mail postfix/submission/smtpd[23029]: warning: localhost[127.0.0.1]: "
        "SASL PLAIN authentication failed: (reason unavailable), sasl_username=ann@x.test"
    )
    event = parse_postfix_line(line, REFERENCE)
    assert event is not None and (event.kind, event.sasl_user, event.client_ip) == (
        "sasl-failed",
        "ann@x.test",
        "127.0.0.1",
    )
