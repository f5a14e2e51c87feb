"""The compiled Postfix parser gives exactly what the Python parser gives, line for line; and
the compiled scan reads Dovecot's successful logins exactly as `parse_dovecot_line` does.

`parse_postfix_line` is the C parser (controlplane/logs/_postfix_lines.c); it hands the lines it
is not certain of to `parse_postfix_line_in_python`, the reference. Equal here means the same
fields with the same types.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.logs import _postfix_lines, postfix
from controlplane.logs.dovecot import SERVICE_OF_PROCESS, LoginEvent, parse_dovecot_line
from controlplane.logs.ingest import (
    _DIALOGUE_MARK,
    _JUNK_MARK,
    _MEANINGFUL,
    _SESSION_EDGE,
    IngestResult,
    _LineReader,
)
from controlplane.logs.postfix import (
    PASSED_OVER,
    UNDECIDED,
    PostfixEvent,
    parse_postfix_line,
    parse_postfix_line_in_python,
    scan_log_line,
)
from controlplane.logs.rspamd import RSPAMD_LINE

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def _comparable(event: PostfixEvent | None) -> Any:
    if event is None:
        return None
    values = [getattr(event, field.name) for field in dataclasses.fields(event)]
    return values, [type(value) for value in values]


def _assert_same(line: str, reference: dt.datetime = REFERENCE) -> PostfixEvent | None:
    compiled = parse_postfix_line(line, reference)
    assert _comparable(compiled) == _comparable(parse_postfix_line_in_python(line, reference)), line
    return compiled


def _stores_nothing(raw: bytes, reference: dt.datetime = REFERENCE) -> bool:
    """Whether the ingest's path for a line no parser claims (`_LineReader._read_other`, which
    a scan's None leads to) leaves `raw` without a trace: no row, no note, nothing counted."""
    parts = mock.MagicMock()
    result = IngestResult()
    reader = _LineReader(
        parts.store, "mail.log", reference, parts.assembler, parts.logins, result, parts.dialogue
    )
    reader._read_other(raw, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    return not parts.mock_calls and result == IngestResult()


def _assert_scan_agrees(raw: bytes, reference: dt.datetime = REFERENCE) -> object:
    """scan() on a raw line: passed over where ingest's session-edge pattern matches, or for a
    Dovecot line the ingest stores nothing of; otherwise, unless undecided, the Python parser's
    event for the decoded line."""
    scanned = scan_log_line(raw, reference)
    if scanned is UNDECIDED:
        return scanned
    if scanned is PASSED_OVER and not _SESSION_EDGE.match(raw):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        assert b" dovecot" in raw and parse_postfix_line_in_python(line, reference) is None, raw
        assert _stores_nothing(raw, reference), raw
    if scanned is not PASSED_OVER:
        assert not _SESSION_EDGE.match(raw), raw
        assert not RSPAMD_LINE.match(raw)
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        postfix_event = parse_postfix_line_in_python(line, reference)
        if isinstance(scanned, LoginEvent):
            # What the ingest's Python path would make of it: not Postfix's, no Junk filing, and
            # the login parse_dovecot_line reads, field for field and type for type.
            assert postfix_event is None and _JUNK_MARK not in raw, raw
            login = parse_dovecot_line(line, reference)
            assert login is not None and login.success, raw
            values = dataclasses.astuple(scanned)
            assert (values, [type(value) for value in values]) == (
                dataclasses.astuple(login),
                [type(value) for value in dataclasses.astuple(login)],
            ), raw
        else:
            assert _comparable(scanned) == _comparable(postfix_event), raw
    return scanned


def _generated_lines(tmp_path: Path, count: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.loggen import generate_log
    finally:
        sys.path.remove(str(ROOT))
    path = tmp_path / "mail.log"
    generate_log(path, count)
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def python_decisions() -> Iterator[list[str]]:
    """The lines the compiled parser handed to the Python parser, while the test runs."""
    handed: list[str] = []

    def python_parser(line: str, reference: dt.datetime) -> PostfixEvent | None:
        handed.append(line)
        return parse_postfix_line_in_python(line, reference)

    _postfix_lines.configure(PostfixEvent, postfix._cached_syslog_time, python_parser)
    try:
        yield handed
    finally:
        _postfix_lines.configure(PostfixEvent, postfix._cached_syslog_time, parse_postfix_line_in_python)


def test_the_ingester_uses_the_compiled_parser() -> None:
    assert parse_postfix_line is _postfix_lines.parse
    assert _postfix_lines.makes_events_directly()


def test_a_class_with_more_to_do_than_its_fields_is_called() -> None:
    @dataclasses.dataclass(slots=True)
    class Checked(PostfixEvent):
        def __post_init__(self) -> None:
            self.detail = "checked"

    line = SAMPLES[0]
    _postfix_lines.configure(Checked, postfix._cached_syslog_time, parse_postfix_line_in_python)
    try:
        assert not _postfix_lines.makes_events_directly()
        event = parse_postfix_line(line, REFERENCE)
        assert isinstance(event, Checked) and event.detail == "checked"
    finally:
        _postfix_lines.configure(PostfixEvent, postfix._cached_syslog_time, parse_postfix_line_in_python)
    assert _postfix_lines.makes_events_directly()


def test_events_made_in_c_hold_their_fields_as_python_made_ones_do() -> None:
    for parse in (parse_postfix_line, parse_postfix_line_in_python):
        event = parse(SAMPLES[0], REFERENCE)
        assert type(event) is PostfixEvent and dataclasses.replace(event, status="x").status == "x"
        assert sys.getrefcount(event) == 2  # this name and the call's argument: nothing leaked
        recipient = event.recipient
        assert sys.getrefcount(recipient) == 3  # the event's slot too
        del event
        assert sys.getrefcount(recipient) == 2  # the event gave its fields back


def test_every_fixture_line_gives_the_same_event() -> None:
    events = [
        _assert_same(line) for log in sorted(FIXTURES.glob("*.log")) for line in log.read_text().splitlines()
    ]
    assert {event.kind for event in events if event is not None} >= {
        "connect-client",
        "message-id",
        "queued",
        "removed",
        "delivery",
        "reject",
    }


def test_a_generated_log_gives_the_same_events_and_most_are_decided_in_c(
    tmp_path: Path, python_decisions: list[str]
) -> None:
    lines = _generated_lines(tmp_path, 20_000)
    events = [_assert_same(line) for line in lines]
    kinds = {event.kind for event in events if event is not None}
    assert kinds >= {"connect-client", "message-id", "queued", "removed", "delivery", "reject", "sasl-failed"}
    # SASL failures and expiries are left to Python: a few in a thousand lines. Refusals, two
    # in a hundred, are decided in C.
    handed = len(python_decisions)
    assert 0 < handed < len(lines) // 200
    assert all("authentication failed" in line or "expired" in line for line in python_decisions)


def test_scanning_raw_lines_agrees_with_the_python_path(tmp_path: Path) -> None:
    raws = [line.encode() + b"\n" for line in _generated_lines(tmp_path, 20_000)]
    raws += [
        line.encode() + b"\r\n"
        for log in sorted(FIXTURES.glob("*.log"))
        for line in log.read_text().splitlines()
    ]
    answers = [_assert_scan_agrees(raw) for raw in raws]
    passed_over = sum(answer is PASSED_OVER for answer in answers)
    undecided = sum(answer is UNDECIDED for answer in answers)
    events = sum(isinstance(answer, PostfixEvent) for answer in answers)
    # A quarter of a busy log is session edges.
    assert passed_over > len(raws) // 5 and events > len(raws) // 2 and undecided < len(raws) // 10
    # Dovecot's successful logins are read in the scan, in syslog's form and Dovecot's own.
    logins = [answer for answer in answers if isinstance(answer, LoginEvent)]
    expected = [raw for raw in raws if b"-login: " in raw and b"Login: " in raw]
    assert len(logins) == len(expected) > len(raws) // 100
    assert {login.time.year for login in logins} == {2026} and {"imap", "pop3"} <= {
        login.service for login in logins
    }
    refusals = [answer for answer in answers if isinstance(answer, PostfixEvent) and answer.kind == "reject"]
    assert len(refusals) > len(raws) // 100


@pytest.mark.parametrize(
    "line",
    [
        "Nov 24 00:17:18 mail postfix/smtpd[9470]: connect from c[192.0.2.1]",
        "Nov  4 00:17:18.25 mail postfix/submission/smtpd[9470]: disconnect from c[192.0.2.1] ehlo=1",
        "Nov 24 00:17:18 mail postfix/smtpd: connect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix/smtpdx[9470]: connect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix-smtpd[9470]: connect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfi/smtpd[9470]: connect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix/smtpd[9470]: connect  from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix/smtpd[9470]: reconnect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix/smtpd[]: connect from c[192.0.2.1]",
        "Nov 24 00:17:18 mail postfix/smtpd[9470]: connect from",
    ],
)
def test_only_smtpds_session_edges_are_passed_over(line: str) -> None:
    scanned = _assert_scan_agrees(line.encode() + b"\n")
    assert (scanned is PASSED_OVER) == bool(_SESSION_EDGE.match(line.encode()))


def test_the_year_comes_from_the_reference_as_in_python() -> None:
    line = "Dec 31 23:59:59 mail postfix/qmgr[1]: 4ABCDEF12: removed"
    for reference in (REFERENCE, dt.datetime(2027, 1, 1, 0, 5, tzinfo=dt.UTC)):
        event = _assert_same(line, reference)
        assert event is not None and event.time.year == (2025 if reference.year == 2026 else 2026)
        assert _assert_scan_agrees(line.encode() + b"\n", reference) == event
    # A day ahead of the reference is still this year; a second more is last year's.
    ahead = "Dec 01 00:00:00 mail postfix/qmgr[1]: 4ABCDEF12: removed"
    for reference, year in ((REFERENCE, 2026), (REFERENCE - dt.timedelta(seconds=1), 2025)):
        event = _assert_same(ahead, reference)
        assert event is not None and event.time.year == year
    _assert_same(
        "Feb 29 10:00:00 mail postfix/qmgr[1]: 4ABCDEF12: removed", dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    )
    assert parse_postfix_line("Feb 30 10:00:00 mail postfix/qmgr[1]: 4ABCDEF12: removed", REFERENCE) is None


SAMPLES = [
    "Nov 24 00:17:18 mail postfix/lmtp[9480]: B8F9120C127: to=<alice@a.test>, orig_to=<info@a.test>, "
    "relay=mail[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 <alice@a.test> mOkX Saved)",
    "Nov  4 00:21:00 mail postfix/submission/smtpd[9501]: E5F6A7B8C9D: "
    "client=laptop.example[203.0.113.5], sasl_method=PLAIN, sasl_username=alice@a.test",
    "Nov 24 00:17:18.123456 mail postfix/cleanup[9476]: 4dXYz1bcdfGh: message-id=< <x@y> >",
    "Nov 24 00:17:18 mail postfix/qmgr[9477]: B8F9120C127: from=<bob@c.example>, size=1234, nrcpt=1 (queue active)",
    "Nov 24 00:17:18 mail postfix/qmgr[9477]: B8F9120C127: from=<>, size=99999999999999999999, nrcpt=1",
    "Nov 24 00:17:18 mail postfix/qmgr[9477]: B8F9120C127: removed",
    "Nov 24 00:17:18 mail postfix/smtp[9490]: B8F9120C127: to=<r@far.example>, relay=none, delay=9, "
    "dsn=4.4.1, status=deferred (connect to far.example[192.0.2.1]:25: Connection refused) status=x",
    "Nov 24 00:17:18 mail postfix/qmgr[9477]: B8F9120C127: from=<a@b>, status=expired, returned to sender",
    "Nov 24 00:19:40 mail postfix/smtpd[9470]: NOQUEUE: reject: RCPT from c.example[192.0.2.10]: "
    "550 5.1.1 <n@a.test>: Recipient address rejected; from=<b@c.example> to=<n@a.test> proto=ESMTP helo=<c>",
    "Nov 24 00:19:40 mail postfix/smtpd[9470]: warning: c[192.0.2.9]: SASL PLAIN authentication failed: "
    "UGFzc3dvcmQ6, sasl_username=ann@a.test",
    "Nov 24 00:19:41 mail postfix/cleanup[9476]: 4dXYz1bcdfGh: milter-reject: END-OF-MESSAGE from "
    "c[192.0.2.10]: 5.7.1 Spam message rejected; from=<b@c.example> to=<n@a.test> proto=ESMTP helo=<c>",
    "Nov 24 00:19:42 mail postfix/smtpd[9470]: B8F9120C127: reject: DATA from c[192.0.2.10]: "
    "554 5.7.1 <DATA>: Data command rejected: Multi-recipient bounce; from=<> proto=ESMTP helo=<c>",
    "2026-11-24T00:17:18.5+01:00 mail postfix/qmgr[9477]: B8F9120C127: removed",
]
# What the regular expressions turn on, and what leaves plain printable ASCII.
NOISE = st.text(
    alphabet=st.sampled_from(list(" :[]<>,=().-/_0123456789ABFZabz\t\x1c\x7fé\u0661\u00a0")), max_size=6
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_edited_lines_give_the_same_answer(line: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(line)))
        end = data.draw(st.integers(start, min(len(line), start + 4)))
        line = line[:start] + data.draw(NOISE) + line[end:]
    _assert_same(line)
    _assert_scan_agrees(line.encode("utf-8", errors="surrogatepass") + b"\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(SAMPLES + [SAMPLES[0][:40] + "connect from c[192.0.2.1]"]))
def test_raw_bytes_give_the_same_answer(noise: bytes, line: str) -> None:
    edge = "Nov 24 00:17:18 mail postfix/submission/smtpd[9470]: disconnect from c[192.0.2.1] ehlo=1"
    for raw in (noise, line.encode() + noise, noise + line.encode(), edge.encode()[: len(noise)] + b"\n"):
        _assert_scan_agrees(raw)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_the_same_answer(text: str) -> None:
    _assert_same(text)
    _assert_same("Nov 24 00:17:18 mail postfix/qmgr[1]: ABCDEF: " + text)
    _assert_same("Nov 24 00:17:18 mail postfix/lmtp[1]: ABCDEF: to=" + text)


REFUSALS = [
    "Nov 24 00:19:40 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.10]: 552 5.2.2 <n@a.test>: "
    "Recipient address rejected: Mailbox full; from=<b@c.example> to=<n@a.test> proto=ESMTP helo=<c.example>",
    "Nov 24 00:19:40 mail postfix/smtpd[1]: NOQUEUE: milter-discard: END-OF-MESSAGE from unknown[192.0.2.1]: "
    "4.7.1 a;b; from=<a b> to=<x>y helo=<c d>  ",
    "Nov 24 00:19:40 mail postfix/submission/smtpd[1]: NOQUEUE: hold: MAIL FROM from c[2001:db8::1]: 5501 5.1.1234 x; "
    "from=<a>b to=<t@a.test> to=<u@a.test> stage=z code=9 helo=",
    "Nov 24 00:19:40 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.10]: 450 4.7.1 a; x=1 y; helo=<h>",
    "Nov 24 00:19:40 mail postfix/smtpd[1]: NOQUEUE: reject: CONNECT-X Y from c: 2.0.0 ok;",
]
# What the refusal's pattern turns on: its separators, brackets, keys, codes and stage words.
TAIL_NOISE = st.text(alphabet=st.sampled_from(list(" ;:<>=_-.[]fromtohelo24579ABRCPT")), max_size=8)
# An IPv6 client, its address in brackets and its colons: both ways the client can be read.
IPV6_REFUSAL = (
    "Nov 24 00:19:40 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[2001:db8::7]: 450 4.1.8 <b@c>: "
    "Sender address rejected: Domain not found; from=<b@c> to=<n@a.test> proto=ESMTP helo=<[IPv6:2001:db8::7]>"
)


def test_refusals_are_decided_in_c_as_python_decides_them(python_decisions: list[str]) -> None:
    decided = [_assert_same(line) for line in REFUSALS]
    assert not python_decisions
    assert [event is not None and event.kind for event in decided] == ["reject"] * len(REFUSALS)
    mailbox_full, discarded, held, unmatched_tail, no_tail = decided
    assert (mailbox_full.queue_id, mailbox_full.sender, mailbox_full.dsn) == (None, "b@c.example", "5.2.2")
    # The detail runs to the first ';' after which the whole tail matches.
    assert (discarded.status, discarded.detail, discarded.sender, discarded.helo) == (
        "discard",
        "4.7.1 a;b",
        "a b",
        "c d",
    )
    assert discarded.recipient == "x"  # findall takes the bracketed value the tail passed over
    assert (held.status, held.dsn, held.sender) == ("hold", "", "a")  # 5501: no reply code
    assert (held.recipient, held.client_name, held.client_ip) == ("u@a.test", "c", "2001:db8::1")
    assert (unmatched_tail.detail, no_tail.detail, no_tail.dsn, no_tail.sender) == (
        "450 4.7.1 a; x=1 y",
        "2.0.0 ok",
        "2.0.0",  # an enhanced code without a reply code, as milters answer
        None,
    )


def test_an_ipv6_clients_refusal_is_read_with_its_address(python_decisions: list[str]) -> None:
    event = _assert_same(IPV6_REFUSAL)
    assert event is not None and (event.client_name, event.client_ip, event.recipient) == (
        "unknown",
        "2001:db8::7",
        "n@a.test",
    )
    # Where what follows the brackets is no client's end, the client runs to the first colon.
    odd = IPV6_REFUSAL.replace("[2001:db8::7]: 450", "[2001:db8::7]x: 450")
    assert _assert_same(odd) is None
    colon = IPV6_REFUSAL.replace("unknown[2001:db8::7]: 450", "unknown: [x]: 450")
    event = _assert_same(colon)
    assert event is not None and event.detail.startswith("[x]: 450") and not python_decisions


def test_a_refusal_too_long_for_c_is_left_to_python(python_decisions: list[str]) -> None:
    line = REFUSALS[0] + " x=" + "y" * 5000
    assert _assert_same(line) is not None and python_decisions == [line]


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from([*REFUSALS, IPV6_REFUSAL, SAMPLES[8], *SAMPLES[-3:-1]]), st.data())
def test_edited_refusals_give_the_same_answer(line: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(line)))
        end = data.draw(st.integers(start, min(len(line), start + 6)))
        line = line[:start] + data.draw(TAIL_NOISE) + line[end:]
    _assert_same(line)
    _assert_scan_agrees(line.encode() + b"\n")


LOGINS = [
    "Nov 25 18:57:28 mail dovecot: imap-login: Login: user=<carla@a.test>, method=PLAIN, rip=192.0.2.7, "
    "lip=10.0.0.2, mpid=1025, TLS, session=<18072e8c35bf992d>",
    "Nov  5 18:57:28.5 mail dovecot[77]: pop3-login: Info: Login: user=<<b>, c@a.test>>, rip=, session=<s>",
    "2026-11-24 00:30:00 submission-login: Info: Login: user=<alice@a.test>, method=PLAIN, rip=2001:db8::1, "
    "lip=127.0.0.1, mpid=9601, secured, session=<abcDEF12>",
    "2026-11-24 00:30:00.25 managesieve-login: Login: rip=192.0.2.1, user=x, user=<y>z, session=<a, b>, "
    "method=<a, user=q>",
]
# What the login pattern turns on: its separators, brackets, keys and the stamp's digits.
LOGIN_NOISE = st.text(alphabet=st.sampled_from(list(" ,<>=:-.[]userriplsonInfoLgT0129")), max_size=8)


def test_dovecot_login_lines_are_read_in_the_scan_as_in_python() -> None:
    scanned = [_assert_scan_agrees(line.encode() + b"\n") for line in LOGINS]
    assert [type(login) for login in scanned] == [LoginEvent] * len(LOGINS)
    users = [(login.service, login.user, login.client_ip, login.session) for login in scanned]
    assert users == [
        ("imap", "carla@a.test", "192.0.2.7", "18072e8c35bf992d"),
        ("pop3", "b", "", "s"),
        ("smtp", "alice@a.test", "2001:db8::1", "abcDEF12"),
        ("sieve", "y", "192.0.2.1", "a, b"),
    ]
    # No user or no rip: no login, and the Python path decides; so does a Junk filing's mark.
    for line in (
        LOGINS[0].replace("user=<carla@a.test>", "user=<>"),
        LOGINS[0].replace("rip=", "xrip="),
        LOGINS[0] + " stored mail into mailbox 'Junk'",
        LOGINS[2].replace("2026-11-24 ", "2026-11-24T"),
        LOGINS[2].replace("submission-login: ", "submission-login: dovecot: imap-login: "),
        LOGINS[2].replace("2026-11-24", "2026-13-24"),
    ):
        assert not isinstance(_assert_scan_agrees(line.encode() + b"\n"), LoginEvent), line


def test_a_login_class_with_other_fields_leaves_the_logins_to_python() -> None:
    @dataclasses.dataclass(frozen=True)
    class Reordered:
        user: str
        time: dt.datetime

    with pytest.warns(RuntimeWarning, match="LoginEvent's fields"):
        postfix.scan_logins_as(Reordered)
    # The scan still makes the LoginEvent it was configured with, field by field.
    assert type(_assert_scan_agrees(LOGINS[0].encode() + b"\n")) is LoginEvent


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(LOGINS), st.data())
def test_edited_login_lines_give_the_same_answer(line: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(line)))
        end = data.draw(st.integers(start, min(len(line), start + 6)))
        line = line[:start] + data.draw(LOGIN_NOISE) + line[end:]
    _assert_scan_agrees(line.encode() + b"\n")


