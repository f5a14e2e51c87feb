"""A failed login says why, in Dovecot's words: its auth verdict (auth_verbose) comes before the
failure, in its own log for IMAP/POP3 (matched by session) and for Postfix's SASL logins in
another file (matched by login and address), possibly read a poll later or after the failure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.logs.dovecot import AuthVerdicts, LoginEvent, parse_auth_verdict
from controlplane.logs.ingest import ingest_file
from controlplane.models import AuthEvent, UnparsedLogLine
from controlplane.runners.follower import LogFollower
from controlplane.runtime import Installation
from controlplane.settings import Settings

REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
WORKER = "auth-worker(29679): Info: conn unix:auth-worker (pid=29678,uid=103): auth-worker<2>: "


def _verdict(clock: str, user: str, ip: str, text: str, session: str | None = None) -> str:
    where = f"{user},{ip}" + (f",<{session}>" if session else "")
    return f"2026-11-24 {clock} {WORKER}sql({where}): {text}\n"


def _imap_failure(clock: str, user: str, ip: str, session: str) -> str:
    return (
        f"2026-11-24 {clock} imap-login: Info: Disconnected: Aborted login by logging out (auth failed, "
        f"1 attempts in 2 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=127.0.0.1, TLS, session=<{session}>\n"
    )


def _smtp_failure(clock: str, user: str, ip: str) -> str:
    return (
        f"Nov 24 {clock} mail postfix/submission/smtpd[9560]: warning: unknown[{ip}]: "
        f"SASL PLAIN authentication failed: (reason unavailable), sasl_username={user}\n"
    )


def _reasons(db: Session) -> list[tuple[str, str, str]]:
    rows = db.scalars(select(AuthEvent).order_by(AuthEvent.time, AuthEvent.id)).all()
    return [(row.service, row.login, row.reason) for row in rows]


def test_verdict_lines_are_read_in_plain_words_and_never_keep_their_text() -> None:
    mismatch = parse_auth_verdict(
        _verdict("00:00:01", "alice@a.test", "192.0.2.1", "Password mismatch", "oGD24dph"), REFERENCE
    )
    assert mismatch is not None
    assert (mismatch.user, mismatch.client_ip, mismatch.session, mismatch.reason) == (
        "alice@a.test",
        "192.0.2.1",
        "oGD24dph",
        "wrong password",
    )
    unknown = parse_auth_verdict(_verdict("00:00:01", "ghost@a.test", "192.0.2.1", "unknown user"), REFERENCE)
    assert unknown is not None and (unknown.session, unknown.reason) == ("", "unknown or disabled mailbox")
    # With auth_verbose_passwords the line would hold the password: only the reason is kept.
    leaky = parse_auth_verdict(
        _verdict("00:00:01", "alice@a.test", "192.0.2.1", "Password mismatch (given password: hunter2)"),
        REFERENCE,
    )
    assert leaky is not None and "hunter2" not in repr(leaky)
    syslog = parse_auth_verdict(
        "Nov 24 00:00:01 mail dovecot: auth: passwd-file(bob@a.test,192.0.2.7): unknown user", REFERENCE
    )
    assert syslog is not None and (syslog.user, syslog.reason) == (
        "bob@a.test",
        "unknown or disabled mailbox",
    )
    assert (
        parse_auth_verdict(_verdict("00:00:01", "a@a.test", "192.0.2.1", "Some new message"), REFERENCE)
        is None
    )
    assert parse_auth_verdict(_imap_failure("00:00:01", "a@a.test", "192.0.2.1", "s1"), REFERENCE) is None


def test_imap_failures_take_the_verdict_of_their_own_session(db: Session, tmp_path: Path) -> None:
    log = tmp_path / "dovecot.log"
    log.write_text(
        _verdict("00:00:01", "alice@a.test", "192.0.2.1", "Password mismatch", "s1")
        + _verdict("00:00:01", "ghost@a.test", "192.0.2.1", "unknown user", "s2")
        # Finished in the other order: the session, not the order, says which is which.
        + _imap_failure("00:00:03", "ghost@a.test", "192.0.2.1", "s2")
        + _imap_failure("00:00:03", "alice@a.test", "192.0.2.1", "s1")
        # No verdict read for this session (auth_verbose off then): the general reason stays.
        + _imap_failure("00:00:04", "alice@a.test", "192.0.2.1", "s3")
    )
    result = ingest_file(db, log, reference=REFERENCE)
    assert _reasons(db) == [
        ("imap", "ghost@a.test", "unknown or disabled mailbox"),
        ("imap", "alice@a.test", "wrong password"),
        ("imap", "alice@a.test", "wrong password or unknown user"),
    ]
    assert result.unparsed == 0 and db.scalars(select(UnparsedLogLine)).all() == []


def test_a_verdict_read_one_poll_before_its_failure_still_explains_it(
    settings: Settings, installation: Installation, db: Session
) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / "dovecot.log"
    follower = LogFollower(installation, [log])
    try:
        log.write_text(_verdict("00:00:01", "alice@a.test", "192.0.2.1", "Password mismatch", "s1"))
        follower.poll()
        with log.open("a") as more:  # two seconds later: Dovecot's auth failure delay
            more.write(_imap_failure("00:00:03", "alice@a.test", "192.0.2.1", "s1"))
        follower.poll()
    finally:
        follower.close()
    assert _reasons(db) == [("imap", "alice@a.test", "wrong password")]


@pytest.mark.parametrize("dovecot_first", [True, False], ids=["dovecot-read-first", "postfix-read-first"])
def test_smtp_failures_take_dovecot_verdicts_from_the_other_file_in_either_order(
    db: Session, tmp_path: Path, dovecot_first: bool
) -> None:
    dovecot_log, postfix_log = tmp_path / "dovecot.log", tmp_path / "postfix.log"
    dovecot_log.write_text(
        _verdict("00:00:01", "alice@a.test", "198.51.100.9", "Password mismatch")
        + _verdict("00:00:02", "alice@a.test", "198.51.100.9", "unknown user")  # (a contrived second)
        # The webmail names its own session: never the reason for a mail client's failure.
        + _verdict("00:00:05", "bob@a.test", "198.51.100.9", "unknown user", "webmail-0a1b2c")
    )
    postfix_log.write_text(
        _smtp_failure("00:00:01", "alice@a.test", "198.51.100.9")
        + _smtp_failure("00:00:02", "alice@a.test", "198.51.100.9")
        + _smtp_failure("00:00:05", "bob@a.test", "198.51.100.9")
        # Another address: someone else's verdict does not explain it.
        + _smtp_failure("00:00:06", "alice@a.test", "203.0.113.4")
    )
    verdicts = AuthVerdicts()
    first, second = (dovecot_log, postfix_log) if dovecot_first else (postfix_log, dovecot_log)
    ingest_file(db, first, reference=REFERENCE, verdicts=verdicts)
    if not dovecot_first:  # stored with the general reason until the verdicts are read
        assert {reason for _, _, reason in _reasons(db)} == {"wrong password or unknown user"}
    ingest_file(db, second, reference=REFERENCE, verdicts=verdicts)
    assert _reasons(db) == [
        ("smtp", "alice@a.test", "wrong password"),
        ("smtp", "alice@a.test", "unknown or disabled mailbox"),
        ("smtp", "bob@a.test", "wrong password or unknown user"),
        ("smtp", "alice@a.test", "wrong password or unknown user"),
    ]


def test_a_flood_of_verdicts_stays_bounded() -> None:
    verdicts = AuthVerdicts()
    for number in range(AuthVerdicts.LIMIT + 500):
        line = _verdict("00:00:01", f"u{number}@a.test", "192.0.2.1", "unknown user")
        parsed = parse_auth_verdict(line, REFERENCE)
        assert parsed is not None
        verdicts.add(parsed)
        verdicts.add(
            parsed.__class__(parsed.time, parsed.user, parsed.client_ip, f"s{number}", parsed.reason)
        )
    assert verdicts._count == AuthVerdicts.LIMIT
    assert len(verdicts._by_session) == AuthVerdicts.LIMIT


def test_one_guessers_flood_of_unexplained_failures_stays_bounded() -> None:
    verdicts = AuthVerdicts()
    failure = LoginEvent(
        REFERENCE, "smtp", "ann@a.test", "198.51.100.9", False, "wrong password or unknown user"
    )
    for _ in range(AuthVerdicts.LIMIT + 500):
        verdicts.note_unexplained(failure)
    assert verdicts._unexplained_count == AuthVerdicts.LIMIT
    assert len(verdicts._unexplained[("ann@a.test", "198.51.100.9")]) == AuthVerdicts.LIMIT


def test_one_guessers_flood_of_verdicts_keeps_the_newest_and_still_explains() -> None:
    verdicts = AuthVerdicts()
    line = _verdict("00:00:01", "ann@a.test", "198.51.100.9", "Password mismatch")
    parsed = parse_auth_verdict(line, REFERENCE)
    assert parsed is not None
    for _ in range(AuthVerdicts.LIMIT + 500):
        verdicts.add(parsed)
    assert verdicts._count == AuthVerdicts.LIMIT
    failure = LoginEvent(
        parsed.time, "smtp", "ann@a.test", "198.51.100.9", False, "wrong password or unknown user"
    )
    assert verdicts.reason_for(failure) == "wrong password"
    assert verdicts._count == AuthVerdicts.LIMIT - 1


def test_a_late_verdict_explains_the_failure_after_it_and_drops_the_older_ones() -> None:
    """Postfix's failures may be read before Dovecot's verdicts (another file): a verdict takes
    the first failure not older than itself; failures older than it can be explained by no later
    verdict and are dropped, so a long-running guesser's pile never makes this slow."""
    verdicts = AuthVerdicts()
    parsed = parse_auth_verdict(
        _verdict("00:16:00", "ann@a.test", "198.51.100.9", "Password mismatch"), REFERENCE
    )
    start = parsed.time - dt.timedelta(seconds=960)
    for second in range(0, 1000):
        verdicts.note_unexplained(
            LoginEvent(start + dt.timedelta(seconds=second), "smtp", "ann@a.test", "198.51.100.9", False,
                       "wrong password or unknown user")
        )  # fmt: skip
    explained = verdicts.take_unexplained(parsed)
    assert explained is not None and explained.time == start + dt.timedelta(seconds=960)
    assert verdicts._unexplained_count == 39
    # A verdict for which no failure is waiting within its window explains nothing.
    late = parse_auth_verdict(
        _verdict("00:30:00", "ann@a.test", "198.51.100.9", "Password mismatch"), REFERENCE
    )
    assert verdicts.take_unexplained(late) is None
    assert verdicts._unexplained_count == 0 and not verdicts._unexplained
