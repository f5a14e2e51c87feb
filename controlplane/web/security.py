"""What every response of the app carries for the browser's protection: session cookies kept
apart per area and per host, and security headers per area.

The app is reached through nginx over HTTPS on many brand hosts (`mail.customer.com`), so:

- The admin panel and the webmail are separate logins: each has its own cookie (the panel's
  only sent under /admin), so logging out of one, or a flaw in one, never hands over the other.
- A cookie is signed for the host it was made on: a session cookie lifted from one brand's
  host is refused on another's, even though one secret key signs them all.
- A cookie made over HTTPS is Secure (and `__Host-`/`__Secure-` prefixed, which browsers
  enforce), whatever the profile; plain HTTP exists only on loopback in development.
- Pages keep the Referer for the app's own forms (`same-origin`): Flask-WTF's CSRF check over
  HTTPS refuses a POST without one, and `no-referrer` made every login impossible.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

ADMIN_PREFIX = "/admin"


def area_of(path: str) -> str:
    """Which part of the app a path belongs to: admin, api, autoconfig or webmail."""
    if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        return "admin"
    if path.startswith("/api/") or path == "/api":
        return "api"
    lowered = path.lower()
    if lowered.startswith(("/mail/config-v1.1.xml", "/.well-known/", "/autodiscover/", "/apple/")):
        return "autoconfig"
    return "webmail"


class AreaSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with one cookie per area and a signature bound to the host."""

    def _is_admin(self) -> bool:
        return area_of(request.path) == "admin"

    def get_cookie_name(self, app: Flask) -> str:
        name = "lh_admin" if self._is_admin() else "lh_mail"
        if not request.is_secure:
            return name
        # __Host- needs Path=/ (the webmail's); __Secure- fits the panel's /admin path.
        return f"__Secure-{name}" if self._is_admin() else f"__Host-{name}"

    def get_cookie_path(self, app: Flask) -> str:
        return ADMIN_PREFIX if self._is_admin() else "/"

    def get_cookie_domain(self, app: Flask) -> None:
        return None  # host-only: never shared with sibling names of a brand's domain

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        area = "admin" if self._is_admin() else "webmail"
        host = (request.host or "").lower()
        return URLSafeTimedSerializer(
            app.secret_key,
            salt=f"{self.salt}|{area}|{host}",
            serializer=self.serializer,
            signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
        )


# Per area: what a page may load. Inline styles only where the templates use them; no script
# anywhere but the API docs, whose one inline script is allowed by its hash (see below).
_COMMON = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
POLICIES = {
    # The panel's one script is its own file (a live preview), framing only its own pages.
    "admin": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"frame-src 'self'; {_COMMON}"
    ),
    "api": f"default-src 'none'; {_COMMON}",
    "autoconfig": f"default-src 'none'; {_COMMON}",
    # Webmail pages show mail from anyone: nothing in them may load, run or post elsewhere, and
    # the one script is the webmail's own file (keyboard shortcuts), never inline. A message's
    # HTML shows in a frame of this site's own, with a stricter policy of its own (no script).
    "webmail": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; frame-src 'self'; "
        f"{_COMMON}"
    ),
}
_API_DOCS_PATH = "/api/docs"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _api_docs_policy(response: Response) -> str:
    """Swagger UI: its own files and the one inline script that starts it, allowed by its hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(response.get_data())
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self'; {_COMMON}"
    )


def add_security_headers(response: Response) -> Response:
    """The headers every response carries; a view that set its own keeps them."""
    area = area_of(request.path)
    if (
        request.path == _API_DOCS_PATH
        and response.mimetype == "text/html"
        and not response.direct_passthrough
    ):
        policy = _api_docs_policy(response)
    else:
        policy = POLICIES[area]
    response.headers.setdefault("Content-Security-Policy", policy)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # The app's own forms need the Referer (CSRF over HTTPS); other sites never see our URLs.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


# A login form holds a name and a password: a larger body is an attack on the password hash's
# cost. The login views count what this refuses (RequestEntityTooLarge) as a failed login.
LOGIN_PATHS = frozenset({"/login", "/admin/login"})
LOGIN_BODY_LIMIT = 16 * 1024


def bound_login_bodies() -> None:
    if request.path in LOGIN_PATHS and request.method == "POST":
        request.max_content_length = LOGIN_BODY_LIMIT


def init_app(app: Flask) -> None:
    """Call before CSRFProtect: its check reads the form, which the login bound must cover."""
    app.session_interface = AreaSessionInterface()
    app.before_request(bound_login_bodies)
    app.after_request(add_security_headers)
