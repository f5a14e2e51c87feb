"""What a page looks like for the brand it is served under: name, logo, support link, colours.

The brand comes from the request's Host (services.brands.find_brand_for_host), so the
webmail and the admin panel on `mail.customer.com` wear that brand the moment it is saved,
and any other host wears the platform's default.
"""

from __future__ import annotations

import dataclasses

from flask import Blueprint, Response, abort, g, request

from controlplane.services import brands
from controlplane.web.access import allow
from controlplane.web.requests import db


@dataclasses.dataclass(frozen=True)
class Theme:
    name: str = "Letterhead"
    logo_url: str | None = None
    support_url: str | None = None
    accent: str = "#3a6ee8"
    header: str = "#1d2330"
    brand_id: int | None = None


DEFAULT_THEME = Theme()
blueprint = Blueprint("theme", __name__)


def current_theme() -> Theme:
    if "theme" not in g:
        brand = brands.find_brand_for_host(db(), request.host or "")
        g.theme = (
            DEFAULT_THEME
            if brand is None
            else Theme(
                name=brand.name,
                # The version makes browsers fetch a replaced logo at once.
                logo_url=f"/branding/logo?v={brand.logo_version}" if brand.logo else None,
                support_url=brand.support_url,
                brand_id=brand.id,
            )
        )
    return g.theme


def inject_theme() -> dict[str, Theme]:
    return {"theme": current_theme()}


@blueprint.get("/branding/logo")
@allow("public")
def logo():
    """The logo of the brand this host serves; public, as the login pages show it."""
    brand = brands.find_brand_for_host(db(), request.host or "")
    if brand is None or not brand.logo or not brand.logo_type:
        abort(404)
    response = Response(brand.logo, mimetype=brand.logo_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
