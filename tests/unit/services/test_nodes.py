"""Mail nodes: the first adopts a single machine's mailboxes, new ones go where fewest are, and a
mailbox never ends up without a node once nodes exist."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import NotInScope, ValidationError
from controlplane.models import Mailbox, Node
from controlplane.services import nodes, scope
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox


def _endpoint(address: str) -> nodes.NodeEndpoint:
    return nodes.NodeEndpoint(address, 143, 110, 24, 4190)


def test_the_first_node_adopts_every_mailbox_and_later_ones_adopt_none(db: Session) -> None:
    domain = make_domain(db, name="a.test")
    before = make_mailbox(db, domain=domain, local_part="old")
    first = nodes.register_node(db, "A", _endpoint("10.0.0.1"))
    assert first.name == "a" and before.node_id == first.id
    second = nodes.register_node(db, "b", _endpoint("10.0.0.2"))
    assert db.scalar(select(Mailbox.node_id).where(Mailbox.id == before.id)) == first.id
    # Registering again updates the address, adds no node.
    nodes.register_node(db, "b", _endpoint("10.0.0.3"))
    assert db.scalar(select(Node.address).where(Node.id == second.id)) == "10.0.0.3"
    assert nodes.peer_addresses(db, "a") == ("10.0.0.3",)


def test_new_mailboxes_go_to_the_node_holding_fewest(db: Session) -> None:
    domain = make_domain(db, name="a.test")
    a = nodes.register_node(db, "a", _endpoint("10.0.0.1"))
    b = nodes.register_node(db, "b", _endpoint("10.0.0.2"))
    placed = [make_mailbox(db, domain=domain, local_part=f"m{i}").node_id for i in range(4)]
    assert sorted(placed) == sorted([a.id, a.id, b.id, b.id])


def test_no_mailbox_is_made_without_a_node_once_nodes_exist(db: Session) -> None:
    domain = make_domain(db, name="a.test")
    node = nodes.register_node(db, "a", _endpoint("10.0.0.1"))
    node.takes_mailboxes = False
    db.flush()
    with pytest.raises(ValidationError, match="No mail node takes new mailboxes"):
        make_mailbox(db, domain=domain, local_part="homeless")
    assert db.scalar(select(Mailbox).where(Mailbox.local_part == "homeless")) is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 64, "a'; DROP TABLE node; --"])
def test_a_node_name_that_could_reach_sql_or_config_is_refused(db: Session, name: str) -> None:
    with pytest.raises(ValidationError):
        nodes.register_node(db, name, _endpoint("10.0.0.1"))


def test_only_the_operator_lists_the_nodes(db: Session) -> None:
    nodes.register_node(db, "a", _endpoint("10.0.0.1"))
    assert [node.name for node, _held in nodes.list_nodes(db, OPERATOR)] == ["a"]
    with pytest.raises(NotInScope):
        nodes.list_nodes(db, scope.tenant_admin(1))
