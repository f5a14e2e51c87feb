"""What the mail daemons' logs say happened: SMTP transactions, their recipients, and ingest state."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, int_pk, utc_time

RECIPIENT_OUTCOMES = ("delivered", "forwarded", "relayed", "deferred", "bounced", "refused", "expired")


class MailTransaction(Base):
    """One SMTP transaction: a message accepted into the queue, or one refused before it (NOQUEUE).

    A queued message may pass through several queue IDs (re-injection after a content filter);
    each is a MailQueueEntry of the same transaction. `sender_domain_id` and the recipients'
    `domain_id` decide who may see the transaction: the domains it came from or went to.
    """

    __tablename__ = "mail_transaction"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    time: Mapped[utc_time] = mapped_column(index=True)
    client_name: Mapped[str] = mapped_column(String(255), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="", index=True)
    helo: Mapped[str] = mapped_column(String(255), default="")
    sasl_user: Mapped[str] = mapped_column(String(255), default="", index=True)
    sender: Mapped[str | None] = mapped_column(String(320), index=True)
    sender_domain_id: Mapped[int | None] = mapped_column(
        ForeignKey("domain.id", ondelete="SET NULL"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    # Set when qmgr removes the last queue entry: nothing more will be logged about it.
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The spam filter's verdict (rspamd's log, by queue ID): its action ("no action", "reject",
    # ...; empty when not scanned), the score, and the symbols that raised it most.
    spam_action: Mapped[str] = mapped_column(String(16), default="")
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_symbols: Mapped[str] = mapped_column(String(1000), default="")
    # The mail node whose Postfix logged it; "" on a single machine.
    node: Mapped[str] = mapped_column(String(63), default="", server_default="")

    queue_entries: Mapped[list[MailQueueEntry]] = relationship(
        back_populates="transaction", cascade="all, delete-orphan", order_by="MailQueueEntry.id"
    )
    recipients: Mapped[list[MailRecipientResult]] = relationship(
        back_populates="transaction", cascade="all, delete-orphan", order_by="MailRecipientResult.id"
    )
    dialogue: Mapped[list[SmtpDialogueLine]] = relationship(
        back_populates="transaction",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SmtpDialogueLine.id",
    )


class MailQueueEntry(Base):
    """A queue ID a transaction's message had; open until qmgr logs "removed"."""

    __tablename__ = "mail_queue_entry"
    __table_args__ = (
        Index("ix_mail_queue_entry_queue_id_removed", "queue_id", "removed"),
        # The few entries still in the queue, which each ingest run reads first: without it
        # that read scans every entry ever logged.
        Index(
            "ix_mail_queue_entry_open",
            "queue_id",
            sqlite_where=text("removed = 0"),
            postgresql_where=text("NOT removed"),
        ),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("mail_transaction.id", ondelete="CASCADE"), index=True
    )
    queue_id: Mapped[str] = mapped_column(String(32))
    time: Mapped[utc_time]
    removed: Mapped[bool] = mapped_column(default=False)

    transaction: Mapped[MailTransaction] = relationship(back_populates="queue_entries")


class MailRecipientResult(Base):
    """The latest outcome for one recipient of a transaction; a retry updates it in place."""

    __tablename__ = "mail_recipient_result"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ({})".format(", ".join(f"'{outcome}'" for outcome in RECIPIENT_OUTCOMES)),
            name="outcome_known",
        ),
        CheckConstraint("attempts >= 1", name="attempts_positive"),
        UniqueConstraint("transaction_id", "recipient", "orig_to"),
        Index("ix_mail_recipient_result_domain_id_time", "domain_id", "time"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    # No index of its own: the unique constraint's index begins with it and serves every lookup
    # by transaction (and the cascade); a second one cost each ingested row an index write.
    transaction_id: Mapped[int] = mapped_column(ForeignKey("mail_transaction.id", ondelete="CASCADE"))
    time: Mapped[utc_time]
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    # The address the sender wrote when an alias rewrote it to `recipient`; "" otherwise.
    orig_to: Mapped[str] = mapped_column(String(320), default="", index=True)
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domain.id", ondelete="SET NULL"))
    queue_id: Mapped[str] = mapped_column(String(32), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    relay: Mapped[str] = mapped_column(String(255), default="")
    status_code: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)

    transaction: Mapped[MailTransaction] = relationship(back_populates="recipients")


class SmtpDialogueLine(Base):
    """One SMTP command (`<`) or reply (`>`) of a port-25 session, redacted (logs/dialogue.py).

    Rows are in log order by id. `transaction_id` is NULL until the smtpd process that logged
    the line names its transaction (and stays NULL for sessions that made none, until purged);
    `process` ("host program[pid]") and `session_start` (the server's greeting) tie lines to it.
    """

    __tablename__ = "smtp_dialogue_line"
    __table_args__ = (
        CheckConstraint("direction IN ('<', '>')", name="direction_known"),
        Index("ix_smtp_dialogue_line_process_id", "process", "id"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("mail_transaction.id", ondelete="CASCADE"), index=True
    )
    process: Mapped[str] = mapped_column(String(300))
    time: Mapped[utc_time] = mapped_column(index=True)
    direction: Mapped[str] = mapped_column(String(1))
    text: Mapped[str] = mapped_column(String(1000))
    session_start: Mapped[bool] = mapped_column(default=False)

    transaction: Mapped[MailTransaction | None] = relationship(back_populates="dialogue")


class LogCheckpoint(Base):
    """How far one log file's content has been read, committed with the rows read up to there.

    A file is known by what it is, not by its name: `device` and `inode` find it wherever
    logrotate renamed it (postfix.log -> postfix.log.1), and `head`, a hash of its first
    bytes (up to HEAD_BYTES, fewer while the file is shorter), confirms that the content is
    still the one read, and recognises a copy of it (postfix.log.1.gz). When a file is
    copied and truncated, its checkpoint keeps the old content's identity with `device` and
    `inode` cleared, so the copy still resumes where the live file was left. `path` is only
    where the file was last read, for people and for finding a renamed predecessor.

    `version` guards the offset: two readers of one file (the follower and an operator's
    `letterhead logs ingest`) cannot both commit the same lines.
    """

    __tablename__ = "log_checkpoint"
    __table_args__ = (UniqueConstraint("device", "inode"), AUTOINCREMENT)

    id: Mapped[int_pk]
    path: Mapped[str] = mapped_column(String(1000), index=True)
    device: Mapped[int | None] = mapped_column(BigInteger)
    inode: Mapped[int | None] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[str] = mapped_column(String(64), default="", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[utc_time]

    __mapper_args__ = {"version_id_col": version}


class UnparsedLogLine(Base):
    """A log line no parser understood, kept so a new format is noticed rather than lost."""

    __tablename__ = "unparsed_log_line"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    time: Mapped[utc_time] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(1000))
    line: Mapped[str] = mapped_column(Text)
