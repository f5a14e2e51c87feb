"""Mail log ingestion against pflogsumm on the same file, and search by address at two sizes.

1. A deterministic generator (seed 1) writes a Postfix 3.7 log of 1,000,000 lines (100,000 with
   `--quick`) spanning 7 days, in the shape Debian's syslog (or Postfix's `maillog_file`) writes:
   smtpd connect and disconnect, `client=` (with `sasl_username` on submission), cleanup
   message-ids, qmgr `from=/size=`, LMTP deliveries to hosted mailboxes (some by alias fan-out
   with `orig_to`), SMTP relays out, NOQUEUE refusals (unknown user, relay denied, mailbox full,
   not logged in), deferrals retried with Postfix's backoff until sent, bounced or expired after
   5 days, bounces with their non-delivery notification, SASL failures, noise (anvil, lost
   connections, warnings) and, as in a syslog `mail.log`, Dovecot's IMAP and POP3 logins. About
   24,000 distinct addresses (4,000 hosted mailboxes, 3,000 remote people, refused guesses)
   across 40 hosted and 400 remote domains. Lines of concurrent
   messages interleave in time order, as a busy server logs them. `--dialogue` adds to each
   inbound port-25 message the SMTP dialogue and smtpd trace Letterhead's port 25 logs
   (debug_peer_level=1), replayed from the real session in tests/fixtures/logs/dialogue.log.
2. On that file, in one run: a plain read of its lines (the limit for any reader in Python),
   `pflogsumm` (Debian package), and `letterhead logs ingest FILE` as an operator runs it (a
   child process on a fresh SQLite database in a temporary state directory whose hosted domains
   are made through the services). Lines per second each; the ingest's peak memory is the
   child's ru_maxrss. The database's totals (received, delivered, deferred with deferrals,
   bounced, rejected) are compared with pflogsumm's grand totals and the logins with what the
   generator wrote; any difference fails the run.
3. Search latency: `services.mail_logs.search_transactions` (what the panel, the API and
   `letterhead logs search` call), by address for a full admin of the tenant, on databases of
   10,000 and 1,000,000 transactions (100,000 with `--quick`) filled with rows as the ingester
   writes them. Addresses are drawn so each matches tens of transactions at both sizes. The
   databases carry no planner statistics, as Letterhead's own; `--analyze` runs ANALYZE first.

    .venv/bin/python bench/logs.py [--quick] [--lines N] [--dialogue] [--no-search] [--analyze] [--keep DIR]

The last line is the headline: `ratio=<ingest lines/s over pflogsumm's lines/s>`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text  # noqa: E402

from controlplane.logs.store import MailLogStore  # noqa: E402
from controlplane.models import GIB, Tenant  # noqa: E402
from controlplane.runtime import Installation  # noqa: E402
from controlplane.schema import upgrade_database  # noqa: E402
from controlplane.services import domains, mail_logs, scope, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import load_settings  # noqa: E402

LETTERHEAD = ROOT / ".venv" / "bin" / "letterhead"
PFLOGSUMM = "/usr/sbin/pflogsumm"
SEED = 1
START = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=7)
HOST = "mail"
HOSTED_DOMAINS = 40
REMOTE_DOMAINS = 400
MAILBOXES_PER_DOMAIN = 100
REMOTE_PEOPLE = 3000
MAX_MEMORY_MB = 300

_CONSONANTS, _VOWELS = "bdfghklmnprstvz", "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]
GIVEN = (
    "anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas",
    "karin", "lukas", "maria", "nils", "olga", "paul", "rosa", "simon", "tara", "victor",
    "amir", "bianca", "chen", "dana", "eric", "fatima", "georg", "ivan", "julia", "lena",
)  # fmt: skip
# Long queue IDs (enable_long_queue_ids = yes) use this alphabet: digits and consonants.
_QUEUE_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _word(index: int, syllables: int) -> str:
    parts = []
    for _ in range(syllables):
        index, rest = divmod(index, len(_SYLLABLES))
        parts.append(_SYLLABLES[rest])
    return "".join(parts)


def hosted_domain(index: int) -> str:
    return f"{_word(index * 37 + 11, 2)}-{('mail', 'office', 'studio', 'shop')[index % 4]}.example"


def hosted_address(domain_index: int, person: int) -> str:
    family = _word(person * 7919 + domain_index * 131, 3)
    return f"{GIVEN[(person + domain_index) % len(GIVEN)]}.{family}@{hosted_domain(domain_index)}"


def remote_domain(index: int) -> str:
    return f"{_word(index * 53 + 7, 2)}.{('com', 'net', 'org', 'de', 'fr', 'io')[index % 6]}"


DIALOGUE_FIXTURE = ROOT / "tests" / "fixtures" / "logs" / "dialogue.log"


def dialogue_template() -> tuple[list[str], list[str]]:
    """What Letterhead's port-25 smtpd logs around one accepted message with its dialogue
    (debug_peer_level=1): the trace before and after its `client=` line, from a real Postfix
    3.7 session (tests/fixtures/logs/dialogue.log), as "smtpd[PID]: ..." messages."""
    before: list[str] = []
    after: list[str] = []
    part = before
    for line in DIALOGUE_FIXTURE.read_text().splitlines():
        if "postfix/smtpd[8288]: " not in line:
            continue
        message = line.split("postfix/smtpd[8288]: ", 1)[1]
        if message.startswith("connect from"):
            continue
        if ": client=" in message:
            part = after
            continue
        if message.startswith("< localhost[127.0.0.1]: mail FROM:<x@elsewhere.test> size=21"):
            break  # the fixture's second message (a refused one) follows
        part.append(message)
    return before, after


class Stamp:
    """Syslog time stamps, cached per second: the generator writes several lines per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, seconds: float) -> str:
        whole = int(seconds)
        if whole != self._second:
            moment = START + dt.timedelta(seconds=whole)
            self._second = whole
            self._text = f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S} {HOST} "
        return self._text


