"""`letterhead domain ...`: a tenant's domains and their limits."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli.common import (
    current_installation,
    emit,
    fail,
    handles_errors,
    json_option,
    size_option,
)
from controlplane.services import dkim, domains, spam, tenants
from controlplane.services.scope import OPERATOR


def domain_row(session, domain) -> dict[str, Any]:
    counts = domains.domain_counts(session, domain)
    return {
        "name": domain.display_name,
        "ascii_name": domain.name,
        "tenant": domain.tenant.name,
        "mailboxes": counts.mailboxes,
        "max_mailboxes": domain.max_mailboxes,
        "aliases": counts.aliases,
        "max_aliases": domain.max_aliases,
        "allocated_bytes": counts.allocated_bytes,
        "max_mailbox_bytes": domain.max_mailbox_bytes,
        "active": domain.active,
    }


@click.group()
def domain() -> None:
    """Mail domains and their limits."""


@domain.command("create")
@click.argument("name")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--max-mailboxes", type=int, required=True)
@click.option("--max-aliases", type=int, required=True)
@size_option("--max-mailbox-size", default=None, help="Largest mailbox in this domain (default: the plan's).")
@json_option
@handles_errors
def domain_create(
    name: str,
    tenant_name: str,
    max_mailboxes: int,
    max_aliases: int,
    max_mailbox_size: int | None,
    as_json: bool,
) -> None:
    with current_installation().transaction() as session:
        created = domains.create_domain(
            session,
            OPERATOR,
            tenant=tenants.get_tenant(session, OPERATOR, tenant_name),
            name=name,
            max_mailboxes=max_mailboxes,
            max_aliases=max_aliases,
            max_mailbox_bytes=max_mailbox_size,
        )
        emit(domain_row(session, created), as_json)


@domain.command("list")
@click.option("--tenant", "tenant_name", default=None)
@json_option
@handles_errors
def domain_list(tenant_name: str | None, as_json: bool) -> None:
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name) if tenant_name else None
        emit([domain_row(session, d) for d in domains.list_domains(session, OPERATOR, owner)], as_json)


@domain.command("show")
@click.argument("name")
@json_option
@handles_errors
def domain_show(name: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
        emit(domain_row(session, domains.get_domain(session, OPERATOR, name)), as_json)


@domain.command("update")
@click.argument("name")
@click.option("--max-mailboxes", type=int, default=None)
@click.option("--max-aliases", type=int, default=None)
@size_option("--max-mailbox-size", default=None)
@click.option("--active/--inactive", default=None)
@json_option
@handles_errors
def domain_update(
    name: str,
    max_mailboxes: int | None,
    max_aliases: int | None,
    max_mailbox_size: int | None,
    active: bool | None,
    as_json: bool,
) -> None:
    with current_installation().transaction() as session:
        found = domains.get_domain(session, OPERATOR, name)
        domains.update_domain(
            session,
            OPERATOR,
            found,
            max_mailboxes=max_mailboxes,
            max_aliases=max_aliases,
            max_mailbox_bytes=max_mailbox_size,
            active=active,
        )
        emit(domain_row(session, found), as_json)


@domain.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: delete its mailboxes (and their mail) and aliases too.")
@handles_errors
def domain_delete(name: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {name} with all its mailboxes, their mail, and aliases; add --yes to confirm.")
    with current_installation().transaction() as session:
        domains.delete_domain(session, OPERATOR, domains.get_domain(session, OPERATOR, name))
    click.echo(f"Deleted domain {name}.")


def dkim_rows(session, found) -> list[dict[str, Any]]:
    return [
        {
            "selector": key.selector,
            "state": key.state,
            "created": key.created_at.date().isoformat(),
            "retire_after": key.retire_after.date().isoformat() if key.retire_after else "",
            "record_name": dkim.record_name(key),
            "record_value": dkim.record_value(key),
        }
        for key in dkim.published_keys(session, found)
    ]


@domain.command("dkim")
@click.argument("name")
@json_option
@handles_errors
def domain_dkim(name: str, as_json: bool) -> None:
    """The domain's DKIM keys its DNS must publish: the one that signs, and any kept after a rotation."""
    with current_installation().transaction() as session:
        emit(dkim_rows(session, domains.get_domain(session, OPERATOR, name)), as_json)


@domain.command("dkim-rotate")
@click.argument("name")
@json_option
@handles_errors
def domain_dkim_rotate(name: str, as_json: bool) -> None:
    """Sign with a new DKIM key from now on; the old one stays published for its overlap (7 days)."""
    with current_installation().transaction() as session:
        found = domains.get_domain(session, OPERATOR, name)
        dkim.rotate_key(session, OPERATOR, found)
        rows = dkim_rows(session, found)
    emit(rows, as_json)
    if not as_json:
        click.echo("Publish the new record now; remove the old one after its retire date.")


def _score_option(value: str | None) -> float | None:
    """A number, or "default" (None: the installation's); not given: unchanged."""
    if value is None:
        return spam.UNCHANGED
    if value == "default":
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'default'.") from None


@domain.command("spam")
@click.argument("name")
@click.option(
    "--reject-score", default=None, help='Refuse mail scoring at least this ("default": the installation\'s).'
)
@click.option(
    "--junk-score",
    default=None,
    help='File mail scoring at least this as junk ("default": the installation\'s).',
)
@click.option(
    "--greylisting/--no-greylisting", default=None, help="Defer mail from senders not seen lately once."
)
@json_option
@handles_errors
def domain_spam(
    name: str, reject_score: str | None, junk_score: str | None, greylisting: bool | None, as_json: bool
) -> None:
    """Show or set the domain's spam thresholds."""
    installation = current_installation()
    with installation.transaction() as session:
        found = domains.get_domain(session, OPERATOR, name)
        if reject_score is None and junk_score is None and greylisting is None:
            current = spam.thresholds(installation.settings, found)
        else:
            current = spam.update(
                session, OPERATOR, installation.settings, found,
                reject_score=_score_option(reject_score), junk_score=_score_option(junk_score),
                greylisting=greylisting,
            )  # fmt: skip
    emit(
        {
            "domain": name,
            "reject_score": current.reject_score,
            "reject_score_is_default": not current.reject_is_own,
            "junk_score": current.junk_score,
            "junk_score_is_default": not current.junk_is_own,
            "greylisting": current.greylisting,
        },
        as_json,
    )
