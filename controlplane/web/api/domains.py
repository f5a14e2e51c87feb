"""The tenant and its domains: what a reseller's billing polls and its automation changes."""

from __future__ import annotations

import dataclasses

from flask_smorest import Blueprint

from controlplane.daemons import usage
from controlplane.errors import NotFound
from controlplane.models import DkimKey, Domain, Tenant
from controlplane.services import dkim, dmarc_reports, domain_alerts, domains, spam, storage, tls_reports
from controlplane.web.api import current_actor, tokens_allowed
from controlplane.web.api.schemas import (
    DkimKeySchema,
    DmarcSummarySchema,
    DomainAlertsSchema,
    DomainCreateSchema,
    DomainPageSchema,
    DomainSchema,
    DomainUpdateSchema,
    DomainUsageSchema,
    PageArgs,
    SpamThresholdsSchema,
    SpamThresholdsStateSchema,
    TenantSchema,
    TlsReportSchema,
)
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("api_domains", __name__, description="The tenant and its domains")


def _tenant() -> Tenant:
    return db().get(Tenant, current_actor().tenant_id)


def domain_body(domain: Domain) -> dict:
    return {
        "name": domain.name, "display_name": domain.display_name, "active": domain.active,
        "max_mailboxes": domain.max_mailboxes, "max_aliases": domain.max_aliases,
        "max_mailbox_bytes": domain.max_mailbox_bytes,
    }  # fmt: skip


@blueprint.route("/tenant", methods=["GET"])
@tokens_allowed("tenant")
@blueprint.response(200, TenantSchema)
def get_tenant():
    """The tenant's plan and its storage pool: total, given to mailboxes, free, and mail stored."""
    tenant = _tenant()
    pool = storage.pool_usage(db(), tenant)
    names = [domain.name for domain in domains.list_domains(db(), current_actor(), tenant)]
    return {
        "name": tenant.name, "largest_mailbox_bytes": tenant.max_mailbox_bytes, "active": tenant.active,
        "pool": {
            "total_bytes": pool.total_bytes, "allocated_bytes": pool.allocated_bytes,
            "free_bytes": max(pool.free_bytes, 0), "used_bytes": usage.used_by_domains(current_settings(), names),
        },
    }  # fmt: skip


