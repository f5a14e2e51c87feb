from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, int_pk, utc_time

if TYPE_CHECKING:
    from controlplane.models.domain import Domain
    from controlplane.models.tenant import Tenant

TOKEN_KINDS = ("tenant", "domain", "signup")


class ApiToken(Base):
    """A bearer token for the REST API, scoped to a tenant, one domain, or sign-ups in one domain.

    Only a SHA-256 of the secret is kept (the secret is 256 random bits, so a slow hash
    adds nothing); `prefix` finds the row and is safe to show.
    """

    __tablename__ = "api_token"
    __table_args__ = (
        CheckConstraint("kind IN ('tenant', 'domain', 'signup')", name="kind_known"),
        CheckConstraint("kind = 'tenant' OR domain_id IS NOT NULL", name="domain_kinds_name_a_domain"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Sign-up tokens: mailboxes they may create per hour.
    hourly_limit: Mapped[int | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[utc_time]
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant] = relationship()
    domain: Mapped[Domain | None] = relationship()
