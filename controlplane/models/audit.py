from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, int_pk, utc_time


class AuditEntry(Base):
    """Who changed what, when and from where.

    Entries outlive what they describe: deleting a tenant or domain only clears the link,
    so the operator keeps the trail.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        # In the order the trail is read (newest first, id breaking ties), so the ten newest are
        # the index's first ten: SQLite keeps the rowid in every index, PostgreSQL needs it named.
        Index("ix_audit_entry_tenant_id_time", "tenant_id", "time", "id"),
        Index("ix_audit_entry_domain_id_time", "domain_id", "time", "id"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    time: Mapped[utc_time]
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id", ondelete="SET NULL"))
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domain.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(400))
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(400), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
