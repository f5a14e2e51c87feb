"""The webmail's rules without a browser or a mail server: whom a login lets in and what it
records, and what a message to send must hold. The mail server's answer is the function the
service is given (in production, Dovecot's auth service; see tests/e2e for that path)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from controlplane.errors import AuthenticationFailed, LoginThrottled, ValidationError
from controlplane.models import AuthEvent
from controlplane.services import auth, passwords, webmail
from controlplane.services.webmail import MailServiceUnavailable
from tests.factories import PASSWORD, make_domain, make_mailbox

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


class MailServer:
    """Accepts PASSWORD for the addresses it holds; counts what it was asked."""

    def __init__(self, *addresses: str, down: bool = False) -> None:
        self.addresses, self.down, self.asked = set(addresses), down, []

    def __call__(self, address: str, password: str) -> bool:
        self.asked.append(address)
        if self.down:
            raise MailServiceUnavailable("Dovecot cannot be reached")
        return address in self.addresses and password == PASSWORD


def log_in(db, server: MailServer, address: str, password: str = PASSWORD, *, ip: str = "192.0.2.1", now=NOW):
    return webmail.authenticate_mailbox_user(
        db,
        address=address,
        password=password,
        client_ip=ip,
        user_agent="ua",
        mail_server_accepts=server,
        now=now,
    )


def events(db) -> list[tuple[bool, str, str, bool]]:
    rows = db.scalars(select(AuthEvent).order_by(AuthEvent.id)).all()
    return [(e.success, e.account, e.reason, e.password_fingerprint is not None) for e in rows]


@pytest.fixture
def ann(db):
    domain = make_domain(db, name="a.test")
    return make_mailbox(db, domain=domain, local_part="ann")


def test_the_server_decides_and_every_attempt_is_recorded(db, ann) -> None:
    server = MailServer("ann@a.test")
    assert log_in(db, server, " Ann@A.test ") == "ann@a.test"
    with pytest.raises(AuthenticationFailed) as wrong:
        log_in(db, server, "ann@a.test", "not it")
    with pytest.raises(AuthenticationFailed) as unknown:
        log_in(db, server, "ghost@a.test", "not it")
    assert str(wrong.value) == str(unknown.value)  # the page says the same for both
    assert events(db) == [
        (True, "ann@a.test", "", False),
        (False, "ann@a.test", "wrong password", True),
        (False, "ghost@a.test", "unknown user", True),
    ]


def test_an_inactive_mailbox_is_refused_as_inactive(db, ann) -> None:
    ann.active = False
    db.flush()
    with pytest.raises(AuthenticationFailed):
        log_in(db, MailServer(), "ann@a.test")
    assert events(db)[-1][:3] == (False, "ann@a.test", "inactive")


def test_nothing_is_sent_to_the_server_for_a_blank_form_or_an_impossible_password(db, ann) -> None:
    server = MailServer("ann@a.test")
    with pytest.raises(AuthenticationFailed, match="Enter your email address"):
        log_in(db, server, "", "")
    with pytest.raises(AuthenticationFailed):
        log_in(db, server, "ann@a.test", "x" * (passwords.MAX_VERIFIED_PASSWORD_LENGTH + 1))
    assert server.asked == []
    assert [reason for _, _, reason, _ in events(db)] == ["blank login", "wrong password"]


def test_a_server_that_cannot_answer_is_no_guess(db, ann) -> None:
    with pytest.raises(MailServiceUnavailable):
        log_in(db, MailServer(down=True), "ann@a.test", "anything")
    assert events(db) == [(False, "ann@a.test", "mail unavailable", False)]


def test_guesses_at_one_account_throttle_the_guessers_network_before_the_server_is_asked(db, ann) -> None:
    server = MailServer("ann@a.test")
    for guess in range(auth.ACCOUNT_FAILURE_LIMIT):
        with pytest.raises(AuthenticationFailed):
            log_in(db, server, "ann@a.test", f"guess {guess}", ip="198.51.100.7")
    asked = len(server.asked)
    with pytest.raises(LoginThrottled):
        log_in(db, server, "ann@a.test", ip="198.51.100.8")  # same /24: the right password waits too
    assert len(server.asked) == asked
    # Ann from her own network is not held back by the guesser's.
    assert log_in(db, server, "ann@a.test", ip="203.0.113.5") == "ann@a.test"


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        ('"Doe, Ann" <ann@a.test>, bob@b.test', ["ann@a.test", "bob@b.test"]),
        ("ann@a.test; ann@a.test ,, ", ["ann@a.test"]),
        ("ann@bücher.example", ["ann@xn--bcher-kva.example"]),
    ],
)
def test_recipients_are_read_checked_and_deduplicated(text: str, addresses: list[str]) -> None:
    assert webmail.parse_recipients(text, field="to") == addresses


@pytest.mark.parametrize(
    "text", ["ann@a.test\r\nBcc: all@a.test", "not an address", "ann@@a.test", "a@xn--zzinjd.test"]
)
def test_what_is_not_a_recipient_list_is_refused_with_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        webmail.parse_recipients(text, field="cc")
    assert refused.value.field == "cc"


def test_a_message_needs_a_recipient_a_one_line_subject_and_a_sane_body() -> None:
    webmail.check_outgoing(to=["ann@a.test"], cc=[], subject="Hello", body="Hi")
    for kwargs, field in (
        (dict(to=[], cc=[], subject="s", body="b"), "to"),
        (dict(to=["a@a.test"], cc=[], subject="one\ntwo", body="b"), "subject"),
        (dict(to=["a@a.test"], cc=[], subject="s", body="x" * (6 * 1024 * 1024)), "body"),
    ):
        with pytest.raises(ValidationError) as refused:
            webmail.check_outgoing(**kwargs)
        assert refused.value.field == field
