"""`letterhead token ...`: REST API tokens."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.services import domains, tenants, tokens
from controlplane.services.scope import OPERATOR


def token_row(token) -> dict[str, Any]:
    return {
        "prefix": token.prefix,
        "kind": token.kind,
        "tenant": token.tenant.name,
        "domain": token.domain.name if token.domain else "",
        "name": token.name,
        "hourly_limit": token.hourly_limit or "",
        "created_at": token.created_at,
        "last_used_at": token.last_used_at or "",
        "revoked_at": token.revoked_at or "",
    }


@click.group()
def token() -> None:
    """Bearer tokens for the REST API (the secret is printed once, when made)."""


@token.command("create")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--domain", "domain_name", default=None, help="The domain of a domain or sign-up token.")
@click.option("--kind", type=click.Choice(["tenant", "domain", "signup"]), required=True)
@click.option("--name", required=True, help="What the token is for, e.g. billing.")
@click.option("--hourly-limit", type=int, default=None, help="Sign-up tokens: mailboxes an hour.")
@json_option
@handles_errors
def token_create(
    tenant_name: str,
    domain_name: str | None,
    kind: str,
    name: str,
    hourly_limit: int | None,
    as_json: bool,
) -> None:
    """Make a token and print its secret, which is not stored and never shown again."""
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        made, secret = tokens.create_token(
            session,
            OPERATOR,
            tenant=owner,
            kind=kind,
            name=name,
            domain=domains.get_domain(session, OPERATOR, domain_name) if domain_name else None,
            hourly_limit=hourly_limit,
        )
        row = token_row(made)
    if as_json:
        emit({**row, "secret": secret}, as_json)
        return
    emit(row, as_json)
    click.echo(f"Secret (shown once; store it now): {secret}")


@token.command("list")
@click.option("--tenant", "tenant_name", required=True)
@json_option
@handles_errors
def token_list(tenant_name: str, as_json: bool) -> None:
    """The tenant's tokens, newest first; secrets are never listed."""
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit([token_row(t) for t in tokens.list_tokens(session, OPERATOR, owner)], as_json)


@token.command("revoke")
@click.argument("prefix")
@handles_errors
def token_revoke(prefix: str) -> None:
    """Refuse the token with this prefix (as `token list` shows it) from its next request on."""
    with current_installation().transaction() as session:
        revoked = tokens.revoke_token(
            session, OPERATOR, tokens.get_token_by_prefix(session, OPERATOR, prefix)
        )
        done = f"Revoked the {revoked.kind} token {revoked.prefix} ({revoked.name}) of {revoked.tenant.name}."
    click.echo(done + " It is refused from its next request on.")
