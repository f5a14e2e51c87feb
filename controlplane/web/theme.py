"""What a page looks like for the brand it is served under: name, logo, support link, colours.

The brand comes from the request's Host (services.brands.find_brand_for_host), so the
webmail and the admin panel on `mail.customer.com` wear that brand the moment it is saved,
and any other host wears the platform's default.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from flask import Blueprint, Response, abort, g, request

from controlplane.services import brands
from controlplane.web.access import allow
from controlplane.web.requests import db


@dataclasses.dataclass(frozen=True)
class Theme:
    name: str = "Letterhead"
    logo_url: str | None = None
    icon_url: str = "/favicon.ico"
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
                icon_url=f"/favicon.ico?v={brand.logo_version}" if brand.logo else DEFAULT_THEME.icon_url,
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
    """The browser tab's icon: the brand's logo where it has one, else the default envelope.
    Browsers ask for /favicon.ico themselves; the pages also link it (with the logo's version)."""
    brand = brands.find_brand_for_host(db(), request.host or "")
    if brand is not None and brand.logo and brand.logo_type:
        response = Response(brand.logo, mimetype=brand.logo_type)
    else:
        response = Response(DEFAULT_ICON, mimetype="image/png")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
