"""Tenants: reseller accounts with a storage pool and a plan's largest mailbox."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import AlreadyExists, NotFound, ValidationError
from controlplane.models import GIB, Tenant
from controlplane.services import audit, locks, scope, storage
from controlplane.services.changes import signal_domains_changed
from controlplane.services.scope import Actor
from controlplane.validation import normalize_address, normalize_tenant_name

PLAN_LARGEST_MAILBOX_BYTES = 20 * GIB


def _require_positive(value: int, field: str, what: str, *, allow_zero: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(f"{what} must be a positive whole number.", field=field)


def create_tenant(
    session: Session,
    actor: Actor,
    *,
    name: str,
    storage_pool_bytes: int,
    max_mailbox_bytes: int = PLAN_LARGEST_MAILBOX_BYTES,
) -> Tenant:
    """Only the operator creates tenants; names are unique."""
    scope.require_operator(actor)
    name = normalize_tenant_name(name)
    _require_positive(storage_pool_bytes, "storage_pool_bytes", "The storage pool", allow_zero=True)
    _require_positive(max_mailbox_bytes, "max_mailbox_bytes", "The largest mailbox")
    if find_tenant(session, name) is not None:
        raise AlreadyExists(f"A tenant named {name!r} already exists.", field="name")
    tenant = Tenant(name=name, storage_pool_bytes=storage_pool_bytes, max_mailbox_bytes=max_mailbox_bytes)
    session.add(tenant)
    session.flush()
    audit.record_change(session, actor, "tenant.create", tenant.name, tenant_id=tenant.id)
    return tenant


def find_tenant(session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def get_tenant(session: Session, actor: Actor, name: str) -> Tenant:
    tenant = find_tenant(session, name.strip() if isinstance(name, str) else name)
    if tenant is None:
        raise NotFound(f"No tenant named {name!r}.")
    scope.require_tenant(actor, tenant)
    return tenant


def list_tenants(session: Session, actor: Actor) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.name)
    if not actor.is_operator:
        query = query.where(Tenant.id == actor.tenant_id)
    return list(session.scalars(query))


def update_tenant(
    session: Session,
    actor: Actor,
    tenant: Tenant,
    *,
    storage_pool_bytes: int | None = None,
    max_mailbox_bytes: int | None = None,
    active: bool | None = None,
) -> Tenant:
    """A pool never shrinks below what its mailboxes already hold."""
    scope.require_operator(actor)
    locks.lock_tenant(session, tenant.id)  # the pool shrinks only below what is given out now
    # Validate everything before changing anything: a refused call changes nothing.
    if storage_pool_bytes is not None:
        _require_positive(storage_pool_bytes, "storage_pool_bytes", "The storage pool", allow_zero=True)
        allocated = storage.allocated_bytes(session, tenant)
        if storage_pool_bytes < allocated:
            raise ValidationError(
                f"The pool cannot shrink below the {storage.format_bytes(allocated)} already given "
                "to mailboxes; reduce their storage first.",
                field="storage_pool_bytes",
            )
    if max_mailbox_bytes is not None:
        _require_positive(max_mailbox_bytes, "max_mailbox_bytes", "The largest mailbox")
        largest = storage.largest_mailbox_in_tenant(session, tenant)
        if largest > max_mailbox_bytes:
            raise ValidationError(
                f"A mailbox of {tenant.name} already has {storage.format_bytes(largest)}; "
                "reduce it before lowering the plan's largest mailbox.",
                field="max_mailbox_bytes",
            )
    if storage_pool_bytes is not None:
        tenant.storage_pool_bytes = storage_pool_bytes
    if max_mailbox_bytes is not None:
        tenant.max_mailbox_bytes = max_mailbox_bytes
    if active is not None:
        tenant.active = bool(active)
        signal_domains_changed(session)
    session.flush()
    audit.record_change(
        session, actor, "tenant.update", tenant.name, tenant_id=tenant.id,
        storage_pool_bytes=tenant.storage_pool_bytes, max_mailbox_bytes=tenant.max_mailbox_bytes,
        active=tenant.active,
    )  # fmt: skip
    return tenant


# Sending limits beyond these are no limits: the point is to stop a stolen password's flood.
MAX_HOURLY_MESSAGES = 1_000_000
MAX_RECIPIENTS_PER_MESSAGE = 10_000


def set_sending_limits(
    session: Session,
    actor: Actor,
    tenant: Tenant,
    *,
    mailbox_hourly_messages: int | None = None,
    tenant_hourly_messages: int | None = None,
    max_recipients_per_message: int | None = None,
    postmaster_address: str | None = None,
) -> Tenant:
    """The operator sets a tenant's outbound limits (part of its plan) and where its domains'
    postmaster and abuse mail goes when no one in the domain receives it ("" for nowhere)."""
    scope.require_operator(actor)
    for value, field, title, highest in (
        (
            mailbox_hourly_messages,
            "mailbox_hourly_messages",
            "Messages per hour per mailbox",
            MAX_HOURLY_MESSAGES,
        ),
        (
            tenant_hourly_messages,
            "tenant_hourly_messages",
            "Messages per hour for the tenant",
            MAX_HOURLY_MESSAGES,
        ),
        (
            max_recipients_per_message,
            "max_recipients_per_message",
            "Recipients per message",
            MAX_RECIPIENTS_PER_MESSAGE,
        ),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest
        ):
            raise ValidationError(f"{title} must be a whole number from 1 to {highest:,}.", field=field)
    if postmaster_address:
        postmaster_address = normalize_address(postmaster_address, field="postmaster_address")
    if mailbox_hourly_messages is not None:
        tenant.mailbox_hourly_messages = mailbox_hourly_messages
    if tenant_hourly_messages is not None:
        tenant.tenant_hourly_messages = tenant_hourly_messages
    if max_recipients_per_message is not None:
        tenant.max_recipients_per_message = max_recipients_per_message
    if postmaster_address is not None:
        tenant.postmaster_address = postmaster_address
    session.flush()
    audit.record_change(
        session, actor, "tenant.sending_limits", tenant.name, tenant_id=tenant.id,
        mailbox_hourly_messages=tenant.mailbox_hourly_messages, tenant_hourly_messages=tenant.tenant_hourly_messages,
        max_recipients_per_message=tenant.max_recipients_per_message, postmaster_address=tenant.postmaster_address,
    )  # fmt: skip
    return tenant


def delete_tenant(session: Session, actor: Actor, tenant: Tenant) -> None:
    scope.require_operator(actor)
    name = tenant.name
    session.delete(tenant)
    session.flush()
    audit.record_change(session, actor, "tenant.delete", name, tenant_id=None)
    signal_domains_changed(session)
