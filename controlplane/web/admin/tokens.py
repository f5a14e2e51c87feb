"""API tokens: made with the secret shown once, listed, revoked."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from controlplane.services import domains, tokens
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint, current_tenant, whole_number
from controlplane.web.requests import db


@blueprint.get("/tokens")
@allow("full_admin", "domain_admin")
def token_list():
    actor = current_actor()
    tenant = current_tenant()
    return render_template(
        "admin/tokens.html", tokens=tokens.list_tokens(db(), actor, tenant),
        domains=domains.list_domains(db(), actor, tenant), may_make_tenant_tokens=actor.kind == "tenant_admin",
        default_hourly_limit=tokens.DEFAULT_SIGNUP_HOURLY_LIMIT, token_prefix=tokens.TOKEN_PREFIX,
    )  # fmt: skip


@blueprint.post("/tokens")
@allow("full_admin", "domain_admin")
def create_token():
    form = request.form
    kind, domain_name, limit = form.get("kind", ""), form.get("domain", ""), form.get("hourly_limit", "")
    # Looked up in the actor's scope: another domain's name meets NotFound, as everywhere.
    found = domains.get_domain(db(), current_actor(), domain_name) if domain_name else None
    attempt(
        lambda: tokens.create_token(
            db(), current_actor(), tenant=current_tenant(), kind=kind, name=form.get("name", ""), domain=found,
            hourly_limit=whole_number(limit, "hourly_limit") if limit.strip() else None,
        ),
        lambda made: f"Token {made[0].name} created. Its secret, shown once: {made[1]}",
    )  # fmt: skip
    return redirect(url_for("admin.token_list"))


@blueprint.post("/tokens/<int:token_id>/revoke")
@allow("full_admin", "domain_admin")
def revoke_token(token_id: int):
    found = tokens.get_token(db(), current_actor(), token_id)
    attempt(
        lambda: tokens.revoke_token(db(), current_actor(), found),
        f"Token {found.name} revoked: it is refused from its next request on.",
    )
    return redirect(url_for("admin.token_list"))
