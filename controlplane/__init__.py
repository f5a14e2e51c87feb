"""Letterhead's control plane: the Flask app and all domain logic."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from controlplane.runtime import Installation
    from controlplane.settings import load_settings
    from controlplane.web import status

    app = Flask(__name__)
    settings = (test_config or {}).get("LETTERHEAD_SETTINGS") or load_settings()
    app.config.update(SECRET_KEY=settings.secret_key or None)
    if test_config:
        app.config.update(test_config)
    app.extensions["letterhead"] = Installation(settings)
    app.register_blueprint(status.blueprint)
    return app