class LogGenerator:
    """Messages as Postfix logs them; each message is a generator of (seconds, line, tag) in time order."""

    def __init__(self, seed: int, dialogue: bool = False) -> None:
        self.random = random.Random(seed)
        # Letterhead's port 25 logs each SMTP dialogue, with smtpd's trace around it.
        self.dialogue = dialogue_template() if dialogue else None
        self._queue_counter = 0x5F3A00000
        self._pid = 1000
        self.hosted = [
            [hosted_address(d, p) for p in range(MAILBOXES_PER_DOMAIN)] for d in range(HOSTED_DOMAINS)
        ]
        self.remote = [
            f"{GIVEN[p % len(GIVEN)]}{p // len(GIVEN)}@{remote_domain(p % REMOTE_DOMAINS)}"
            for p in range(REMOTE_PEOPLE)
        ]

    # --- small pieces -------------------------------------------------------------------------

    def queue_id(self) -> str:
        self._queue_counter += self.random.randrange(1, 5000)
        value, text = self._queue_counter, []
        while value:
            value, rest = divmod(value, len(_QUEUE_ALPHABET))
            text.append(_QUEUE_ALPHABET[rest])
        return "4" + "".join(reversed(text)) + "z" + _QUEUE_ALPHABET[self.random.randrange(51)] * 2 + "K"

    def pid(self) -> int:
        self._pid = self._pid + self.random.randrange(1, 40) if self._pid < 60000 else 1000
        return self._pid

    def a_hosted(self) -> str:
        domain = self.hosted[min(int(self.random.paretovariate(1.2)) - 1, HOSTED_DOMAINS - 1)]
        return domain[min(int(self.random.paretovariate(0.9)) - 1, MAILBOXES_PER_DOMAIN - 1)]

    def a_remote(self) -> str:
        return self.remote[self.random.randrange(REMOTE_PEOPLE)]

    def client(self) -> tuple[str, str]:
        r = self.random
        ip = f"{r.choice((192, 198, 203, 185, 91, 46))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        if r.random() < 0.3:
            return "unknown", ip
        return f"mx{r.randrange(1, 4)}.{remote_domain(r.randrange(REMOTE_DOMAINS))}", ip

    def message_id(self, t: float, domain: str) -> str:
        return f"{int(t * 1000):x}.{self.random.getrandbits(40):010x}@{domain}"

    @staticmethod
    def _delays(total: float) -> str:
        a = round(total * 0.3, 2)
        return f"delay={total:.2g}, delays={a}/0.01/{round(total * 0.2, 2)}/{round(total * 0.49, 2)}"

    # --- sessions -----------------------------------------------------------------------------

    def session(self, t: float) -> Iterator[tuple[float, str, str]]:
        draw = self.random.random()
        if draw < 0.50:
            return self.inbound(t)
        if draw < 0.62:
            return self.refused(t)
        if draw < 0.80:
            return self.submission(t)
        if draw < 0.97:
            return self.mailbox_login(t)
        if draw < 0.985:
            return self.sasl_failure(t)
        return self.noise(t)

    def _smtpd_open(self, t: float, name: str, ip: str, service: str = "smtpd"):
        pid = self.pid()
        return (
            pid,
            f"postfix/{service}[{pid}]: ",
            (t, f"postfix/{service}[{pid}]: connect from {name}[{ip}]", ""),
        )

    def inbound(self, t: float) -> Iterator[tuple[float, str, str]]:
        """A remote server delivers to one or more hosted recipients (some through an alias)."""
        r = self.random
        name, ip = self.client()
        pid, smtpd, opening = self._smtpd_open(t, name, ip)
        yield opening
        sender = self.a_remote()
        queue_id = self.queue_id()
        t += r.uniform(0.05, 0.4)
        trace_after: list[str] = []
        if self.dialogue:
            first = f"{self.a_hosted()}"
            swaps = (
                ("localhost[127.0.0.1]", f"{name}[{ip}]"), ("x@elsewhere.test", sender), ("r@p.test", first),
                ("p.test", first.split("@")[1]), ("4jZVKg4ZFCzJJQ3", queue_id), ("client.example", name),
                ("localhost", name), ("127.0.0.1", ip),
            )  # fmt: skip
            before, trace_after = ([_swap(line, swaps) for line in part] for part in self.dialogue)
            for line in before:
                yield t, f"{smtpd}{line}", ""
        yield t, f"{smtpd}{queue_id}: client={name}[{ip}]", "received"
        for line in trace_after:
            yield t, f"{smtpd}{line}", ""
        yield (
            t + 0.01,
            f"postfix/cleanup[{self.pid()}]: {queue_id}: message-id=<{self.message_id(t, sender.split('@')[1])}>",
            "",
        )
        if r.random() < 0.12:
            # An alias: one address the sender wrote, three mailboxes of the same domain.
            domain = r.randrange(HOSTED_DOMAINS)
            alias = f"{('info', 'sales', 'team', 'support')[r.randrange(4)]}@{hosted_domain(domain)}"
            targets = [(m, alias) for m in r.sample(self.hosted[domain], 3)]
        else:
            targets = [(self.a_hosted(), "") for _ in range(1 if r.random() < 0.85 else r.randrange(2, 4))]
            targets = list(dict.fromkeys(targets))
        size = int(r.lognormvariate(9.5, 1.2)) + 400
        t += r.uniform(0.05, 0.3)
        yield (
            t,
            f"postfix/qmgr[900]: {queue_id}: from=<{sender}>, size={size}, nrcpt={len(targets)} (queue active)",
            "",
        )
        yield (
            t + r.uniform(0.1, 1.0),
            f"{smtpd}disconnect from {name}[{ip}] ehlo=1 mail=1 rcpt={len(targets)} data=1 quit=1 commands={4 + len(targets)}",
            "",
        )
        lmtp = self.pid()
        pending = []
        for recipient, orig_to in targets:
            t += r.uniform(0.01, 0.2)
            orig = f"orig_to=<{orig_to}>, " if orig_to else ""
            head = f"postfix/lmtp[{lmtp}]: {queue_id}: to=<{recipient}>, {orig}relay={HOST}[private/dovecot-lmtp], "
            draw = r.random()
            if draw < 0.02:
                # quota_full_tempfail: a full mailbox defers, and is usually emptied in time.
                yield (
                    t,
                    f"{head}{self._delays(0.1)}, dsn=4.2.2, status=deferred (host {HOST}[private/dovecot-lmtp] said: 452 4.2.2 <{recipient}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))",
                    "deferred",
                )
                pending.append((head, recipient))
            elif draw < 0.03:
                yield (
                    t,
                    f"{head}{self._delays(0.1)}, dsn=5.2.2, status=bounced (host {HOST}[private/dovecot-lmtp] said: 552 5.2.2 <{recipient}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))",
                    "bounced",
                )
                if sender:
                    yield from self._notification(t, queue_id, sender, local=False)
            else:
                yield (
                    t,
                    f"{head}{self._delays(r.uniform(0.05, 0.5))}, dsn=2.0.0, status=sent (250 2.0.0 <{recipient}> {r.getrandbits(64):016x} Saved)",
                    "sent",
                )
        for head, recipient in pending:
            t += 300 * r.choice((1, 2, 3))
            yield (
                t,
                f"postfix/lmtp[{self.pid()}]: {head.split(': ', 1)[1]}{self._delays(t)}, dsn=2.0.0, status=sent (250 2.0.0 <{recipient}> {r.getrandbits(64):016x} Saved)",
                "sent",
            )
        yield t + 0.001, f"postfix/qmgr[900]: {queue_id}: removed", ""

    def refused(self, t: float) -> Iterator[tuple[float, str, str]]:
        """NOQUEUE: refused at RCPT before any queue ID."""
        r = self.random
        name, ip = self.client()
        pid, smtpd, opening = self._smtpd_open(t, name, ip)
        yield opening
        sender, helo = self.a_remote(), name if name != "unknown" else f"[{ip}]"
        draw = r.random()
        if draw < 0.55:
            domain = hosted_domain(r.randrange(HOSTED_DOMAINS))
            recipient = f"{_word(r.randrange(5000), 2)}@{domain}"
            reply = (
                f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in virtual mailbox table"
            )
        elif draw < 0.85:
            recipient = f"{_word(r.randrange(900), 2)}@{remote_domain(r.randrange(REMOTE_DOMAINS))}"
            reply = f"554 5.7.1 <{recipient}>: Relay access denied"
        elif draw < 0.95:
            recipient = self.a_hosted()
            reply = f"552 5.2.2 <{recipient}>: Recipient address rejected: Mailbox is full"
        else:
            recipient, sender = self.a_hosted(), self.a_hosted()
            reply = f"554 5.7.1 <{recipient}>: Sender address rejected: not logged in"
        t += r.uniform(0.1, 0.6)
        yield (
            t,
            f"{smtpd}NOQUEUE: reject: RCPT from {name}[{ip}]: {reply}; from=<{sender}> to=<{recipient}> proto=ESMTP helo=<{helo}>",
            "rejected",
        )
        yield (
            t + r.uniform(0.01, 0.3),
            f"{smtpd}disconnect from {name}[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
            "",
        )

    def submission(self, t: float) -> Iterator[tuple[float, str, str]]:
        """A hosted user sends through submission: relayed out (maybe deferred, bounced, expired) or local."""
        r = self.random
        sender = self.a_hosted()
        ip = f"{r.choice((84, 87, 93, 176))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        name = f"p{r.getrandbits(24):06x}.dip0.t-ipconnect.de" if r.random() < 0.6 else "unknown"
        pid, smtpd, opening = self._smtpd_open(t, name, ip, "submission/smtpd")
        yield opening
        queue_id = self.queue_id()
        t += r.uniform(0.1, 0.5)
        yield (
            t,
            f"{smtpd}{queue_id}: client={name}[{ip}], sasl_method=PLAIN, sasl_username={sender}",
            "received login-ok",
        )
        yield (
            t + 0.01,
            f"postfix/cleanup[{self.pid()}]: {queue_id}: message-id=<{self.message_id(t, sender.split('@')[1])}>",
            "",
        )
        recipients = [
            self.a_remote() if r.random() < 0.8 else self.a_hosted()
            for _ in range(1 if r.random() < 0.8 else r.randrange(2, 5))
        ]
        recipients = list(dict.fromkeys(recipients))
        size = int(r.lognormvariate(9.0, 1.5)) + 400
        t += r.uniform(0.05, 0.2)
        yield (
            t,
            f"postfix/qmgr[900]: {queue_id}: from=<{sender}>, size={size}, nrcpt={len(recipients)} (queue active)",
            "",
        )
        yield (
            t + r.uniform(0.1, 0.4),
            f"{smtpd}disconnect from {name}[{ip}] ehlo=1 auth=1 mail=1 rcpt={len(recipients)} data=1 quit=1 commands={5 + len(recipients)}",
            "",
        )
        retry: list[tuple[str, str, str, str]] = []  # (recipient, fate, mx, its address)
        for recipient in recipients:
            t += r.uniform(0.05, 0.8)
            if recipient.split("@")[1].endswith(".example"):
                yield (
                    t,
                    f"postfix/lmtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={HOST}[private/dovecot-lmtp], {self._delays(0.2)}, dsn=2.0.0, status=sent (250 2.0.0 <{recipient}> {r.getrandbits(64):016x} Saved)",
                    "sent",
                )
                continue
            mx = f"mx.{recipient.split('@')[1]}"
            mx_ip = (
                f"{r.choice((142, 74, 64, 17))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
            )
            draw = r.random()
            if draw < 0.88:
                yield (
                    t,
                    f"postfix/smtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={mx}[{mx_ip}]:25, {self._delays(r.uniform(0.3, 3))}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {self.queue_id()[:10]})",
                    "sent",
                )
            elif draw < 0.93:
                yield (
                    t,
                    f"postfix/smtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={mx}[{mx_ip}]:25, {self._delays(0.8)}, dsn=5.1.1, status=bounced (host {mx}[{mx_ip}] said: 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in relay recipient table (in reply to RCPT TO command))",
                    "bounced",
                )
                yield from self._notification(t, queue_id, sender, local=True)
            else:
                fate = "expire" if r.random() < 0.04 else "bounce" if r.random() < 0.1 else "send"
                yield t, self._deferral(queue_id, recipient, mx, mx_ip, 1), "deferred"
                retry.append((recipient, fate, mx, mx_ip))
        # Postfix's backoff: 5 minutes doubling to at most 4000 s, until sent or 5 days old.
        first = t
        backoff, attempt = 300.0, 1
        while retry:
            t += backoff * r.uniform(0.9, 1.2)
            backoff = min(backoff * 2, 4000.0)
            attempt += 1
            if t - first > 5 * 86400:
                # maximal_queue_lifetime: whatever is still deferred goes back to the sender.
                yield (
                    t,
                    f"postfix/qmgr[900]: {queue_id}: from=<{sender}>, status=expired, returned to sender",
                    "expired",
                )
                yield from self._notification(t, queue_id, sender, local=True)
                break
            still = []
            for recipient, fate, mx, mx_ip in retry:
                if fate == "send" and r.random() < 0.5:
                    yield (
                        t,
                        f"postfix/smtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={mx}[{mx_ip}]:25, {self._delays(t - first)}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {self.queue_id()[:10]})",
                        "sent",
                    )
                elif fate == "bounce" and attempt > 2:
                    yield (
                        t,
                        f"postfix/smtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={mx}[{mx_ip}]:25, {self._delays(t - first)}, dsn=5.7.1, status=bounced (host {mx}[{mx_ip}] said: 554 5.7.1 Service unavailable; client blocked using a blocklist (in reply to RCPT TO command))",
                        "bounced",
                    )
                    yield from self._notification(t, queue_id, sender, local=True)
                else:
                    yield t, self._deferral(queue_id, recipient, mx, mx_ip, attempt), "deferred"
                    still.append((recipient, fate, mx, mx_ip))
            retry = still
        yield t + 0.001, f"postfix/qmgr[900]: {queue_id}: removed", ""

    def _deferral(self, queue_id: str, recipient: str, mx: str, mx_ip: str, attempt: int) -> str:
        if attempt % 2:
            reason = f"connect to {mx}[{mx_ip}]:25: Connection timed out"
            relay = "none"
        else:
            reason = f"host {mx}[{mx_ip}] said: 450 4.7.1 <{recipient}>: Recipient address rejected: greylisted, try again later (in reply to RCPT TO command)"
            relay = f"{mx}[{mx_ip}]:25"
        return f"postfix/smtp[{self.pid()}]: {queue_id}: to=<{recipient}>, relay={relay}, {self._delays(30)}, dsn=4.4.1, status=deferred ({reason})"

    def _notification(
        self, t: float, queue_id: str, sender: str, *, local: bool
    ) -> Iterator[tuple[float, str, str]]:
        """Postfix's non-delivery notification to the sender: a new queue ID, no client."""
        r = self.random
        notice = self.queue_id()
        t += 0.02
        yield t, f"postfix/bounce[{self.pid()}]: {queue_id}: sender non-delivery notification: {notice}", ""
        yield (
            t + 0.001,
            f"postfix/cleanup[{self.pid()}]: {notice}: message-id=<{self.message_id(t, HOST + '.example.net')}>",
            "",
        )
        yield (
            t + 0.002,
            f"postfix/qmgr[900]: {notice}: from=<>, size={r.randrange(2500, 9000)}, nrcpt=1 (queue active)",
            "",
        )
        if local:
            relay = f"relay={HOST}[private/dovecot-lmtp], {self._delays(0.1)}, dsn=2.0.0, status=sent (250 2.0.0 <{sender}> {r.getrandbits(64):016x} Saved)"
            program = "lmtp"
        else:
            domain = sender.split("@")[1]
            relay = f"relay=mx.{domain}[142.{r.randrange(256)}.{r.randrange(256)}.9]:25, {self._delays(0.6)}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {self.queue_id()[:10]})"
            program = "smtp"
        yield t + 0.2, f"postfix/{program}[{self.pid()}]: {notice}: to=<{sender}>, {relay}", "sent"
        yield t + 0.201, f"postfix/qmgr[900]: {notice}: removed", ""

    def mailbox_login(self, t: float) -> Iterator[tuple[float, str, str]]:
        """Dovecot, through the same syslog stream: IMAP or POP3 logins, a few failing."""
        r = self.random
        user = self.a_hosted()
        process = "imap-login" if r.random() < 0.85 else "pop3-login"
        ip = f"{r.choice((84, 87, 93, 176))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        session = f"{r.getrandbits(64):016x}"
        if r.random() < 0.08:
            yield (
                t,
                f"dovecot: {process}: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=10.0.0.2, TLS, session=<{session}>",
                "login-fail",
            )
            return
        pid = self.pid()
        yield (
            t,
            f"dovecot: {process}: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=10.0.0.2, mpid={pid}, TLS, session=<{session}>",
            "login-ok",
        )
        service = process.split("-")[0]
        yield (
            t + r.uniform(1, 900),
            f"dovecot: {service}({user})<{pid}><{session}>: Disconnected: Logged out in=312 out={r.randrange(500, 90000)} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
            "",
        )

    def sasl_failure(self, t: float) -> Iterator[tuple[float, str, str]]:
        name, ip = self.client()
        pid, smtpd, opening = self._smtpd_open(t, name, ip, "submission/smtpd")
        yield opening
        yield (
            t + 2,
            f"{smtpd}warning: {name}[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
            "login-fail",
        )
        yield t + 2.1, f"{smtpd}lost connection after AUTH from {name}[{ip}]", ""
        yield t + 2.1, f"{smtpd}disconnect from {name}[{ip}] ehlo=1 auth=0/1 commands=1/2", ""

    def noise(self, t: float) -> Iterator[tuple[float, str, str]]:
        r = self.random
        name, ip = self.client()
        pid, smtpd, opening = self._smtpd_open(t, name, ip)
        yield opening
        if r.random() < 0.5:
            yield (
                t + 0.5,
                f"{smtpd}warning: hostname {name} does not resolve to address {ip}: Name or service not known",
                "",
            )
        yield t + 1, f"{smtpd}lost connection after EHLO from {name}[{ip}]", ""
        yield t + 1, f"{smtpd}disconnect from {name}[{ip}] ehlo=1 commands=1", ""
        if r.random() < 0.3:
            yield (
                t + 1.2,
                f"postfix/anvil[{self.pid()}]: statistics: max connection rate 2/60s for (smtp:{ip}) at {Stamp()(t)[:15]}",
                "",
            )


