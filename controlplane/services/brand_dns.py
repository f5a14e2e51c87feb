"""The DNS records each domain needs for its server host (its brand's, or the platform's), and
what a check last found there, in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import dns.resolver
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.dns.checks import RecordCheck, check_records, make_resolver
from controlplane.dns.records import DkimRecord, ExpectedRecord, expected_records
from controlplane.errors import ValidationError
from controlplane.models import Brand, Domain
from controlplane.models.base import utcnow
from controlplane.services import brands, dkim, scope
from controlplane.services.scope import Actor
from controlplane.settings import Settings
from controlplane.validation import normalize_hostname


def mta_sts_policy(settings: Settings, domain: Domain) -> str:
    """RFC 8461 policy text: senders may deliver only to the domain's server host over TLS."""
    mode = settings.mta_sts_mode if settings.mta_sts_mode in ("testing", "enforce", "none") else "testing"
    return f"version: STSv1\nmode: {mode}\nmx: {brands.server_hostname(settings, domain)}\nmax_age: 604800\n"


def mta_sts_id(settings: Settings, domain: Domain) -> str:
    """Changes whenever the policy does, as RFC 8461 asks of the TXT record's id."""
    return hashlib.sha256(mta_sts_policy(settings, domain).encode()).hexdigest()[:20]


def tls_report_address(settings: Settings) -> str:
    """Where domains ask for TLS reports: the platform host's tls-reports@, whose mail Letterhead
    reads and shows per domain (services/tls_reports.py)."""
    return f"tls-reports@{normalize_hostname(settings.hostname)}"


def dmarc_report_address(settings: Settings) -> str:
    """Where domains ask for DMARC aggregate reports: the platform host's dmarc-reports@, whose
    mail Letterhead reads and shows per domain (services/dmarc_reports.py)."""
    return f"dmarc-reports@{normalize_hostname(settings.hostname)}"


def dns_plan(settings: Settings, domain: Domain) -> list[ExpectedRecord]:
    """The records `domain` needs for its brand host (or the platform's, without a brand)."""
    return expected_records(
        domain=domain.name,
        brand_host=brands.server_hostname(settings, domain),
        platform_host=settings.hostname,
        platform_addresses=settings.platform_address_list,
        ports=settings.ports,
        mta_sts_id=mta_sts_id(settings, domain),
        tls_report_address=tls_report_address(settings),
        dmarc_report_address=dmarc_report_address(settings),
        dkim=dkim_records(domain),
        caa_identity=settings.acme_caa_identity,
        relay_host=relay_host(settings.relayhost),
    )


def relay_host(relayhost: str) -> str:
    """The host name in Postfix's `relayhost` ("[smtp.example.net]:587", "smtp.example.net")."""
    value = relayhost.strip()
    if not value:
        return ""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def dkim_records(domain: Domain) -> tuple[DkimRecord, ...]:
    """The active key, then those still published after a rotation."""
    keys = sorted(
        (key for key in domain.dkim_keys if key.state != "retired"),
        key=lambda k: (k.state != "active", -k.id),
    )
    return tuple(
        DkimRecord(
            selector=key.selector,
            value=dkim.record_value(key),
            active=key.state == "active",
            retire_after=key.retire_after.date().isoformat() if key.retire_after else "",
        )
        for key in keys
    )


def resolver_for(settings: Settings) -> dns.resolver.Resolver:
    """The configured DNS server ("address", "address:port" or "[v6]:port"), or the system's."""
    value = settings.dns_resolver.strip()
    if not value:
        return dns.resolver.Resolver()
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or "53"
    elif value.count(":") == 1:
        address, port = value.split(":")
    else:
        address, port = value, "53"
    if not port.isdigit():
        raise ValidationError(f"The DNS resolver {value!r} has a bad port.", field="dns_resolver")
    return make_resolver(address, int(port))