@blueprint.route("/domains", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(PageArgs, location="query")
@blueprint.response(200, DomainPageSchema)
def list_domains(args):
    """The domains this token sees (a domain token: its own), a page at a time."""
    listed = domains.list_domains(db(), current_actor(), _tenant())
    start = (args["page"] - 1) * args["per_page"]
    return {
        "items": [domain_body(d) for d in listed[start : start + args["per_page"]]],
        "total": len(listed), "page": args["page"], "per_page": args["per_page"],
    }  # fmt: skip


@blueprint.route("/domains", methods=["POST"])
@tokens_allowed("tenant")
@blueprint.arguments(DomainCreateSchema)
@blueprint.response(201, DomainSchema)
def create_domain(body):
    """Host a new domain, with its limits."""
    domain = domains.create_domain(db(), current_actor(), tenant=_tenant(), **body)
    db().commit()
    return domain_body(domain)


@blueprint.route("/domains/<name>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DomainSchema)
def get_domain(name: str):
    return domain_body(domains.get_domain(db(), current_actor(), name))


@blueprint.route("/domains/<name>", methods=["PATCH"])
@tokens_allowed("tenant")
@blueprint.arguments(DomainUpdateSchema)
@blueprint.response(200, DomainSchema)
def update_domain(body, name: str):
    """Change a domain's limits or take it out of service (full-admin tokens only)."""
    domain = domains.update_domain(
        db(), current_actor(), domains.get_domain(db(), current_actor(), name), **body
    )
    db().commit()
    return domain_body(domain)


@blueprint.route("/domains/<name>", methods=["DELETE"])
@tokens_allowed("tenant")
@blueprint.response(204)
def delete_domain(name: str):
    """Remove a domain with its mailboxes, their mail, and its aliases."""
    domains.delete_domain(db(), current_actor(), domains.get_domain(db(), current_actor(), name))
    db().commit()


@blueprint.route("/domains/<name>/usage", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DomainUsageSchema)
def domain_usage(name: str):
    """What a billing system polls: mailboxes, aliases, storage given and mail stored."""
    domain = domains.get_domain(db(), current_actor(), name)
    counts = domains.domain_counts(db(), domain)
    return {
        "domain": domain.name, "mailboxes": counts.mailboxes, "aliases": counts.aliases,
        "allocated_bytes": counts.allocated_bytes, "used_bytes": usage.used_by_domains(current_settings(), [domain.name]),
    }  # fmt: skip


def dkim_body(key: DkimKey) -> dict:
    return {
        "selector": key.selector, "state": key.state, "created_at": key.created_at,
        "retire_after": key.retire_after, "record_name": dkim.record_name(key), "record_value": dkim.record_value(key),
    }  # fmt: skip


@blueprint.route("/domains/<name>/dkim", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DkimKeySchema(many=True))
def list_dkim_keys(name: str):
    """The domain's DKIM keys its DNS must publish: the active one, then any kept after a rotation."""
    domain = domains.get_domain(db(), current_actor(), name)
    return [dkim_body(key) for key in dkim.published_keys(db(), domain)]


@blueprint.route("/domains/<name>/tls-reports", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, TlsReportSchema(many=True))
def list_tls_reports(name: str):
    """The TLS reports (RFC 8460) other mail systems sent about reaching this domain, newest first."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    return [tls_reports.report_body(report) for report in tls_reports.domain_reports(db(), actor, domain)]


@blueprint.route("/domains/<name>/alerts", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DomainAlertsSchema)
def get_domain_alerts(name: str):
    """Which alerts the domain's admins get, and where (404 when none is set)."""
    actor = current_actor()
    alerts = domain_alerts.get_alerts(db(), actor, domains.get_domain(db(), actor, name))
    if alerts is None:
        raise NotFound(f"No alerts are set for {name}.")
    return dataclasses.asdict(alerts)


@blueprint.route("/domains/<name>/alerts", methods=["PUT"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(DomainAlertsSchema)
@blueprint.response(200, DomainAlertsSchema)
def set_domain_alerts(body, name: str):
    """Mail an address of the domain when more than `bounce_threshold` recipients of mail to or from
    it bounce or are refused within an hour, and/or when a mailbox passes 95% of its storage."""
    actor = current_actor()
    alerts = domain_alerts.set_alerts(
        db(), actor, domains.get_domain(db(), actor, name), recipient=body["recipient"],
        bounce_threshold=body["bounce_threshold"], storage_warning=body["storage_warning"],
    )  # fmt: skip
    db().commit()
    return dataclasses.asdict(alerts)


@blueprint.route("/domains/<name>/dmarc-reports", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DmarcSummarySchema)
def dmarc_summary(name: str):
    """The last 30 days of DMARC aggregate reports about the domain: messages passing and failing per
    day, and each server that sent as the domain with its SPF and DKIM alignment."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    return dmarc_reports.dmarc_body(dmarc_reports.domain_dmarc(db(), actor, domain))


@blueprint.route("/domains/<name>/dkim/rotate", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DkimKeySchema(many=True))
def rotate_dkim_key(name: str):
    """Sign with a new key from now on; the previous one stays published for 7 days."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    dkim.rotate_key(db(), actor, domain)
    db().commit()
    return [dkim_body(key) for key in dkim.published_keys(db(), domain)]


def spam_body(current: spam.SpamThresholds) -> dict:
    return {
        "reject_score": current.reject_score, "reject_score_is_default": not current.reject_is_own,
        "junk_score": current.junk_score, "junk_score_is_default": not current.junk_is_own,
        "greylisting": current.greylisting,
    }  # fmt: skip


@blueprint.route("/domains/<name>/spam", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, SpamThresholdsStateSchema)
def get_spam_thresholds(name: str):
    """The scores at which the domain's mail is refused as spam or filed as junk."""
    domain = domains.get_domain(db(), current_actor(), name)
    return spam_body(spam.thresholds(current_settings(), domain))


@blueprint.route("/domains/<name>/spam", methods=["PUT"])
@tokens_allowed("tenant")
@blueprint.arguments(SpamThresholdsSchema)
@blueprint.response(200, SpamThresholdsStateSchema)
def set_spam_thresholds(body, name: str):
    """Set the domain's spam thresholds (null: the installation's default); junk below reject."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    current = spam.update(db(), actor, current_settings(), domain, **body)
    db().commit()
    return spam_body(current)