def _swap(line: str, swaps: tuple[tuple[str, str], ...]) -> str:
    for old, new in swaps:
        line = line.replace(old, new)
    return line


def generate_log(path: Path, lines: int, seed: int = SEED, *, dialogue: bool = False) -> dict[str, int]:
    """Write `lines` lines of Postfix (and Dovecot) log to `path`; counts of what was written, by tag."""
    generator = LogGenerator(seed, dialogue)
    stamp = Stamp()
    # Enough sessions to fill the span: about 6 lines per session on average (130 with the
    # dialogue's trace, about 260 lines per inbound message).
    gap = SPAN.total_seconds() / (lines / (130 if dialogue else 6))
    heap: list[tuple[float, int, str, str, Iterator[tuple[float, str, str]]]] = []
    tags: dict[str, int] = {}
    sequence = 0
    clock = 0.0
    written = 0
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        while written < lines:
            clock += generator.random.expovariate(1 / gap)
            messages = generator.session(clock)
            first = next(messages)
            heapq.heappush(heap, (first[0], sequence, first[1], first[2], messages))
            sequence += 1
            while heap and heap[0][0] <= clock and written < lines:
                when, _, line, tag, messages = heapq.heappop(heap)
                out.write(f"{stamp(when)}{line}\n")
                written += 1
                for part in tag.split():
                    tags[part] = tags.get(part, 0) + 1
                following = next(messages, None)
                if following is not None:
                    heapq.heappush(
                        heap, (max(following[0], when), sequence, following[1], following[2], messages)
                    )
                    sequence += 1
    end = (START + dt.timedelta(seconds=clock)).timestamp()
    # Year-less syslog stamps are dated from the file's modification time, as with a real log.
    os.utime(path, (end + 3600, end + 3600))
    tags["seconds"] = int(clock)
    return tags


