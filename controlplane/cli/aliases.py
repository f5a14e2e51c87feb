"""`letterhead alias ...`: aliases and their destinations."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.services import aliases, domains
from controlplane.services.scope import OPERATOR


def alias_row(alias) -> dict[str, Any]:
    return {"address": alias.address, "destinations": ", ".join(alias.destination_addresses)}


@click.group()
def alias() -> None:
    """Aliases (use @domain for a catch-all)."""


@alias.command("create")
@click.argument("address")
@click.argument("destinations", nargs=-1, required=True)
@json_option
@handles_errors
def alias_create(address: str, destinations: tuple[str, ...], as_json: bool) -> None:
    with current_installation().transaction() as session:
        local_part, _, domain_name = address.rpartition("@")
        created = aliases.create_alias(
            session,
            OPERATOR,
            domain=domains.get_domain(session, OPERATOR, domain_name),
            local_part=local_part,
            destinations=list(destinations),
        )
        emit(alias_row(created), as_json)


@alias.command("list")
@click.argument("domain_name")
@json_option
@handles_errors
def alias_list(domain_name: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
        owner = domains.get_domain(session, OPERATOR, domain_name)
        emit([alias_row(a) for a in aliases.list_aliases(session, OPERATOR, owner)], as_json)


@alias.command("set")
@click.argument("address")
@click.argument("destinations", nargs=-1, required=True)
@json_option
@handles_errors
def alias_set(address: str, destinations: tuple[str, ...], as_json: bool) -> None:
    with current_installation().transaction() as session:
        found = aliases.get_alias(session, OPERATOR, address)
        aliases.set_alias_destinations(session, OPERATOR, found, list(destinations))
        emit(alias_row(found), as_json)


@alias.command("delete")
@click.argument("address")
@handles_errors
def alias_delete(address: str) -> None:
    with current_installation().transaction() as session:
        aliases.delete_alias(session, OPERATOR, aliases.get_alias(session, OPERATOR, address))
    click.echo(f"Deleted alias {address}.")
