"""A domain's DKIM keys: the one that signs, and those still published while mail signed with
them may yet be verified."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, int_pk, utc_time

if TYPE_CHECKING:
    from controlplane.models.domain import Domain

DKIM_KEY_STATES = ("active", "retiring", "retired")
DKIM_ALGORITHMS = ("rsa-2048", "ed25519")


class DkimKey(Base):
    """One key pair. The private half lives in a file only rspamd reads (daemons/dkim_keys.py);
    the row keeps the public half, which the domain's DNS must publish under the selector.

    `active`: signs the domain's mail. `retiring`: replaced by a rotation, still published until
    `retire_after` so that mail signed with it keeps verifying. `retired`: may leave DNS.
    """

    __tablename__ = "dkim_key"
    __table_args__ = (
        UniqueConstraint("domain_id", "selector", "algorithm"),
        CheckConstraint("state IN ('active', 'retiring', 'retired')", name="state_known"),
        CheckConstraint("algorithm IN ('rsa-2048', 'ed25519')", name="algorithm_known"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(16))
    # The public key as DNS publishes it: base64 of the SubjectPublicKeyInfo (RSA), of the raw
    # 32 bytes (Ed25519).
    public_key: Mapped[str] = mapped_column(Text)
    # The private key (PEM), so every mail node signs with the same key: each writes it into
    # its own key folder (services/dkim.publish). The database's daemon roles cannot read it.
    # None for a key made before keys were kept here, until its file is read in.
    private_key: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[utc_time]
    retire_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    domain: Mapped[Domain] = relationship(back_populates="dkim_keys")