SESSION_ENDS = [
    "Nov 10 00:09:34 mail dovecot: imap(anna@a.test)<2572><215c1c0ba3340d96>: Disconnected: Logged out "
    "in=312 out=68942 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
    "Nov  5 18:57:28.5 mail dovecot[77]: pop3(b@a.test)<8150><ffe22b02>: Disconnected: Logged out top=0/0, "
    "retr=1/2204, del=0/1, size=2187",
    "Nov 24 00:30:00 mail dovecot: lmtp(c@a.test)<9601><k2Yd>: sieve: msgid=<x@y>: stored mail into mailbox 'INBOX'",
]


def test_dovecot_lines_nothing_is_kept_of_are_passed_over_in_the_scan() -> None:
    for line in SESSION_ENDS:
        assert _assert_scan_agrees(line.encode() + b"\n") is PASSED_OVER, line
    # Each mark the ingest reads a Dovecot line by leaves the line to it; those that keep a line
    # as not understood make this one kept, the others are left to the ingest to be safe.
    kept = ["NOQUEUE:", " to=<x@a.test>", " status=sent", "Login: ", "auth failed"]
    for mark in [
        *kept,
        "imap-login: ",
        "stored mail into mailbox 'Junk'",
        "auth-worker",
        "]: < EHLO",
        "]: > 250",
    ]:
        line = SESSION_ENDS[0].replace("Logged out", "Logged out " + mark).encode() + b"\n"
        assert _assert_scan_agrees(line) is not PASSED_OVER, mark
        assert _stores_nothing(line) == (mark not in kept), mark


