"""A message's HTML as the webmail shows it: sanitised by nh3 (ammonia), inside a sandboxed frame.

Defence in layers, each enough alone against script:
- nh3 keeps a fixed set of tags and attributes: no script, style element, form, frame, object,
  meta or base survives; no event handler, no `javascript:` or `data:` URL.
- Style attributes keep only properties that cannot load anything (no `url()` anywhere).
- Images load only from this server (inline `cid:` parts, rewritten to a webmail URL) until the
  user allows remote content for the message; links open in a new window without a Referer.
- The frame's document has its own Content-Security-Policy (no script at all, images only from
  here unless allowed) and the frame is sandboxed without scripts (see webmail/views.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import nh3

# Layout and text tags mail uses; nothing that runs, loads, submits or navigates by itself.
_TAGS = (set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}) - {"area", "map"}
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border", "cellpadding", "cellspacing", "dir"}
_ATTRIBUTES = {
    "*": {"style", "title", "lang", "dir"},
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
    **{
        tag: _LAYOUT | {"colspan", "rowspan"}
        for tag in ("table", "tbody", "thead", "tfoot", "tr", "td", "th")
    },
    "col": {"span", "width", "align"},
    "colgroup": {"span", "width", "align"},
    "div": {"align"},
    "p": {"align"},
    "hr": {"width", "align", "size"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
}
# Properties that only lay out and colour: none takes a URL (background-image, list-style-image,
# cursor, content and the shorthand `background` do, and are left out).
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "line-height", "letter-spacing", "text-align", "text-decoration", "text-indent", "text-transform",
    "vertical-align", "white-space", "word-break", "word-wrap", "overflow-wrap", "direction",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-collapse",
    "border-color", "border-style", "border-width", "border-radius", "border-spacing",
    "width", "max-width", "min-width", "height", "max-height", "min-height",
    "display", "float", "clear", "table-layout", "list-style-type",
}  # fmt: skip
_STYLE_DANGERS = ("url(", "expression(", "\\", "javascript:", "@import", "behavior:")
_LINK_SCHEMES = {"http", "https", "mailto", "tel"}
_IMAGE_SCHEMES = ("https://", "http://")


@dataclasses.dataclass(frozen=True)
class SafeHtml:
    html: str
    # Remote images left out (the user may allow them): the webmail says how many.
    blocked_images: int


def sanitise(
    html: str, *, inline_image_url: Callable[[str], str | None], allow_remote: bool = False
) -> SafeHtml:
    """`html` with only what is safe to show. `inline_image_url` maps a `cid:` content ID to the
    URL the webmail serves that part at (None: no such part)."""
    blocked = 0

    def keep_attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and name == "src":
            source = value.strip()
            if source.lower().startswith("cid:"):
                return inline_image_url(source[4:].strip("<> "))
            if source.lower().startswith(_IMAGE_SCHEMES):
                if allow_remote:
                    return source
                blocked += 1
            return None
        if name == "style":
            # Only harmless properties are kept (below); a value that could load or run anything
            # in any browser (url(), IE's expression(), CSS escapes hiding either) drops the lot.
            lowered = value.lower()
            return None if any(token in lowered for token in _STYLE_DANGERS) else value
        if tag == "a" and name == "href":
            scheme = value.strip().split(":", 1)[0].lower() if ":" in value else ""
            return value if scheme in _LINK_SCHEMES else None
        return value

    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "noscript", "svg", "math"},
        attributes=_ATTRIBUTES,
        attribute_filter=keep_attribute,
        url_schemes=_LINK_SCHEMES | {"cid"} | {"http", "https"},
        filter_style_properties=_STYLE_PROPERTIES,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_relative="pass_through",
    )
    return SafeHtml(html=cleaned, blocked_images=blocked)


def document(safe: SafeHtml) -> str:
    """The frame's whole document: the mail's HTML in a neutral page of its own."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{margin:0;padding:12px;font:15px/1.45 system-ui,sans-serif;color:#111;"
        "overflow-wrap:anywhere}img{max-width:100%;height:auto}table{max-width:100%}</style>"
        f"</head><body>{safe.html}</body></html>"
    )


def frame_policy(*, allow_remote: bool) -> str:
    """The frame document's Content-Security-Policy: no script, nothing loaded from elsewhere
    unless the user allowed remote images; its one style element is allowed inline."""
    images = "'self' https: http:" if allow_remote else "'self'"
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )
