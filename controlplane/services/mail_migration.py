"""Bringing a customer's mail in from their old provider: migration jobs.

An admin of the domain (or a full admin, or the operator) starts a job for one mailbox or for
many (a CSV of address, old server, old login, old password). Each mailbox's copy is queued; a
runner (runners/mail_migration.py) copies from the old IMAP server with Dovecot's dsync, several
mailboxes at a time, and records progress, the result in words and what was copied. On the
cut-over day the admin runs the job again: a one-way pass that copies only what is new, never
removing what was delivered here since. The old passwords are kept sealed (encrypted under a key
derived from the instance secret) until the admin closes the job, which deletes them.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import hashlib
import io

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from controlplane.errors import NotFound, ValidationError
from controlplane.models import Domain, Mailbox, MigrationJob, MigrationMailbox
from controlplane.services import audit, locks, mailboxes, scope
from controlplane.services.scope import Actor
from controlplane.services.storage import format_bytes
from controlplane.validation import normalize_domain

SECURITY_MODES = ("imaps", "starttls")
DEFAULT_PORTS = {"imaps": 993, "starttls": 143}
MAX_ROWS = 5000
MAX_CSV_CHARACTERS = 5_000_000
MAX_FIELD = 320
NO_SUCH_JOB = "No such migration job."


class PasswordSeal:
    """Encrypts old passwords at rest under a key derived from the instance secret."""

    def __init__(self, instance_secret: str) -> None:
        digest = hashlib.sha256(b"letterhead mail migration passwords\0" + instance_secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, password: str) -> str:
        return self._fernet.encrypt(password.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise ValidationError(
                "The old password cannot be read (the instance secret changed): start the job again."
            ) from None


@dataclasses.dataclass(frozen=True)
class MigrationRequest:
    address: str
    old_host: str
    old_port: int
    old_security: str
    old_login: str
    old_password: str


def parse_old_server(text: str, security: str = "imaps") -> tuple[str, int, str]:
    """ "host", "host:port" or "imaps://host[:port]" / "starttls://host[:port]" → (host, port, security)."""
    text = text.strip()
    if "://" in text:
        security, text = text.split("://", 1)
        security = security.lower()
    if security not in SECURITY_MODES:
        raise ValidationError(f"Unknown connection security {security!r}: use imaps or starttls.")
    host, _, port_text = text.rstrip("/").partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValidationError("The old server's port is not a number from 1 to 65535.")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[security]
    try:
        host = normalize_domain(host) if not _is_ip_address(host) else host
    except ValidationError:
        raise ValidationError("The old server is not a host name or an IP address.") from None
    return host, port, security


def _is_ip_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_csv(text: str) -> list[MigrationRequest]:
    """Rows of address, old server, old login, old password (a header row is optional). Every
    problem is reported at once, with its line; nothing is accepted unless every row is good."""
    requests: list[MigrationRequest] = []
    problems: list[str] = []
    seen: set[str] = set()
    if len(text) > MAX_CSV_CHARACTERS:
        raise ValidationError("The CSV is larger than 5 MB: split it into several jobs.")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise ValidationError(f"The CSV could not be read ({error}); nothing was started.") from None
    for number, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() in {"address", "email", "mailbox"}:
            continue
        if len(row) != 4:
            problems.append(
                f"line {number}: expected 4 fields (address, old server, old login, old password)"
            )
            continue
        address, server, login = (cell.strip() for cell in row[:3])
        password = row[3]  # as written: a password may begin or end with a space
        try:
            requests.append(_request(address, server, login, password))
        except ValidationError as error:
            problems.append(f"line {number}: {error}")
            continue
        if address.lower() in seen:
            problems.append(f"line {number}: {address} is listed twice")
        seen.add(address.lower())
    if problems:
        raise ValidationError("The CSV was not accepted, nothing was started: " + "; ".join(problems[:20]))
    if not requests:
        raise ValidationError("The CSV lists no mailboxes.")
    if len(requests) > MAX_ROWS:
        raise ValidationError(f"At most {MAX_ROWS} mailboxes in one job.")
    return requests


def _request(
    address: str, server: str, login: str, password: str, security: str = "imaps"
) -> MigrationRequest:
    host, port, security = parse_old_server(server, security)
    if not login or len(login) > MAX_FIELD:
        raise ValidationError("the old login is missing or too long")
    if not password or len(password) > 1024:
        raise ValidationError("the old password is missing or too long")
    if any(character in login + password for character in "\r\n\0"):
        raise ValidationError("a login or password cannot contain a line break")
    return MigrationRequest(address.strip().lower(), host, port, security, login, password)


def single_request(
    address: str, server: str, login: str, password: str, *, security: str = "imaps"
) -> MigrationRequest:
    return _request(address, server, login, password, security)


def start_job(
    session: Session,
    actor: Actor,
    domain: Domain,
    requests: list[MigrationRequest],
    seal: PasswordSeal,
) -> MigrationJob:
    """Queue a copy for each mailbox; every address must be a mailbox of `domain`."""
    scope.require_domain(actor, domain)
    problems = []
    found: list[tuple[MigrationRequest, int, str]] = []  # with the mailbox's id and address
    listed: set[str] = set()
    for request in requests:
        if request.address in listed:
            problems.append(f"{request.address} is listed twice")
            continue
        listed.add(request.address)
        _local, _, domain_name = request.address.rpartition("@")
        mailbox = mailboxes.find_mailbox(session, request.address) if domain_name == domain.name else None
        if mailbox is None or mailbox.domain_id != domain.id:
            # The same words whether the address is free or another tenant's.
            problems.append(f"{request.address} is not a mailbox of {domain.name}")
        else:
            found.append((request, mailbox.id, mailbox.address))
    if problems:
        raise ValidationError(
            "Nothing was started: " + "; ".join(problems[:20]) + ". Create the mailboxes first."
        )
    # Two copies into one mailbox at once would race each other: the check and the rows it
    # guards are one unit (two requests at the same instant cannot both pass it).
    locks.lock_tenant(session, domain.tenant_id)
    ids = [mailbox_id for _, mailbox_id, _ in found]
    still_there = set(session.scalars(select(Mailbox.id).where(Mailbox.id.in_(ids))))
    if gone := [address for _, mailbox_id, address in found if mailbox_id not in still_there]:
        raise ValidationError(f"Nothing was started: {', '.join(gone[:20])} was deleted meanwhile.")
    _refuse_busy(session, ids, "Nothing was started")
    job = MigrationJob(tenant_id=domain.tenant_id, domain_id=domain.id, created_by=actor.name)
    session.add(job)
    for request, mailbox_id, address in found:
        job.mailboxes.append(
            MigrationMailbox(
                mailbox_id=mailbox_id,
                address=address,
                old_host=request.old_host,
                old_port=request.old_port,
                old_security=request.old_security,
                old_login=request.old_login,
                old_password_sealed=seal.seal(request.old_password),
            )
        )
    session.flush()
    audit.record(
        session,
        actor,
        action="migration.start",
        target=f"job {job.id}",
        tenant_id=domain.tenant_id,
        domain_id=domain.id,
        details={"mailboxes": len(found)},
    )
    return job


def _job_query():
    return select(MigrationJob).options(selectinload(MigrationJob.mailboxes))


def get_job(session: Session, actor: Actor, job_id: int) -> MigrationJob:
    if not 1 <= job_id < 2**63:  # names nothing, and must not reach the driver
        raise NotFound(NO_SUCH_JOB)
    job = session.scalar(_job_query().where(MigrationJob.id == job_id))
    if job is None:
        raise NotFound(NO_SUCH_JOB)
    domain = session.get(Domain, job.domain_id)
    if domain is None:
        raise NotFound(NO_SUCH_JOB)
    scope.require_domain(actor, domain, missing=NO_SUCH_JOB)
    return job


def domain_name(session: Session, job: MigrationJob) -> str:
    domain = session.get(Domain, job.domain_id)
    return domain.name if domain is not None else ""


def list_jobs(session: Session, actor: Actor, domain: Domain) -> list[MigrationJob]:
    scope.require_domain(actor, domain)
    return list(
        session.scalars(
            _job_query().where(MigrationJob.domain_id == domain.id).order_by(MigrationJob.id.desc())
        )
    )


def run_again(session: Session, actor: Actor, job: MigrationJob) -> MigrationJob:
    """The cut-over pass: queue every mailbox again to copy only what is new on the old server."""
    locks.lock_tenant(session, job.tenant_id)
    _require_open(job)
    if any(row.state in ("queued", "running") for row in job.mailboxes):
        raise ValidationError("This job is still copying: run it again once every mailbox has finished.")
    _refuse_busy(session, [row.mailbox_id for row in job.mailboxes], "Nothing was queued again")
    for row in job.mailboxes:
        row.state, row.pass_kind, row.error = "queued", "new", ""
    session.flush()
    audit.record(session, actor, action="migration.again", target=f"job {job.id}", tenant_id=job.tenant_id,
                 domain_id=job.domain_id)  # fmt: skip
    return job


def close_job(session: Session, actor: Actor, job: MigrationJob) -> MigrationJob:
    """Done with it: the old passwords are deleted; the report stays."""
    # One at a time with a re-run of the same job, which would queue copies without passwords.
    locks.lock_tenant(session, job.tenant_id)
    _require_open(job)
    if any(row.state == "running" for row in job.mailboxes):
        raise ValidationError("This job is still copying: close it once every mailbox has finished.")
    # By statements that skip a row a runner claims meanwhile: that copy keeps its password
    # until it finishes (finish() drops it then, the job being closed).
    rows = MigrationMailbox.job_id == job.id
    session.execute(
        update(MigrationMailbox).where(rows, MigrationMailbox.state == "queued")
        .values(state="failed", error="Closed before it ran.")
    )  # fmt: skip
    session.execute(
        update(MigrationMailbox)
        .where(rows, MigrationMailbox.state != "running")
        .values(old_password_sealed=None)
    )
    job.closed_at = dt.datetime.now(dt.UTC)
    session.flush()
    for row in job.mailboxes:
        session.refresh(row)
    audit.record(session, actor, action="migration.close", target=f"job {job.id}", tenant_id=job.tenant_id,
                 domain_id=job.domain_id)  # fmt: skip
    return job


def _refuse_busy(session: Session, mailbox_ids: list[int], nothing_done: str) -> None:
    """Refuse when another copy into one of these mailboxes is queued or running."""
    busy = session.scalars(
        select(MigrationMailbox.address).where(
            MigrationMailbox.mailbox_id.in_(mailbox_ids),
            MigrationMailbox.state.in_(("queued", "running")),
        )
    ).all()
    if busy:
        raise ValidationError(
            f"{nothing_done}: a migration into " + ", ".join(sorted(set(busy))[:20]) + " is still under way."
        )


def _require_open(job: MigrationJob) -> None:
    if job.closed_at is not None:
        raise ValidationError("This job is closed and its old passwords are deleted: start a new one.")


def progress_body(row: MigrationMailbox) -> dict[str, object]:
    """One mailbox's copy as the API and `--json` show it (never the old password)."""
    return {
        "address": row.address,
        "old_server": f"{row.old_security}://{row.old_host}:{row.old_port}",
        "old_login": row.old_login,
        "state": row.state,
        "pass": row.pass_kind,
        "passes": row.passes,
        "messages_total": row.messages_total,
        "bytes_total": row.bytes_total,
        "messages_done": row.messages_done,
        "bytes_done": row.bytes_done,
        "messages_last_pass": row.messages_last_pass,
        "error": row.error,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def mailbox_counts(job: MigrationJob) -> dict[str, int]:
    """How many of the job's mailboxes it holds, and how many are done and stopped."""
    return {
        "mailboxes": len(job.mailboxes),
        "done": sum(row.state == "done" for row in job.mailboxes),
        "failed": sum(row.state == "failed" for row in job.mailboxes),
    }


def report_lines(job: MigrationJob) -> list[str]:
    """The job's report in words, one line per mailbox."""
    lines = []
    for row in job.mailboxes:
        total = f" of {row.messages_total}" if row.messages_total is not None else ""
        copied = f"{row.messages_done}{total} messages ({format_bytes(row.bytes_done)})"
        if row.state == "done":
            new = f", {row.messages_last_pass} new in the last pass" if row.passes > 1 else ""
            lines.append(f"{row.address}: done, {copied}{new}")
        elif row.state == "failed":
            lines.append(f"{row.address}: stopped, {copied}: {row.error}")
        else:
            lines.append(f"{row.address}: {row.state}, {copied}")
    return lines


# --- what the runner calls: no actor, the work was authorised when it was queued -----------------


@dataclasses.dataclass(frozen=True)
class ClaimedCopy:
    row_id: int
    address: str
    old_host: str
    old_port: int
    old_security: str
    old_login: str
    old_password: str = dataclasses.field(repr=False)
    pass_kind: str
    quota_bytes: int
    # What earlier passes brought (a resumed or cut-over pass counts on from there).
    messages_done: int
    bytes_done: int


def recover_interrupted(session: Session, node_id: int | None) -> int:
    """Copies a killed runner left running go back to the queue (dsync resumes where it stopped)."""
    statement = update(MigrationMailbox).where(MigrationMailbox.state == "running")
    if node_id is not None:
        statement = statement.where(
            MigrationMailbox.mailbox_id.in_(select(Mailbox.id).where(Mailbox.node_id == node_id))
        )
    return session.execute(statement.values(state="queued")).rowcount or 0


def has_work(session: Session, node_id: int | None) -> bool:
    """Copies queued, or left running (by a runner that died), for mailboxes this node holds."""
    query = select(MigrationMailbox.id).where(MigrationMailbox.state.in_(("queued", "running")))
    if node_id is not None:
        query = query.join(Mailbox, Mailbox.id == MigrationMailbox.mailbox_id).where(
            Mailbox.node_id == node_id
        )
    return session.scalar(query.limit(1)) is not None


def claim_next(session: Session, seal: PasswordSeal, node_id: int | None) -> ClaimedCopy | None:
    """Take the oldest queued copy of a mailbox this node holds; None when there is none.
    Two runners never take the same one (the state changes only from queued)."""
    query = (
        select(MigrationMailbox, Mailbox)
        .join(Mailbox, Mailbox.id == MigrationMailbox.mailbox_id)
        .where(MigrationMailbox.state == "queued")
        .order_by(MigrationMailbox.id)
        .limit(20)
    )
    if node_id is not None:
        query = query.where(Mailbox.node_id == node_id)
    for row, mailbox in session.execute(query).all():
        taken = session.execute(
            update(MigrationMailbox)
            .where(MigrationMailbox.id == row.id, MigrationMailbox.state == "queued")
            .values(state="running", started_at=dt.datetime.now(dt.UTC), error="")
        ).rowcount
        if not taken:
            continue
        if row.old_password_sealed is None:
            finish(session, row.id, error="The job was closed: its old password is deleted.")
            continue
        try:
            password = seal.open(row.old_password_sealed)
        except ValidationError as error:
            finish(session, row.id, error=error.message)
            continue
        return ClaimedCopy(
            row_id=row.id,
            address=mailbox.address,
            old_host=row.old_host,
            old_port=row.old_port,
            old_security=row.old_security,
            old_login=row.old_login,
            old_password=password,
            pass_kind=row.pass_kind,
            quota_bytes=mailbox.quota_bytes,
            messages_done=row.messages_done,
            bytes_done=row.bytes_done,
        )
    return None


def record_totals(session: Session, row_id: int, messages: int, size: int) -> None:
    session.execute(
        update(MigrationMailbox)
        .where(MigrationMailbox.id == row_id)
        .values(messages_total=messages, bytes_total=size)
    )


def record_progress(session: Session, row_id: int, messages: int, size: int) -> None:
    """How far this pass got: messages and bytes in the mailbox that came from the old server."""
    session.execute(
        update(MigrationMailbox)
        .where(MigrationMailbox.id == row_id, MigrationMailbox.state == "running")
        .values(messages_done=messages, bytes_done=size)
    )


def too_big_for_quota(old_bytes: int, used_bytes: int, quota_bytes: int) -> str | None:
    """Why the copy cannot fit, in words; None when it fits."""
    if used_bytes + old_bytes <= quota_bytes:
        return None
    return (
        f"The old mailbox holds {format_bytes(old_bytes)}, more than the {format_bytes(max(quota_bytes - used_bytes, 0))} "
        f"free here (storage {format_bytes(quota_bytes)}): raise this mailbox's storage and run the migration "
        "again. Nothing was copied."
    )


def requeue(session: Session, row_id: int) -> None:
    """A copy stopped with its runner: queued again, to resume where it stopped."""
    session.execute(
        update(MigrationMailbox).where(MigrationMailbox.id == row_id, MigrationMailbox.state == "running")
        .values(state="queued")
    )  # fmt: skip


def filled_during_copy(used_bytes: int, quota_bytes: int) -> str:
    return (
        f"The mailbox here filled up during the copy ({format_bytes(used_bytes)} of its {format_bytes(quota_bytes)}): "
        "the copy stopped and what was copied stays. Raise this mailbox's storage and run the migration "
        "again to copy the rest."
    )


def finish(session: Session, row_id: int, *, error: str = "", copied_this_pass: int = 0) -> None:
    """The pass ended: done, or failed with `error` in words (what was copied stays)."""
    row = session.get(MigrationMailbox, row_id)
    if row is None:  # the mailbox (or its job) was deleted meanwhile
        return
    row.state = "failed" if error else "done"
    row.error = error[:500]
    row.passes += 1
    row.messages_last_pass = max(copied_this_pass, 0)
    row.finished_at = dt.datetime.now(dt.UTC)
    if row.job.closed_at is not None:  # closed while it copied: its password goes now
        row.old_password_sealed = None
    session.flush()
