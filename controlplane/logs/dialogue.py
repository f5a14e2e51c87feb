"""The SMTP dialogue of port-25 sessions: each command and reply smtpd logs, kept with its transaction.

master.cf sets `debug_peer_level = 1` on the port-25 smtpd only (never on submission, where
AUTH carries a password), which makes smtpd log `< client[ip]: COMMAND` and
`> client[ip]: REPLY` amid internal trace lines; only those two kinds are kept.

The lines name no queue ID: they are tied to a transaction through the smtpd process that
logged them. A session starts with the server's 220 greeting; a transaction with the
client's MAIL FROM. Lines wait unattached until that process logs the queue ID's `client=`
line or a NOQUEUE refusal, which claims every unattached line since the session began; later
lines of the process follow the transaction they come after. The lines are rows at once, so a
transaction named in a later run (or after a crash) still finds them.

Nothing secret is stored: a client line is kept only when it starts with an SMTP verb (so
message content is never stored, even if some day logged), AUTH keeps only its mechanism,
and the answers to a 334 challenge and the challenges themselves are redacted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from controlplane.logs.postfix import split_syslog_line
from controlplane.models import SmtpDialogueLine

REDACTED = "[redacted]"
# smtpd drops an idle client after 300 s; a session's lines all fall within this.
SESSION_LENGTH = dt.timedelta(hours=1)
MAX_TEXT = 1000
_DIALOGUE = re.compile(r"^(?P<direction>[<>]) (?P<client>[^\s\[]*\[[^\]\s]*\]): (?P<text>.*)$")
# Postfix's own EHLO/HELO verbs and the extensions it implements; anything else a client
# sends is not a command (a base64 credential, message content) and is never kept.
SMTP_VERBS = frozenset(
    {"EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP",
     "STARTTLS", "AUTH", "ETRN", "XCLIENT", "XFORWARD"}
)  # fmt: skip
_TABLE = SmtpDialogueLine.__table__


@dataclass(frozen=True)
class DialogueLine:
    time: dt.datetime
    process: str  # "host program[pid]": the smtpd process whose session this is
    direction: str  # "<" from the client, ">" from the server
    text: str


def process_key(host: str, program: str, pid: int | None) -> str:
    return f"{host} {program}[{pid}]"[:300]


def parse_dialogue_line(line: str, reference: dt.datetime) -> DialogueLine | None:
    """The command or reply `line` logs, unredacted, or None. Never raises."""
    try:
        logged = split_syslog_line(line, reference)
    except (ValueError, IndexError, OverflowError):
        return None
    if logged is None or not logged.program.startswith("postfix") or not logged.program.endswith("smtpd"):
        return None
    match = _DIALOGUE.match(logged.message)
    if not match:
        return None
    return DialogueLine(
        logged.time, process_key(logged.host, logged.program, logged.pid), match["direction"], match["text"]
    )


def process_of_line(line: str, reference: dt.datetime) -> str | None:
    """The process key of any syslog `line` (for an event that names a transaction)."""
    logged = split_syslog_line(line, reference)
    return None if logged is None else process_key(logged.host, logged.program, logged.pid)


def redact(direction: str, text: str, *, answers_challenge: bool) -> str:
    """`text` as it may be stored: commands without credentials, replies without challenges."""
    text = text[:MAX_TEXT]
    if direction == ">":
        return "334 " + REDACTED if text.startswith("334") else text
    if answers_challenge:
        return REDACTED
    words = text.split()
    verb = words[0].upper() if words else ""
    if verb == "AUTH":
        # "AUTH PLAIN <base64 of user and password>": only the mechanism is kept.
        return " ".join(words[:2]) + (" " + REDACTED if len(words) > 2 else "")
    if verb not in SMTP_VERBS:
        return REDACTED
    return text


@dataclass
class _Position:
    """Where a process's session stands: the transaction its next line belongs to."""

    owner: Any  # a TransactionRow (being assembled), a stored transaction id, or None
    last_direction: str
    last_text: str


class DialogueWriter(Protocol):
    def write_dialogue(self, claims: list[tuple[str, int | None]], rows: list[dict[str, Any]]) -> None: ...


