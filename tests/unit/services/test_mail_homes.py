"""Work on a mailbox home held by another node: the holding node runs it and the asker gets its
answer; an unanswered request is withdrawn and says nothing changed; a deleted mailbox's mail is
removed by its node, and only once the deletion is committed."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from controlplane.daemons import sieve_files
from controlplane.errors import NodeUnavailable
from controlplane.models import AuditEntry, NodeTask
from controlplane.runtime import Installation
from controlplane.services import mail_homes, mailboxes, nodes, sieve
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings
from tests.factories import make_domain, make_mailbox


@pytest.fixture
def two_nodes(settings: Settings, tmp_path) -> Iterator[tuple[Installation, Settings, int]]:
    """Node a's installation (where requests arrive), node b's settings, and b's node id."""
    node_a = dataclasses.replace(settings, node_name="a")
    node_b = dataclasses.replace(settings, node_name="b", home=tmp_path / "b")
    node_b.mail_root.mkdir(parents=True)
    installation = Installation(node_a)
    with installation.transaction() as session:
        nodes.register_node(session, "a", nodes.NodeEndpoint("10.0.0.1", 143, 110, 24, 4190))
        b_id = nodes.register_node(session, "b", nodes.NodeEndpoint("10.0.0.2", 143, 110, 24, 4190)).id
    yield installation, node_b, b_id
    installation.dispose()


@pytest.fixture
def node_b_working(two_nodes, request) -> Iterator[None]:
    """Node b's sync, running the tasks asked of it as runners/node_sync.py does (with other
    settings of b's if the test names them)."""
    installation, node_b, _ = two_nodes
    node_b = dataclasses.replace(node_b, **getattr(request, "param", {}))
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            with installation.transaction() as session:
                ran = mail_homes.run_next_task(session, node_b)
            if not ran:
                stop.wait(0.02)

    worker = threading.Thread(target=work)
    worker.start()
    yield
    stop.set()
    worker.join()


def _open_tasks(installation: Installation) -> int:
    with installation.sessions() as session:
        return session.scalar(select(func.count()).select_from(NodeTask)) or 0


def test_the_holding_node_answers_what_another_node_asks(two_nodes, node_b_working) -> None:
    installation, node_b, b_id = two_nodes
    owner = (os.getuid(), os.getgid())
    sieve_files.install_admin_script(node_b.mail_root, "abc123", "invoices", b"keep;\n", owner)
    with installation.sessions() as session:
        read = mail_homes.ask(
            session, b_id, mail_homes.READ_ADMIN_FILTER, {"storage_key": "abc123", "limit": 4096}
        )
        assert read["found"] and read["name"] == "invoices" and "keep;" in read["script"]
        removed = mail_homes.ask(session, b_id, mail_homes.REMOVE_ADMIN_FILTER, {"storage_key": "abc123"})
        assert removed == {"removed": True, "name": "invoices"}
        assert sieve_files.admin_script(node_b.mail_root / "abc123", 256) is None
        # A storage key that could climb out of the mail root is refused there, in words.
        refused = mail_homes.ask(
            session, b_id, mail_homes.READ_ADMIN_FILTER, {"storage_key": "../..", "limit": 1}
        )
        assert "Invalid storage key" in refused["error"]
    assert _open_tasks(installation) == 0  # every answer collected, every row gone


def test_an_unanswered_request_is_withdrawn_and_says_nothing_changed(two_nodes, monkeypatch) -> None:
    installation, node_b, b_id = two_nodes
    monkeypatch.setattr(mail_homes, "ANSWER_WAIT_SECONDS", 0.3)
    with (
        installation.sessions() as session,
        pytest.raises(NodeUnavailable, match=r"\(b\) did not answer"),
    ):
        mail_homes.ask(session, b_id, mail_homes.REMOVE_ADMIN_FILTER, {"storage_key": "abc123"})
    assert _open_tasks(installation) == 0
    with installation.transaction() as session:
        assert not mail_homes.run_next_task(session, node_b)  # b, back, finds nothing to do


def test_a_deleted_mailboxs_mail_is_removed_by_its_node_once_committed(two_nodes) -> None:
    installation, node_b, b_id = two_nodes
    with installation.transaction() as session:
        domain = make_domain(session, name="homes.test")
        mailbox = make_mailbox(session, domain=domain, local_part="ann")
        mailbox.node_id = b_id
        key = mailbox.storage_key
    (node_b.mail_root / key / "Maildir").mkdir(parents=True)
    with installation.sessions() as session:  # a deletion rolled back asks for nothing
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.find_mailbox(session, "ann@homes.test"))
        session.rollback()
    assert _open_tasks(installation) == 0
    with installation.transaction() as session:
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.find_mailbox(session, "ann@homes.test"))
    assert (node_b.mail_root / key).is_dir()  # node a's disk has no such folder to remove
    assert _open_tasks(installation) == 1
    with installation.transaction() as session:
        assert mail_homes.run_next_task(session, node_b)
    assert not (node_b.mail_root / key).exists()
    assert _open_tasks(installation) == 0


@pytest.mark.parametrize("node_b_working", [{"vmail_user": "no-such-mail-user"}], indirect=True)
def test_a_filter_the_holding_node_cannot_write_is_reported_and_not_recorded(
    two_nodes, node_b_working
) -> None:
    installation, _node_b, b_id = two_nodes
    with installation.transaction() as session:
        mailbox = make_mailbox(session, domain=make_domain(session, name="homes.test"), local_part="ann")
        mailbox.node_id = b_id
    with installation.transaction() as session:
        report = sieve.set_filter_for_mailbox(
            session, OPERATOR, installation.settings, mailboxes.find_mailbox(session, "ann@homes.test"),
            name="keep", script="keep;\n",
        )  # fmt: skip
        [result] = report.results
        assert report.applied == 0 and "could not be written" in str(result.error)
        assert "no-such-mail-user" in str(result.error)
        assert (
            session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sieve.apply")
            )
            == 0
        )
