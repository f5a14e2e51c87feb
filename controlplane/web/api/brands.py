"""Brands (server names and looks), which domain uses which, and each domain's DNS records."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from controlplane.models import Brand, Tenant
from controlplane.services import brand_dns, brands, domains, scope
from controlplane.web.api import current_actor, tokens_allowed
from controlplane.web.api.schemas import (
    BrandCreateSchema,
    BrandPageSchema,
    BrandSchema,
    BrandUpdateSchema,
    DomainBrandSchema,
    DomainDnsSchema,
    PageArgs,
)
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("api_brands", __name__, description="Brands and the DNS records of branded access")


def _tenant() -> Tenant:
    return db().get(Tenant, current_actor().tenant_id)


def _brand(hostname: str) -> Brand:
    return brands.get_brand_by_hostname(db(), current_actor(), hostname)


def brand_body(brand: Brand) -> dict:
    actor = current_actor()
    return {
        "hostname": brand.hostname, "name": brand.name, "support_url": brand.support_url,
        "shared": brand.shared, "has_logo": brand.logo is not None,
        "domains": sorted(d.name for d in scope.brand_domains_seen(actor, brand.domains)),
        "certificate": {
            "status": brand.cert_status, "names": list(brand.covered_names), "not_after": brand.cert_not_after,
            "error": brand.cert_error, "next_attempt_at": brand.cert_next_attempt_at,
        },
    }  # fmt: skip


@blueprint.route("/brands", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(PageArgs, location="query")
@blueprint.response(200, BrandPageSchema)
def list_brands(args):
    """The tenant's brands (a domain token: the brand its domain uses)."""
    listed = brands.list_brands(db(), current_actor(), _tenant())
    start = (args["page"] - 1) * args["per_page"]
    return {
        "items": [brand_body(b) for b in listed[start : start + args["per_page"]]],
        "total": len(listed), "page": args["page"], "per_page": args["per_page"],
    }  # fmt: skip


@blueprint.route("/brands", methods=["POST"])
@tokens_allowed("tenant")
@blueprint.arguments(BrandCreateSchema)
@blueprint.response(201, BrandSchema)
def create_brand(body):
    """Add a brand: its certificate is ordered once its hostname points at the platform."""
    brand = brands.create_brand(db(), current_actor(), current_settings(), tenant=_tenant(), **body)
    db().commit()
    return brand_body(brand)


@blueprint.route("/brands/<hostname>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, BrandSchema)
def get_brand(hostname: str):
    return brand_body(_brand(hostname))


@blueprint.route("/brands/<hostname>", methods=["PATCH"])
@tokens_allowed("tenant")
@blueprint.arguments(BrandUpdateSchema)
@blueprint.response(200, BrandSchema)
def update_brand(body, hostname: str):
    """Change the brand's name, support link (null removes it), shared flag or hostname."""
    brand = brands.update_brand(db(), current_actor(), current_settings(), _brand(hostname), **body)
    db().commit()
    return brand_body(brand)


@blueprint.route("/brands/<hostname>", methods=["DELETE"])
@tokens_allowed("tenant")
@blueprint.response(204)
def delete_brand(hostname: str):
    """Remove a brand: its domains go back to the platform's host."""
    brands.delete_brand(db(), current_actor(), _brand(hostname))
    db().commit()


# The image itself is the body: its first bytes decide its type, whatever Content-Type says.
LOGO_BODY = {
    "required": True,
    "description": f"A PNG, JPEG or GIF image of at most {brands.MAX_LOGO_BYTES // 1024} KB (no SVG: it can "
    "carry script). Its own bytes decide its type.",
    "content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("image/png", "image/jpeg", "image/gif")
    },
}


@blueprint.route("/brands/<hostname>/logo", methods=["PUT"])
@tokens_allowed("tenant")
@blueprint.doc(requestBody=LOGO_BODY, responses={"422": "UNPROCESSABLE_ENTITY"})
@blueprint.response(200, BrandSchema)
def set_brand_logo(hostname: str):
    """Set the brand's logo, shown on its webmail and admin panel and as their tab icon; the
    same checks as the panel's (422 for anything else or anything larger)."""
    brand = _brand(hostname)
    # One byte past the limit is enough for the service to refuse it; the rest is never read.
    data = request.stream.read(brands.MAX_LOGO_BYTES + 1)
    brands.set_brand_logo(db(), current_actor(), brand, data)
    db().commit()
    return brand_body(brand)


@blueprint.route("/brands/<hostname>/logo", methods=["DELETE"])
@tokens_allowed("tenant")
@blueprint.response(200, BrandSchema)
def remove_brand_logo(hostname: str):
    """Remove the brand's logo: its pages show its name alone and the default tab icon."""
    brand = _brand(hostname)
    brands.set_brand_logo(db(), current_actor(), brand, None)
    db().commit()
    return brand_body(brand)


@blueprint.route("/domains/<name>/brand", methods=["PUT"])
@tokens_allowed("tenant")
@blueprint.arguments(DomainBrandSchema)
@blueprint.response(200, DomainBrandSchema)
def set_domain_brand(body, name: str):
    """Choose the brand a domain uses (null: the platform's host)."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    brand = _brand(body["brand"]) if body["brand"] else None
    brands.set_domain_brand(db(), actor, domain, brand)
    db().commit()
    return {"brand": brand.hostname if brand else None}


def _dns_body(states: brand_dns.DomainDnsStates) -> dict:
    return {
        "domain": states.domain.name,
        "server_hostname": brands.server_hostname(current_settings(), states.domain),
        "checked_at": states.checked_at,
        "records": [
            {
                "name": s.record.name, "type": s.record.type, "expected": s.record.value,
                "accepted": [f"{kind} {value}" for kind, value in s.record.accepted], "note": s.record.note,
                "state": s.state, "found": list(s.found), "detail": s.note,
            }
            for s in states.records
        ],
    }  # fmt: skip


@blueprint.route("/domains/<name>/dns", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DomainDnsSchema)
def domain_dns(name: str):
    """The records the domain needs for its server host, with the state the last check found."""
    domain = domains.get_domain(db(), current_actor(), name)
    return _dns_body(brand_dns.dns_states(current_settings(), domain))


@blueprint.route("/domains/<name>/dns", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, DomainDnsSchema)
def check_domain_dns(name: str):
    """Ask DNS now and answer each record's state: ok, missing, wrong (with what was found),
    propagating, or unchecked."""
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    report = brand_dns.check_domain_dns(db(), actor, current_settings(), domain)
    db().commit()
    return _dns_body(brand_dns.dns_states(current_settings(), domain, report))
