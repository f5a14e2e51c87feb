"""The tenant's storage pool and the size each mailbox may have."""

from __future__ import annotations

import dataclasses
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import LimitReached, PoolExhausted, ValidationError
from controlplane.models import Domain, Mailbox, Tenant
from controlplane.services import locks


def format_bytes(count: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= size:
            value = count / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    total_bytes: int
    allocated_bytes: int

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.allocated_bytes


def allocated_bytes(session: Session, tenant: Tenant) -> int:
    """The storage given to the tenant's mailboxes: the sum of its domains' totals, which the
    database keeps as mailboxes change (migration 0003), so it costs one row per domain."""
    total = session.scalar(
        select(func.coalesce(func.sum(Domain.allocated_bytes), 0)).where(Domain.tenant_id == tenant.id)
    )
    return int(total or 0)


def largest_mailbox_in_tenant(session: Session, tenant: Tenant) -> int:
    largest = session.scalar(
        select(func.coalesce(func.max(Mailbox.quota_bytes), 0))
        .join(Domain, Mailbox.domain_id == Domain.id)
        .where(Domain.tenant_id == tenant.id)
    )
    return int(largest or 0)


def pool_usage(session: Session, tenant: Tenant) -> PoolUsage:
    return PoolUsage(total_bytes=tenant.storage_pool_bytes, allocated_bytes=allocated_bytes(session, tenant))


def largest_mailbox_bytes(domain: Domain) -> int:
    return min(domain.tenant.max_mailbox_bytes, domain.max_mailbox_bytes)


def require_mailbox_size(domain: Domain, quota_bytes: int, min_mailbox_bytes: int) -> None:
    """A mailbox's storage lies between the minimum and the smaller of the plan's and the domain's maximum."""
    if not isinstance(quota_bytes, int) or isinstance(quota_bytes, bool):
        raise ValidationError("Mailbox storage must be a whole number of bytes.", field="quota_bytes")
    largest = largest_mailbox_bytes(domain)
    if quota_bytes < min_mailbox_bytes:
        raise ValidationError(
            f"A mailbox needs at least {format_bytes(min_mailbox_bytes)} of storage.", field="quota_bytes"
        )
    if quota_bytes > largest:
        # The domain's (or plan's) largest mailbox is a limit the full admin set: 409 in the API.
        raise LimitReached(
            f"A mailbox in {domain.display_name} may have at most {format_bytes(largest)} of storage.",
            field="quota_bytes",
        )


def require_pool(session: Session, tenant: Tenant, additional_bytes: int) -> None:
    """The sum of the tenant's mailbox quotas never exceeds its storage pool."""
    if additional_bytes <= 0:
        return
    usage = locked_pool_usage(session, tenant)
    if additional_bytes > usage.free_bytes:
        raise pool_exhausted(tenant, usage, additional_bytes)


def locked_pool_usage(session: Session, tenant: Tenant) -> PoolUsage:
    """The pool's usage, read under the tenant's lock to allocate from it (services/locks.py)."""
    locks.lock_tenant(session, tenant.id)
    return pool_usage(session, tenant)


def pool_exhausted(tenant: Tenant, usage: PoolUsage, additional_bytes: int) -> PoolExhausted:
    return PoolExhausted(
        f"The storage pool of {tenant.name} has {format_bytes(max(usage.free_bytes, 0))} free "
        f"of {format_bytes(usage.total_bytes)}; {format_bytes(additional_bytes)} more was asked for.",
        field="quota_bytes",
    )


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(text: str | int, *, field: str = "quota_bytes") -> int:
    """Read "5GB", "512 MB" or a plain byte count (units are powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValidationError("A size cannot be negative.", field=field)
        return text
    cleaned = str(text).strip().upper().replace(" ", "").removesuffix("IB").removesuffix("I")
    number = cleaned.rstrip("KMGTB")
    unit = cleaned[len(number) :]
    if unit and not unit.endswith("B"):
        unit += "B"
    try:
        value = float(number)
    except ValueError:
        raise ValidationError(f"{text!r} is not a size: write e.g. 5GB or 500MB.", field=field) from None
    if unit not in _SIZE_UNITS or not math.isfinite(value) or value < 0 or value * _SIZE_UNITS[unit] > 2**62:
        raise ValidationError(f"{text!r} is not a size: write e.g. 5GB or 500MB.", field=field)
    return int(value * _SIZE_UNITS[unit])
