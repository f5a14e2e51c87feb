"""What a page looks like for the brand it is served under: name, logo, support link, colours.

Kept in one place so per-brand appearance (served on each brand's host) replaces this
default without touching a template.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Theme:
    name: str = "Letterhead"
    logo_url: str | None = None
    support_url: str | None = None
    accent: str = "#3a6ee8"
    header: str = "#1d2330"


DEFAULT_THEME = Theme()


def current_theme() -> Theme:
    return DEFAULT_THEME


def inject_theme() -> dict[str, Theme]:
    return {"theme": current_theme()}