def test_every_mark_the_ingest_reads_dovecots_lines_by_stops_the_scan() -> None:
    # The scan's marks are its own copy: each of the ingest's must hold one, or the scan would
    # pass over lines the ingest reads.
    marks = _postfix_lines.DOVECOT_MARKS
    ingests = [
        _JUNK_MARK.decode(),
        *(marker.decode() for marker in _MEANINGFUL),
        *(f"]: {direction} " for direction in "<>"),  # _DIALOGUE_MARK
        *(f"{process}: " for process in SERVICE_OF_PROCESS),  # dovecot._PREFIX's login processes
        "auth",  # what makes _read_other try parse_auth_verdict
    ]
    for mark in ingests:
        assert any(own in mark for own in marks), mark
    assert _DIALOGUE_MARK.pattern == rb"\]: [<>] "  # what the marks above spell out


# Pieces of the marks the ingest reads a Dovecot line by, for edits to put together or break.
DOVECOT_MARKS = [
    "-login: ",
    "Login: ",
    "auth",
    "Junk'",
    "]: <",
    "]: > ",
    "NOQUEUE:",
    " to=<",
    " status=",
    "imap-login",
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SESSION_ENDS + LOGINS[:2]), st.data())
def test_edited_dovecot_lines_give_the_same_answer(line: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(line)))
        end = data.draw(st.integers(start, min(len(line), start + 6)))
        line = line[:start] + data.draw(st.sampled_from(["", *DOVECOT_MARKS]) | LOGIN_NOISE) + line[end:]
    _assert_scan_agrees(line.encode() + b"\n")
