"""rspamd's verdict lines joined to Postfix's transactions by queue ID, in either reading order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.logs.dovecot import AuthVerdicts
from controlplane.logs.ingest import ingest_file
from controlplane.logs.rspamd import parse_verdict_line, verdict_words
from controlplane.models import MailTransaction, UnparsedLogLine
from controlplane.services import mail_logs
from controlplane.services.scope import OPERATOR

REFERENCE = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)

REJECTED_VERDICT = (
    "2026-12-05 07:58:22 #12812(rspamd_proxy) <33153e>; proxy; rspamd_task_write_log: letterhead verdict: "
    'qid=<4jhLMf3jKjzJDhR> action=<reject> score=<16.20/nan> forced=<reject "Message refused as spam"; '
    "score=nan (set by letterhead)> symbols=<RBL_SPAMHAUS_SBL(8.00){192.0.2.7:from;},FORGED_SENDER(3.70){},"
    "MISSING_MID(2.50){},HFILTER_HOSTNAME_UNKNOWN(2.10){},MIME_GOOD(-0.10){text/plain;},ARC_NA(0.00){}>"
)
REJECTED_POSTFIX = [
    "Dec 05 07:58:22 mail postfix/smtpd[12901]: connect from spam.example[192.0.2.7]",
    "Dec 05 07:58:22 mail postfix/smtpd[12901]: 4jhLMf3jKjzJDhR: client=spam.example[192.0.2.7]",
    "Dec 05 07:58:22 mail postfix/cleanup[12908]: 4jhLMf3jKjzJDhR: message-id=<spam-1@spam.example>",
    "Dec 05 07:58:22 mail postfix/cleanup[12908]: 4jhLMf3jKjzJDhR: milter-reject: END-OF-MESSAGE from "
    "spam.example[192.0.2.7]: 5.7.1 Message refused as spam; from=<x@spam.example> to=<alice@a.test> "
    "proto=ESMTP helo=<spam.example>",
]
DELIVERED_VERDICT = (
    "2026-12-05 08:00:01 #12812(rspamd_proxy) <5eb9dc>; proxy; rspamd_task_write_log: letterhead verdict: "
    "qid=<4jhLNP6C7NzJDbv> action=<no action> score=<7.10/nan> symbols=<MISSING_MID(2.50){},"
    "HFILTER_HOSTNAME_UNKNOWN(2.50){},MISSING_DATE(1.00){},RDNS_NONE(1.00){},MIME_GOOD(-0.10){text/plain;}>"
)
DELIVERED_POSTFIX = [
    "Dec 05 08:00:01 mail postfix/smtpd[12901]: 4jhLNP6C7NzJDbv: client=client.example[192.0.2.10]",
    "Dec 05 08:00:01 mail postfix/cleanup[12908]: 4jhLNP6C7NzJDbv: message-id=<ham-1@client.example>",
    "Dec 05 08:00:01 mail postfix/qmgr[12000]: 4jhLNP6C7NzJDbv: from=<bob@client.example>, size=812, nrcpt=1 "
    "(queue active)",
    "Dec 05 08:00:01 mail postfix/lmtp[12910]: 4jhLNP6C7NzJDbv: to=<alice@a.test>, relay=mail[/run/lmtp], "
    "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <alice@a.test> Kx Saved)",
    "Dec 05 08:00:01 mail postfix/qmgr[12000]: 4jhLNP6C7NzJDbv: removed",
]
RSPAMD_NOISE = [
    "2026-12-05 07:58:22 #12812(rspamd_proxy) <33153e>; proxy; rspamd_message_parse: loaded message; "
    "id: <spam-1@spam.example>; queue-id: <4jhLMf3jKjzJDhR>; size: 326",
    "2026-12-05 07:58:20 #12810(main) <f30bd4>; main; main: rspamd 3.4 is loading configuration",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _ingest(db: Session, path: Path) -> None:
    ingest_file(db, path, reference=REFERENCE)


def _transaction(db: Session, message_id: str) -> MailTransaction:
    return db.scalars(select(MailTransaction).where(MailTransaction.message_id == message_id)).one()


def test_a_verdict_line_is_parsed_with_its_main_symbols() -> None:
    verdict = parse_verdict_line(REJECTED_VERDICT)
    assert verdict is not None
    assert (verdict.queue_id, verdict.action, verdict.score, verdict.forced_by) == (
        "4jhLMf3jKjzJDhR", "reject", 16.2, "letterhead",
    )  # fmt: skip
    assert [s.name for s in verdict.main_symbols()] == ["RBL_SPAMHAUS_SBL", "FORGED_SENDER", "MISSING_MID"]
    assert verdict.symbols[0].options == ("192.0.2.7:from",)


def test_gtube_is_named_although_it_adds_no_score() -> None:
    line = (
        "2026-12-05 07:59:02 #13493(rspamd_proxy) <548d62>; proxy; rspamd_task_write_log: letterhead verdict: "
        'qid=<4jhLNQ01shzJDX1> action=<reject> score=<0.00/nan> forced=<reject "Gtube pattern"; score=nan '
        "(set by GTUBE)> symbols=<GTUBE(0.00){}>"
    )
    verdict = parse_verdict_line(line)
    assert verdict is not None
    assert verdict_words(verdict.action, verdict.score, verdict.stored_symbols()) == (
        "rejected as spam (the GTUBE test pattern)"
    )


def test_a_message_an_allow_list_let_through_says_so_first() -> None:
    line = (
        "2026-12-05 07:59:02 #13493(rspamd_proxy) <548d62>; proxy; rspamd_task_write_log: letterhead verdict: "
        "qid=<4jhLNQ01shzJDX2> action=<no action> score=<2.40/nan> symbols=<SUBJ_ALL_CAPS(1.50){},"
        "FORGED_RECIPIENTS(0.90){},LETTERHEAD_ALLOWED_SENDER(0.00){}>"
    )
    verdict = parse_verdict_line(line)
    assert verdict is not None
    assert verdict_words(verdict.action, verdict.score, verdict.stored_symbols()) == (
        "passed the spam filter (score 2.4: not refused: a recipient allows the sender, a subject in capitals, "
        "forged recipients)"
    )


def test_words_name_the_reasons_that_fit() -> None:
    symbols = "RBL_SPAMHAUS_SBL(8.00),FORGED_SENDER(3.70),MISSING_MID(2.50)"
    assert verdict_words("reject", 16.2, symbols) == (
        "rejected as spam (score 16.2: sender listed in Spamhaus, forged sender, no Message-ID header)"
    )
    short = verdict_words("reject", 16.2, symbols, limit=60)
    assert short == "rejected as spam (score 16.2: sender listed in Spamhaus)"
    assert verdict_words("no action", 7.1, "", junk=True) == "filed as junk (score 7.1)"
    assert verdict_words("no action", 0.4, "") == "passed the spam filter (score 0.4)"
    assert verdict_words("", None, "") == ""


@pytest.mark.parametrize("rspamd_first", [True, False])
def test_a_rejection_gets_the_verdict_in_words_whichever_log_is_read_first(
    db: Session, tmp_path: Path, rspamd_first: bool
) -> None:
    rspamd_log = _write(tmp_path / "rspamd.log", [*RSPAMD_NOISE, REJECTED_VERDICT, DELIVERED_VERDICT])
    postfix_log = _write(tmp_path / "postfix.log", [*REJECTED_POSTFIX, *DELIVERED_POSTFIX])
    for path in (rspamd_log, postfix_log) if rspamd_first else (postfix_log, rspamd_log):
        _ingest(db, path)

    rejected = _transaction(db, "spam-1@spam.example")
    assert (rejected.spam_action, rejected.spam_score) == ("reject", 16.2)
    (recipient,) = rejected.recipients
    assert (recipient.recipient, recipient.outcome, recipient.status_code) == (
        "alice@a.test",
        "refused",
        "5.7.1",
    )
    assert recipient.reason == (
        "rejected as spam (score 16.2: sender listed in Spamhaus, forged sender, no Message-ID header)"
    )
    delivered = _transaction(db, "ham-1@client.example")
    assert (delivered.spam_action, delivered.spam_score) == ("no action", 7.1)
    assert [r.outcome for r in delivered.recipients] == ["delivered"]
    # One transaction per message, whichever order: the verdict joined Postfix's rows.
    assert db.scalar(select(func.count()).select_from(MailTransaction)) == 2
    assert db.scalar(select(func.count()).select_from(UnparsedLogLine)) == 0


def test_the_viewers_show_the_verdict(db: Session, tmp_path: Path) -> None:
    _ingest(db, _write(tmp_path / "rspamd.log", [REJECTED_VERDICT]))
    _ingest(db, _write(tmp_path / "postfix.log", REJECTED_POSTFIX))
    (view,), _ = mail_logs.search_transactions(db, OPERATOR, on=dt.date(2026, 12, 5))
    assert view.spam_verdict.startswith("rejected as spam (score 16.2: sender listed in Spamhaus")


def test_a_garbled_verdict_line_is_kept_for_a_person(db: Session, tmp_path: Path) -> None:
    garbled = REJECTED_VERDICT.replace("action=<reject>", "action=reject")
    _ingest(db, _write(tmp_path / "rspamd.log", [garbled]))
    assert db.scalars(select(UnparsedLogLine.line)).one() == garbled


@pytest.mark.parametrize(
    "order",
    [
        ("dovecot.log", "rspamd.log", "postfix.log"),
        # Each daemon's log process writes its own file: the follower can read Postfix's delivery
        # in one poll and Dovecot's filing, written a moment later, in the next.
        ("rspamd.log", "postfix.log", "dovecot.log"),
    ],
    ids=["filing-read-first", "delivery-read-first"],
)
def test_a_delivery_dovecot_filed_into_junk_says_so_with_the_score(
    db: Session, tmp_path: Path, order: tuple[str, ...]
) -> None:
    dovecot_log = _write(
        tmp_path / "dovecot.log",
        [
            "2026-12-05 08:00:01 lmtp(alice@a.test)<5293><6rHwEwXPE2utFAAAg+zDdQ>: Info: sieve: "
            "msgid=<ham-1@client.example>: fileinto action: stored mail into mailbox 'Junk'",
            "2026-12-05 08:00:01 lmtp(bob@a.test)<5293><7rHwEwXPE2utFAAAg+zDdQ>: Info: sieve: "
            "msgid=<ham-1@client.example>: stored mail into mailbox 'INBOX'",
        ],
    )
    delivered_twice = [
        *DELIVERED_POSTFIX[:3],
        "Dec 05 08:00:01 mail postfix/lmtp[12910]: 4jhLNP6C7NzJDbv: to=<alice@a.test>, relay=mail[/run/lmtp], "
        "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <alice@a.test> 6rHwEwXPE2utFAAAg+zDdQ Saved)",
        "Dec 05 08:00:01 mail postfix/lmtp[12910]: 4jhLNP6C7NzJDbv: to=<bob@a.test>, relay=mail[/run/lmtp], "
        "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <bob@a.test> 7rHwEwXPE2utFAAAg+zDdQ Saved)",
        DELIVERED_POSTFIX[-1],
    ]
    logs = {
        "dovecot.log": dovecot_log,
        "rspamd.log": _write(tmp_path / "rspamd.log", [DELIVERED_VERDICT]),
        "postfix.log": _write(tmp_path / "postfix.log", delivered_twice),
    }
    verdicts = AuthVerdicts()
    for name in order:
        ingest_file(db, logs[name], reference=REFERENCE, verdicts=verdicts)
    transaction = _transaction(db, "ham-1@client.example")
    reasons = {r.recipient: (r.outcome, r.reason) for r in transaction.recipients}
    assert reasons == {
        "alice@a.test": (
            "delivered",
            "filed as junk (score 7.1: the sending server has no host name, no Message-ID header, no Date header)",
        ),
        "bob@a.test": ("delivered", ""),
    }
    (view,), _ = mail_logs.search_transactions(db, OPERATOR, "alice@a.test")
    assert view.spam_verdict.startswith("filed as junk (score 7.1")
