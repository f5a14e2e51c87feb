"""A brand: the server hostname a tenant's customers use, its look, and its certificate."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, dns_name, int_pk
from controlplane.models.certificate import CertificateState

if TYPE_CHECKING:
    from controlplane.models.domain import Domain
    from controlplane.models.tenant import Tenant


class Brand(CertificateState, Base):
    """`mail.customer.com` for the domains that use it: MX, SMTP/IMAP/POP host and web host.

    A tenant may mark one brand `shared`: the one it gives to customers that have no
    brand of their own (services.brands). Certificate state lives here because one
    certificate belongs to one brand (services.certificates): `cert_names` are the names
    the current certificate covers, so a re-render never orders a new one.
    """

    __tablename__ = "brand"
    __table_args__ = (
        # At most one shared brand per tenant.
        Index(
            "uq_brand_shared_per_tenant",
            "tenant_id",
            unique=True,
            sqlite_where=text("shared = 1"),
            postgresql_where=text("shared"),
        ),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    hostname: Mapped[dns_name] = mapped_column(unique=True)
    name: Mapped[str] = mapped_column(String(100))
    support_url: Mapped[str | None] = mapped_column(String(2000))
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_type: Mapped[str | None] = mapped_column(String(40))
    # The rest of its look (services/brands.py checks each): "#rrggbb", a page title that
    # replaces the name in the browser's tab, a line of text at the foot of its pages, and
    # images of their own for dark pages and the tab (else the logo serves).
    accent_colour: Mapped[str | None] = mapped_column(String(7))
    page_title: Mapped[str | None] = mapped_column(String(100))
    footer_text: Mapped[str | None] = mapped_column(String(200))
    logo_dark: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_dark_type: Mapped[str | None] = mapped_column(String(40))
    favicon: Mapped[bytes | None] = mapped_column(LargeBinary)
    favicon_type: Mapped[str | None] = mapped_column(String(40))
    shared: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[created_at]

    dns_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The last DNS check as JSON (services.brands.dns_report), shown until the next one.
    dns_report: Mapped[str] = mapped_column(Text, default="")

    tenant: Mapped[Tenant] = relationship()
    domains: Mapped[list[Domain]] = relationship(back_populates="brand", passive_deletes=True)

    @property
    def logo_version(self) -> str:
        return self.image_version("logo")

    def image_version(self, kind: str) -> str:
        """A short digest of an image ("logo", "logo_dark", "favicon"): in its URL, it makes
        browsers fetch a replaced one at once."""
        import hashlib

        return hashlib.sha256(getattr(self, kind) or b"").hexdigest()[:12]
