"""HTTP-01 answers certbot is waiting on, so that any mail node's web app can give them."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import Base, created_at


class AcmeChallenge(Base):
    __tablename__ = "acme_challenge"

    token: Mapped[str] = mapped_column(String(255), primary_key=True)
    validation: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created_at]
