"""The audit trail (who changed what) and the login record, each seen within the viewer's scope.

Full admins see their tenant's entries, domain admins only their own domain's, and the
operator everything, including entries whose tenant has since been deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from controlplane.models import AuditEntry, AuthEvent, Domain, Tenant
from controlplane.models.base import utcnow
from controlplane.services import scope
from controlplane.services.scope import Actor

Row = TypeVar("Row", AuditEntry, AuthEvent)


def actor_label(actor: Actor) -> str:
    """How an actor is named in the trail: "operator", "admin:boss", "domain-admin:ann@a.test"."""
    if actor.is_operator:
        return "operator"
    if actor.name.startswith("token:"):  # API tokens are named by their visible prefix
        return actor.name
    if actor.kind == "domain_admin":
        return f"domain-admin:{actor.name}"
    return actor.name or f"admin:tenant-{actor.tenant_id}"


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    target: str,
    tenant_id: int | None,
    domain_id: int | None = None,
    client_ip: str = "",
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> AuditEntry:
    """Append what `actor` did (`action` like "mailbox.create", on `target`) to the trail.

    Services call it (through `record_change`) after their work succeeded; it checks no scope.
    """
    entry = _entry(actor, action, target, tenant_id, domain_id, client_ip, details, now or utcnow())
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    actor: Actor,
    *,
    tenant: Tenant | None,
    domain: Domain | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AuditEntry], int]:
    """One page of the audit trail, newest first, and the number of entries in all.

    `tenant=None` (with no domain) lists every entry and is the operator's alone.
    Raises NotFound, NotInScope.
    """
    criteria = scope.viewed_records(actor, tenant=tenant, domain=domain).criteria(AuditEntry)
    return _page(session, AuditEntry, criteria, offset, limit)


def recent_entries(
    session: Session, actor: Actor, *, tenant: Tenant | None, domain: Domain | None = None, limit: int = 10
) -> list[AuditEntry]:
    """The newest entries of the trail, as `list_entries` sees them, without counting them all:
    the trail grows with every change, and ten entries must not cost more as it does.

    Raises NotFound, NotInScope.
    """
    criteria = scope.viewed_records(actor, tenant=tenant, domain=domain).criteria(AuditEntry)
    return _newest(session, AuditEntry, criteria, 0, limit)


def record_change(
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    *,
    tenant_id: int | None,
    domain_id: int | None = None,
    **details: Any,
) -> AuditEntry:
    """What every changing service calls once its change succeeded, whoever asked for it
    (panel, API or CLI). The request's client address rides on the session
    (`session.info["client_ip"]`), set by the web layer."""
    return record(
        session, actor, action=action, target=target, tenant_id=tenant_id, domain_id=domain_id,
        client_ip=str(session.info.get("client_ip", "")), details=details or None,
    )  # fmt: skip


def record_changes(
    session: Session,
    actor: Actor,
    action: str,
    changes: Iterable[tuple[str, dict[str, Any]]],
    *,
    tenant_id: int | None,
    domain_id: int | None = None,
) -> None:
    """`record_change` for many targets of one action (a bulk creation), as (target, details)
    pairs, written in one flush rather than one each."""
    client_ip, now = str(session.info.get("client_ip", "")), utcnow()
    session.add_all(
        _entry(actor, action, target, tenant_id, domain_id, client_ip, details, now)
        for target, details in changes
    )
    session.flush()


def _entry(
    actor: Actor,
    action: str,
    target: str,
    tenant_id: int | None,
    domain_id: int | None,
    client_ip: str,
    details: dict[str, Any] | None,
    now: dt.datetime,
) -> AuditEntry:
    return AuditEntry(
        time=now,
        tenant_id=tenant_id,
        domain_id=domain_id,
        actor=actor_label(actor)[:400],
        client_ip=client_ip[:64],
        action=action,
        target=target[:400],
        details=details or {},
    )


def _page(
    session: Session, model: type[Row], criteria: list[ColumnElement[bool]], offset: int, limit: int
) -> tuple[list[Row], int]:
    total = session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0
    return _newest(session, model, criteria, offset, limit), total


def _newest(
    session: Session, model: type[Row], criteria: list[ColumnElement[bool]], offset: int, limit: int
) -> list[Row]:
    query = select(model).where(*criteria).order_by(model.time.desc(), model.id.desc())
    return list(session.scalars(query.offset(max(offset, 0)).limit(max(limit, 0))))
