"""Parse one Dovecot log line into a login event, or None when it records no login.

Dovecot's own log file (log_path) writes "2026-11-25 18:57:28 imap-login: Info: ..." (our
log_timestamp) with no host or pid; through syslog, "Nov 25 18:57:28 host dovecot: imap-login: ...".
Both are accepted. Like the Postfix
parser this never raises: odd lines become None.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from controlplane.logs.postfix import scan_logins_as, syslog_time

_PREFIX = re.compile(
    r"^(?:(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2})|(?P<date>\d{4}-\d{2}-\d{2}))"
    r"[ T](?P<clock>\d{2}:\d{2}:\d{2})(?:\.\d+)? "
    r"(?:\S+ dovecot(?:\[\d+\])?: )?(?P<process>(?:imap|pop3|submission|managesieve)-login): "
    r"(?:Info: )?(?P<message>.*)$"
)
_FIELDS = re.compile(r"(?:^|, )(?P<key>user|method|rip|lip|session)=(?P<value><[^>]*>|[^,<]*)")
# auth_verbose's verdict on one lookup, logged by the auth process or an auth worker before the
# client hears it failed: "auth-worker(29679): Info: conn unix:auth-worker (pid=29678,uid=103):
# auth-worker<2>: sql(alice@a.test,192.0.2.1,<oGD24dpherB/AAAB>): Password mismatch". The
# session is the login process's (its Disconnected line ends with the same session=<...>);
# requests without one (Postfix's SASL, the webmail) leave it out.
_VERDICT = re.compile(
    r"^(?:(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2})|(?P<date>\d{4}-\d{2}-\d{2}))"
    r"[ T](?P<clock>\d{2}:\d{2}:\d{2})(?:\.\d+)? "
    r"(?:\S+ dovecot(?:\[\d+\])?: )?auth(?:-worker)?(?:\(\d+\))?: (?:Info: )?"
    r"(?:conn [^()]*\([^()]*\): auth-worker<\d+>: )?"
    r"[a-z][a-z0-9-]*\((?P<user>[^,()]*),(?P<ip>[^,()<>]*)(?:,<(?P<session>[^<>]*)>)?\): "
    r"(?P<text>.*)$"
)
# Only these verdicts are kept, in words: the rest of a verdict line is never stored (with
# auth_verbose_passwords it would hold the password tried).
_VERDICT_REASONS = {
    "unknown user": "unknown or disabled mailbox",
    "Password mismatch": "wrong password",
}
GENERIC_LOGIN_FAILURE = "wrong password or unknown user"
# "Disconnected (auth failed, 3 attempts in 12 secs)" (2.2) and
# "Disconnected: Connection closed (auth failed, 1 attempts in 2 secs)" (2.3).
_FAILED = re.compile(r"^(?:Aborted login|Disconnected)(?::[^(]*)? \((?P<why>[^)]*)\)(?:: (?P<fields>.*))?$")

SERVICE_OF_PROCESS = {
    "imap-login": "imap",
    "pop3-login": "pop3",
    "submission-login": "smtp",
    "managesieve-login": "sieve",
}


@dataclass(frozen=True)
class LoginEvent:
    """A login attempt seen in a daemon's log."""

    time: dt.datetime
    service: str  # smtp, imap, pop3, sieve
    user: str
    client_ip: str
    success: bool
    reason: str  # plain words: "", "wrong password or unknown user", "no authentication attempted", ...
    session: str = ""  # Dovecot's login session ID, when the line names one


# The ingest's compiled scan reads the successful login lines (the most of Dovecot's), as
# parse_dovecot_line does: tests/unit/logs/test_compiled_postfix.py holds the two to one answer.
scan_logins_as(LoginEvent)


@dataclass(frozen=True)
class AuthVerdict:
    """Why Dovecot's auth refused one login ("wrong password", ...), before the login failed."""

    time: dt.datetime
    user: str
    client_ip: str
    session: str
    reason: str


# "lmtp(carol@strict.test)<5293><6rHwEwXPE2utFAAAg+zDdQ>: Info: sieve: msgid=<...>: fileinto
# action: stored mail into mailbox 'Junk'": the junk filing rule (or a user's own filter) filed it.
_JUNK_FILING = re.compile(
    r" lmtp\([^)]*\)<\d+><(?P<session>[^>]+)>: Info: sieve: .*stored mail into mailbox 'Junk'$"
)


def parse_junk_filing(line: str) -> str | None:
    """The LMTP session of a delivery Sieve filed into Junk, or None."""
    match = _JUNK_FILING.search(line)
    return match["session"] if match else None


