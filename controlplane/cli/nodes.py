"""`letterhead node ...`: the mail nodes that share one PostgreSQL database.

A node is an installation (its own state directory, hostname and addresses) whose letterhead.toml
sets `database_url` to the shared database and `node_name`; `letterhead up` registers it and starts
its sync, which keeps its daemons up with changes made on any node.
"""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.runners import node_sync
from controlplane.services import nodes
from controlplane.services.scope import OPERATOR
from controlplane.settings import load_settings


@click.group()
def node() -> None:
    """The mail nodes sharing this installation's database."""


@node.command("list")
@json_option
@handles_errors
def node_list(as_json: bool) -> None:
    """Every node: its address, the mailboxes it holds, the change it serves and when it was seen."""
    installation = current_installation()
    with installation.sessions() as session:
        generation = nodes.current_generation(session)
        rows: list[dict[str, Any]] = [
            {
                "name": item.name,
                "address": item.address,
                "imap": item.imap_port,
                "lmtp": item.lmtp_port,
                "mailboxes": held,
                "takes_mailboxes": item.takes_mailboxes,
                "behind": generation - item.applied_generation,
                "last_seen_at": item.last_seen_at or "",
            }
            for item, held in nodes.list_nodes(session, OPERATOR)
        ]
    emit(rows, as_json)


@node.command("sync")
@click.option("--daemon", is_flag=True, help="Detach (as `letterhead up` starts it).")
@handles_errors
def node_sync_command(daemon: bool) -> None:
    """Keep this node's daemons up with changes made on any node (until stopped)."""
    node_sync.run_node_sync(load_settings(), daemon=daemon)
