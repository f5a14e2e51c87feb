"""The mail nodes that serve one shared (PostgreSQL) database.

Each node runs its own Postfix, Dovecot and nginx from its own state directory. A mailbox lives
on one node (its `node`); any node accepts its mail and its logins, and Dovecot there proxies
IMAP, POP3, ManageSieve and LMTP to the node that holds it. An installation with no node row is
a single machine: every mailbox is local.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, text
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


class NodeTask(Base):
    """Work on a mailbox's home that only the node holding it can do, asked for by any node
    (services/mail_homes.py): the holding node's sync runs it and writes the result, which the
    asker reads and then deletes. A removal of a deleted mailbox's mail is asked for in the
    deleting transaction and nobody waits for it."""

    __tablename__ = "node_task"
    __table_args__ = (
        # What each node's sync reads several times a second: its few open tasks.
        Index(
            "ix_node_task_open",
            "node_id",
            "id",
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[created_at]
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
