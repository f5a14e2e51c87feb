"""Edit branding: brands (server name, look), which domain uses which, and Server names —
the DNS records each domain needs with their live state, and the brand's certificate."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for

from controlplane.errors import ValidationError
from controlplane.models import Brand, Domain, Tenant
from controlplane.services import brand_dns, brands, domains, scope
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint
from controlplane.web.requests import current_settings, db
from controlplane.web.theme import theme_of


def _tenant() -> Tenant:
    return db().get(Tenant, current_actor().tenant_id)


def _brand(brand_id: int) -> Brand:
    return brands.get_brand(db(), current_actor(), brand_id)


def _certificate_state(brand: Brand) -> dict[str, object]:
    """What the panel says about the certificate, in words."""
    words = {
        "none": "No certificate yet: the platform's default certificate is served for this name.",
        "waiting_dns": "Waiting for DNS: the certificate is ordered once the name points at the platform.",
        "issued": "Issued: served by SNI on SMTP, IMAP, POP3 and HTTPS.",
        "failed": "The last order failed: the default certificate is served until it succeeds.",
    }
    return {
        "status": brand.cert_status,
        "words": words.get(brand.cert_status, brand.cert_status),
        "names": brand.covered_names,
        "not_after": brand.cert_not_after,
        "error": brand.cert_error,
        "next_attempt_at": brand.cert_next_attempt_at,
    }


@blueprint.get("/branding")
@allow("full_admin", "domain_admin")
def branding():
    actor = current_actor()
    tenant = _tenant()
    listed = brands.list_brands(db(), actor, tenant)
    own_domain = db().get(Domain, actor.domain_id) if actor.domain_id else None
    return render_template(
        "admin/branding.html",
        brands=listed,
        may_edit=actor.kind == "tenant_admin",
        own_domain=own_domain,
        platform_host=current_settings().hostname,
    )


@blueprint.post("/branding")
@allow("full_admin")
def create_brand():
    form = request.form
    created = attempt(
        lambda: brands.create_brand(
            db(), current_actor(), current_settings(), tenant=_tenant(), hostname=form.get("hostname", ""),
            name=form.get("name", ""), support_url=form.get("support_url") or None,
            shared=form.get("shared") == "on",
        ),
        lambda brand: f"Brand {brand.hostname} created. Create its DNS records next (Server names).",
    )  # fmt: skip
    if created:
        brand = brands.get_brand_by_hostname(db(), current_actor(), form.get("hostname", ""))
        return redirect(url_for("admin.brand_detail", brand_id=brand.id))
    return redirect(url_for("admin.branding"))


@blueprint.get("/branding/<int:brand_id>")
@allow("full_admin", "domain_admin")
def brand_detail(brand_id: int):
    actor = current_actor()
    brand = _brand(brand_id)
    settings = current_settings()
    server_names = [
        brand_dns.dns_states(settings, domain) for domain in scope.brand_domains_seen(actor, brand.domains)
    ]
    tenant_domains = domains.list_domains(db(), actor, brand.tenant) if actor.kind == "tenant_admin" else []
    return render_template(
        "admin/brand.html",
        brand=brand,
        may_edit=actor.kind == "tenant_admin",
        server_names=server_names,
        certificate=_certificate_state(brand),
        tenant_domains=tenant_domains,
        platform_host=settings.hostname,
        platform_addresses=settings.platform_address_list,
    )


LOOK_FIELDS = ("accent_colour", "page_title", "footer_text")


@blueprint.post("/branding/<int:brand_id>")
@allow("full_admin")
def update_brand(brand_id: int):
    brand, form = _brand(brand_id), request.form
    attempt(
        lambda: brands.update_brand(
            db(), current_actor(), current_settings(), brand, name=form.get("name", ""),
            support_url=form.get("support_url", ""), shared=form.get("shared") == "on",
            **{field: form.get(field, "") for field in LOOK_FIELDS},
        ),
        "Saved: the webmail and the admin panel on this host show it at their next page load.",
    )  # fmt: skip
    return redirect(url_for("admin.brand_detail", brand_id=brand_id))


@blueprint.post("/branding/<int:brand_id>/images")
@allow("full_admin")
def brand_images(brand_id: int):
    """The logo, the logo for dark pages and the favicon: each uploaded one replaces the old,
    each ticked "remove" removes it; nothing changes unless every one is accepted."""
    brand = _brand(brand_id)
    changes = {}
    for kind in ("logo", "logo_dark", "favicon"):
        upload = request.files.get(kind)
        if request.form.get(f"remove_{kind}") == "on":
            changes[kind] = None
        elif upload is not None and upload.filename:
            changes[kind] = upload.read(brands.MAX_LOGO_BYTES + 1)

    def change() -> None:
        for kind, data in changes.items():
            brands.set_brand_image(db(), current_actor(), brand, kind, data)

    if not changes:
        flash("Choose an image to upload, or tick one to remove.", "error")
    else:
        attempt(change, "Images saved.")
    return redirect(url_for("admin.brand_detail", brand_id=brand_id))


@blueprint.get("/branding/<int:brand_id>/preview")
@allow("full_admin")
def brand_preview(brand_id: int):
    """The brand's login page with the look typed in the form, not yet saved (the panel's live
    preview frames it). Values are checked as saving would; one that would be refused shows as
    the saved one."""
    brand = _brand(brand_id)
    preview: dict[str, str | None] = {"name": request.args.get("name", "")[:100].strip() or None}
    for field in LOOK_FIELDS:
        if field in request.args:
            try:
                preview[field] = brands.check_look(field, request.args[field])
            except ValidationError:
                continue
    response = make_response(
        render_template(
            "webmail/login.html", theme=theme_of(brand, **preview), message="", address="", next=""
        )
    )
    # Framed by the panel's own page only.
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'self'; form-action 'none'"
    )
    return response


@blueprint.post("/branding/<int:brand_id>/delete")
@allow("full_admin")
def delete_brand(brand_id: int):
    brand = _brand(brand_id)
    if request.form.get("confirm", "").strip().lower() != brand.hostname:
        flash("Type the brand's hostname to delete it.", "error")
        return redirect(url_for("admin.brand_detail", brand_id=brand_id))
    attempt(
        lambda: brands.delete_brand(db(), current_actor(), brand),
        "Brand deleted: its domains use the platform's host again.",
    )
    return redirect(url_for("admin.branding"))


@blueprint.post("/branding/<int:brand_id>/dns-check")
@allow("full_admin", "domain_admin")
def check_brand_dns(brand_id: int):
    brand = _brand(brand_id)
    attempt(
        lambda: brand_dns.check_brand_dns(db(), current_actor(), current_settings(), brand),
        "DNS checked just now.",
    )
    return redirect(url_for("admin.brand_detail", brand_id=brand_id) + "#server-names")


@blueprint.post("/domains/<name>/brand")
@allow("full_admin")
def set_domain_brand(name: str):
    actor = current_actor()
    domain = domains.get_domain(db(), actor, name)
    value = request.form.get("brand_id", "")
    if value and not value.isdigit():
        abort(400)
    brand = brands.get_brand(db(), actor, int(value)) if value else None
    attempt(
        lambda: brands.set_domain_brand(db(), actor, domain, brand),
        f"{domain.display_name} now uses {brand.hostname if brand else 'the platform host'}.",
    )
    back = request.form.get("back")
    if back and back.isdigit():
        return redirect(url_for("admin.brand_detail", brand_id=int(back)))
    return redirect(url_for("admin.domain", name=domain.name))
