"""Letterhead's control plane: the Flask app and all domain logic."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask_wtf.csrf import CSRFProtect

    import webmail
    from controlplane.runtime import Installation, instance_secret_key
    from controlplane.settings import load_settings
    from controlplane.web import admin, api, autoconfig, requests, status, theme

    app = Flask(__name__)
    # nginx is the one proxy in front: trust its X-Forwarded-For and -Proto, one hop only.
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    settings = (test_config or {}).get("LETTERHEAD_SETTINGS") or load_settings()
    app.config.update(
        SECRET_KEY=instance_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind nginx's TLS in production; the development profile serves plain HTTP on loopback.
        SESSION_COOKIE_SECURE=settings.profile == "production",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.profile == "production",
        WTF_CSRF_TIME_LIMIT=None,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["letterhead"] = Installation(settings)
    requests.init_app(app)
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
