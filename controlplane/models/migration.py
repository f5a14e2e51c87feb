"""Mail brought in from a customer's old provider: one job per request (a mailbox, or a domain's
CSV), one row per mailbox copied from an old IMAP server (services/imap_migration.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, int_pk

MIGRATION_STATES = ("queued", "running", "done", "failed")


class MigrationJob(Base):
    """What an admin asked to bring in, in one go; open until the admin closes it, which deletes
    the old passwords it keeps (encrypted) for a cut-over re-run."""

    __tablename__ = "migration_job"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[created_at]
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    mailboxes: Mapped[list[MigrationMailbox]] = relationship(
        back_populates="job",
        order_by="MigrationMailbox.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class MigrationMailbox(Base):
    """One mailbox's copy from its old server: where from, how far it got, and why it stopped."""

    __tablename__ = "migration_mailbox"
    __table_args__ = (
        CheckConstraint(
            "state IN ({})".format(", ".join(f"'{state}'" for state in MIGRATION_STATES)), name="state_known"
        ),
        UniqueConstraint("job_id", "mailbox_id"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    job_id: Mapped[int] = mapped_column(ForeignKey("migration_job.id", ondelete="CASCADE"), index=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    old_host: Mapped[str] = mapped_column(String(255))
    old_port: Mapped[int] = mapped_column(Integer, default=993)
    # "imaps" (TLS from the start) or "starttls"; never plain text, since a password crosses it.
    old_security: Mapped[str] = mapped_column(String(16), default="imaps")
    old_login: Mapped[str] = mapped_column(String(320))
    # Fernet token under a key derived from the instance secret; NULL once the job is closed.
    old_password_sealed: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    # "all" for the first copy; "new" for a cut-over re-run (one-way: nothing here is removed).
    pass_kind: Mapped[str] = mapped_column(String(8), default="all")
    passes: Mapped[int] = mapped_column(Integer, default=0)
    messages_total: Mapped[int | None] = mapped_column(BigInteger)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    messages_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # Messages and bytes copied by the latest pass alone (a re-run's "new since the last copy").
    messages_last_pass: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[MigrationJob] = relationship(back_populates="mailboxes")
