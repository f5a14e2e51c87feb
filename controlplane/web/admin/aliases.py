"""Aliases of a domain: create, destinations, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import redirect, request, url_for

from controlplane.services import aliases, domains
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint
from controlplane.web.requests import db


def _destinations_field() -> str:
    return request.form.get("destinations", "").replace("\n", ",")


@blueprint.post("/domains/<name>/aliases")
@allow("full_admin", "domain_admin")
def create_alias(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    local_part, destinations = request.form.get("local_part", "").strip(), _destinations_field()
    attempt(
        lambda: aliases.create_alias(
            db(), current_actor(), domain=found, local_part=local_part, destinations=destinations
        ),
        "Alias created.",
    )
    return redirect(url_for("admin.domain", name=found.name))


def _on_alias(alias_id: int, change: Callable[[Any], Any], success: str):
    alias = aliases.get_alias_by_id(db(), current_actor(), alias_id)
    domain_name = alias.domain.name
    attempt(lambda: change(alias), success)
    return redirect(url_for("admin.domain", name=domain_name))


@blueprint.post("/aliases/<int:alias_id>/destinations")
@allow("full_admin", "domain_admin")
def set_alias_destinations(alias_id: int):
    destinations = _destinations_field()
    return _on_alias(
        alias_id,
        lambda a: aliases.set_alias_destinations(db(), current_actor(), a, destinations),
        "Alias saved.",
    )


@blueprint.post("/aliases/<int:alias_id>/delete")
@allow("full_admin", "domain_admin")
def delete_alias(alias_id: int):
    return _on_alias(alias_id, lambda a: aliases.delete_alias(db(), current_actor(), a), "Alias deleted.")
