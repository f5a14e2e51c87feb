"""The audit trail: who changed what, within the viewer's scope."""

from __future__ import annotations

from flask import render_template

from controlplane.models import Domain
from controlplane.services import audit
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import blueprint, current_tenant
from controlplane.web.requests import db


@blueprint.get("/audit")
@allow("full_admin", "domain_admin")
def audit_trail():
    actor = current_actor()
    domain_filter = None
    if actor.kind == "domain_admin":
        domain_filter = db().get(Domain, actor.domain_id)
    entries, total = audit.list_entries(db(), actor, tenant=current_tenant(), domain=domain_filter, limit=200)
    return render_template("admin/audit.html", entries=entries, total=total)
