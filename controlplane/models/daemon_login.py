"""The database logins the daemons use on PostgreSQL (an SQLite installation has none).

Each daemon connects as a role of its own that may read only the views it needs
(daemons/database_logins.py grants them). Every node renders the same logins into its daemons'
configuration, so the passwords live in the shared database, readable by the app's role only.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import Base


class DaemonLogin(Base):
    __tablename__ = "daemon_login"

    # "postfix", "dovecot" (logins and users) or "dovecot_usage" (the usage writer).
    daemon: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(63), unique=True)
    password: Mapped[str] = mapped_column(String(128))
