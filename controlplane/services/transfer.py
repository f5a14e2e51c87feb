"""Export and import tenants, domains, mailboxes (with password hashes) and aliases.

Import goes through the same services as everything else, so limits and validation
apply, and it is idempotent: what already exists is updated to match, not duplicated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.services import aliases, domains, mailboxes, tenants
from controlplane.services.scope import Actor

FORMAT_VERSION = 1


def export_state(session: Session, actor: Actor) -> dict[str, Any]:
    exported = []
    for tenant in tenants.list_tenants(session, actor):
        tenant_domains = []
        for domain in domains.list_domains(session, actor, tenant):
            tenant_domains.append(
                {
                    "name": domain.name,
                    "max_mailboxes": domain.max_mailboxes,
                    "max_aliases": domain.max_aliases,
                    "max_mailbox_bytes": domain.max_mailbox_bytes,
                    "active": domain.active,
                    "mailboxes": [
                        {
                            "local_part": m.local_part,
                            "display_name": m.display_name,
                            "password_hash": m.password_hash,
                            "quota_bytes": m.quota_bytes,
                            "active": m.active,
                            "domain_admin": m.is_domain_admin,
                        }
                        for m in mailboxes.list_mailboxes(session, actor, domain, limit=None)
                    ],
                    "aliases": [
                        {"local_part": a.local_part, "destinations": a.destination_addresses}
                        for a in aliases.list_aliases(session, actor, domain)
                    ],
                }
            )
        exported.append(
            {
                "name": tenant.name,
                "storage_pool_bytes": tenant.storage_pool_bytes,
                "max_mailbox_bytes": tenant.max_mailbox_bytes,
                "active": tenant.active,
                "domains": tenant_domains,
            }
        )
    return {"letterhead_export": FORMAT_VERSION, "tenants": exported}


@dataclasses.dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def _require(item: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise ValidationError(f"{where}: the field {key!r} is missing.")
    return item[key]


def import_state(session: Session, actor: Actor, data: dict[str, Any]) -> ImportReport:
    """Create what is missing and update what differs; the caller commits (all or nothing)."""
    if not isinstance(data, dict) or data.get("letterhead_export") != FORMAT_VERSION:
        raise ValidationError(f"Not a Letterhead export (expected letterhead_export: {FORMAT_VERSION}).")
    report = ImportReport()
    pending_aliases = []
    for tenant_data in data.get("tenants") or []:
        name = _require(tenant_data, "name", "tenant")
        tenant = tenants.find_tenant(session, name)
        if tenant is None:
            tenant = tenants.create_tenant(
                session,
                actor,
                name=name,
                storage_pool_bytes=_require(tenant_data, "storage_pool_bytes", f"tenant {name}"),
                max_mailbox_bytes=tenant_data.get("max_mailbox_bytes", tenants.PLAN_LARGEST_MAILBOX_BYTES),
            )
            report.created += 1
        else:
            report.unchanged += 1
        for domain_data in tenant_data.get("domains") or []:
            domain_name = _require(domain_data, "name", f"tenant {name}")
            domain = domains.find_domain(session, domain_name)
            limits = {
                "max_mailboxes": _require(domain_data, "max_mailboxes", f"domain {domain_name}"),
                "max_aliases": _require(domain_data, "max_aliases", f"domain {domain_name}"),
                "max_mailbox_bytes": domain_data.get("max_mailbox_bytes", tenant.max_mailbox_bytes),
            }
            if domain is None:
                domain = domains.create_domain(session, actor, tenant=tenant, name=domain_name, **limits)
                report.created += 1
            elif domain.tenant_id != tenant.id:
                raise ValidationError(f"The domain {domain_name} belongs to another tenant here.")
            else:
                report.unchanged += 1
            for mailbox_data in domain_data.get("mailboxes") or []:
                local_part = _require(mailbox_data, "local_part", f"mailbox in {domain_name}")
                existing = mailboxes.find_mailbox(session, f"{local_part}@{domain.name}")
                if existing is None:
                    mailboxes.create_mailbox(
                        session,
                        actor,
                        domain=domain,
                        local_part=local_part,
                        quota_bytes=_require(mailbox_data, "quota_bytes", f"mailbox {local_part}"),
                        password_hash=_require(mailbox_data, "password_hash", f"mailbox {local_part}"),
                        display_name=mailbox_data.get("display_name", ""),
                        is_domain_admin=bool(mailbox_data.get("domain_admin", False)),
                    )
                    report.created += 1
                    continue
                changed = False
                quota = mailbox_data.get("quota_bytes", existing.quota_bytes)
                if quota != existing.quota_bytes:
                    mailboxes.set_mailbox_quota(session, actor, existing, quota)
                    changed = True
                password_hash = mailbox_data.get("password_hash", existing.password_hash)
                if password_hash != existing.password_hash:
                    mailboxes.set_mailbox_password(session, actor, existing, password_hash=password_hash)
                    changed = True
                if changed:
                    report.updated += 1
                else:
                    report.unchanged += 1
            for alias_data in domain_data.get("aliases") or []:
                pending_aliases.append((domain, alias_data))
    # Aliases last: their destinations may be mailboxes or aliases imported above.
    for domain, alias_data in pending_aliases:
        local_part = _require(alias_data, "local_part", f"alias in {domain.name}")
        destinations = _require(alias_data, "destinations", f"alias {local_part}")
        existing = aliases.find_alias(session, f"{local_part}@{domain.name}")
        if existing is None:
            aliases.create_alias(
                session, actor, domain=domain, local_part=local_part, destinations=destinations
            )
            report.created += 1
        elif sorted(existing.destination_addresses) != sorted(destinations):
            aliases.set_alias_destinations(session, actor, existing, destinations)
            report.updated += 1
        else:
            report.unchanged += 1
    return report
