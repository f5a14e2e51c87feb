"""What the browser gets from the app behind nginx over HTTPS: logins on any port, cookies kept apart
per area and per host, security headers everywhere, branded error pages, and abuse refused.

These go through the real app and its CSRF check with the headers nginx sends (X-Forwarded-Proto,
-Host, -For); tests/e2e/test_web_https.py takes the same journeys through the real nginx in Chromium.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from controlplane.models import AuthEvent, Tenant
from controlplane.services import auth, brands, scope
from tests.factories import PASSWORD

BRAND_HOST = "mail.one.test"
OTHER_BRAND_HOST = "mail.two.test"


def via_nginx(app, host: str = "127.0.0.1:8443", ip: str = "198.51.100.7"):
    """A test client whose requests look like nginx's: HTTPS, the browser's Host with its port."""
    client = app.test_client()
    client.environ_base.update(
        REMOTE_ADDR="127.0.0.1",
        HTTP_HOST=host.rsplit(":", 1)[0],
        HTTP_X_FORWARDED_HOST=host,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR=ip,
    )
    client.origin = f"https://{host}"
    return client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def admin_log_in(client, login: str = "boss", password: str = PASSWORD):
    page = client.get("/admin/login")
    assert page.status_code == 200
    return client.post(
        "/admin/login",
        data={"login": login, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))},
        headers={"Referer": f"{client.origin}/admin/login"},
    )


@pytest.fixture
def branded(world):
    with world.transaction() as session:
        one = session.scalar(select(Tenant).where(Tenant.name == "One"))
        two = session.scalar(select(Tenant).where(Tenant.name == "Two"))
        brands.create_brand(
            session, scope.OPERATOR, world.settings, tenant=one, hostname=BRAND_HOST, name="One Mail"
        )
        brands.create_brand(session, scope.OPERATOR, world.settings, tenant=two, hostname=OTHER_BRAND_HOST, name="Two Mail")  # fmt: skip
    return world


def auth_events(installation, reason: str) -> list[AuthEvent]:
    with installation.sessions() as session:
        return list(session.scalars(select(AuthEvent).where(AuthEvent.reason == reason)))


# --- logging in over HTTPS ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:8443", "127.0.0.1", f"{BRAND_HOST}:8443"])
def test_admin_login_over_https_behind_nginx_works_on_any_port(app, world, host: str) -> None:
    client = via_nginx(app, host)
    response = admin_log_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].endswith("/admin/")
    assert "One" in client.get("/admin/").get_data(as_text=True)


def test_login_pages_keep_the_referer_for_their_own_forms(app, world) -> None:
    client = via_nginx(app)
    for path in ("/login", "/admin/login"):
        response = client.get(path)
        assert response.headers["Referrer-Policy"] == "same-origin", path
        assert "no-referrer" not in response.get_data(as_text=True), path


def test_a_post_without_referer_over_https_is_still_refused(app, world) -> None:
    client = via_nginx(app)
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    response = client.post("/admin/login", data={"login": "boss", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 400
    assert auth_events(world, "") == []


# --- cookies ------------------------------------------------------------------------------------


def test_the_panel_cookie_over_https_is_secure_host_only_and_under_admin(app, world) -> None:
    client = via_nginx(app)
    response = admin_log_in(client)
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie.startswith("__Secure-lh_admin=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "Path=/admin" in cookie
    assert "Domain=" not in cookie


def test_the_panel_cookie_does_not_log_in_the_webmail_nor_the_reverse(app, world) -> None:
    client = via_nginx(app)
    admin_log_in(client)
    panel_cookie = client.get_cookie("__Secure-lh_admin", domain="localhost", path="/admin")
    assert panel_cookie is not None
    # Handed to the webmail under its own name, the panel's session is not a webmail login.
    other = via_nginx(app)
    other.set_cookie("__Host-lh_mail", panel_cookie.value, domain="localhost")
    assert other.get("/").status_code == 302
    assert "/login" in other.get("/").headers["Location"]


def test_a_session_cookie_from_one_brand_host_is_refused_on_another(app, branded) -> None:
    client = via_nginx(app, f"{BRAND_HOST}:8443")
    assert admin_log_in(client).status_code == 302
    stolen = client.get_cookie("__Secure-lh_admin", domain="localhost", path="/admin").value
    assert client.get("/admin/").status_code == 200

    elsewhere = via_nginx(app, f"{OTHER_BRAND_HOST}:8443")
    elsewhere.set_cookie("__Secure-lh_admin", stolen, domain="localhost", path="/admin")
    response = elsewhere.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_plain_http_in_development_keeps_a_plain_cookie(app, world) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    response = client.post("/admin/login", data={"login": "boss", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("lh_admin=") and "; Secure" not in cookie


# --- headers and error pages --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/admin/login", "/login", "/api/docs", "/mail/config-v1.1.xml?emailaddress=ann@a.test"]
)
def test_every_area_sends_a_content_security_policy_that_forbids_framing(app, world, path: str) -> None:
    response = via_nginx(app).get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_api_docs_allow_only_their_own_inline_script(app, world) -> None:
    response = via_nginx(app).get("/api/docs")
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]{44}'", policy)


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("get", "/no-such-page", 404, "There is no page at this address."),
        ("get", "/admin/no-such-page", 404, "There is no page at this address."),
        ("get", "/logout", 405, "This page cannot be used that way."),
    ],
)
def test_framework_errors_are_branded_pages(app, branded, method, path, status, words) -> None:
    response = getattr(via_nginx(app, f"{BRAND_HOST}:8443"), method)(path)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert words in body and "One Mail" in body
    assert "Werkzeug" not in body and "<title>404 Not Found</title>" not in body
    if status == 405:
        assert "POST" in response.headers["Allow"]


def test_api_errors_stay_problem_json(app, world) -> None:
    response = via_nginx(app).get("/api/v1/no-such-resource")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_an_unhandled_error_is_a_branded_500_without_a_traceback(app, branded) -> None:
    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError("secret internals")

    app.view_functions["boom"].allowed_roles = frozenset({"public"})
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production, not as in tests
    response = via_nginx(app, f"{BRAND_HOST}:8443").get("/boom-for-test")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong on our side" in body and "One Mail" in body
    assert "secret internals" not in body and "Traceback" not in body


# --- abuse --------------------------------------------------------------------------------------


def test_an_oversized_login_is_refused_unread_and_counted(app, world) -> None:
    client = via_nginx(app, ip="203.0.113.9")
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    response = client.post(
        "/admin/login",
        data={"login": "boss", "password": "x" * 100_000, "csrf_token": token},
        headers={"Referer": f"{client.origin}/admin/login"},
    )
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)
    [event] = auth_events(world, "oversized request")
    assert event.client_ip == "203.0.113.9" and event.success is False and event.login == ""


def test_a_network_sending_oversized_logins_is_throttled(app, world) -> None:
    client = via_nginx(app, ip="203.0.113.10")
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    for _ in range(auth.NETWORK_FAILURE_LIMIT):
        client.post(
            "/admin/login", data={"password": "x" * 20_000, "csrf_token": token},
            headers={"Referer": f"{client.origin}/admin/login"},
        )  # fmt: skip
    response = admin_log_in(client)
    assert response.status_code == 429
    assert admin_log_in(via_nginx(app, ip="192.0.2.50")).status_code == 302


def test_a_huge_password_below_the_body_limit_is_not_hashed(app, world) -> None:
    client = via_nginx(app, ip="203.0.113.11")
    response = admin_log_in(client, password="y" * 15_000)
    assert response.status_code == 401
    assert [event.reason for event in auth_events(world, "wrong password")] == ["wrong password"]


def test_an_error_quoting_a_huge_value_does_not_swell_the_cookie(app, world) -> None:
    client = via_nginx(app)
    admin_log_in(client)
    token = csrf_from(client.get("/admin/").get_data(as_text=True))
    response = client.post(
        "/admin/domains",
        data={"name": "x" * 40_000 + ".test", "max_mailboxes": "1", "max_aliases": "1", "csrf_token": token},
        headers={"Referer": f"{client.origin}/admin/"},
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert len(cookie) < 4000
    page = client.get("/admin/").get_data(as_text=True)
    assert 'class="flash error"' in page or "error" in page