@dataclasses.dataclass(frozen=True)
class DomainDnsReport:
    domain: str
    checked_at: dt.datetime
    checks: list[RecordCheck]

    @property
    def all_ok(self) -> bool:
        """Whether everything the domain's owner publishes is right (the operator's records aside)."""
        return all(check.state == "ok" for check in self.checks if not check.expected.operator)


def check_domain_dns(
    session: Session,
    actor: Actor,
    settings: Settings,
    domain: Domain,
    resolver: dns.resolver.Resolver | None = None,
) -> DomainDnsReport:
    """Ask DNS now; the result is kept on the brand (or shown only, without a brand)."""
    scope.require_domain(actor, domain)
    checks = check_records(dns_plan(settings, domain), resolver or resolver_for(settings))
    report = DomainDnsReport(domain=domain.name, checked_at=utcnow(), checks=checks)
    if domain.brand is not None:
        _store_report(domain.brand, report)
        session.flush()
    return report


def _store_report(brand: Brand, report: DomainDnsReport) -> None:
    stored = json.loads(brand.dns_report) if brand.dns_report else {}
    stored[report.domain] = {
        "checked_at": report.checked_at.isoformat(),
        "checks": [
            {
                "name": c.expected.name,
                "type": c.expected.type,
                "expected": c.expected.value,
                "state": c.state,
                "found": list(c.found),
                "note": c.note,
                "operator": c.expected.operator,
            }
            for c in report.checks
        ],
    }
    brand.dns_report, brand.dns_checked_at = json.dumps(stored, sort_keys=True), report.checked_at


@dataclasses.dataclass(frozen=True)
class RecordState:
    """One record to create, with what the last check found for it."""

    record: ExpectedRecord
    state: str  # ok, missing, wrong, propagating, unchecked (never checked, or no answer)
    found: tuple[str, ...] = ()
    note: str = ""


@dataclasses.dataclass(frozen=True)
class DomainDnsStates:
    domain: Domain
    checked_at: dt.datetime | None
    records: list[RecordState]


def dns_states(settings: Settings, domain: Domain, report: DomainDnsReport | None = None) -> DomainDnsStates:
    """Every record the domain needs, each with its state from `report` or, without one, from
    the last check kept on its brand; a record the check did not cover is "unchecked"."""
    if report is not None:
        checked_at = report.checked_at
        found = {(c.expected.name, c.expected.type, c.expected.value): c for c in report.checks}
        states = {key: (c.state, tuple(c.found), c.note) for key, c in found.items()}
    else:
        stored = json.loads(domain.brand.dns_report) if domain.brand and domain.brand.dns_report else {}
        kept = stored.get(domain.name, {})
        checked_at = dt.datetime.fromisoformat(kept["checked_at"]) if "checked_at" in kept else None
        states = {
            (c["name"], c["type"], c["expected"]): (c["state"], tuple(c["found"]), c["note"])
            for c in kept.get("checks", [])
        }
    records = []
    for record in dns_plan(settings, domain):
        state, found, note = states.get((record.name, record.type, record.value), ("unchecked", (), ""))
        records.append(RecordState(record, state, found, note))
    return DomainDnsStates(domain, checked_at, records)


def check_brand_dns(
    session: Session, actor: Actor, settings: Settings, brand: Brand
) -> list[DomainDnsReport]:
    """Check now every domain of `brand` the actor may see."""
    brands.get_brand(session, actor, brand.id)
    return [
        check_domain_dns(session, actor, settings, d) for d in scope.brand_domains_seen(actor, brand.domains)
    ]


def check_all_brand_dns(
    session: Session, settings: Settings, resolver: dns.resolver.Resolver | None = None
) -> int:
    """The periodic check: every domain that uses a brand. Returns how many were checked."""
    resolver = resolver or resolver_for(settings)
    domains = session.scalars(select(Domain).where(Domain.brand_id.is_not(None)).order_by(Domain.id)).all()
    for domain in domains:
        check_domain_dns(session, scope.OPERATOR, settings, domain, resolver)
    return len(domains)
