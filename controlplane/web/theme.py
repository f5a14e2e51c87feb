"""What a page looks like for the brand it is served under: name, logo, support link, colours.

The brand comes from the request's Host (services.brands.find_brand_for_host), so the
webmail and the admin panel on `mail.customer.com` wear that brand the moment it is saved,
and any other host wears the platform's default.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib

from flask import Blueprint, Response, abort, g, request

from controlplane.models import Brand
from controlplane.services import brands
from controlplane.web.access import allow
from controlplane.web.requests import db


@dataclasses.dataclass(frozen=True)
class Theme:
    name: str = "Letterhead"
    title: str = "Letterhead"  # the browser tab's: the brand's page title, else its name
    logo_url: str | None = None
    logo_dark_url: str | None = None  # shown instead when the browser asks for dark pages
    icon_url: str = "/favicon.ico"
    support_url: str | None = None
    accent: str = "#3a6ee8"
    header: str = "#1d2330"
    footer: str | None = None
    brand_id: int | None = None


DEFAULT_THEME = Theme()
blueprint = Blueprint("theme", __name__)


def theme_of(brand: Brand | None, **preview: str | None) -> Theme:
    """What pages wear for `brand` (the default for None); `preview` overrides its accent_colour,
    page_title, footer_text or name, unsaved, for the panel's preview."""
    if brand is None:
        return DEFAULT_THEME
    name = preview.get("name") or brand.name
    accent = preview.get("accent_colour", brand.accent_colour)
    title = preview.get("page_title", brand.page_title)
    footer = preview.get("footer_text", brand.footer_text)
    # The versions make browsers fetch a replaced image at once.
    icon = "favicon" if brand.favicon else ("logo" if brand.logo else None)
    return Theme(
        name=name,
        title=title or name,
        logo_url=f"/branding/logo?v={brand.image_version('logo')}" if brand.logo else None,
        logo_dark_url=f"/branding/logo-dark?v={brand.image_version('logo_dark')}"
        if brand.logo_dark
        else None,
        icon_url=f"/favicon.ico?v={brand.image_version(icon)}" if icon else DEFAULT_THEME.icon_url,
        support_url=brand.support_url,
        accent=accent if accent and _COLOUR.fullmatch(accent) else DEFAULT_THEME.accent,
        footer=footer or None,
        brand_id=brand.id,
    )


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def current_theme() -> Theme:
    if "theme" not in g:
        g.theme = theme_of(brands.find_brand_for_host(db(), request.host or ""))
    return g.theme


def inject_theme() -> dict[str, Theme]:
    return {"theme": current_theme()}


def _image_response(content: bytes, content_type: str) -> Response:
    response = Response(content, mimetype=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "public, max-age=300"
    # An SVG opened on its own is a document: nothing in it may run or load (it was rebuilt
    # without script already: services/brand_images.py).
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response


def _brand_image(kind: str) -> Response:
    """One image of the brand this host serves; 404 when it has none."""
    brand = brands.find_brand_for_host(db(), request.host or "")
    content, content_type = (getattr(brand, kind), getattr(brand, f"{kind}_type")) if brand else (None, None)
    if not content or not content_type:
        abort(404)
    return _image_response(content, content_type)


@blueprint.get("/branding/logo")
@allow("public")
def logo():
    """The logo of the brand this host serves; public, as the login pages show it."""
    return _brand_image("logo")


@blueprint.get("/branding/logo-dark")
@allow("public")
def logo_dark():
    """The logo for dark pages of the brand this host serves."""
    return _brand_image("logo_dark")


def _png(width: int, height: int, pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + bytes(channel for pixel in row for channel in pixel) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _default_icon() -> bytes:
    """A white envelope on the default accent colour, 32x32, drawn here rather than kept as a
    binary file: the same bytes on every installation."""
    size, accent, white, clear = 32, (0x3A, 0x6E, 0xE8, 255), (255, 255, 255, 255), (0, 0, 0, 0)

    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        # Rounded corners (radius 6) outside, the accent square within.
        cx, cy = min(max(x, 6), size - 7), min(max(y, 6), size - 7)
        if (x - cx) ** 2 + (y - cy) ** 2 > 36:
            return clear
        if not (6 <= x <= 25 and 9 <= y <= 22):
            return accent
        flap = 9 + min(x - 6, 25 - x) * 0.6  # the flap's two edges meet in the middle
        return accent if abs(y - flap) < 0.8 else white

    return _png(size, size, [[pixel(x, y) for x in range(size)] for y in range(size)])


DEFAULT_ICON = _default_icon()


@blueprint.get("/favicon.ico")
@allow("public")
def favicon():
    """The browser tab's icon: the brand's favicon, else its logo, else the default envelope.
    Browsers ask for /favicon.ico themselves; the pages also link it (with the logo's version)."""
    brand = brands.find_brand_for_host(db(), request.host or "")
    if brand is not None and brand.favicon and brand.favicon_type:
        return _image_response(brand.favicon, brand.favicon_type)
    if brand is not None and brand.logo and brand.logo_type:
        return _image_response(brand.logo, brand.logo_type)
    return _image_response(DEFAULT_ICON, "image/png")
