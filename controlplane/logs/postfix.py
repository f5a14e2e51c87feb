"""Parse one Postfix maillog line into a typed event, or None when the line is not one we use.

Parsers are pure and total: any text, however truncated or hostile, yields an event or None and
never raises, because one odd line must not stop ingestion of the rest of the log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from controlplane.logs.compiled import load as load_compiled

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}

# "Nov 24 00:17:18 host postfix/lmtp[9480]: message"; the day is space-padded by syslog.
_SYSLOG = re.compile(
    r"^(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d{2}:\d{2}:\d{2})(?:\.\d+)? "
    r"(?P<host>\S+) (?P<program>[\w./-]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$"
)
# Postfix's own log file (maillog_file) writes an ISO time with a year; accept both.
_ISO = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?) "
    r"(?P<host>\S+) (?P<program>[\w./-]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$"
)
_QUEUE_ID = r"[0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}"
_QUEUED = re.compile(rf"^(?P<queue_id>{_QUEUE_ID}): (?P<rest>.*)$")
_CLIENT = re.compile(r"^(?P<name>[^\[\s]*)\[(?P<ip>[^\]]*)\]")
_ATTRIBUTE = re.compile(r"(?:^|, )([a-z_]+)=(<[^>]*>|[^,]*)")
_STATUS = re.compile(r"status=(?P<status>[a-z]+)(?: \((?P<detail>.*)\))?$")
# The client is "name[address]", whose IPv6 address holds colons, or anything up to the first ':'.
_REJECT = re.compile(
    r"^NOQUEUE: (?:milter-)?(?P<action>reject|discard|hold): (?P<stage>[A-Z]+(?:[- ][A-Z]+)*) from "
    r"(?P<client>[^:\[]*\[[^\]]*\]|[^:]*): (?P<detail>.*?);(?P<tail>(?: [a-z_]+=(?:<[^>]*>|\S*))*)\s*$"
)
_TAIL_ATTRIBUTE = re.compile(r"([a-z_]+)=(<[^>]*>|\S*)")
_SASL_USERNAME = re.compile(r"sasl_username=(?P<login>[^\s,]{1,255})$")
_REPLY_CODE = re.compile(r"^(?P<code>[245]\d\d)(?: (?P<enhanced>[245]\.\d{1,3}\.\d{1,3}))?")
# cleanup's milter refusals carry only the enhanced code: "5.7.1 Message refused as spam".
_ENHANCED_CODE = re.compile(r"^(?P<enhanced>[245]\.\d{1,3}\.\d{1,3}) ")


class LogLine(NamedTuple):
    time: dt.datetime
    host: str
    program: str
    pid: int | None
    message: str


# Not frozen: a frozen dataclass sets each of these fields through object.__setattr__, which
# made building events a tenth of the cost of ingesting a log.
# _postfix_lines.c makes these with every field given by position, in this order.
@dataclass(slots=True)
class PostfixEvent:
    """One Postfix line we understand; `kind` says which fields are meaningful."""

    kind: str  # connect-client, message-id, queued, delivery, removed, expired, reject, sasl-failed
    time: dt.datetime
    program: str
    queue_id: str | None = None
    client_name: str = ""
    client_ip: str = ""
    sasl_user: str = ""
    helo: str = ""
    message_id: str = ""
    sender: str | None = None
    size: int | None = None
    recipient: str = ""
    orig_to: str = ""
    relay: str = ""
    dsn: str = ""
    status: str = ""
    detail: str = ""


def _strip_brackets(value: str) -> str:
    value = value.strip()
    return value[1:-1] if value.startswith("<") and value.endswith(">") else value


def syslog_time(month: str, day: str, clock: str, reference: dt.datetime) -> dt.datetime | None:
    """The moment a year-less syslog stamp means, taking the year from `reference`.

    A stamp later than the reference by more than a day belongs to the previous year: a log
    read on 2 January still holds lines from 31 December.
    """
    number = _MONTHS.get(month)
    if number is None:
        return None
    try:
        hours, minutes, seconds = (int(part) for part in clock.split(":"))
        moment = dt.datetime(reference.year, number, int(day), hours, minutes, seconds, tzinfo=dt.UTC)
    except ValueError:
        # 29 February in a non-leap reference year is still a real day of the previous leap year.
        try:
            moment = dt.datetime(reference.year - 1, number, int(day), hours, minutes, seconds, tzinfo=dt.UTC)
        except ValueError:
            return None
        return moment
    if moment - reference > dt.timedelta(days=1):
        try:
            moment = moment.replace(year=reference.year - 1)
        except ValueError:
            return None
    return moment


# Log lines come in time order, many to a second: each stamp is worked out once.
_cached_syslog_time = functools.lru_cache(maxsize=4096)(syslog_time)


def split_syslog_line(line: str, reference: dt.datetime, program_prefix: str = "") -> LogLine | None:
    """Split the syslog prefix from `line`, or None when it has none we recognise or its
    program does not start with `program_prefix`."""
    line = line.rstrip("\r\n")
    match = _SYSLOG.match(line)
    if match:
        if not match["program"].startswith(program_prefix):
            return None
        moment = _cached_syslog_time(match["month"], match["day"], match["clock"], reference)
    else:
        match = _ISO.match(line)
        if not match or not match["program"].startswith(program_prefix):
            return None
        try:
            moment = dt.datetime.fromisoformat(match["stamp"].replace("Z", "+00:00"))
        except ValueError:
            return None
        moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    if moment is None:
        return None
    pid = int(match["pid"]) if match["pid"] and len(match["pid"]) < 10 else None
    return LogLine(moment, match["host"], match["program"], pid, match["message"])


def _attributes(text: str) -> dict[str, str]:
    # findall's (key, value) pairs straight into a dict: no match object per attribute.
    return dict(_ATTRIBUTE.findall(text))


def parse_postfix_line_in_python(line: str, reference: dt.datetime) -> PostfixEvent | None:
    """The event `line` records, or None for lines that carry nothing we store.

    The reference for the compiled parser (`parse_postfix_line`), which hands it every line it
    is not certain of."""
    try:
        return _parse(line, reference)
    except (ValueError, IndexError, OverflowError):
        # The regular expressions bound every field; this is the last guard for totality.
        return None


def _parse(line: str, reference: dt.datetime) -> PostfixEvent | None:
    logged = split_syslog_line(line, reference, "postfix")
    if logged is None:
        return None
    program = logged.program.rsplit("/", 1)[-1]
    message = logged.message
    if message.startswith("NOQUEUE:"):
        return _parse_reject(logged, program)
    if program == "smtpd" and message.startswith("warning: ") and "authentication failed" in message:
        # "warning: host[ip]: SASL PLAIN authentication failed: (reason unavailable),
        # sasl_username=ann@a.test" (Postfix 3.x names the login tried, when the client gave one).
        client = _CLIENT.match(message[len("warning: ") :])
        tried = _SASL_USERNAME.search(message)
        return PostfixEvent(
            "sasl-failed",
            time=logged.time,
            program=program,
            client_name=client["name"] if client else "",
            client_ip=client["ip"] if client else "",
            sasl_user=tried["login"] if tried else "",
        )
    queued = _QUEUED.match(message)
    if not queued:
        return None
    queue_id, rest = queued["queue_id"], queued["rest"]
    base = {"time": logged.time, "program": program, "queue_id": queue_id}
    if program == "smtpd" and rest.startswith("client="):
        attributes = _attributes(rest)
        client = _CLIENT.match(attributes.get("client", ""))
        return PostfixEvent(
            "connect-client",
            client_name=client["name"] if client else "",
            client_ip=client["ip"] if client else "",
            sasl_user=attributes.get("sasl_username", ""),
            **base,
        )
    if program == "cleanup" and rest.startswith("message-id="):
        return PostfixEvent("message-id", message_id=_strip_brackets(rest[len("message-id=") :]), **base)
    if program == "qmgr":
        if rest == "removed":
            return PostfixEvent("removed", **base)
        if rest.startswith("from="):
            attributes = _attributes(rest)
            if ", status=expired" in rest:
                status = _STATUS.search(rest)
                return PostfixEvent(
                    "expired",
                    sender=_strip_brackets(attributes.get("from", "")),
                    status="expired",
                    detail=status["detail"] or "" if status else "",
                    **base,
                )
            size = attributes.get("size", "")
            return PostfixEvent(
                "queued",
                sender=_strip_brackets(attributes.get("from", "")),
                size=int(size) if size.isdigit() and len(size) < 19 else None,
                **base,
            )
        return None
    if rest.startswith("to=") and program in {"lmtp", "smtp", "virtual", "local", "pipe", "error", "discard"}:
        status = _STATUS.search(rest)
        if not status:
            return None
        attributes = _attributes(rest[: status.start()])
        return PostfixEvent(
            "delivery",
            recipient=_strip_brackets(attributes.get("to", "")),
            orig_to=_strip_brackets(attributes.get("orig_to", "")),
            relay=attributes.get("relay", ""),
            dsn=attributes.get("dsn", ""),
            status=status["status"],
            detail=status["detail"] or "",
            **base,
        )
    if (program == "smtpd" and rest.startswith("reject: ")) or (
        program == "cleanup" and rest.startswith("milter-reject: ")
    ):
        # A reject after queueing ends the transaction like NOQUEUE: at the end of DATA by a
        # milter (rspamd refusing spam: "milter-reject: END-OF-MESSAGE from ...: 5.7.1 ...").
        event = _parse_reject(logged, program, "NOQUEUE: " + rest.removeprefix("milter-"))
        return None if event is None else dataclasses.replace(event, queue_id=queue_id)
    return None


def _parse_reject(logged: LogLine, program: str, message: str | None = None) -> PostfixEvent | None:
    match = _REJECT.match(message if message is not None else logged.message)
    if not match:
        return None
    client = _CLIENT.match(match["client"])
    tail = {key: value for key, value in _TAIL_ATTRIBUTE.findall(match["tail"])}
    reply = _REPLY_CODE.match(match["detail"])
    enhanced = None if reply else _ENHANCED_CODE.match(match["detail"])
    return PostfixEvent(
        "reject",
        time=logged.time,
        program=program,
        client_name=client["name"] if client else "",
        client_ip=client["ip"] if client else "",
        helo=_strip_brackets(tail.get("helo", "")),
        sender=_strip_brackets(tail["from"]) if "from" in tail else None,
        recipient=_strip_brackets(tail.get("to", "")),
        dsn=(reply["enhanced"] or "") if reply else (enhanced["enhanced"] if enhanced else ""),
        status="refused" if match["action"] == "reject" else match["action"],
        detail=match["detail"],
    )


_postfix_lines = load_compiled("_postfix_lines")
if (
    _postfix_lines is not None
    and tuple(f.name for f in dataclasses.fields(PostfixEvent)) != _postfix_lines.FIELDS
):
    # The C parser passes the fields by position: a class it does not know gets the Python parser.
    warnings.warn(
        "PostfixEvent's fields are not the C parser's: parsing in Python", RuntimeWarning, stacklevel=1
    )
    _postfix_lines = None

if _postfix_lines is None:
    parse_postfix_line = parse_postfix_line_in_python
    PASSED_OVER, UNDECIDED = object(), object()

    def scan_log_line(raw: bytes, reference: dt.datetime) -> object:
        return UNDECIDED

else:
    _postfix_lines.configure(PostfixEvent, _cached_syslog_time, parse_postfix_line_in_python)
    # The event `line` records, or None for lines that carry nothing we store.
    parse_postfix_line = _postfix_lines.parse
    # For a raw line as ingest reads it: PASSED_OVER (smtpd's connect and disconnect lines), the
    # event or None as parse_postfix_line gives it, once scan_logins_as() is called a Dovecot
    # login line's LoginEvent, or UNDECIDED (read it the whole way).
    scan_log_line = _postfix_lines.scan
    PASSED_OVER, UNDECIDED = _postfix_lines.PASSED_OVER, _postfix_lines.UNDECIDED


# What the C scan passes LoginEvent by position, in this order.
_LOGIN_FIELDS = ("time", "service", "user", "client_ip", "success", "reason", "session")


def scan_logins_as(login_class: type) -> None:
    """Have scan_log_line read Dovecot's successful login lines too, into `login_class`
    (dovecot.LoginEvent), as dovecot.parse_dovecot_line reads them."""
    if _postfix_lines is None:
        return
    if tuple(f.name for f in dataclasses.fields(login_class)) != _LOGIN_FIELDS:
        warnings.warn(
            "LoginEvent's fields are not the C scan's: logins read in Python", RuntimeWarning, stacklevel=2
        )
        return
    _postfix_lines.configure_logins(login_class)
