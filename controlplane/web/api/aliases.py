"""Aliases of a domain: addresses that forward; the local part "@" names the catch-all."""

from __future__ import annotations

from flask_smorest import Blueprint

from controlplane.errors import NotFound
from controlplane.models import Alias
from controlplane.services import aliases, domains
from controlplane.web.api import current_actor, tokens_allowed
from controlplane.web.api.schemas import (
    AliasCreateSchema,
    AliasPageSchema,
    AliasSchema,
    AliasUpdateSchema,
    PageArgs,
)
from controlplane.web.requests import db

blueprint = Blueprint("api_aliases", __name__, description="Aliases and catch-alls")


def alias_body(alias: Alias) -> dict:
    return {
        "address": alias.address,
        "local_part": alias.local_part or "@",
        "destinations": alias.destination_addresses,
        "active": alias.active,
    }


def _alias(name: str, local_part: str) -> Alias:
    domain = domains.get_domain(db(), current_actor(), name)
    alias = aliases.find_alias(db(), f"{local_part}@{domain.name}")
    if alias is None or alias.domain_id != domain.id:
        raise NotFound(f"No such alias: {local_part}@{domain.display_name}.")
    return alias


@blueprint.route("/domains/<name>/aliases", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(PageArgs, location="query")
@blueprint.response(200, AliasPageSchema)
def list_aliases(args, name: str):
    """A page of the domain's aliases, by local part (the catch-all first)."""
    listed = aliases.list_aliases(db(), current_actor(), domains.get_domain(db(), current_actor(), name))
    start = (args["page"] - 1) * args["per_page"]
    return {
        "items": [alias_body(a) for a in listed[start : start + args["per_page"]]],
        "total": len(listed), "page": args["page"], "per_page": args["per_page"],
    }  # fmt: skip


@blueprint.route("/domains/<name>/aliases", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(AliasCreateSchema)
@blueprint.response(201, AliasSchema)
def create_alias(body, name: str):
    """Create an alias within the domain's alias limit; "@" as local part makes the catch-all,
    which takes mail for every address of the domain that is not a mailbox or alias."""
    alias = aliases.create_alias(
        db(), current_actor(), domain=domains.get_domain(db(), current_actor(), name),
        local_part=body["local_part"], destinations=body["destinations"],
    )  # fmt: skip
    db().commit()
    return alias_body(alias)


@blueprint.route("/domains/<name>/aliases/<local_part>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, AliasSchema)
def get_alias(name: str, local_part: str):
    return alias_body(_alias(name, local_part))


@blueprint.route("/domains/<name>/aliases/<local_part>", methods=["PATCH"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(AliasUpdateSchema)
@blueprint.response(200, AliasSchema)
def update_alias(body, name: str, local_part: str):
    """Replace the alias's destinations."""
    alias = aliases.set_alias_destinations(
        db(), current_actor(), _alias(name, local_part), body["destinations"]
    )
    db().commit()
    return alias_body(alias)


@blueprint.route("/domains/<name>/aliases/<local_part>", methods=["DELETE"])
@tokens_allowed("tenant", "domain")
@blueprint.response(204)
def delete_alias(name: str, local_part: str):
    """Delete an alias; aliases that forwarded to it stop doing so."""
    aliases.delete_alias(db(), current_actor(), _alias(name, local_part))
    db().commit()
