"""A user's own rules for their mail, set in the webmail: a vacation reply with dates, forwarding
(keeping a copy or not) and filters. They become one Sieve script, which the webmail stores
through ManageSieve under SCRIPT_NAME and makes the mailbox's active script: a user's own Sieve
client sees and may replace the same script. The rules ride in the script's first line as JSON,
so the webmail reads back what it wrote; a script another client wrote is left as it is.

The admins' filters are not here: they run before this script (Dovecot's sieve_before, see
services/sieve.py), as does the junk filing, so spam is never forwarded or answered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import Mailbox
from controlplane.services import audit
from controlplane.services.scope import Actor
from controlplane.services.webmail import parse_recipients

SCRIPT_NAME = "letterhead"
_MARKER = "# Letterhead rules v1: "
MAX_FILTERS = 50
MAX_VALUE_LENGTH = 200
MAX_VACATION_TEXT = 4000
# Dovecot's sieve_vacation_max_period is 60 days by default.
MAX_VACATION_DAYS = 60
FIELDS = ("from", "to", "subject", "header", "size")
MATCHES = {"contains": ":contains", "is": ":is", "over": ":over", "under": ":under"}
ACTIONS = ("fileinto", "read", "forward", "discard", "reject")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")
_SIZE = re.compile(r"^(\d{1,9})\s*([KMG]?)B?$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Vacation:
    enabled: bool = False
    start: dt.date | None = None
    end: dt.date | None = None
    subject: str = ""
    text: str = ""


@dataclasses.dataclass(frozen=True)
class Forwarding:
    address: str = ""  # none: not forwarded
    keep_copy: bool = True


@dataclasses.dataclass(frozen=True)
class Filter:
    field: str
    match: str
    value: str
    action: str
    argument: str = ""  # the folder, the address forwarded to, or the refusal's words
    header: str = ""  # the header's name, for field "header"

    def describe(self) -> str:
        subject = f"the {self.header} header" if self.field == "header" else self.field.capitalize()
        condition = f"{subject} {self.match} {self.value}"
        outcome = {
            "fileinto": f"file into {self.argument}",
            "read": "mark as read",
            "forward": f"forward to {self.argument}",
            "discard": "delete",
            "reject": "refuse it, saying: " + self.argument,
        }[self.action]
        return f"If {condition}: {outcome}"


@dataclasses.dataclass(frozen=True)
class UserRules:
    vacation: Vacation = Vacation()
    forwarding: Forwarding = Forwarding()
    filters: tuple[Filter, ...] = ()


# --- checking what a user asks for ---------------------------------------------------------------


def _one_line(text: str, field: str, what: str, *, limit: int = MAX_VALUE_LENGTH) -> str:
    text = (text or "").strip()
    if any(ord(ch) < 32 or ch == "\x7f" for ch in text):
        raise ValidationError(f"{what} must be one line of text.", field=field)
    if len(text) > limit:
        raise ValidationError(f"{what} may be at most {limit} characters.", field=field)
    return text


def _date(text: str, field: str) -> dt.date | None:
    if not (text or "").strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError("Give a date as YYYY-MM-DD.", field=field) from None


def vacation(*, enabled: bool, start: str, end: str, subject: str, text: str) -> Vacation:
    """Raises ValidationError."""
    first, last = _date(start, "start"), _date(end, "end")
    if first and last and last < first:
        raise ValidationError("The last day comes before the first.", field="end")
    subject = _one_line(subject, "subject", "The subject")
    text = (text or "").replace("\r\n", "\n").strip()
    if "\0" in text or len(text) > MAX_VACATION_TEXT:
        raise ValidationError(f"The reply may be at most {MAX_VACATION_TEXT} characters.", field="text")
    if enabled and not text:
        raise ValidationError("Write the reply people will get.", field="text")
    return Vacation(enabled=enabled, start=first, end=last, subject=subject, text=text)


def _address(text: str, field: str, own: str) -> str:
    addresses = parse_recipients(text, field=field)
    if len(addresses) != 1:
        raise ValidationError("Give one address.", field=field)
    if addresses[0].lower() == own.lower():
        raise ValidationError("Mail cannot be forwarded to the mailbox it is for.", field=field)
    return addresses[0]


def forwarding(*, address: str, keep_copy: bool, own: str) -> Forwarding:
    """Raises ValidationError."""
    if not (address or "").strip():
        return Forwarding()
    return Forwarding(address=_address(address, "address", own), keep_copy=keep_copy)


def mail_filter(
    *, field: str, match: str, value: str, action: str, argument: str = "", header: str = "", own: str
) -> Filter:
    """One filter: a condition on From, To (or Cc), the subject, a header or the size, and what
    to do with a message that meets it. Raises ValidationError."""
    if field not in FIELDS:
        raise ValidationError("Choose From, To, Subject, a header or the size.", field="field")
    if action not in ACTIONS:
        raise ValidationError("Choose what to do with the message.", field="action")
    if field == "size":
        if match not in ("over", "under"):
            raise ValidationError("A size is over or under a number.", field="match")
        found = _SIZE.match((value or "").strip())
        if not found:
            raise ValidationError("Give a size like 500K or 2M.", field="value")
        value = f"{int(found.group(1))}{found.group(2).upper()}"
    else:
        if match not in ("contains", "is"):
            raise ValidationError("Text contains or is a value.", field="match")
        value = _one_line(value, "value", "The text to look for")
        if not value:
            raise ValidationError("Give the text to look for.", field="value")
    header = (header or "").strip()
    if field == "header" and not _HEADER_NAME.match(header):
        raise ValidationError("Name the header, like List-Id.", field="header")
    if action == "fileinto":
        argument = _one_line(argument, "argument", "The folder's name")
        if not argument or argument.upper() == "INBOX" or any(ch in argument for ch in '"\\*%'):
            raise ValidationError("Choose a folder other than the inbox.", field="argument")
    elif action == "forward":
        argument = _address(argument, "argument", own)
    elif action == "reject":
        argument = _one_line(argument, "argument", "The refusal") or "This message was not accepted."
    else:
        argument = ""
    return Filter(field=field, match=match, value=value, action=action, argument=argument,
                  header=header if field == "header" else "")  # fmt: skip


def with_filter(rules: UserRules, added: Filter) -> UserRules:
    if len(rules.filters) >= MAX_FILTERS:
        raise ValidationError(f"At most {MAX_FILTERS} filters: remove one first.", field="field")
    return dataclasses.replace(rules, filters=(*rules.filters, added))


def without_filter(rules: UserRules, position: int) -> UserRules:
    if not 0 <= position < len(rules.filters):
        raise ValidationError("There is no such filter.", field="position")
    return dataclasses.replace(rules, filters=rules.filters[:position] + rules.filters[position + 1 :])


# --- as a Sieve script ---------------------------------------------------------------------------


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _condition(rule: Filter) -> str:
    match = MATCHES[rule.match]
    if rule.field == "size":
        return f"size {match} {rule.value}"
    headers = {"from": '"from"', "to": '["to", "cc"]', "subject": '"subject"'}.get(rule.field)
    return f"header {match} {headers or _quoted(rule.header)} {_quoted(rule.value)}"


def _action(rule: Filter) -> list[str]:
    if rule.action == "fileinto":
        return [f"fileinto :create {_quoted(rule.argument)};", "stop;"]
    if rule.action == "read":
        return ['addflag "\\\\Seen";']
    if rule.action == "forward":
        return [f"redirect :copy {_quoted(rule.argument)};"]
    if rule.action == "discard":
        return ["discard;", "stop;"]
    return [f"reject {_quoted(rule.argument)};", "stop;"]


def to_sieve(rules: UserRules, *, addresses: list[str]) -> str:
    """The script for these rules. `addresses`: the mailbox's own and its aliases', which a
    vacation reply answers for."""
    lines = [_MARKER + json.dumps(_as_json(rules), separators=(",", ":"), ensure_ascii=True)]
    lines += [
        "# Written by the webmail's settings (Vacation reply, Forwarding, Filters); a change made",
        "# there replaces this script.",
        'require ["fileinto", "mailbox", "imap4flags", "copy", "reject", "vacation", "date", "relational"];',
    ]
    # Refusals first: Sieve runs no reject beside a vacation reply or a redirect (the message
    # would be kept instead), so a message refused is refused before anything else can act.
    for rule in rules.filters:
        if rule.action == "reject":
            lines += [f"if {_condition(rule)} {{", *(f"  {line}" for line in _action(rule)), "}"]
    holiday = rules.vacation
    if holiday.enabled:
        dates = []
        if holiday.start:
            dates.append(f'currentdate :value "ge" "date" "{holiday.start.isoformat()}"')
        if holiday.end:
            dates.append(f'currentdate :value "le" "date" "{holiday.end.isoformat()}"')
        # Once per sender for the whole period (a new period answers again).
        days = (
            min(MAX_VACATION_DAYS, (holiday.end - holiday.start).days + 1)
            if holiday.start and holiday.end
            else 7
        )
        handle = f"letterhead-{holiday.start or 'now'}-{holiday.end or 'on'}"
        reply = (
            f"vacation :days {days} :handle {_quoted(handle)} :subject {_quoted(holiday.subject or 'Away')} "
            f":addresses [{', '.join(_quoted(address) for address in addresses)}] {_quoted(holiday.text)};"
        )
        if dates:
            lines += [f"if allof ({', '.join(dates)}) {{", f"  {reply}", "}"]
        else:
            lines.append(reply)
    forward = rules.forwarding
    if forward.address:
        lines.append(f"redirect{' :copy' if forward.keep_copy else ''} {_quoted(forward.address)};")
        if not forward.keep_copy:
            lines.append("stop;")
    for rule in rules.filters:
        if rule.action == "reject":
            continue
        lines.append(f"if {_condition(rule)} {{")
        lines += [f"  {line}" for line in _action(rule)]
        lines.append("}")
    return "\n".join(lines) + "\n"


def _as_json(rules: UserRules) -> dict:
    holiday = rules.vacation
    return {
        "vacation": {
            "enabled": holiday.enabled, "start": holiday.start.isoformat() if holiday.start else "",
            "end": holiday.end.isoformat() if holiday.end else "", "subject": holiday.subject,
            "text": holiday.text,
        },
        "forwarding": {"address": rules.forwarding.address, "keep_copy": rules.forwarding.keep_copy},
        "filters": [dataclasses.asdict(rule) for rule in rules.filters],
    }  # fmt: skip


def _filter_from(rule: dict) -> Filter:
    """A filter as the webmail wrote it; anything else (a hand-edited script) is not ours."""
    kept = Filter(**{key: str(value) for key, value in rule.items()})
    if kept.field not in FIELDS or kept.match not in MATCHES or kept.action not in ACTIONS:
        raise ValueError("not a filter the webmail wrote")
    return kept


def from_sieve(script: str) -> UserRules | None:
    """The rules a script the webmail wrote holds; None for any other script."""
    first = script.split("\n", 1)[0].rstrip("\r")
    if not first.startswith(_MARKER):
        return None
    try:
        data = json.loads(first[len(_MARKER) :])
        holiday = data["vacation"]
        return UserRules(
            vacation=Vacation(
                enabled=bool(holiday["enabled"]), start=_date(holiday["start"], "start"),
                end=_date(holiday["end"], "end"), subject=str(holiday["subject"]), text=str(holiday["text"]),
            ),
            forwarding=Forwarding(
                address=str(data["forwarding"]["address"]), keep_copy=bool(data["forwarding"]["keep_copy"])
            ),
            filters=tuple(_filter_from(rule) for rule in data["filters"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def record_change(session: Session, actor: Actor, mailbox: Mailbox, what: str, **details: object) -> None:
    """The audit trail of a user's own rules: their admins see when mail starts being forwarded
    elsewhere (how a taken-over account is emptied), and what a vacation reply says when."""
    if actor.kind != "mailbox" or actor.mailbox_id != mailbox.id:
        raise NotFound("No such mailbox.")
    audit.record_change(
        session, actor, f"mailbox.rules.{what}", mailbox.address, tenant_id=mailbox.domain.tenant_id,
        domain_id=mailbox.domain_id, **details,
    )  # fmt: skip