class AuthVerdicts:
    """Verdicts seen lately, kept until the failed login they explain is read; and deliveries
    Dovecot's Sieve filed into Junk, kept until Postfix's delivery line is read.

    Dovecot logs the verdict first, then the login process's (or Postfix's) failure, which may
    come one poll of the follower later, or from another file (Postfix's): whoever reads the
    logs keeps one of these across polls and files. Bounded: a flood of failures evicts the
    oldest, whose logins then keep the general reason.
    """

    LIMIT = 20_000
    # A verdict explains a failure logged within this long after it (the auth failure delay is
    # 2 s by default; a client may wait longer before it disconnects).
    WINDOW = dt.timedelta(seconds=120)
    # Dovecot logs a filing before it answers the LMTP client, so its line lands within moments
    # of Postfix's delivery line, whichever file is written first.
    SAVED_WINDOW = dt.timedelta(seconds=30)
    SAVED_LIMIT = 5_000

    def __init__(self) -> None:
        self._by_session: OrderedDict[str, str] = OrderedDict()
        self._by_login: OrderedDict[tuple[str, str], deque[AuthVerdict]] = OrderedDict()
        self._count = 0
        # Failed logins without a session already stored with the general reason: Postfix's
        # line can be read before Dovecot's verdict that came first (another file, read later).
        self._unexplained: OrderedDict[tuple[str, str], deque[LoginEvent]] = OrderedDict()
        self._unexplained_count = 0
        # LMTP sessions whose message Sieve filed into Junk: Postfix's delivery line, logged
        # after Dovecot's, names the session ("250 2.0.0 <a@b> SESSION Saved").
        self._junk_sessions: OrderedDict[str, None] = OrderedDict()
        # Deliveries read before Dovecot's filing line: each daemon's log process writes its own
        # file, so Postfix's line can land (and be read) first. What the caller noted for each.
        self._saved: OrderedDict[str, tuple[dt.datetime, object]] = OrderedDict()

    def note_junk_filing(self, session: str) -> object | None:
        """Dovecot filed that LMTP session's message into Junk: what `note_saved` noted for the
        session if its delivery was read first, else None (the delivery will ask `filed_as_junk`)."""
        saved = self._saved.pop(session, None)
        if saved is not None:
            return saved[1]
        self._junk_sessions[session] = None
        while len(self._junk_sessions) > self.LIMIT:
            self._junk_sessions.popitem(last=False)
        return None

    def filed_as_junk(self, session: str) -> bool:
        """Whether Dovecot filed that LMTP session's message into Junk (asked once per session)."""
        return self._junk_sessions.pop(session, False) is None

    def note_saved(self, session: str, time: dt.datetime, delivery: object) -> None:
        """A delivery of that LMTP session not (yet) known as filed into Junk, logged at `time`:
        kept for SAVED_WINDOW of log time, in case Dovecot's filing line is read after it."""
        saved = self._saved
        saved[session] = (time, delivery)
        oldest = time - self.SAVED_WINDOW
        while saved and (len(saved) > self.SAVED_LIMIT or next(iter(saved.values()))[0] < oldest):
            saved.popitem(last=False)

    def add(self, verdict: AuthVerdict) -> None:
        if verdict.session:
            self._by_session[verdict.session] = verdict.reason
            self._by_session.move_to_end(verdict.session)
            while len(self._by_session) > self.LIMIT:
                self._by_session.popitem(last=False)
            return
        key = (verdict.user.lower(), verdict.client_ip)
        self._by_login.setdefault(key, deque()).append(verdict)
        self._by_login.move_to_end(key)
        self._count += 1
        # Bounded in all, not per key: one guesser's flood is one key.
        while self._count > self.LIMIT:
            oldest = next(iter(self._by_login.values()))
            oldest.popleft()
            self._count -= 1
            if not oldest:
                self._by_login.popitem(last=False)

    def reason_for(self, login: LoginEvent) -> str | None:
        """The reason Dovecot gave for this failed login, taken so it explains no other."""
        if login.session:
            return self._by_session.pop(login.session, None)
        key = (login.user.lower(), login.client_ip)
        verdicts = self._by_login.get(key)
        if not verdicts:
            return None
        # Failures are read in time order: a verdict too old for this one is for none to come.
        while verdicts and verdicts[0].time < login.time - self.WINDOW:
            verdicts.popleft()
            self._count -= 1
        # The oldest verdict left, if not newer than the failure: each failed attempt (Postfix
        # logs one line per AUTH command) takes its own.
        reason = None
        if verdicts and verdicts[0].time <= login.time:
            reason = verdicts.popleft().reason
            self._count -= 1
        if not verdicts:
            del self._by_login[key]
        return reason

    def note_unexplained(self, login: LoginEvent) -> None:
        """A failed login stored without Dovecot's reason, which may still be read."""
        if login.session:
            return  # its verdict was in the same file, before it: it will not come now
        key = (login.user.lower(), login.client_ip)
        self._unexplained.setdefault(key, deque()).append(login)
        self._unexplained.move_to_end(key)
        self._unexplained_count += 1
        # Bounded in all, not per key: a year of one guesser's failures is one key.
        while self._unexplained_count > self.LIMIT:
            oldest = next(iter(self._unexplained.values()))
            oldest.popleft()
            self._unexplained_count -= 1
            if not oldest:
                self._unexplained.popitem(last=False)

    def take_unexplained(self, verdict: AuthVerdict) -> LoginEvent | None:
        """The stored failed login this verdict explains, if one is waiting for it."""
        if verdict.session:
            return None
        key = (verdict.user.lower(), verdict.client_ip)
        waiting = self._unexplained.get(key)
        if waiting is None:
            return None
        # Verdicts are read in time order and come before the failure they explain: a failure
        # older than this verdict is explained by none to come. Dropping those keeps this
        # constant-time when one guesser's failures pile up under one key.
        while waiting and waiting[0].time < verdict.time:
            waiting.popleft()
            self._unexplained_count -= 1
        found = None
        if waiting and waiting[0].time <= verdict.time + self.WINDOW:
            found = waiting.popleft()
            self._unexplained_count -= 1
        if not waiting:
            del self._unexplained[key]
        return found


