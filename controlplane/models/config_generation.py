from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, created_at, int_pk


class ConfigGeneration(Base):
    """One rendering of the daemon configs and what became of it.

    status is `live` (checked, switched to and reloaded), `superseded` (was live),
    `refused` (failed a check, never live) or `rolled_back` (a reload failed).
    """

    __tablename__ = "config_generation"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    created_at: Mapped[created_at]
    digest: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str] = mapped_column(Text, default="")
    applied_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The mail node it was rendered on (each node renders its own); "" on a single machine.
    node: Mapped[str] = mapped_column(String(63), default="", server_default="")
