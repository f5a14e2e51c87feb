"""The mail nodes that serve one shared (PostgreSQL) database.

Each node runs its own Postfix, Dovecot and nginx from its own state directory. A mailbox lives
on one node (its `node`); any node accepts its mail and its logins, and Dovecot there proxies
IMAP, POP3, ManageSieve and LMTP to the node that holds it. An installation with no node row is
a single machine: every mailbox is local.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, UTCDateTime, created_at, int_pk


class Node(Base):
    __tablename__ = "node"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # Where the other nodes reach this one's Dovecot (its private address).
    address: Mapped[str] = mapped_column(String(253))
    imap_port: Mapped[int] = mapped_column(Integer)
    pop3_port: Mapped[int] = mapped_column(Integer)
    lmtp_port: Mapped[int] = mapped_column(Integer)
    managesieve_port: Mapped[int] = mapped_column(Integer)
    # New mailboxes are placed only on nodes that take them.
    takes_mailboxes: Mapped[bool] = mapped_column(default=True)
    # The change generation (state_generation) this node's daemons last caught up with.
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[created_at]


class StateGeneration(Base):
    """One row whose number rises with every committed change that the nodes' daemons must
    catch up with outside SQL (brands and certificates, DKIM keys, spam policies, allow lists);
    each node watches it (runners/node_sync.py)."""

    __tablename__ = "state_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, default=0)
