"""The mail and login log viewers of the admin panel, over logs read by the real ingestion code.

Tenant One has a.test (domain admin ann) and b.test (domain admin bea); tenant Two has c.test.
Every refusal test has a twin in which the rightful viewer gets the record, so the refusal
test fails the moment a scope check goes missing.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import event, select

from controlplane.logs.ingest import ingest_file
from controlplane.models import Domain, MailTransaction
from controlplane.services import mail_logs
from controlplane.services.scope import OPERATOR, domain_admin, tenant_admin
from tests.factories import make_mailbox
from tests.query_plans import full_scans, query_plan
from tests.web.test_admin_panel import log_in

REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
LAST = "2026-11-30"

# One message for each case the viewers show: delivered, refused before queueing, deferred,
# bounced for a full mailbox, relayed out for another tenant.
POSTFIX_LOG = """\
Nov 24 08:00:00 mail postfix/smtpd[100]: connect from sender.example[192.0.2.20]
Nov 24 08:00:01 mail postfix/smtpd[100]: 1A2B3C4D5E6: client=sender.example[192.0.2.20]
Nov 24 08:00:01 mail postfix/cleanup[101]: 1A2B3C4D5E6: message-id=<to-ann@sender.example>
Nov 24 08:00:01 mail postfix/qmgr[102]: 1A2B3C4D5E6: from=<carl@sender.example>, size=1200, nrcpt=1 (queue active)
Nov 24 08:00:02 mail postfix/lmtp[103]: 1A2B3C4D5E6: to=<ann@a.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0.04/0.01/0.02/0.03, dsn=2.0.0, status=sent (250 2.0.0 <ann@a.test> mOkXCd5dQ2 Saved)
Nov 24 08:00:02 mail postfix/qmgr[102]: 1A2B3C4D5E6: removed
Nov 24 09:00:00 mail postfix/smtpd[100]: 2B3C4D5E6F7: client=sender.example[192.0.2.21]
Nov 24 09:00:00 mail postfix/cleanup[101]: 2B3C4D5E6F7: message-id=<to-bob@sender.example>
Nov 24 09:00:00 mail postfix/qmgr[102]: 2B3C4D5E6F7: from=<carl@sender.example>, size=1300, nrcpt=1 (queue active)
Nov 24 09:00:01 mail postfix/lmtp[103]: 2B3C4D5E6F7: to=<bob@b.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0.04/0.01/0.02/0.03, dsn=2.0.0, status=sent (250 2.0.0 <bob@b.test> nOkXCd5dQ2 Saved)
Nov 24 09:00:01 mail postfix/qmgr[102]: 2B3C4D5E6F7: removed
Nov 24 09:30:00 mail postfix/smtpd[100]: NOQUEUE: reject: RCPT from unknown[198.51.100.30]: 550 5.1.1 <nobody@b.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<spam@bad.example> to=<nobody@b.test> proto=ESMTP helo=<bad.example>
Nov 23 10:00:00 mail postfix/submission/smtpd[110]: 3C4D5E6F7A8: client=laptop.example[203.0.113.8], sasl_method=PLAIN, sasl_username=bob@b.test
Nov 23 10:00:00 mail postfix/cleanup[101]: 3C4D5E6F7A8: message-id=<from-bob@b.test>
Nov 23 10:00:00 mail postfix/qmgr[102]: 3C4D5E6F7A8: from=<bob@b.test>, size=3000, nrcpt=1 (queue active)
Nov 23 10:00:05 mail postfix/smtp[111]: 3C4D5E6F7A8: to=<dave@remote.example>, relay=none, delay=5, delays=0.01/0/5/0, dsn=4.4.1, status=deferred (connect to mx.remote.example[192.0.2.50]:25: Connection refused)
Nov 24 11:00:00 mail postfix/submission/smtpd[112]: 4D5E6F7A8B9: client=laptop.c.example[203.0.113.9], sasl_method=PLAIN, sasl_username=secret@c.test
Nov 24 11:00:00 mail postfix/cleanup[101]: 4D5E6F7A8B9: message-id=<secret-plan@c.test>
Nov 24 11:00:00 mail postfix/qmgr[102]: 4D5E6F7A8B9: from=<secret@c.test>, size=4000, nrcpt=1 (queue active)
Nov 24 11:00:01 mail postfix/smtp[113]: 4D5E6F7A8B9: to=<x@remote.example>, relay=mx.remote.example[192.0.2.50]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9Z8Y7X6W5V)
Nov 24 11:00:01 mail postfix/qmgr[102]: 4D5E6F7A8B9: removed
Nov 24 12:00:00 mail postfix/smtpd[100]: 5E6F7A8B9C0: client=sender.example[192.0.2.20]
Nov 24 12:00:00 mail postfix/cleanup[101]: 5E6F7A8B9C0: message-id=<big@sender.example>
Nov 24 12:00:00 mail postfix/qmgr[102]: 5E6F7A8B9C0: from=<carl@sender.example>, size=90000, nrcpt=1 (queue active)
Nov 24 12:00:01 mail postfix/lmtp[103]: 5E6F7A8B9C0: to=<ann@a.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0.04/0.01/0.02/0.03, dsn=5.2.2, status=bounced (host mail[private/dovecot-lmtp] said: 552 5.2.2 <ann@a.test> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))
Nov 24 12:00:01 mail postfix/qmgr[102]: 5E6F7A8B9C0: removed
"""
DOVECOT_LOG = """\
2026-11-24 13:00:00 imap-login: Info: Login: user=<ann@a.test>, method=PLAIN, rip=192.0.2.40, lip=127.0.0.1, mpid=1, secured, session=<a1>
2026-11-24 13:01:00 pop3-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob@b.test>, method=PLAIN, rip=198.51.100.41, lip=127.0.0.1, session=<a2>
2026-11-24 13:02:00 imap-login: Info: Login: user=<secret@c.test>, method=PLAIN, rip=192.0.2.42, lip=127.0.0.1, mpid=2, secured, session=<a3>
"""


def ingest_logs(installation, tmp_path: Path, postfix: str = POSTFIX_LOG, dovecot: str = DOVECOT_LOG) -> None:
    """Read the logs above through the real ingestion, as the follower would."""
    with installation.sessions() as session:
        for name, text in (("postfix.log", postfix), ("dovecot.log", dovecot)):
            path = tmp_path / name
            path.write_text(text)
            ingest_file(session, path, reference=REFERENCE)


@pytest.fixture
def logged(world, tmp_path: Path):
    """The web world, bea as b.test's domain admin and c.test's secret mailbox, and the logs read."""
    with world.transaction() as session:
        b = session.scalar(select(Domain).where(Domain.name == "b.test"))
        c = session.scalar(select(Domain).where(Domain.name == "c.test"))
        make_mailbox(session, domain=b, local_part="bea", is_domain_admin=True)
        make_mailbox(session, domain=c, local_part="secret", is_domain_admin=True)
    ingest_logs(world, tmp_path)
    return world


def transaction_id(installation, message_id: str) -> int:
    with installation.sessions() as session:
        return session.scalar(select(MailTransaction.id).where(MailTransaction.message_id == message_id))


def refused_id(installation, recipient: str) -> int:
    with installation.sessions() as session:
        found, _ = mail_logs.search_transactions(session, OPERATOR, recipient)
        return found[0].transaction.id


def logged_in(app, login: str):
    client = app.test_client()
    assert log_in(client, login).status_code == 302
    return client


def page_text(response) -> str:
    return response.get_data(as_text=True)


def day_row(html: str, day: str) -> list[int]:
    row = re.search(rf'<tr data-day="{day}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {day}"
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row.group(1))]


# --- by date ------------------------------------------------------------------------------------


def test_full_admin_sees_thirty_days_with_counts_and_a_bar_per_day(app, logged) -> None:
    html = page_text(logged_in(app, "boss").get(f"/admin/logs/mail?last={LAST}"))
    assert len(re.findall(r'<g class="day"', html)) == 30
    # accepted, refused, deferred, bounced, all: a.test and b.test, never c.test's relayed mail
    assert day_row(html, "2026-11-24") == [2, 1, 0, 1, 4]
    assert day_row(html, "2026-11-23") == [0, 0, 1, 0, 1]
    assert day_row(html, "2026-11-25") == [0, 0, 0, 0, 0]
    assert 'data-day="2026-11-24" data-total="4"' in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_full_admin_narrows_the_counts_to_one_domain(app, logged) -> None:
    html = page_text(logged_in(app, "boss").get(f"/admin/logs/mail?last={LAST}&domain=b.test"))
    assert day_row(html, "2026-11-24") == [1, 1, 0, 0, 2]


def test_domain_admin_counts_only_their_domain_and_another_named_is_missing(app, logged) -> None:
    client = logged_in(app, "ann@a.test")
    assert day_row(page_text(client.get(f"/admin/logs/mail?last={LAST}")), "2026-11-24") == [1, 0, 0, 1, 2]
    own = page_text(client.get(f"/admin/logs/mail?last={LAST}&domain=a.test"))
    assert day_row(own, "2026-11-24") == [1, 0, 0, 1, 2]
    # Another domain of the same tenant is refused in the words used for one that does not exist
    # (as in the API, where a domain token names a domain the same way).
    sneaky, missing = (
        client.get(f"/admin/logs/mail?last={LAST}&domain={name}") for name in ("b.test", "zz.test")
    )
    assert sneaky.status_code == missing.status_code == 404
    assert "No such domain: b.test." in page_text(sneaky)
    # Not a day of b.test's mail counted on the page, in the table or the chart.
    body = sneaky.get_data(as_text=True)
    assert "data-day=" not in body and '<td class="num">' not in body


def test_another_tenants_admin_sees_none_of_our_mail(app, logged) -> None:
    client = logged_in(app, "rival")
    # Only c.test's message relayed out; none of tenant One's four recipients that day.
    assert day_row(page_text(client.get(f"/admin/logs/mail?last={LAST}")), "2026-11-24") == [1, 0, 0, 0, 1]
    assert client.get(f"/admin/logs/mail?last={LAST}&domain=a.test").status_code == 404


def test_a_malformed_day_is_a_clear_error(app, logged) -> None:
    client = logged_in(app, "boss")
    response = client.get("/admin/logs/mail?last=yesterday")
    assert response.status_code == 400
    assert "&#39;yesterday&#39; is not a date: write it as YYYY-MM-DD." in page_text(response)
    day = client.get("/admin/logs/mail/days/2026-13-45")
    assert day.status_code == 400 and "is not a date" in page_text(day)


# --- a day's list, filters, search --------------------------------------------------------------


def listed_message_ids(installation, html: str) -> set[str]:
    ids = [int(n) for n in re.findall(r'data-transaction="(\d+)"', html)]
    with installation.sessions() as session:
        return set(session.scalars(select(MailTransaction.message_id).where(MailTransaction.id.in_(ids))))


def test_a_days_list_filters_by_result_direction_and_domain(app, logged) -> None:
    client = logged_in(app, "boss")

    def listed(query: str) -> set[str]:
        response = client.get(f"/admin/logs/mail/days/2026-11-24{query}")
        assert response.status_code == 200
        return listed_message_ids(logged, page_text(response))

    assert listed("") == {"to-ann@sender.example", "to-bob@sender.example", "", "big@sender.example"}
    assert listed("?result=bounced") == {"big@sender.example"}
    assert listed("?result=refused") == {""}
    assert listed("?domain=a.test") == {"to-ann@sender.example", "big@sender.example"}
    assert listed("?domain=b.test&result=accepted") == {"to-bob@sender.example"}
    assert listed("?direction=out") == set()
    outgoing = listed_message_ids(
        logged, page_text(client.get("/admin/logs/mail/days/2026-11-23?direction=out"))
    )
    assert outgoing == {"from-bob@b.test"}


def test_unknown_filters_are_refused_with_a_message(app, logged) -> None:
    client = logged_in(app, "boss")
    response = client.get("/admin/logs/mail/search?result=lost")
    assert response.status_code == 400
    assert "Unknown result &#39;lost&#39;" in page_text(response)
    assert client.get("/admin/logs/mail/search?direction=sideways").status_code == 400
    assert client.get("/admin/logs/logins?service=telnet").status_code == 400


def test_search_finds_by_address_ip_message_id_and_queue_id_across_days(app, logged) -> None:
    client = logged_in(app, "boss")

    def found(query: str) -> set[str]:
        return listed_message_ids(
            logged, page_text(client.get("/admin/logs/mail/search", query_string={"q": query}))
        )

    assert found("bob@b.test") == {"to-bob@sender.example", "from-bob@b.test"}
    assert found("203.0.113.8") == {"from-bob@b.test"}
    assert found("<big@sender.example>") == {"big@sender.example"}
    assert found("1A2B3C4D5E6") == {"to-ann@sender.example"}
    assert found("nobody@b.test") == {""}
    assert found("secret@c.test") == set()  # another tenant's


def test_an_empty_search_asks_for_something_instead_of_listing_everything(app, logged) -> None:
    html = page_text(logged_in(app, "boss").get("/admin/logs/mail/search"))
    assert "Type an address" in html and "data-transaction" not in html


def test_a_long_list_is_paginated_on_the_server(app, logged, tmp_path: Path) -> None:
    refusals = "".join(
        f"Nov 25 10:{n // 60:02d}:{n % 60:02d} mail postfix/smtpd[100]: NOQUEUE: reject: RCPT from "
        f"unknown[198.51.100.77]: 550 5.1.1 <ghost{n}@a.test>: Recipient address rejected: User unknown "
        f"in virtual mailbox table; from=<x@bad.example> to=<ghost{n}@a.test> proto=ESMTP helo=<bad>\n"
        for n in range(60)
    )
    (tmp_path / "more").mkdir()
    ingest_logs(logged, tmp_path / "more", postfix=refusals, dovecot="")
    client = logged_in(app, "ann@a.test")
    first = page_text(client.get("/admin/logs/mail/days/2026-11-25?result=refused"))
    second = page_text(client.get("/admin/logs/mail/days/2026-11-25?result=refused&page=2"))
    assert "60 transactions" in first and "Page 1 of 2" in first
    assert len(re.findall(r"data-transaction=", first)) == 50
    assert len(re.findall(r"data-transaction=", second)) == 10
    assert "/admin/logs/mail/days/2026-11-25?page=2&amp;result=refused" in first
    assert "ghost0@a.test" in second and "ghost59@a.test" in first  # newest first


# --- one transaction ----------------------------------------------------------------------------


def test_the_detail_page_shows_envelope_recipients_and_reasons_in_words(app, logged) -> None:
    client = logged_in(app, "boss")
    html = page_text(client.get(f"/admin/logs/mail/{transaction_id(logged, 'big@sender.example')}"))
    for expected in (
        "2026-11-24 12:00:00", "sender.example [192.0.2.20]", "carl@sender.example", "big@sender.example",
        "90,000 bytes", "5E6F7A8B9C0", "552 5.2.2", "mailbox full", "permanent failure; the mailbox is full",
    ):  # fmt: skip
        assert expected in html, expected
    submitted = page_text(client.get(f"/admin/logs/mail/{transaction_id(logged, 'from-bob@b.test')}"))
    assert "bob@b.test" in submitted and "receiving server unreachable" in submitted
    assert "temporary failure, will retry; no answer from the receiving host" in submitted
    refused = page_text(client.get(f"/admin/logs/mail/{refused_id(logged, 'nobody@b.test')}"))
    assert "bad.example" in refused and "recipient not found" in refused
    assert "none: refused before it was queued (NOQUEUE)" in refused


def test_a_domain_admin_cannot_open_another_domains_transaction_by_id(app, logged) -> None:
    to_bob = transaction_id(logged, "to-bob@sender.example")
    rightful = logged_in(app, "bea@b.test").get(f"/admin/logs/mail/{to_bob}")
    assert rightful.status_code == 200 and "bob@b.test" in page_text(rightful)
    attacker = logged_in(app, "ann@a.test").get(f"/admin/logs/mail/{to_bob}")
    assert attacker.status_code == 404
    assert "bob@b.test" not in page_text(attacker) and "to-bob@sender.example" not in page_text(attacker)


def test_another_tenants_admin_cannot_open_our_transaction_by_id(app, logged) -> None:
    to_ann = transaction_id(logged, "to-ann@sender.example")
    assert logged_in(app, "boss").get(f"/admin/logs/mail/{to_ann}").status_code == 200
    response = logged_in(app, "rival").get(f"/admin/logs/mail/{to_ann}")
    assert response.status_code == 404 and "ann@a.test" not in page_text(response)
    assert logged_in(app, "rival").get("/admin/logs/mail/999999").status_code == 404


def test_a_domain_admin_searching_another_domains_addresses_finds_nothing(app, logged) -> None:
    rightful = page_text(logged_in(app, "bea@b.test").get("/admin/logs/mail/search?q=bob@b.test"))
    assert "2 transactions" in rightful
    client = logged_in(app, "ann@a.test")
    for query in ("bob@b.test", "198.51.100.30", "2B3C4D5E6F7", "to-bob@sender.example"):
        html = page_text(client.get("/admin/logs/mail/search", query_string={"q": query}))
        listing = html.split("<tbody>", 1)[1]
        assert "0 transactions" in html and "data-transaction" not in listing, query
        assert "bob@b.test" not in listing and "sender.example" not in listing
        # Narrowed to the other domain by name: refused as missing, and nothing of it shown.
        narrowed = client.get("/admin/logs/mail/search", query_string={"q": query, "domain": "b.test"})
        assert narrowed.status_code == 404
        assert "data-transaction" not in page_text(narrowed) and "sender.example" not in page_text(narrowed)


def test_a_domain_admin_sees_only_their_recipients_of_a_shared_message(app, logged, tmp_path: Path) -> None:
    both = (
        "Nov 26 08:00:00 mail postfix/smtpd[100]: 6F7A8B9C0D1: client=sender.example[192.0.2.20]\n"
        "Nov 26 08:00:00 mail postfix/cleanup[101]: 6F7A8B9C0D1: message-id=<both@sender.example>\n"
        "Nov 26 08:00:00 mail postfix/qmgr[102]: 6F7A8B9C0D1: from=<carl@sender.example>, size=10, nrcpt=2 (queue active)\n"
        "Nov 26 08:00:01 mail postfix/lmtp[103]: 6F7A8B9C0D1: to=<ann@a.test>, relay=mail[private/dovecot-lmtp], dsn=2.0.0, status=sent (250 2.0.0 Saved)\n"
        "Nov 26 08:00:01 mail postfix/lmtp[103]: 6F7A8B9C0D1: to=<bob@b.test>, relay=mail[private/dovecot-lmtp], dsn=2.0.0, status=sent (250 2.0.0 Saved)\n"
    )  # fmt: skip
    (tmp_path / "both").mkdir()
    ingest_logs(logged, tmp_path / "both", postfix=both, dovecot="")
    shared = transaction_id(logged, "both@sender.example")
    full = page_text(logged_in(app, "boss").get(f"/admin/logs/mail/{shared}"))
    assert 'data-recipient="ann@a.test"' in full and 'data-recipient="bob@b.test"' in full
    html = page_text(logged_in(app, "ann@a.test").get(f"/admin/logs/mail/{shared}"))
    assert 'data-recipient="ann@a.test"' in html and "bob@b.test" not in html


# Port 25 with debug_peer_level = 1 (as master.cf sets it): smtpd logs each command and reply.
DIALOGUE_LOG = """\
Nov 26 09:00:00 mail postfix/smtpd[300]: connect from sender.example[192.0.2.20]
Nov 26 09:00:00 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 220 mail.letterhead.test ESMTP
Nov 26 09:00:00 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: ehlo sender.example
Nov 26 09:00:00 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250-mail.letterhead.test
Nov 26 09:00:00 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250 CHUNKING
Nov 26 09:00:01 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: mail FROM:<carl@sender.example> size=40
Nov 26 09:00:01 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250 2.1.0 Ok
Nov 26 09:00:01 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: rcpt TO:<ann@a.test>
Nov 26 09:00:01 mail postfix/smtpd[300]: 7A8B9C0D1E2: client=sender.example[192.0.2.20]
Nov 26 09:00:01 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250 2.1.5 Ok
Nov 26 09:00:02 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: rcpt TO:<bob@b.test>
Nov 26 09:00:02 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250 2.1.5 Ok
Nov 26 09:00:02 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: rcpt TO:<nobody@a.test>
Nov 26 09:00:02 mail postfix/smtpd[300]: 7A8B9C0D1E2: reject: RCPT from sender.example[192.0.2.20]: 550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<carl@sender.example> to=<nobody@a.test> proto=ESMTP helo=<sender.example>
Nov 26 09:00:02 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table
Nov 26 09:00:03 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: data
Nov 26 09:00:03 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 354 End data with <CR><LF>.<CR><LF>
Nov 26 09:00:03 mail postfix/cleanup[101]: 7A8B9C0D1E2: message-id=<talk@sender.example>
Nov 26 09:00:04 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 250 2.0.0 Ok: queued as 7A8B9C0D1E2
Nov 26 09:00:04 mail postfix/qmgr[102]: 7A8B9C0D1E2: from=<carl@sender.example>, size=400, nrcpt=2 (queue active)
Nov 26 09:00:04 mail postfix/lmtp[103]: 7A8B9C0D1E2: to=<ann@a.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <ann@a.test> x Saved)
Nov 26 09:00:04 mail postfix/lmtp[103]: 7A8B9C0D1E2: to=<bob@b.test>, relay=mail[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <bob@b.test> y Saved)
Nov 26 09:00:04 mail postfix/qmgr[102]: 7A8B9C0D1E2: removed
Nov 26 09:00:05 mail postfix/smtpd[300]: < sender.example[192.0.2.20]: quit
Nov 26 09:00:05 mail postfix/smtpd[300]: > sender.example[192.0.2.20]: 221 2.0.0 Bye
"""


@pytest.fixture
def talked(logged, tmp_path: Path):
    (tmp_path / "talk").mkdir()
    ingest_logs(logged, tmp_path / "talk", postfix=DIALOGUE_LOG, dovecot="")
    return logged


def dialogue_of(html: str) -> list[tuple[str, str]]:
    """(side, text) of each dialogue step on a detail page."""
    steps = re.findall(r'<li class="(client|server)">.*?<span class="text">([^<]*)</span>', html, re.S)
    return [(side, text.replace("&lt;", "<").replace("&gt;", ">")) for side, text in steps]


def test_the_detail_page_shows_the_smtp_dialogue_with_sides_codes_and_timing(app, talked) -> None:
    html = page_text(
        logged_in(app, "boss").get(f"/admin/logs/mail/{transaction_id(talked, 'talk@sender.example')}")
    )
    steps = dialogue_of(html)
    assert steps[:3] == [
        ("server", "220 mail.letterhead.test ESMTP"),
        ("client", "ehlo sender.example"),
        ("server", "250-mail.letterhead.test"),
    ]
    assert ("client", "rcpt TO:<bob@b.test>") in steps and ("client", "data") in steps
    assert steps[-1] == ("server", "221 2.0.0 Bye")
    assert "220: server ready" in html and "354: send the message, end with a single dot" in html
    assert "250 2.1.5: OK, done" in html and "+1.000 s" in html


def test_a_domain_admin_sees_no_rcpt_of_another_domain_in_the_dialogue(app, talked) -> None:
    talk = transaction_id(talked, "talk@sender.example")
    rightful = dialogue_of(page_text(logged_in(app, "bea@b.test").get(f"/admin/logs/mail/{talk}")))
    assert ("client", "rcpt TO:<bob@b.test>") in rightful and (
        "client",
        "rcpt TO:<ann@a.test>",
    ) not in rightful
    html = page_text(logged_in(app, "ann@a.test").get(f"/admin/logs/mail/{talk}"))
    steps = dialogue_of(html)
    assert ("client", "rcpt TO:<ann@a.test>") in steps and ("client", "data") in steps
    assert "bob@b.test" not in html
    # Nor does searching bob's address reveal that this message of ann's also went to him.
    assert "1 transaction;" in page_text(
        logged_in(app, "bea@b.test").get("/admin/logs/mail/search?q=bob@b.test&date=2026-11-26")
    )
    assert "0 transactions" in page_text(
        logged_in(app, "ann@a.test").get("/admin/logs/mail/search?q=bob@b.test")
    )


# --- logins -------------------------------------------------------------------------------------


def listed_logins(html: str) -> list[tuple[str, str]]:
    rows = re.findall(
        r'<tr data-login="\d+">\s*<td[^>]*>[^<]*</td>\s*<td>([^<]*)</td>\s*<td[^>]*>([^<]*)</td>', html
    )
    return [(service, login) for service, login in rows]


def test_full_admin_sees_the_tenants_logins_their_own_panel_logins_included(app, logged) -> None:
    client = logged_in(app, "boss")
    html = page_text(client.get("/admin/logs/logins"))
    assert set(listed_logins(html)) == {
        ("admin panel", "boss"),
        ("IMAP", "ann@a.test"),
        ("POP3", "bob@b.test"),
        ("SMTP submission", "bob@b.test"),
    }
    failed = page_text(client.get("/admin/logs/logins?result=failure"))
    assert listed_logins(failed) == [("POP3", "bob@b.test")] and "wrong password or unknown user" in failed
    assert listed_logins(page_text(client.get("/admin/logs/logins?service=imap"))) == [("IMAP", "ann@a.test")]
    assert listed_logins(page_text(client.get("/admin/logs/logins?q=198.51.100.41"))) == [
        ("POP3", "bob@b.test")
    ]
    assert listed_logins(page_text(client.get("/admin/logs/logins?domain=a.test"))) == [
        ("IMAP", "ann@a.test")
    ]


def test_a_domain_admin_sees_only_their_domains_logins(app, logged) -> None:
    logged_in(app, "boss")  # a panel login of the tenant, not of any domain
    client = logged_in(app, "ann@a.test")
    html = page_text(client.get("/admin/logs/logins"))
    assert set(listed_logins(html)) == {("IMAP", "ann@a.test"), ("admin panel", "ann@a.test")}
    for query in ("bob@b.test", "198.51.100.41", "boss", "secret@c.test"):
        found = page_text(client.get("/admin/logs/logins", query_string={"q": query, "domain": "b.test"}))
        assert listed_logins(found) == [], query
    rightful = page_text(logged_in(app, "bea@b.test").get("/admin/logs/logins?q=bob@b.test"))
    assert listed_logins(rightful) == [("POP3", "bob@b.test"), ("SMTP submission", "bob@b.test")]


def test_every_logs_page_needs_a_login(app, logged) -> None:
    client = app.test_client()
    for url in ("/admin/logs", "/admin/logs/mail", "/admin/logs/mail/days/2026-11-24", "/admin/logs/mail/search",
                f"/admin/logs/mail/{transaction_id(logged, 'to-ann@sender.example')}", "/admin/logs/logins"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"], url


# --- the queries behind them --------------------------------------------------------------------


def test_searches_read_indexes_not_whole_tables(logged) -> None:
    """EXPLAIN QUERY PLAN of every query a search runs: no full scan of a log table."""
    plans: list[str] = []
    with logged.sessions() as session:
        engine = session.get_bind()

        def explain(conn, cursor, statement, parameters, context, executemany) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                plans.extend(query_plan(conn, statement, parameters))

        event.listen(engine, "before_cursor_execute", explain)
        try:
            one = session.scalar(select(Domain).where(Domain.name == "a.test")).tenant
            a_test = session.scalar(select(Domain).where(Domain.name == "a.test"))
            full, mine = tenant_admin(one.id), domain_admin(one.id, a_test.id)
            for query in ("ann@a.test", "192.0.2.20", "1A2B3C4D5E6", "<big@sender.example>"):
                mail_logs.search_transactions(session, full, query, tenant=one)
                mail_logs.search_logins(session, full, query, tenant=one)
            mail_logs.search_transactions(
                session, mine, domain=a_test, on=dt.date(2026, 11, 24), result="bounced"
            )
            mail_logs.day_counts(session, mine, domain=a_test, last=dt.date(2026, 11, 30))
            mail_logs.search_logins(session, mine, domain=a_test, service="imap")
        finally:
            event.remove(engine, "before_cursor_execute", explain)
    log_tables = ("mail_transaction", "mail_recipient_result", "mail_queue_entry", "auth_event")
    assert plans and full_scans(plans, log_tables) == []


def test_the_story_page_tells_a_domain_admin_only_their_domains_part(app, logged) -> None:
    html = page_text(logged_in(app, "boss").get("/admin/logs/story?address=carl@sender.example"))
    assert "3 messages to or from carl@sender.example; their recipients: 2 accepted, 1 bounced." in html
    assert "Returned to the sender: ann@a.test could not be reached: mailbox full." in html
    assert "The mailbox was full then" in html
    bea = page_text(logged_in(app, "bea@b.test").get("/admin/logs/story?address=carl@sender.example"))
    assert "Delivered to bob@b.test&#39;s mailbox." in bea
    assert (
        "ann@a.test" not in bea
        and "1 message to or from carl@sender.example; their recipients: 1 accepted." in bea
    )
    refused = logged_in(app, "boss").get("/admin/logs/story?address=nonsense")
    assert refused.status_code == 400 and "is not an email address" in page_text(refused)
