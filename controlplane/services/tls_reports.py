"""TLS reports (SMTP TLS Reporting, RFC 8460): what other mail systems say about reaching our MX
over TLS, per hosted domain.

Every domain's `_smtp._tls` record names the platform host's tls-reports address; Postfix hands
each message sent there to a spool (runners/periodic.py reads it). A report is JSON, usually
gzipped, attached to a mail (or, from some senders, the mail's whole body). Anyone can send one,
so each is treated as hostile: its size and its decompressed size are capped before it is read,
and only the policies of domains hosted here are kept, each for that domain's admins only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from controlplane.errors import ValidationError
from controlplane.models import Domain, TlsReport, TlsReportFailure
from controlplane.services import scope
from controlplane.services.report_intake import add_once, gunzip_capped
from controlplane.services.scope import Actor

# A report for a big sender's day is a few KB gzipped; anything far beyond is not a report.
MAX_MESSAGE_BYTES = 5 * 1024 * 1024
MAX_REPORT_BYTES = 10 * 1024 * 1024
MAX_POLICIES = 1000
MAX_FAILURE_DETAILS = 100
# A report covers a day or so; dates outside these years are not a report's.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2200
REPORT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json", "application/gzip", "application/json")

# RFC 8460 §4.3's result types, in words for a domain admin: what the sending system met here.
RESULT_WORDS = {
    "starttls-not-supported": "our server did not offer STARTTLS",
    "certificate-host-mismatch": "our certificate does not name the MX host the sender connected to",
    "certificate-expired": "our certificate had expired",
    "certificate-not-trusted": "our certificate is not signed by an authority the sender trusts",
    "validation-failure": "the sender could not validate our certificate or policy",
    "tlsa-invalid": "the domain's DANE (TLSA) record is invalid",
    "dnssec-invalid": "the domain's DNSSEC signatures did not validate",
    "dane-required": "the sender requires DANE and the domain has none",
    "sts-policy-fetch-error": "the sender could not fetch the MTA-STS policy (https://mta-sts.<domain>)",
    "sts-policy-invalid": "the domain's MTA-STS policy is invalid",
    "sts-webpki-invalid": "the certificate of the MTA-STS policy's web server was not valid",
}


@dataclasses.dataclass(frozen=True)
class Failure:
    result_type: str
    sending_mta_ip: str
    receiving_mx_hostname: str
    receiving_ip: str
    failed_sessions: int
    details: str

    @property
    def words(self) -> str:
        return RESULT_WORDS.get(self.result_type, f"the sender reports “{self.result_type}”")


@dataclasses.dataclass(frozen=True)
class PolicyResult:
    domain: str
    policy_type: str
    successful_sessions: int
    failed_sessions: int
    failures: tuple[Failure, ...]


@dataclasses.dataclass(frozen=True)
class ParsedReport:
    organization: str
    report_id: str
    contact: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    policies: tuple[PolicyResult, ...]


def report_from_message(message_bytes: bytes) -> ParsedReport:
    """The report a TLS-report mail carries. Raises ValidationError saying why it is not one."""
    if len(message_bytes) > MAX_MESSAGE_BYTES:
        raise ValidationError(
            f"The message is larger than {MAX_MESSAGE_BYTES // 1024 // 1024} MB: not a TLS report."
        )
    message = email.message_from_bytes(message_bytes, policy=email.policy.default)
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if content_type in REPORT_TYPES or filename.endswith((".json", ".json.gz")):
            payload = part.get_payload(decode=True) or b""
            compressed = (
                content_type.endswith("gzip") or filename.endswith(".gz") or payload[:2] == b"\x1f\x8b"
            )
            return parse_report(payload, compressed=compressed)
    raise ValidationError("The message carries no TLS report (application/tlsrpt+gzip or +json).")


def parse_report(data: bytes, *, compressed: bool) -> ParsedReport:
    """An RFC 8460 JSON report (gzipped when `compressed`). Raises ValidationError."""
    if compressed:
        data = gunzip_capped(data, MAX_REPORT_BYTES)
    if len(data) > MAX_REPORT_BYTES:
        raise ValidationError("The report is too large.")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise ValidationError("The report is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ValidationError("The report is not a JSON object.")
    date_range = _object(document, "date-range")
    policies = document.get("policies")
    if not isinstance(policies, list) or not policies:
        raise ValidationError("The report lists no policies.")
    if len(policies) > MAX_POLICIES:
        raise ValidationError(f"The report lists more than {MAX_POLICIES} policies.")
    starts_at, ends_at = _time(date_range, "start-datetime"), _time(date_range, "end-datetime")
    if starts_at > ends_at:
        raise ValidationError("The report's period ends before it starts.")
    return ParsedReport(
        organization=_text(document, "organization-name", 255),
        report_id=_text(document, "report-id", 255),
        contact=_text(document, "contact-info", 255, required=False),
        starts_at=starts_at,
        ends_at=ends_at,
        policies=tuple(_policy(item) for item in policies),
    )


def _policy(item: Any) -> PolicyResult:
    if not isinstance(item, dict):
        raise ValidationError("A policy entry is not an object.")
    policy = _object(item, "policy")
    summary = _object(item, "summary")
    details = item.get("failure-details", [])
    if not isinstance(details, list) or len(details) > MAX_FAILURE_DETAILS:
        raise ValidationError(f"A policy's failure details are not a list of at most {MAX_FAILURE_DETAILS}.")
    return PolicyResult(
        domain=_text(policy, "policy-domain", 253).lower().rstrip("."),
        policy_type=_text(policy, "policy-type", 30),
        successful_sessions=_count(summary, "total-successful-session-count"),
        failed_sessions=_count(summary, "total-failure-session-count"),
        failures=tuple(_failure(detail) for detail in details),
    )


def _failure(detail: Any) -> Failure:
    if not isinstance(detail, dict):
        raise ValidationError("A failure detail is not an object.")
    extra = [
        _text(detail, key, 500, required=False) for key in ("failure-reason-code", "additional-information")
    ]
    return Failure(
        result_type=_text(detail, "result-type", 60),
        sending_mta_ip=_text(detail, "sending-mta-ip", 64, required=False),
        receiving_mx_hostname=_text(detail, "receiving-mx-hostname", 255, required=False),
        receiving_ip=_text(detail, "receiving-ip", 64, required=False),
        failed_sessions=_count(detail, "failed-session-count"),
        details=" ".join(part for part in extra if part),
    )


def _object(document: dict, key: str) -> dict:
    value = document.get(key)
    if not isinstance(value, dict):
        raise ValidationError(f"The report has no “{key}” object.")
    return value


def _text(document: dict, key: str, limit: int, *, required: bool = True) -> str:
    value = document.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"The report's “{key}” is missing or not text.")
    return "".join(ch for ch in value.strip() if ch.isprintable())[:limit]


def _count(document: dict, key: str) -> int:
    value = document.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ValidationError(f"The report's “{key}” is not a session count.")
    return value


def _time(document: dict, key: str) -> dt.datetime:
    text = _text(document, key, 40)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValidationError(f"The report's “{key}” is not a date and time.") from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValidationError(f"The report's “{key}” is not a date a report covers.")
    return moment


@dataclasses.dataclass(frozen=True)
class Kept:
    domains: list[str]  # the hosted domains a policy was stored for
    already_kept: int  # policies for hosted domains stored before (the report sent again)


def store_report(session: Session, report: ParsedReport) -> Kept:
    """Keep the report's policies for the domains hosted here, each once however often it is
    sent. Policies about other domains are dropped: anyone may send a report about anything."""
    names = {policy.domain for policy in report.policies}
    hosted = dict(session.execute(select(Domain.name, Domain.id).where(Domain.name.in_(names))).all())
    stored, again = [], 0
    for policy in report.policies:
        domain_id = hosted.get(policy.domain)
        if domain_id is None:
            continue
        row = TlsReport(
            domain_id=domain_id,
            organization=report.organization,
            report_id=report.report_id,
            contact=report.contact,
            policy_type=policy.policy_type,
            starts_at=report.starts_at,
            ends_at=report.ends_at,
            successful_sessions=policy.successful_sessions,
            failed_sessions=policy.failed_sessions,
            failures=[TlsReportFailure(**dataclasses.asdict(failure)) for failure in policy.failures],
        )
        if add_once(session, row):
            stored.append(policy.domain)
        else:
            again += 1  # sent before (or the same policy listed twice)
    return Kept(stored, again)


def receive_message(session: Session, message_bytes: bytes) -> Kept:
    """Parse and keep a TLS-report mail. Raises ValidationError."""
    return store_report(session, report_from_message(message_bytes))


@dataclasses.dataclass(frozen=True)
class DomainReport:
    organization: str
    report_id: str
    contact: str
    policy_type: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    successful_sessions: int
    failed_sessions: int
    failures: tuple[Failure, ...]


def report_body(report: DomainReport) -> dict[str, Any]:
    """A report as the API and `letterhead tls-reports show --json` give it."""
    body = dataclasses.asdict(report)
    body["failures"] = [
        {**dataclasses.asdict(failure), "explanation": failure.words} for failure in report.failures
    ]
    return body


def domain_reports(session: Session, actor: Actor, domain: Domain, *, limit: int = 100) -> list[DomainReport]:
    """The domain's latest TLS reports, newest period first: for its admins and its tenant's."""
    scope.require_domain(actor, domain)
    rows = session.scalars(
        select(TlsReport)
        .where(TlsReport.domain_id == domain.id)
        .options(selectinload(TlsReport.failures))
        .order_by(TlsReport.ends_at.desc(), TlsReport.id.desc())
        .limit(limit)
    )
    return [
        DomainReport(
            organization=row.organization,
            report_id=row.report_id,
            contact=row.contact,
            policy_type=row.policy_type,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            successful_sessions=row.successful_sessions,
            failed_sessions=row.failed_sessions,
            failures=tuple(
                Failure(
                    f.result_type,
                    f.sending_mta_ip,
                    f.receiving_mx_hostname,
                    f.receiving_ip,
                    f.failed_sessions,
                    f.details,
                )
                for f in row.failures
            ),
        )  # fmt: skip
        for row in rows
    ]