# --- the measurements -------------------------------------------------------------------------


def plain_read(path: Path) -> tuple[int, float]:
    """Lines in the file and the seconds a bare loop takes to read and decode them."""
    started = time.perf_counter()
    count = 0
    with open(path, "rb") as stream:
        for raw in stream:
            raw.decode("utf-8", errors="replace")
            count += 1
    return count, time.perf_counter() - started


PFLOGSUMM_TOTALS = ("received", "delivered", "forwarded", "deferred", "bounced", "rejected")


def run_pflogsumm(path: Path) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    done = subprocess.run([PFLOGSUMM, str(path)], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    section = done.stdout.split("Grand Totals", 1)[1].split("bytes received", 1)[0]
    totals: dict[str, int] = {}
    for line in section.splitlines():
        match = re.match(r"^\s*(\d+)([km ]?)\s+(\w+)(?:\s+\((\d+)([km ]?) deferrals\))?", line)
        if not match:
            continue
        if match[2].strip():
            raise SystemExit(f"pflogsumm rounded {match[3]} to {match[1]}{match[2]}: use fewer lines")
        totals[match[3]] = int(match[1])
        if match[4]:
            totals["deferrals"] = int(match[4])
    missing = set(PFLOGSUMM_TOTALS) - set(totals)
    if missing:
        raise SystemExit(f"pflogsumm printed no {', '.join(sorted(missing))}:\n{done.stdout[:2000]}")
    return totals, seconds


def make_state(home: Path) -> Path:
    """A state directory with a migrated database holding the tenant and its hosted domains."""
    settings = load_settings(environ={}, home=home)
    settings.database_path.parent.mkdir(parents=True)
    upgrade_database(settings.sqlalchemy_url)
    installation = Installation(settings)
    try:
        with installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Bench", storage_pool_bytes=1000 * GIB)
            for index in range(HOSTED_DOMAINS):
                domains.create_domain(
                    session,
                    OPERATOR,
                    tenant=tenant,
                    name=hosted_domain(index),
                    max_mailboxes=1000,
                    max_aliases=100,
                )
    finally:
        installation.dispose()
    return settings.database_path


def run_ingest(home: Path, path: Path) -> tuple[dict, float, float]:
    """`letterhead logs ingest FILE` in a child process: its result, seconds, peak memory in MB."""
    environment = {**os.environ, "LETTERHEAD_HOME": str(home)}
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(LETTERHEAD), "logs", "ingest", "--json", str(path)], env=environment, stdout=subprocess.PIPE
    )
    output = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"letterhead logs ingest failed ({child.returncode})")
    [result] = json.loads(output)
    return result, seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def database_totals(database: Path) -> dict[str, int]:
    """The figures pflogsumm reports, counted from what the ingest stored."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    # A recipient row is updated in place by each attempt: its deferrals are its attempts,
    # less the final one when that ended it (sent or bounced); an expired or still deferred
    # recipient was deferred at every attempt.
    deferrals = """CASE WHEN outcome IN ('deferred', 'expired') THEN attempts ELSE attempts - 1 END"""
    queries = {
        # Messages a client handed over (smtpd's client= line; pflogsumm counts the same);
        # Postfix's own bounce notifications have no client.
        "received": """SELECT count(*) FROM mail_transaction t WHERE t.client_ip != ''
                       AND EXISTS (SELECT 1 FROM mail_queue_entry e WHERE e.transaction_id = t.id)""",
        "delivered": "SELECT count(*) FROM mail_recipient_result WHERE outcome IN ('delivered', 'forwarded', 'relayed')",
        "forwarded": "SELECT 0",  # pflogsumm's "forwarded" is local(8)'s .forward, which we do not run
        "deferred": f"SELECT count(DISTINCT transaction_id) FROM mail_recipient_result WHERE outcome != 'refused' AND {deferrals} > 0",
        "deferrals": f"SELECT coalesce(sum({deferrals}), 0) FROM mail_recipient_result WHERE outcome != 'refused'",
        "bounced": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'bounced'",
        "rejected": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'refused'",
        "expired": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'expired'",
        "logins": "SELECT count(*) FROM auth_event WHERE success",
        "failed logins": "SELECT count(*) FROM auth_event WHERE NOT success",
        "transactions": "SELECT count(*) FROM mail_transaction",
        "unparsed": "SELECT count(*) FROM unparsed_log_line",
        "dialogue lines": "SELECT count(*) FROM smtp_dialogue_line WHERE transaction_id IS NOT NULL",
    }
    try:
        return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}
    finally:
        db.close()


# --- search latency ---------------------------------------------------------------------------


def fill_transactions(
    home: Path, count: int, seed: int, analyze: bool = False
) -> tuple[Installation, list[str]]:
    """A state directory whose database holds `count` transactions written by the ingestion's own
    store (controlplane/logs/store.py), as a log of that many messages would leave them; and the
    addresses its recipients were drawn from (about 20 transactions each, at any size)."""
    make_state(home)
    installation = Installation(load_settings(environ={}, home=home))
    chooser = random.Random(seed)
    people = max(count // 20, 50)
    addresses = [hosted_address(i % HOSTED_DOMAINS, i // HOSTED_DOMAINS) for i in range(people)]
    remote = [f"{GIVEN[p % len(GIVEN)]}{p}@{remote_domain(p % REMOTE_DOMAINS)}" for p in range(people)]
    moment = START
    step = SPAN / count
    with installation.sessions() as session:
        store = MailLogStore(session)
        for number in range(count):
            moment += step
            queue_id = f"4{number:011X}"
            sender = chooser.choice(remote)
            if chooser.random() < 0.1:  # NOQUEUE refusal
                transaction = store.new_transaction(
                    moment,
                    finished_at=moment,
                    client_ip="192.0.2.7",
                    client_name="unknown",
                    sender=sender,
                    helo="x",
                )
                store.new_recipient(
                    transaction,
                    time=moment,
                    recipient=chooser.choice(addresses),
                    domain_id=store.domain_id(addresses[0]),
                    outcome="refused",
                    status_code="550 5.1.1",
                    detail="550 5.1.1 User unknown",
                    reason="recipient not found",
                    attempts=1,
                )
                continue
            # Some of it sent by hosted users through submission (a SASL user, a hosted sender).
            sasl_user = chooser.choice(addresses) if chooser.random() < 0.2 else ""
            transaction = store.new_transaction(
                moment,
                client_ip=f"198.51.{number % 250}.{number % 199}",
                client_name="mx.example.org",
                sender=sasl_user or sender,
                sender_domain_id=store.domain_id(sasl_user),
                sasl_user=sasl_user,
                message_id=f"{number}.{seed}@bench.example",
                size=2000 + number % 9000,
                finished_at=moment,
            )
            entry = store.new_entry(transaction, queue_id, moment)
            entry.removed = True
            store.forget(entry)
            # As in the log: some mail reaches several people through an alias (orig_to).
            orig_to = f"team{number % (people // 10)}@{hosted_domain(number % HOSTED_DOMAINS)}"
            orig_to = orig_to if chooser.random() < 0.12 else ""
            for recipient in {chooser.choice(addresses) for _ in range(1 if chooser.random() < 0.85 else 3)}:
                store.new_recipient(
                    transaction,
                    time=moment,
                    recipient=recipient,
                    orig_to=orig_to,
                    domain_id=store.domain_id(recipient),
                    queue_id=queue_id,
                    outcome="delivered",
                    relay="mail[private/dovecot-lmtp]",
                    status_code="250 2.0.0",
                    detail="250 2.0.0 Saved",
                    attempts=1,
                )
            if number % 10_000 == 9_999:
                store.flush()
                session.commit()
        store.flush()
        session.commit()
        if analyze:
            session.execute(text("ANALYZE"))
            session.commit()
    return installation, addresses


def search_latency(
    sizes: tuple[int, int], rounds: int, root: Path, analyze: bool = False
) -> dict[int, tuple[list[float], float]]:
    """Seconds per search (a full admin's, by recipient address) on each size; and the mean total."""
    installed = {}
    for size in sizes:
        started = time.perf_counter()
        installed[size] = fill_transactions(root / f"search-{size}", size, seed=size, analyze=analyze)
        print(f"search database of {size:>9,} transactions filled in {time.perf_counter() - started:5.1f} s")
    times: dict[int, list[float]] = {size: [] for size in sizes}
    found: dict[int, list[int]] = {size: [] for size in sizes}
    chooser = random.Random(2)
    sessions = {size: installed[size][0].sessions() for size in sizes}
    try:
        tenant_of = {size: sessions[size].scalars(select(Tenant)).one() for size in sizes}
        for round_number in range(rounds + 20):
            for size in sizes if round_number % 2 else reversed(sizes):
                session, addresses = sessions[size], installed[size][1]
                address = addresses[chooser.randrange(len(addresses))]
                tenant = tenant_of[size]
                actor = scope.tenant_admin(tenant.id)
                started = time.perf_counter()
                views, total = mail_logs.search_transactions(session, actor, address, tenant=tenant, limit=50)
                elapsed = time.perf_counter() - started
                session.expunge_all()
                if round_number >= 20:  # the first rounds warm the caches
                    times[size].append(elapsed)
                    found[size].append(total)
                if total == 0 or not views:
                    raise SystemExit(f"searching {address} on {size} transactions found nothing")
    finally:
        for size in sizes:
            sessions[size].close()
            installed[size][0].dispose()
    return {size: (times[size], statistics.mean(found[size])) for size in sizes}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 lines; search on 10,000 vs 100,000")
    parser.add_argument("--lines", type=int, help="lines of log to generate")
    parser.add_argument("--search-size", type=int, help="transactions in the large search database")
    parser.add_argument("--rounds", type=int, help="searches per database")
    parser.add_argument("--no-search", action="store_true", help="measure the ingest only")
    parser.add_argument(
        "--analyze", action="store_true", help="ANALYZE the search databases (Letterhead itself never does)"
    )
    parser.add_argument(
        "--dialogue",
        action="store_true",
        help="port 25 logs each SMTP dialogue with its trace, as Letterhead configures it",
    )
    parser.add_argument("--keep", type=Path, help="keep the log and databases in this new directory")
    args = parser.parse_args()
    lines = args.lines or (100_000 if args.quick else 1_000_000)
    search_size = args.search_size or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (300 if args.quick else 1000)
    if args.keep:
        args.keep.mkdir(parents=True)
        root = args.keep
    else:
        root = Path(tempfile.mkdtemp(prefix="letterhead-bench-logs-"))
    failures: list[str] = []
    try:
        log = root / "mail.log"
        started = time.perf_counter()
        written = generate_log(log, lines, dialogue=args.dialogue)
        print(
            f"log: {lines:,} lines{' with SMTP dialogues' if args.dialogue else ''},"
            f" {log.stat().st_size / 1e6:.1f} MB, {written['seconds'] / 86400:.1f} days,"
            f" generated in {time.perf_counter() - started:.1f} s (seed {SEED})"
        )
        database = make_state(root / "state")

        counted, read_seconds = plain_read(log)
        totals, pflogsumm_seconds = run_pflogsumm(log)
        result, ingest_seconds, peak_mb = run_ingest(root / "state", log)
        stored = database_totals(database)
        if counted != lines or result["lines"] != lines:
            failures.append(f"lines: file {counted}, ingest read {result['lines']}, expected {lines}")

        read_rate, pflogsumm_rate, ingest_rate = (
            lines / s for s in (read_seconds, pflogsumm_seconds, ingest_seconds)
        )
        print()
        print(
            f"plain read (Python, decode)  : {read_seconds:7.2f} s = {read_rate:>10,.0f} lines/s (the limit)"
        )
        print(f"pflogsumm                    : {pflogsumm_seconds:7.2f} s = {pflogsumm_rate:>10,.0f} lines/s")
        print(
            f"letterhead logs ingest       : {ingest_seconds:7.2f} s = {ingest_rate:>10,.0f} lines/s"
            f" = {ingest_rate / read_rate:.3f} of the plain read; peak memory {peak_mb:.0f} MB"
        )
        print()
        print(f"{'total':14} {'pflogsumm':>10} {'database':>10}  {'generator':>10}")
        expected_by_generator = {
            "received": written.get("received", 0),
            "delivered": written.get("sent", 0),
            "deferrals": written.get("deferred", 0),
            "bounced": written.get("bounced", 0),
            "rejected": written.get("rejected", 0),
            "expired": written.get("expired", 0),
            "logins": written.get("login-ok", 0),
            "failed logins": written.get("login-fail", 0),
        }
        for name in (*PFLOGSUMM_TOTALS, "deferrals"):
            theirs, ours = totals[name], stored[name]
            mark = "" if theirs == ours else "  <- DIFFERENT"
            print(f"{name:14} {theirs:>10,} {ours:>10,}  {expected_by_generator.get(name, ''):>10}{mark}")
            if theirs != ours:
                failures.append(f"{name}: pflogsumm {theirs}, database {ours}")
        for name in ("expired", "logins", "failed logins"):
            ours, wrote = stored[name], expected_by_generator[name]
            mark = "" if ours == wrote else "  <- DIFFERENT"
            print(f"{name:14} {'':>10} {ours:>10,}  {wrote:>10,}{mark}")
            if ours != wrote:
                failures.append(f"{name}: database {ours}, generator wrote {wrote}")
        print(
            f"transactions stored: {stored['transactions']:,}; SMTP dialogue lines attached to them:"
            f" {stored['dialogue lines']:,}; lines kept as not understood: {stored['unparsed']}"
        )
        if stored["unparsed"]:
            failures.append(f"{stored['unparsed']} lines were not understood")
        if peak_mb >= MAX_MEMORY_MB:
            failures.append(f"peak memory {peak_mb:.0f} MB (limit {MAX_MEMORY_MB})")

        print()
        small, large = 10_000, search_size
        if args.no_search:
            ratio = ingest_rate / pflogsumm_rate
            print(f"ingest over pflogsumm: {ratio:.2f} (target 1.0 or more); peak_mb={peak_mb:.0f}")
            if failures:
                print("FAILED:\n  " + "\n  ".join(failures))
            print(f"ratio={ratio:.2f}")
            return 1 if failures else 0
        latency = search_latency((small, large), rounds, root, analyze=args.analyze)
        print(f"{rounds} searches by address per database, a full admin's, ms:")
        print(f"{'transactions':>14} {'p50':>8} {'p95':>8}  matches (mean)")
        for size in (small, large):
            values, matches = latency[size]
            print(
                f"{size:>14,} {percentile(values, 0.5) * 1000:8.2f} {percentile(values, 0.95) * 1000:8.2f}  {matches:.1f}"
            )
        search_ratio = percentile(latency[large][0], 0.95) / percentile(latency[small][0], 0.95)
        print(f"search p95 ratio {large:,} / {small:,}: {search_ratio:.2f} (target 2 or less)")
        print()
        ratio = ingest_rate / pflogsumm_rate
        print(
            f"ingest over pflogsumm: {ratio:.2f} (target 1.0 or more); search_ratio={search_ratio:.2f};"
            f" peak_mb={peak_mb:.0f}"
        )
        if failures:
            print("FAILED:\n  " + "\n  ".join(failures))
        print(f"ratio={ratio:.2f}")
        return 1 if failures else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
