"""Letterhead's control plane: the Flask app and all domain logic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported by create_app only: every CLI command and daemon helper imports this package,
    # and Flask's import alone took a fifth of a second.
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask
    from flask_wtf.csrf import CSRFProtect

    import webmail
    from controlplane.render import MESSAGE_SIZE_LIMIT, UPLOAD_SLACK_BYTES
    from controlplane.runtime import Installation, instance_secret_key
    from controlplane.services.webmail import MAX_BODY_BYTES
    from controlplane.settings import load_settings
    from controlplane.web import admin, api, autoconfig, error_pages, requests, security, status, theme

    app = Flask(__name__)
    # nginx is the one proxy in front: trust its X-Forwarded-For and -Proto, one hop only.
    from werkzeug.middleware.proxy_fix import ProxyFix

    # X-Forwarded-Host carries the port the browser used (https://127.0.0.1:8443), which the
    # CSRF check's same-origin test compares the Referer with.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    settings = (test_config or {}).get("LETTERHEAD_SETTINGS") or load_settings()
    app.config.update(
        SECRET_KEY=instance_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Always Secure in production; elsewhere Secure whenever the request came over HTTPS
        # (web/security.py), as every brand host's does through nginx.
        SESSION_COOKIE_SECURE=settings.profile == "production",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.profile == "production",
        WTF_CSRF_TIME_LIMIT=None,
        # A webmail message with its attachments may be as large as the mail server takes, which
        # the compose view then measures encoded (nginx lets a little more through); its text
        # field as large as the webmail allows (services/webmail.py).
        MAX_CONTENT_LENGTH=MESSAGE_SIZE_LIMIT + UPLOAD_SLACK_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES + 64 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["letterhead"] = Installation(settings)
    requests.init_app(app)
    security.init_app(app)
    error_pages.init_app(app)
    csrf = CSRFProtect(app)
    admin.login_manager.init_app(app)
    api.init_app(app, csrf)
    app.register_blueprint(status.blueprint)
    app.register_blueprint(theme.blueprint)
    app.register_blueprint(admin.blueprint)
    csrf.exempt(autoconfig.blueprint)  # mail clients post no form and carry no session
    app.register_blueprint(autoconfig.blueprint)
    # The webmail owns `/` on every brand host; /admin, /api and /healthz stay theirs.
    app.register_blueprint(webmail.blueprint)
    return app
