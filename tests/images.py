"""Small real images for tests of what a brand may upload: PNG and WebP drawn here, measured
by their headers as the checks measure them."""

from __future__ import annotations

import struct

from controlplane.web.theme import _png


def png(width: int = 32, height: int = 32, colour: tuple[int, int, int] = (0x3A, 0x6E, 0xE8)) -> bytes:
    return _png(width, height, [[(*colour, 255)] * width for _ in range(height)])


def webp_header(width: int, height: int) -> bytes:
    """A lossless WebP's header (VP8L) for this size: enough for a size check."""
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little") + b"\0" * 7
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


SVG_WITH_SCRIPT = (
    b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 20 20' onload='alert(1)'>"
    b"<script>alert(2)</script><image href='https://tracker.test/p.png'/>"
    b"<rect width='20' height='20' fill='#3a6ee8'/></svg>"
)
