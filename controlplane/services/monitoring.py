"""What is wrong, and the figures a monitor graphs: certificates, DNS, storage pools, mail
results and logins, and how far the log follower lags.

Warnings about a tenant's own brands and pool are its full admins' to see (the panel's
dashboard); the operator sees every tenant's through `letterhead status` and the metrics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.models import (
    AuthEvent,
    Brand,
    LogCheckpoint,
    MailRecipientResult,
    PlatformCertificate,
    Tenant,
)
from controlplane.models.base import utcnow
from controlplane.services import scope, storage
from controlplane.services.scope import Actor

EXPIRY_WARNING = dt.timedelta(days=14)
POOL_NEARLY_FULL = 0.9
FAILING_DNS_STATES = ("missing", "wrong")


@dataclasses.dataclass(frozen=True)
class HealthWarning:
    about: str  # a brand's hostname, a tenant's name
    kind: str  # certificate, dns, pool
    message: str


def _certificate_warnings(brand: Brand | PlatformCertificate, now: dt.datetime) -> list[HealthWarning]:
    if brand.cert_not_after is not None and brand.cert_not_after <= now:
        day = brand.cert_not_after.date().isoformat()
        return [
            HealthWarning(
                brand.hostname, "certificate", f"The certificate of {brand.hostname} expired on {day}."
            )
        ]
    if brand.cert_status == "failed":
        return [
            HealthWarning(brand.hostname, "certificate",
                    f"No certificate could be obtained for {brand.hostname}: {brand.cert_error or 'no reason given'}")
        ]  # fmt: skip
    if brand.cert_not_after is not None and brand.cert_not_after <= now + EXPIRY_WARNING:
        day = brand.cert_not_after.date().isoformat()
        return [
            HealthWarning(brand.hostname, "certificate",
                    f"The certificate of {brand.hostname} expires on {day} and has not been renewed yet.")
        ]  # fmt: skip
    return []


def _dns_warnings(brand: Brand) -> list[HealthWarning]:
    stored = json.loads(brand.dns_report) if brand.dns_report else {}
    warnings = []
    # The brand's domains as they are now: a report kept for a domain since moved or deleted
    # is not this brand's (nor, perhaps, this tenant's) any more.
    for domain in sorted(domain.name for domain in brand.domains):
        report = stored.get(domain, {})
        # The platform operator's own records (DMARC report authorisation) are not the tenant's to fix.
        failing = [
            check
            for check in report.get("checks", [])
            if check.get("state") in FAILING_DNS_STATES and not check.get("operator")
        ]
        if failing:
            records = ", ".join(sorted({f"{check['type']} {check['name']}" for check in failing}))
            warnings.append(
                HealthWarning(
                    brand.hostname,
                    "dns",
                    f"DNS of {domain} is missing or wrong at the last check: {records}.",
                )
            )
    return warnings


def _pool_warning(session: Session, tenant: Tenant) -> list[HealthWarning]:
    usage = storage.pool_usage(session, tenant)
    if usage.total_bytes and usage.allocated_bytes >= POOL_NEARLY_FULL * usage.total_bytes:
        share = round(100 * usage.allocated_bytes / usage.total_bytes)
        return [
            HealthWarning(tenant.name, "pool",
                    f"The storage pool of {tenant.name} is {share}% given out "
                    f"({storage.format_bytes(usage.free_bytes)} left).")
        ]  # fmt: skip
    return []


def _warnings(session: Session, tenants: Iterable[Tenant], now: dt.datetime) -> list[HealthWarning]:
    warnings: list[HealthWarning] = []
    for tenant in tenants:
        for brand in session.scalars(
            select(Brand).where(Brand.tenant_id == tenant.id).order_by(Brand.hostname)
        ):
            warnings += _certificate_warnings(brand, now) + _dns_warnings(brand)
        warnings += _pool_warning(session, tenant)
    return warnings


def tenant_warnings(
    session: Session, actor: Actor, tenant: Tenant, now: dt.datetime | None = None
) -> list[HealthWarning]:
    """What is wrong with the tenant's brands and pool, for its full admins."""
    scope.require_full_admin(actor, tenant)
    return _warnings(session, [tenant], now or utcnow())


def all_warnings(session: Session, now: dt.datetime | None = None) -> list[HealthWarning]:
    """Every tenant's warnings, for the operator (status, metrics): never shown to a tenant."""
    return _warnings(session, session.scalars(select(Tenant).order_by(Tenant.name)), now or utcnow())


def platform_warnings(session: Session, now: dt.datetime | None = None) -> list[HealthWarning]:
    """The platform hosts' and setup names' certificates (the operator's: never a tenant's)."""
    return [
        warning
        for certificate in session.scalars(select(PlatformCertificate).order_by(PlatformCertificate.id))
        for warning in _certificate_warnings(certificate, now or utcnow())
    ]


def certificates_expiring(session: Session, now: dt.datetime | None = None) -> list[tuple[str, dt.datetime]]:
    """Certificates (brands', platform hosts', setup groups') ending within EXPIRY_WARNING (or
    ended), soonest first."""
    limit = (now or utcnow()) + EXPIRY_WARNING
    brands = select(Brand.hostname, Brand.cert_not_after).where(
        Brand.cert_not_after.is_not(None), Brand.cert_not_after <= limit
    )
    platform = select(PlatformCertificate.lineage, PlatformCertificate.cert_not_after).where(
        PlatformCertificate.cert_not_after.is_not(None), PlatformCertificate.cert_not_after <= limit
    )
    rows = [*session.execute(brands), *session.execute(platform)]
    return sorted(((name, not_after) for name, not_after in rows), key=lambda row: row[1])


def recipient_results_since(session: Session, since: dt.datetime) -> dict[str, int]:
    """Recipients by outcome (delivered, refused, bounced, ...) since `since`."""
    rows = session.execute(
        select(MailRecipientResult.outcome, func.count())
        .where(MailRecipientResult.time >= since)
        .group_by(MailRecipientResult.outcome)
    )
    return {outcome: count for outcome, count in rows}


def logins_since(session: Session, since: dt.datetime) -> dict[tuple[str, bool], int]:
    """Login attempts by service (smtp, imap, pop3, webmail, panel) and success since `since`."""
    rows = session.execute(
        select(AuthEvent.service, AuthEvent.success, func.count())
        .where(AuthEvent.time >= since)
        .group_by(AuthEvent.service, AuthEvent.success)
    )
    return {(service, bool(success)): count for service, success, count in rows}


@dataclasses.dataclass(frozen=True)
class LogFile:
    """A followed log as the file system has it now."""

    device: int
    inode: int
    size: int


@dataclasses.dataclass(frozen=True)
class FollowerLag:
    unread_bytes: int
    # Since the follower last read every log to its end, while something is left to read;
    # None when it never has.
    seconds: float | None


def follower_lag(
    session: Session,
    files: Iterable[LogFile],
    last_complete_read: dt.datetime | None,
    now: dt.datetime | None = None,
) -> FollowerLag:
    """How much of the followed logs the follower has not stored yet, and for how long."""
    now = now or utcnow()
    unread = 0
    for file in files:
        checkpoint = session.scalar(
            select(LogCheckpoint).where(
                LogCheckpoint.device == file.device, LogCheckpoint.inode == file.inode
            )
        )
        unread += max(file.size - (checkpoint.offset if checkpoint else 0), 0)
    if not unread:
        return FollowerLag(0, 0.0)
    if last_complete_read is None:
        return FollowerLag(unread, None)
    return FollowerLag(unread, max((now - last_complete_read).total_seconds(), 0.0))
