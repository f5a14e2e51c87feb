"""Mail nodes sharing one database: which node holds a mailbox, and the change generation.

A node registers itself when its stack starts (`letterhead up` with `node_name` set). The first
node to register adopts every mailbox that has no node yet (they were a single machine's). New
mailboxes go to the node that takes mailboxes and holds the fewest, so storage spreads evenly;
every node accepts any mailbox's mail and logins and Dovecot proxies them to its node.

Changes the daemons hear about outside SQL (brands and their certificates, DKIM keys, spam
policies, allow lists, domains for Postfix's cache) raise the state generation once committed;
each node's sync process (runners/node_sync.py) catches up when it sees the number move.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.models import Mailbox, Node, StateGeneration
from controlplane.models.base import utcnow
from controlplane.services import scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_hostname


@dataclasses.dataclass(frozen=True)
class NodeEndpoint:
    """Where a node's Dovecot answers the other nodes."""

    address: str
    imap_port: int
    pop3_port: int
    lmtp_port: int
    managesieve_port: int


def _node_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not name or len(name) > 63 or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ValidationError("A node name is 1 to 63 letters, digits, '-' or '_'.", field="node_name")
    return name


def _node_address(address: str) -> str:
    """An IP address, or a host name the other nodes resolve."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return normalize_hostname(address)


def register_node(session: Session, name: str, endpoint: NodeEndpoint) -> Node:
    """Add this node, or bring its address and ports up to date; the first adopts every mailbox."""
    name = _node_name(name)
    address = _node_address(endpoint.address)
    node = session.scalar(select(Node).where(Node.name == name))
    first = node is None and session.scalar(select(func.count()).select_from(Node)) == 0
    if node is None:
        node = Node(name=name, applied_generation=0)
        session.add(node)
    node.address = address
    node.imap_port, node.pop3_port = endpoint.imap_port, endpoint.pop3_port
    node.lmtp_port, node.managesieve_port = endpoint.lmtp_port, endpoint.managesieve_port
    node.last_seen_at = utcnow()
    session.flush()
    if first:
        session.execute(update(Mailbox).where(Mailbox.node_id.is_(None)).values(node_id=node.id))
    return node


def place_mailbox(session: Session) -> Node | None:
    """The node a new mailbox goes to: of those taking mailboxes, the one holding fewest (then
    the oldest); None on a single machine. Raises ValidationError when nodes exist and none
    takes mailboxes (a mailbox with no node would be served as local by every node)."""
    if session.scalar(select(func.count()).select_from(Node)) == 0:
        return None
    held = select(Mailbox.node_id, func.count().label("held")).group_by(Mailbox.node_id).subquery()
    node = session.scalar(
        select(Node)
        .outerjoin(held, held.c.node_id == Node.id)
        .where(Node.takes_mailboxes)
        .order_by(func.coalesce(held.c.held, 0), Node.id)
        .limit(1)
    )
    if node is None:
        raise ValidationError("No mail node takes new mailboxes: let one take them (letterhead node list).")
    return node


def list_nodes(session: Session, actor: Actor) -> list[tuple[Node, int]]:
    """Every node with the number of mailboxes it holds: the operator's view."""
    scope.require_operator(actor)
    counts = dict(session.execute(select(Mailbox.node_id, func.count()).group_by(Mailbox.node_id)).all())
    return [(node, counts.get(node.id, 0)) for node in session.scalars(select(Node).order_by(Node.name))]


def peer_addresses(session: Session, this_node: str) -> tuple[str, ...]:
    """The other nodes' addresses, which this node's Dovecot trusts for proxied logins."""
    return tuple(session.scalars(select(Node.address).where(Node.name != this_node).order_by(Node.address)))


def certificate_node(session: Session) -> str | None:
    """The node that orders every brand certificate (the oldest): one ACME account, one order."""
    return session.scalar(select(Node.name).order_by(Node.id).limit(1))


def current_generation(session: Session) -> int:
    return session.scalar(select(StateGeneration.number).where(StateGeneration.id == 1)) or 0


def raise_generation(session: Session) -> None:
    """Tell every node a change awaits it (committed by the caller)."""
    session.execute(
        update(StateGeneration).where(StateGeneration.id == 1).values(number=StateGeneration.number + 1)
    )


def node_caught_up(session: Session, name: str, generation: int, now: dt.datetime | None = None) -> None:
    """Record that this node's daemons serve `generation` (and that it is alive)."""
    session.execute(
        update(Node)
        .where(Node.name == name)
        .values(applied_generation=generation, last_seen_at=now or utcnow())
    )
