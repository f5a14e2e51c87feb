"""DMARC aggregate reports (RFC 7489 §7.2): who sends mail as a hosted domain, and whether it
passes SPF or DKIM aligned with the domain, per day, for the domain's admins.

Every domain's DMARC record asks receivers to mail their reports to the platform's
dmarc-reports@ address; Postfix spools each message with the TLS reports (runners/
tls_report_spool.py reads both). A report is XML, usually zipped or gzipped, attached to a mail.
Anyone can send one, so each is treated as hostile: the message, the archive and the unpacked
XML are size-capped before they are read, the XML is parsed without DTDs or entities
(defusedxml), and only the reports about domains hosted here are kept, each for that domain's
admins only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import io
import ipaddress
import zipfile
import zlib
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from controlplane.errors import ValidationError
from controlplane.models import DmarcRecord, DmarcReport, Domain
from controlplane.services import scope
from controlplane.services.report_intake import add_once, gunzip_capped, unpacked_too_large
from controlplane.services.scope import Actor

# A big receiver's daily report for a busy domain is a few hundred KB of XML; far beyond is not one.
MAX_MESSAGE_BYTES = 5 * 1024 * 1024
MAX_REPORT_BYTES = 20 * 1024 * 1024
MAX_RECORDS = 20_000
# Counted before parsing: a parsed element costs far more memory than its bytes, and a small
# archive of "<a/>" would otherwise become millions of them in the reader's memory.
MAX_ELEMENTS = 40 * MAX_RECORDS
# A report covers a past day; one beginning days ahead is not a report (and would stay on top).
MAX_DAYS_AHEAD = 2
EARLIEST_YEAR = 2000
XML_TYPES = ("text/xml", "application/xml")
ARCHIVE_TYPES = ("application/zip", "application/x-zip-compressed", "application/gzip", "application/x-gzip")
DISPOSITIONS = ("none", "quarantine", "reject")


class NoDmarcReport(ValidationError):
    """The message carries nothing that looks like a DMARC report (it may be a TLS report)."""


@dataclasses.dataclass(frozen=True)
class ParsedRecord:
    source_ip: str
    messages: int
    header_from: str
    dkim_aligned: bool
    spf_aligned: bool
    disposition: str
    dkim_results: str
    spf_results: str


@dataclasses.dataclass(frozen=True)
class ParsedReport:
    organization: str
    report_id: str
    contact: str
    domain: str
    policy: str
    begins_at: dt.datetime
    ends_at: dt.datetime
    records: tuple[ParsedRecord, ...]


def report_from_message(message_bytes: bytes) -> ParsedReport:
    """The report a DMARC report mail carries. Raises NoDmarcReport when it carries none, and
    ValidationError saying why when it carries a bad one."""
    if len(message_bytes) > MAX_MESSAGE_BYTES:
        raise ValidationError(
            f"The message is larger than {MAX_MESSAGE_BYTES // 1024**2} MB: not a DMARC report."
        )
    message = email.message_from_bytes(message_bytes, policy=email.policy.default)
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if filename.endswith((".json", ".json.gz")) or "tlsrpt" in content_type:
            continue  # a TLS report (RFC 8460)
        if not (
            content_type in XML_TYPES + ARCHIVE_TYPES or filename.endswith((".xml", ".xml.gz", ".zip", ".gz"))
        ):
            continue
        payload = part.get_payload(decode=True) or b""
        return parse_report(_unpacked(payload, content_type, filename))
    raise NoDmarcReport("The message carries no DMARC report (XML, zip or gzip).")


def _unpacked(payload: bytes, content_type: str, filename: str) -> bytes:
    if (
        payload[:4] == b"PK\x03\x04"
        or filename.endswith(".zip")
        or "zip" in content_type
        and "gzip" not in content_type
    ):
        return _unzip(payload)
    if payload[:2] == b"\x1f\x8b":
        return gunzip_capped(payload, MAX_REPORT_BYTES)
    return payload


def _unzip(data: bytes) -> bytes:
    """The archive's one XML file, read up to MAX_REPORT_BYTES whatever its header claims."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            raise ValidationError("A DMARC report archive holds exactly one file.")
        with archive.open(members[0]) as member:
            out = member.read(MAX_REPORT_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        raise ValidationError(f"The report is not a readable zip archive ({error}).") from None
    if len(out) > MAX_REPORT_BYTES:
        raise unpacked_too_large(MAX_REPORT_BYTES)
    return out


def parse_report(xml: bytes) -> ParsedReport:
    """An RFC 7489 aggregate report. Raises ValidationError."""
    if len(xml) > MAX_REPORT_BYTES:
        raise unpacked_too_large(MAX_REPORT_BYTES)
    if xml.count(b"<") > MAX_ELEMENTS:
        raise ValidationError(f"The report has more than {MAX_ELEMENTS} elements: refused.")
    try:
        root = SafeXml.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise ValidationError("The report declares a DTD or entities: refused.") from None
    except SafeXml.ParseError as error:
        raise ValidationError(f"The report is not valid XML ({error}).") from None
    if _name(root) != "feedback":
        raise ValidationError("The XML is not a DMARC aggregate report (no <feedback>).")
    metadata = _child(root, "report_metadata")
    published = _child(root, "policy_published")
    date_range = _child(metadata, "date_range")
    begins_at, ends_at = _moment(date_range, "begin"), _moment(date_range, "end")
    if begins_at > ends_at:
        raise ValidationError("The report's period ends before it starts.")
    records = [element for element in root if _name(element) == "record"]
    if len(records) > MAX_RECORDS:
        raise ValidationError(f"The report lists more than {MAX_RECORDS} records.")
    return ParsedReport(
        organization=_text(metadata, "org_name", 255),
        report_id=_text(metadata, "report_id", 255),
        contact=_text(metadata, "email", 255, required=False),
        domain=_text(published, "domain", 253).lower().rstrip("."),
        policy=_text(published, "p", 20, required=False).lower(),
        begins_at=begins_at,
        ends_at=ends_at,
        records=tuple(_record(element) for element in records),
    )


def _record(element: Element) -> ParsedRecord:
    row = _child(element, "row")
    evaluated = _child(row, "policy_evaluated")
    source = _text(row, "source_ip", 64)
    try:
        source = str(ipaddress.ip_address(source))
    except ValueError:
        raise ValidationError(f"A record's source_ip {source[:64]!r} is not an IP address.") from None
    count_text = _text(row, "count", 12)
    if not count_text.isdigit() or int(count_text) >= 2**31:
        raise ValidationError("A record's count is not a number of messages.")
    disposition = _text(evaluated, "disposition", 20, required=False).lower() or "none"
    identifiers = _optional_child(element, "identifiers")
    results = _optional_child(element, "auth_results")
    return ParsedRecord(
        source_ip=source,
        messages=int(count_text),
        header_from=_text(identifiers, "header_from", 253, required=False).lower()
        if identifiers is not None
        else "",
        dkim_aligned=_text(evaluated, "dkim", 10, required=False).lower() == "pass",
        spf_aligned=_text(evaluated, "spf", 10, required=False).lower() == "pass",
        disposition=disposition if disposition in DISPOSITIONS else "none",
        dkim_results=_results(results, "dkim"),
        spf_results=_results(results, "spf"),
    )


def _results(results: Element | None, kind: str) -> str:
    if results is None:
        return ""
    found = [
        f"{_text(item, 'domain', 253, required=False)}: {_text(item, 'result', 20, required=False)}"
        for item in results
        if _name(item) == kind
    ]
    return ", ".join(found)[:500]


def _name(element: Element) -> str:
    return element.tag.rpartition("}")[2]  # reports may carry a namespace


def _optional_child(parent: Element, name: str) -> Element | None:
    return next((child for child in parent if _name(child) == name), None)


def _child(parent: Element, name: str) -> Element:
    child = _optional_child(parent, name)
    if child is None:
        raise ValidationError(f"The report has no <{name}>.")
    return child


def _text(parent: Element, name: str, limit: int, *, required: bool = True) -> str:
    child = _optional_child(parent, name)
    value = (child.text or "").strip() if child is not None else ""
    if not value and required:
        raise ValidationError(f"The report's <{name}> is missing or empty.")
    return "".join(ch for ch in value if ch.isprintable())[:limit]


def _moment(parent: Element, name: str) -> dt.datetime:
    text = _text(parent, name, 20)
    if not text.isdigit():
        raise ValidationError(f"The report's <{name}> is not a time (seconds since 1970).")
    try:
        moment = dt.datetime.fromtimestamp(int(text), dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(f"The report's <{name}> is not a time a report covers.") from None
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=MAX_DAYS_AHEAD)
    if moment.year < EARLIEST_YEAR or moment > ahead:
        raise ValidationError(f"The report's <{name}> is not a time a report covers.")
    return moment


@dataclasses.dataclass(frozen=True)
class Kept:
    domain: str  # the hosted domain it was kept for; "" when none
    already_kept: bool


def store_report(session: Session, report: ParsedReport) -> Kept:
    """Keep a report about a domain hosted here, once however often it is sent; a report about
    any other domain is dropped (anyone may send one about anything)."""
    domain_id = session.scalar(select(Domain.id).where(Domain.name == report.domain))
    if domain_id is None:
        return Kept("", False)
    row = DmarcReport(
        domain_id=domain_id,
        organization=report.organization,
        report_id=report.report_id,
        contact=report.contact,
        policy=report.policy,
        begins_at=report.begins_at,
        ends_at=report.ends_at,
        records=[DmarcRecord(**dataclasses.asdict(record)) for record in report.records],
    )
    return Kept(report.domain, already_kept=not add_once(session, row))


def receive_message(session: Session, message_bytes: bytes) -> Kept:
    """Parse and keep a DMARC report mail. Raises NoDmarcReport, ValidationError."""
    return store_report(session, report_from_message(message_bytes))


# --- what the domain's admins read --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DayTotals:
    day: dt.date
    passing: int  # messages with DKIM or SPF aligned: DMARC passes
    failing: int

    @property
    def total(self) -> int:
        return self.passing + self.failing


@dataclasses.dataclass(frozen=True)
class Sender:
    """A source that sent as the domain over the period, and how its mail fared."""

    source_ip: str
    messages: int
    passing: int
    dkim_aligned: int
    spf_aligned: int
    quarantined: int
    rejected: int
    reporters: tuple[str, ...]
    dkim_results: str
    spf_results: str

    @property
    def verdict(self) -> str:
        if self.passing == self.messages:
            return "passes DMARC"
        if self.passing == 0:
            return "fails DMARC: not the domain's own mail, or a server of yours not yet in SPF or signing with DKIM"
        return f"passes for {self.passing} of {self.messages} messages"


@dataclasses.dataclass(frozen=True)
class DomainDmarc:
    days: list[DayTotals]
    senders: list[Sender]
    reports: int
    first: dt.datetime | None
    last: dt.datetime | None


def domain_dmarc(
    session: Session, actor: Actor, domain: Domain, *, days: int = 30, today: dt.date | None = None
) -> DomainDmarc:
    """The last `days` days of the domain's DMARC reports: messages passing and failing per day
    (by the day each report's period began), and each sending source, most messages first."""
    scope.require_domain(actor, domain)
    today = today or dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=days - 1)
    since = dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC)
    reports = session.scalars(
        select(DmarcReport)
        .where(
            DmarcReport.domain_id == domain.id,
            DmarcReport.begins_at >= since,
            DmarcReport.begins_at < since + dt.timedelta(days=days),
        )
        .options(selectinload(DmarcReport.records))
        .order_by(DmarcReport.begins_at)
    ).all()
    per_day: dict[dt.date, list[int]] = {first_day + dt.timedelta(days=n): [0, 0] for n in range(days)}
    senders: dict[str, dict[str, Any]] = {}
    for report in reports:
        day = report.begins_at.astimezone(dt.UTC).date()
        for record in report.records:
            passed = record.dkim_aligned or record.spf_aligned
            if day in per_day:
                per_day[day][0 if passed else 1] += record.messages
            sender = senders.setdefault(
                record.source_ip,
                {"messages": 0, "passing": 0, "dkim": 0, "spf": 0, "quarantine": 0, "reject": 0,
                 "reporters": set(), "dkim_results": "", "spf_results": ""},
            )  # fmt: skip
            sender["messages"] += record.messages
            sender["passing"] += record.messages if passed else 0
            sender["dkim"] += record.messages if record.dkim_aligned else 0
            sender["spf"] += record.messages if record.spf_aligned else 0
            if record.disposition in ("quarantine", "reject"):
                sender[record.disposition] += record.messages
            sender["reporters"].add(report.organization)
            sender["dkim_results"] = sender["dkim_results"] or record.dkim_results
            sender["spf_results"] = sender["spf_results"] or record.spf_results
    return DomainDmarc(
        days=[DayTotals(day, passing, failing) for day, (passing, failing) in per_day.items()],
        senders=sorted(
            (
                Sender(
                    ip,
                    s["messages"],
                    s["passing"],
                    s["dkim"],
                    s["spf"],
                    s["quarantine"],
                    s["reject"],
                    tuple(sorted(s["reporters"])),
                    s["dkim_results"],
                    s["spf_results"],
                )  # fmt: skip
                for ip, s in senders.items()
            ),
            key=lambda sender: (-sender.messages, sender.source_ip),
        ),
        reports=len(reports),
        first=reports[0].begins_at if reports else None,
        last=reports[-1].ends_at if reports else None,
    )


def dmarc_body(summary: DomainDmarc) -> dict[str, Any]:
    """The summary as the API gives it."""
    return {
        "reports": summary.reports,
        "first": summary.first,
        "last": summary.last,
        "days": [{"day": d.day, "passing": d.passing, "failing": d.failing} for d in summary.days],
        "senders": [
            {**dataclasses.asdict(s), "reporters": list(s.reporters), "verdict": s.verdict}
            for s in summary.senders
        ],
    }
