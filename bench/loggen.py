"""The deterministic mail log generator of bench/logs.py (seed 1): a Postfix 3.7 log, with
Dovecot's logins, in the shape Debian's syslog or Postfix's `maillog_file` writes, with the
lines of concurrent messages interleaved in time order. bench/logs.py's docstring says what
it holds."""

from __future__ import annotations

import datetime as dt
import heapq
import os
import random
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SEED = 1
START = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=7)
HOST = "mail"
HOSTED_DOMAINS = 40
REMOTE_DOMAINS = 400
MAILBOXES_PER_DOMAIN = 100
REMOTE_PEOPLE = 3000

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
