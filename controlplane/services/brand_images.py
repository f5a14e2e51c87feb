"""The images a brand shows (its logo, a logo for dark pages, its favicon): what is accepted,
checked before anything is stored.

Raster images are PNG, JPEG or WebP, recognised by their first bytes and measured from their
headers (no decoder runs here; browsers decode them, served with their own type and nosniff).
An SVG is rebuilt from an allow-list: known SVG elements and presentation attributes only, no
script, no event handler, no style sheet, no reference outside the image itself, no entity
or doctype. Anything else gets a clear error.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import xml.etree.ElementTree as ET

from controlplane.errors import ValidationError

MAX_IMAGE_BYTES = 256 * 1024
KINDS = {"logo": "logo", "logo_dark": "logo for dark pages", "favicon": "favicon"}
# Pixels: a logo is shown 28 pixels high (more for sharp screens); a favicon is small and square-ish.
MAX_PIXELS = {"logo": (4000, 1000), "logo_dark": (4000, 1000), "favicon": (512, 512)}
MIN_PIXELS = 16

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
XLINK_NAMESPACE = "http://www.w3.org/1999/xlink"
_SVG_ELEMENTS = frozenset({
    "svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan",
    "defs", "linearGradient", "radialGradient", "stop", "clipPath", "mask", "use", "title", "desc", "symbol",
})  # fmt: skip
_SVG_ATTRIBUTES = frozenset({
    "id", "class", "viewBox", "width", "height", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx",
    "ry", "d", "points", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity",
    "stroke-linecap", "stroke-linejoin", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset",
    "opacity", "transform", "offset", "stop-color", "stop-opacity", "gradientUnits", "gradientTransform",
    "fx", "fy", "spreadMethod", "clip-path", "clip-rule", "mask", "preserveAspectRatio", "font-family",
    "font-size", "font-weight", "font-style", "text-anchor", "dominant-baseline", "letter-spacing",
    "version", "maskUnits", "clipPathUnits", "visibility", "display",
})  # fmt: skip
# Attribute values that may only point inside the image: url(#id) in paint and masks, #id in href.
_URL_REFERENCE = re.compile(r"url\(\s*([^)]*)\)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    content: bytes
    content_type: str


def check_image(data: bytes, kind: str) -> CheckedImage:
    """The image as it may be stored and served, or ValidationError saying what is wrong."""
    what = KINDS[kind]
    if not data:
        raise ValidationError(f"The {what} is empty: give a PNG, JPEG, WebP or SVG image.", field=kind)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationError(
            f"The {what} is {len(data) // 1024} KB; at most {MAX_IMAGE_BYTES // 1024} KB.", field=kind
        )
    raster = _raster_size(data)
    if raster is not None:
        content_type, width, height = raster
        wide, high = MAX_PIXELS[kind]
        if not (MIN_PIXELS <= width <= wide and MIN_PIXELS <= height <= high):
            raise ValidationError(
                f"The {what} is {width}×{height} pixels; it must be {MIN_PIXELS} to {wide} wide and "
                f"{MIN_PIXELS} to {high} high.",
                field=kind,
            )
        return CheckedImage(data, content_type)
    if _looks_like_svg(data):
        return CheckedImage(sanitise_svg(data, what=what, field=kind), "image/svg+xml")
    raise ValidationError(f"The {what} must be a PNG, JPEG, WebP or SVG image.", field=kind)


# --- raster images: the type and size from the header --------------------------------------------


def _raster_size(data: bytes) -> tuple[str, int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(data)
        return ("image/jpeg", *size) if size else None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        size = _webp_size(data)
        return ("image/webp", *size) if size else None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame's size from the first start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC)."""
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# --- SVG: rebuilt from an allow-list ---------------------------------------------------------------


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!--")) and b"<svg" in data[:4096].lower()


def sanitise_svg(data: bytes, *, what: str = "image", field: str = "logo") -> bytes:
    """The SVG with only what is on the allow-list; ValidationError if it is no SVG at all."""
    lowered = data.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise ValidationError(
            f"The {what} is an SVG with a DOCTYPE or entities: save it without them.", field=field
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise ValidationError(f"The {what} is not a well-formed SVG: {error}.", field=field) from None
    if root.tag != f"{{{SVG_NAMESPACE}}}svg":
        raise ValidationError(f"The {what} is not an SVG image.", field=field)
    clean = _clean(root)
    ET.register_namespace("", SVG_NAMESPACE)
    ET.register_namespace("xlink", XLINK_NAMESPACE)
    return ET.tostring(clean, encoding="utf-8", xml_declaration=True)


def _clean(element: ET.Element) -> ET.Element:
    name = element.tag.removeprefix(f"{{{SVG_NAMESPACE}}}")
    copy = ET.Element(element.tag)
    for attribute, value in element.attrib.items():
        if attribute in (f"{{{XLINK_NAMESPACE}}}href", "href"):
            if value.strip().startswith("#") and name == "use":
                copy.set(attribute, value.strip())
            continue
        if attribute not in _SVG_ATTRIBUTES:
            continue
        if any(
            not reference.strip().strip("'\"").startswith("#") for reference in _URL_REFERENCE.findall(value)
        ):
            continue
        copy.set(attribute, value)
    if name in ("text", "tspan", "title", "desc"):
        copy.text = element.text
    for child in element:
        child_name = child.tag.removeprefix(f"{{{SVG_NAMESPACE}}}") if isinstance(child.tag, str) else ""
        if child.tag == f"{{{SVG_NAMESPACE}}}{child_name}" and child_name in _SVG_ELEMENTS:
            cleaned = _clean(child)
            cleaned.tail = child.tail if name in ("text", "tspan") else None
            copy.append(cleaned)
    return copy
