"""`letterhead mailbox ...`: mailboxes, quotas, passwords."""

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
from controlplane.services import domains, mailboxes, passwords, sender_lists
from controlplane.services.scope import OPERATOR


def mailbox_row(mailbox) -> dict[str, Any]:
    return {
        "address": mailbox.address,
        "display_name": mailbox.display_name,
        "quota_bytes": mailbox.quota_bytes,
        "active": mailbox.active,
        "domain_admin": mailbox.is_domain_admin,
    }


def _split_for_create(session, address: str):
    local_part, _, domain_name = address.rpartition("@")
    if not local_part:
        raise click.BadParameter(f"{address!r} is not an email address.")
    return local_part, domains.get_domain(session, OPERATOR, domain_name)


@click.group()
def mailbox() -> None:
    """Mailboxes: storage, passwords, the domain-admin role."""


@mailbox.command("create")
@click.argument("address")
@size_option("--quota", required=True, help="Storage from the tenant's pool, e.g. 1GB.")
@click.option("--password", default=None, help="Plain password (omit both to generate one).")
@click.option("--password-hash", default=None, help="An existing hash, e.g. {SHA512-CRYPT}$6$...")
@click.option("--name", "display_name", default="")
@click.option("--domain-admin", is_flag=True)
@json_option
@handles_errors
def mailbox_create(
    address: str,
    quota: int,
    password: str | None,
    password_hash: str | None,
    display_name: str,
    domain_admin: bool,
    as_json: bool,
) -> None:
    generated = None
    if password is None and password_hash is None:
        password = generated = passwords.generate_password()
    with current_installation().transaction() as session:
        local_part, owner = _split_for_create(session, address)
        created = mailboxes.create_mailbox(
            session,
            OPERATOR,
            domain=owner,
            local_part=local_part,
            quota_bytes=quota,
            password=password,
            password_hash=password_hash,
            display_name=display_name,
            is_domain_admin=domain_admin,
        )
        row = mailbox_row(created)
    if generated:
        row["generated_password"] = generated
    emit(row, as_json)


@mailbox.command("list")
@click.argument("domain_name")
@click.option("--search", default="")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=100)
@json_option
@handles_errors
def mailbox_list(domain_name: str, search: str, offset: int, limit: int, as_json: bool) -> None:
    with current_installation().transaction() as session:
        owner = domains.get_domain(session, OPERATOR, domain_name)
        found = mailboxes.list_mailboxes(session, OPERATOR, owner, search=search, offset=offset, limit=limit)
        emit([mailbox_row(m) for m in found], as_json)


@mailbox.command("show")
@click.argument("address")
@json_option
@handles_errors
def mailbox_show(address: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
        emit(mailbox_row(mailboxes.get_mailbox(session, OPERATOR, address)), as_json)


@mailbox.command("set-quota")
@click.argument("address")
@size_option("--quota", required=True)
@json_option
@handles_errors
def mailbox_set_quota(address: str, quota: int, as_json: bool) -> None:
    with current_installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.set_mailbox_quota(session, OPERATOR, found, quota)
        emit(mailbox_row(found), as_json)


@mailbox.command("set-hourly-limit")
@click.argument("address")
@click.option(
    "--messages",
    "messages",
    required=True,
    help='Messages per hour it may send ("default": its tenant\'s limit).',
)
@json_option
@handles_errors
def mailbox_set_hourly_limit(address: str, messages: str, as_json: bool) -> None:
    """How many messages a mailbox may send per hour through submission."""
    if messages == "default":
        limit = None
    elif messages.isdigit():
        limit = int(messages)
    else:
        raise click.BadParameter(f"{messages!r} is neither a whole number nor 'default'.")
    with current_installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.set_hourly_messages(session, OPERATOR, found, limit)
        emit(
            {
                "address": found.address,
                "hourly_messages": found.sending_limit,
                "is_tenant_default": found.hourly_messages is None,
            },
            as_json,
        )


@mailbox.command("set-password")
@click.argument("address")
@click.option("--password", default=None)
@click.option("--password-hash", default=None)
@handles_errors
def mailbox_set_password(address: str, password: str | None, password_hash: str | None) -> None:
    generated = None
    if password is None and password_hash is None:
        password = generated = passwords.generate_password()
    with current_installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.set_mailbox_password(
            session, OPERATOR, found, password=password, password_hash=password_hash
        )
    click.echo(f"New password for {address}: {generated}" if generated else f"Password of {address} changed.")


@mailbox.command("update")
@click.argument("address")
@click.option("--name", "display_name", default=None)
@click.option("--active/--inactive", default=None)
@click.option("--rename", "new_local_part", default=None, help="New part before @.")
@json_option
@handles_errors
def mailbox_update(
    address: str, display_name: str | None, active: bool | None, new_local_part: str | None, as_json: bool
) -> None:
    with current_installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.update_mailbox(
            session, OPERATOR, found, display_name=display_name, active=active, local_part=new_local_part
        )
        emit(mailbox_row(found), as_json)


@mailbox.command("grant-admin")
@click.argument("address")
@handles_errors
def mailbox_grant_admin(address: str) -> None:
    with current_installation().transaction() as session:
        mailboxes.set_domain_admin(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address), True)
    click.echo(f"{address} is now an admin of its domain.")


@mailbox.command("revoke-admin")
@click.argument("address")
@handles_errors
def mailbox_revoke_admin(address: str) -> None:
    with current_installation().transaction() as session:
        mailboxes.set_domain_admin(
            session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address), False
        )
    click.echo(f"{address} is no longer an admin of its domain.")


@mailbox.command("delete")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Confirm: its mail is deleted too.")
@handles_errors
def mailbox_delete(address: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {address} and all its mail; add --yes to confirm.")
    with current_installation().transaction() as session:
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address))
    click.echo(f"Deleted mailbox {address}.")


@mailbox.command("senders")
@click.argument("address")
@click.option(
    "--allow", "allow", multiple=True, help="Never file mail from this sender (or @domain) as junk."
)
@click.option(
    "--block", "block", multiple=True, help="Always file mail from this sender (or @domain) as junk."
)
@click.option("--remove", "remove", multiple=True, help="Take this sender off either list.")
@json_option
@handles_errors
def mailbox_senders(
    address: str, allow: tuple[str, ...], block: tuple[str, ...], remove: tuple[str, ...], as_json: bool
) -> None:
    """Show or change a mailbox's allow and block lists of senders."""
    with current_installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        for sender in remove:
            sender_lists.remove_sender(session, OPERATOR, found, sender)
        for verdict, senders in (("allow", allow), ("block", block)):
            for sender in senders:
                sender_lists.add_sender(session, OPERATOR, found, sender, verdict)
        current = sender_lists.lists_of(session, OPERATOR, found)
        emit({"address": found.address, "allowed": current.allowed, "blocked": current.blocked}, as_json)
