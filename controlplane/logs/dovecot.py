"""Parse one Dovecot log line into a login event, or None when it records no login.

Dovecot's own log file (log_path) writes "2026-11-25 18:57:28 imap-login: Info: ..." (our
log_timestamp) with no host or pid; through syslog, "Nov 25 18:57:28 host dovecot: imap-login: ...".
Both are accepted. Like the Postfix
parser this never raises: odd lines become None.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from controlplane.logs.postfix import syslog_time

_PREFIX = re.compile(
    r"^(?:(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2})|(?P<date>\d{4}-\d{2}-\d{2}))"
    r"[ T](?P<clock>\d{2}:\d{2}:\d{2})(?:\.\d+)? "
    r"(?:\S+ dovecot(?:\[\d+\])?: )?(?P<process>(?:imap|pop3|submission|managesieve)-login): "
    r"(?:Info: )?(?P<message>.*)$"
)
_FIELDS = re.compile(r"(?:^|, )(?P<key>user|method|rip|lip)=(?P<value><[^>]*>|[^,<]*)")
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


def _fields(text: str) -> dict[str, str]:
    return {m["key"]: m["value"].strip("<>") for m in _FIELDS.finditer(text)}


def plain_login_failure(why: str) -> str:
    """Dovecot's parenthesised disconnect cause, in words an operator reads at a glance."""
    if why.startswith("auth failed"):
        return "wrong password or unknown user"
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
    if match["date"]:
        # Our dovecot.conf sets log_timestamp = "%Y-%m-%d %H:%M:%S ": a year, in the host's zone (UTC).
        moment = dt.datetime.fromisoformat(f"{match['date']}T{match['clock']}").replace(tzinfo=dt.UTC)
    else:
        moment = syslog_time(match["month"], match["day"], match["clock"], reference)
    if moment is None:
        return None
    service = SERVICE_OF_PROCESS[match["process"]]
    message = match["message"]
    if message.startswith("Login: "):
        fields = _fields(message[len("Login: ") :])
        # A line cut short (`user=<trunc`, no closing bracket or no rip) proves no login.
        if not fields.get("user") or "rip" not in fields:
            return None
        return LoginEvent(moment, service, fields["user"], fields["rip"], True, "")
    failed = _FAILED.match(message)
    if failed:
        why = failed["why"]
        fields = _fields(failed["fields"] or "")
        # Only disconnects that followed an attempt with a user name count as a failed login:
        # `user=<>` (or none) means nobody was named, so nobody's password was tried.
        if not fields.get("user"):
            return None
        return LoginEvent(
            moment, service, fields.get("user", ""), fields.get("rip", ""), False, plain_login_failure(why)
        )
    return None
