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
        "has_logo_dark": brand.logo_dark is not None, "has_favicon": brand.favicon is not None,
        "accent_colour": brand.accent_colour, "page_title": brand.page_title, "footer_text": brand.footer_text,
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
    """Change the brand's name, support link, accent colour, page title or footer text (null
    removes one: the platform's then), shared flag or hostname. Pages on its hosts wear the
    change at their next load."""
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
IMAGE_BODY = {
    "required": True,
    "description": f"A PNG, JPEG or WebP image of at most {brands.MAX_LOGO_BYTES // 1024} KB within the pixel "
    "limits, or an SVG, kept only as rebuilt without script, styles or outside references. Its own bytes "
    "decide its type.",
    "content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("image/png", "image/jpeg", "image/webp", "image/svg+xml")
    },
}
# The images by their name in the path: the logo, the logo on dark pages, the tab's icon.
IMAGE_KINDS = {"logo": "logo", "logo-dark": "logo_dark", "favicon": "favicon"}
IMAGE_PARAMETER = {
    "in": "path", "name": "image", "required": True, "schema": {"type": "string", "enum": list(IMAGE_KINDS)},
    "description": "logo; logo-dark, shown on dark pages; favicon, the browser tab's icon (else the logo)",
}  # fmt: skip


def _image_kind(image: str) -> str:
    if image not in IMAGE_KINDS:
        from werkzeug.exceptions import NotFound

        raise NotFound()
    return IMAGE_KINDS[image]


@blueprint.route("/brands/<hostname>/<any(logo, 'logo-dark', favicon):image>", methods=["PUT"])
@tokens_allowed("tenant")
@blueprint.doc(
    requestBody=IMAGE_BODY, responses={"422": "UNPROCESSABLE_ENTITY"}, parameters=[IMAGE_PARAMETER]
)
@blueprint.response(200, BrandSchema)
def set_brand_image(hostname: str, image: str):
    """Set the brand's logo, its logo for dark pages or its favicon (the tab's icon; without
    one the logo serves); the same checks as the panel's (422 for anything else or larger)."""
    brand = _brand(hostname)
    # One byte past the limit is enough for the service to refuse it; the rest is never read.
    data = request.stream.read(brands.MAX_LOGO_BYTES + 1)
    brands.set_brand_image(db(), current_actor(), brand, _image_kind(image), data)
    db().commit()
    return brand_body(brand)


@blueprint.route("/brands/<hostname>/<any(logo, 'logo-dark', favicon):image>", methods=["DELETE"])
@tokens_allowed("tenant")
@blueprint.doc(parameters=[IMAGE_PARAMETER])
@blueprint.response(200, BrandSchema)
def remove_brand_image(hostname: str, image: str):
    """Remove one of the brand's images: its pages show its name alone (or the logo in the tab)."""
    brand = _brand(hostname)
    brands.set_brand_image(db(), current_actor(), brand, _image_kind(image), None)
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
