"""TLS reports (RFC 8460) other mail systems sent about their sessions with our MX: one row per
report and hosted domain (a report's policy for that domain), with its failures."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, int_pk


class TlsReport(Base):
    __tablename__ = "tls_report"
    # A sender may mail the same report twice (a retry): each policy of it is kept once.
    __table_args__ = (
        UniqueConstraint("domain_id", "organization", "report_id", "policy_type"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    organization: Mapped[str] = mapped_column(String(255))
    report_id: Mapped[str] = mapped_column(String(255))
    contact: Mapped[str] = mapped_column(String(255), default="")
    policy_type: Mapped[str] = mapped_column(String(30))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    successful_sessions: Mapped[int] = mapped_column(Integer)
    failed_sessions: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[created_at]

    failures: Mapped[list[TlsReportFailure]] = relationship(
        order_by="TlsReportFailure.id", cascade="all, delete-orphan", passive_deletes=True
    )


class TlsReportFailure(Base):
    """One kind of failure a report counts: what went wrong, between which sender and MX."""

    __tablename__ = "tls_report_failure"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    tls_report_id: Mapped[int] = mapped_column(ForeignKey("tls_report.id", ondelete="CASCADE"), index=True)
    result_type: Mapped[str] = mapped_column(String(60))
    sending_mta_ip: Mapped[str] = mapped_column(String(64), default="")
    receiving_mx_hostname: Mapped[str] = mapped_column(String(255), default="")
    receiving_ip: Mapped[str] = mapped_column(String(64), default="")
    failed_sessions: Mapped[int] = mapped_column(Integer)
    details: Mapped[str] = mapped_column(Text, default="")
