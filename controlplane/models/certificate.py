"""Certificates Letterhead orders from the ACME server besides the brands' own.

The platform host's (MX, client setup, webmail and MTA-STS for every domain without a brand)
and the setup names (`autoconfig.`, `autodiscover.`, `mta-sts.`) of a tenant's domains without
a brand, in groups of at most 100 names: one tenant's customers are never named in a
certificate another tenant's customers are served (services/platform_certificates.py).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, int_pk


class CertificateState:
    """What a certificate holder (a brand, a platform certificate) records of its certificate:
    `cert_names` are the names the current one covers, so a re-render never orders again."""

    # "none" (never ordered), "waiting_dns", "issued", "failed".
    cert_status: Mapped[str] = mapped_column(String(20), default="none")
    cert_error: Mapped[str] = mapped_column(Text, default="")
    cert_names: Mapped[str] = mapped_column(Text, default="")
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cert_failures: Mapped[int] = mapped_column(Integer, default=0)
    cert_next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The certificate chain and its key (PEM), as the node that ordered it received them, for
    # every other mail node to serve (certs/shared.py). The daemons' database roles cannot read them.
    cert_chain_pem: Mapped[str | None] = mapped_column(Text, deferred=True)
    cert_key_pem: Mapped[str | None] = mapped_column(Text, deferred=True)

    @property
    def covered_names(self) -> tuple[str, ...]:
        return tuple(self.cert_names.split())


class PlatformCertificate(CertificateState, Base):
    """One certbot lineage named `lineage`: a platform host (`kind` "platform", no tenant), or a
    group of one tenant's setup names (`kind` "setup").

    `wanted_names` are the names it should cover, as found leading here at the last run; a
    domain stays in the group it was first put in while it fits, so adding a domain orders
    one certificate again, not every group after it.
    """

    __tablename__ = "platform_certificate"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    lineage: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    wanted_names: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[created_at]

    @property
    def hostname(self) -> str:
        """Its lineage name, where outcomes and the operator's listing name a brand's host."""
        return self.lineage
