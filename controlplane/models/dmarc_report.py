"""DMARC aggregate reports (RFC 7489) other mail systems sent about mail claiming to be from a
hosted domain: one row per report, with one row per sending source and result it counts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, int_pk


class DmarcReport(Base):
    __tablename__ = "dmarc_report"
    # A reporter may mail the same report twice (a retry): it is kept once.
    __table_args__ = (UniqueConstraint("domain_id", "organization", "report_id"), AUTOINCREMENT)

    id: Mapped[int_pk]
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    organization: Mapped[str] = mapped_column(String(255))
    report_id: Mapped[str] = mapped_column(String(255))
    contact: Mapped[str] = mapped_column(String(255), default="")
    # The domain's published policy as the reporter saw it ("none", "quarantine", "reject").
    policy: Mapped[str] = mapped_column(String(20), default="")
    begins_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[created_at]

    records: Mapped[list[DmarcRecord]] = relationship(
        order_by="DmarcRecord.id", cascade="all, delete-orphan", passive_deletes=True
    )


class DmarcRecord(Base):
    """Messages from one source IP with one outcome: whether DKIM and SPF passed aligned with the
    From: domain (what DMARC asks), and what the receiver did with them."""

    __tablename__ = "dmarc_record"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    dmarc_report_id: Mapped[int] = mapped_column(
        ForeignKey("dmarc_report.id", ondelete="CASCADE"), index=True
    )
    source_ip: Mapped[str] = mapped_column(String(64))
    messages: Mapped[int] = mapped_column(Integer)
    header_from: Mapped[str] = mapped_column(String(253), default="")
    dkim_aligned: Mapped[bool]
    spf_aligned: Mapped[bool]
    # What the receiver did: "none" (delivered), "quarantine" (spam folder) or "reject".
    disposition: Mapped[str] = mapped_column(String(20), default="none")
    # The domains DKIM signatures and SPF were checked for, and their raw results, for the curious.
    dkim_results: Mapped[str] = mapped_column(String(500), default="")
    spf_results: Mapped[str] = mapped_column(String(500), default="")