def _fields(text: str) -> dict[str, str]:
    return {m["key"]: m["value"].strip("<>") for m in _FIELDS.finditer(text)}


def plain_login_failure(why: str) -> str:
    """Dovecot's parenthesised disconnect cause, in words an operator reads at a glance."""
    if why.startswith("auth failed"):
        return GENERIC_LOGIN_FAILURE
    if why.startswith("no auth attempts"):
        return "no authentication attempted"
    if "disabled" in why or "plaintext" in why.lower():
        return "plaintext login refused without TLS"
    if "tried to use disallowed" in why:
        return "authentication method not allowed"
    return why[:50]


def parse_dovecot_line(line: str, reference: dt.datetime) -> LoginEvent | None:
    """The login `line` records, or None. Disconnects without any login attempt are not logins."""
    try:
        return _parse(line.rstrip("\r\n"), reference)
    except (ValueError, IndexError, OverflowError):
        return None


def _parse(line: str, reference: dt.datetime) -> LoginEvent | None:
    match = _PREFIX.match(line)
    if not match:
        return None
    moment = _moment(match, reference)
    if moment is None:
        return None
    service = SERVICE_OF_PROCESS[match["process"]]
    message = match["message"]
    if message.startswith("Login: "):
        fields = _fields(message[len("Login: ") :])
        # A line cut short (`user=<trunc`, no closing bracket or no rip) proves no login.
        if not fields.get("user") or "rip" not in fields:
            return None
        return LoginEvent(moment, service, fields["user"], fields["rip"], True, "", fields.get("session", ""))
    failed = _FAILED.match(message)
    if failed:
        why = failed["why"]
        fields = _fields(failed["fields"] or "")
        # Only disconnects that followed an attempt with a user name count as a failed login:
        # `user=<>` (or none) means nobody was named, so nobody's password was tried.
        if not fields.get("user"):
            return None
        return LoginEvent(
            moment,
            service,
            fields.get("user", ""),
            fields.get("rip", ""),
            False,
            plain_login_failure(why),
            fields.get("session", ""),
        )
    return None


def parse_auth_verdict(line: str, reference: dt.datetime) -> AuthVerdict | None:
    """The auth verdict `line` logs (auth_verbose), or None; never raises."""
    try:
        match = _VERDICT.match(line.rstrip("\r\n"))
        if not match:
            return None
        text = match["text"]
        reason = _VERDICT_REASONS.get(text) or (
            _VERDICT_REASONS["Password mismatch"] if text.startswith("Password mismatch (") else None
        )
        if reason is None:
            return None
        moment = _moment(match, reference)
        if moment is None:
            return None
        return AuthVerdict(moment, match["user"], match["ip"], match["session"] or "", reason)
    except (ValueError, IndexError, OverflowError):
        return None


def _moment(match: re.Match[str], reference: dt.datetime) -> dt.datetime | None:
    if match["date"]:
        # Our dovecot.conf sets log_timestamp = "%Y-%m-%d %H:%M:%S ": a year, in the host's zone (UTC).
        return dt.datetime.fromisoformat(f"{match['date']}T{match['clock']}").replace(tzinfo=dt.UTC)
    return syslog_time(match["month"], match["day"], match["clock"], reference)