class DialogueRecorder:
    """Stores dialogue lines and attaches them to transactions; write with `flush()` after
    the transaction rows have their ids (MailLogStore.flush). The lines are written by
    `writer` (the store's: this session, or the log writer process), read through `session`:
    only lines of sessions this recorder has not seen, which earlier runs or earlier files of
    this import committed (the writer process has finished a file before the next begins)."""

    def __init__(self, session: Session, writer: DialogueWriter | None = None) -> None:
        self.session = session
        self.writer = writer
        self._positions: dict[str, _Position | None] = {}
        self._new: list[dict[str, Any]] = []
        self._claims: list[tuple[str, Any]] = []
        self._pending: set[str] | None = None

    def add(self, line: DialogueLine) -> None:
        position = self._position(line.process)
        previous_text = position.last_text.upper() if position else ""
        # The greeting opens a session, except the 220 that answers STARTTLS.
        starts_session = (
            line.direction == ">"
            and line.text.startswith("220 ")
            and not (position and position.last_direction == "<" and previous_text.startswith("STARTTLS"))
        )
        starts_transaction = line.direction == "<" and line.text.upper().startswith("MAIL FROM")
        owner = None if (starts_session or starts_transaction or position is None) else position.owner
        answers_challenge = bool(
            position
            and line.direction == "<"
            and position.last_direction == ">"
            and previous_text.startswith("334")
        )
        text = redact(line.direction, line.text, answers_challenge=answers_challenge)
        self._new.append(
            {
                "process": line.process,
                "time": line.time,
                "direction": line.direction,
                "text": text,
                "session_start": starts_session,
                "owner": owner,
            }
        )
        self._positions[line.process] = _Position(owner, line.direction, line.text[:20])

    def active(self, time: dt.datetime) -> bool:
        """Whether any dialogue may wait for a transaction: lines seen in this run, or lines
        stored unattached within a session's length before `time`. Logs without dialogue
        (submission only, or debugging off) then cost no work per message."""
        return bool(self._positions) or bool(self._pending_in_database(time))

    def _pending_in_database(self, time: dt.datetime) -> set[str]:
        if self._pending is None:
            self._pending = set(
                self.session.scalars(
                    select(SmtpDialogueLine.process)
                    .where(
                        SmtpDialogueLine.transaction_id.is_(None),
                        SmtpDialogueLine.time >= time - SESSION_LENGTH,
                    )
                    .distinct()
                )
            )
        return self._pending

    def claim(self, process: str, transaction: Any, time: dt.datetime) -> None:
        """`process` logged, at `time`, the transaction its unattached lines since the greeting
        belong to."""
        if process not in self._positions and process not in self._pending_in_database(time):
            return  # this process logged no dialogue (submission, or debugging off)
        reached_earlier_lines = False
        for row in reversed(self._new):
            if row["process"] != process:
                continue
            if row["owner"] is not None:
                reached_earlier_lines = True  # they belong to an earlier transaction
                break
            row["owner"] = transaction
            if row["session_start"]:
                reached_earlier_lines = True
                break
        if not reached_earlier_lines:
            self._claims.append((process, transaction))
        position = self._position(process)
        if position is not None:
            position.owner = transaction

    def _position(self, process: str) -> _Position | None:
        if process not in self._positions:
            last = self.session.execute(
                select(SmtpDialogueLine.transaction_id, SmtpDialogueLine.direction, SmtpDialogueLine.text)
                .where(SmtpDialogueLine.process == process)
                .order_by(SmtpDialogueLine.id.desc())
                .limit(1)
            ).first()
            self._positions[process] = None if last is None else _Position(*last)
        return self._positions[process]

    def flush(self) -> None:
        claims = [(process, _id_of(transaction)) for process, transaction in self._claims]
        rows = [
            {**{k: v for k, v in row.items() if k != "owner"}, "transaction_id": _id_of(row["owner"])}
            for row in self._new
        ]
        if claims or rows:
            if self.writer is None:
                store_dialogue(self.session, claims, rows)
            else:
                self.writer.write_dialogue(claims, rows)
        for position in self._positions.values():
            if position is not None and position.owner is not None:
                position.owner = _id_of(position.owner)
        self._new, self._claims = [], []


def store_dialogue(
    session: Session, claims: list[tuple[str, int | None]], rows: list[dict[str, Any]]
) -> None:
    """Attach each claiming process's unattached lines since its session began to the
    transaction id it names, then insert `rows` (SmtpDialogueLine's columns)."""
    for process, transaction_id in claims:
        session_start = (
            select(func.coalesce(func.max(SmtpDialogueLine.id), 0))
            .where(SmtpDialogueLine.process == process, SmtpDialogueLine.session_start.is_(True))
            .scalar_subquery()
        )
        session.execute(
            update(_TABLE)
            .where(
                _TABLE.c.process == process,
                _TABLE.c.transaction_id.is_(None),
                _TABLE.c.id >= session_start,
            )
            .values(transaction_id=transaction_id)
        )
    if rows:
        session.execute(insert(_TABLE), rows)


def _id_of(owner: Any) -> int | None:
    if owner is None or isinstance(owner, int):
        return owner
    return owner.id
