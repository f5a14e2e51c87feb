"""Health and the platform landing page (the admin panel and webmail come next)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from controlplane.web.access import allow

blueprint = Blueprint("status", __name__)


@blueprint.get("/healthz")
@allow("public")
def health():
    installation = current_app.extensions["letterhead"]
    with installation.sessions() as session:
        session.execute(text("SELECT 1"))
    return jsonify(status="ok")


@blueprint.get("/")
@allow("public")
def index():
    settings = current_app.extensions["letterhead"].settings
    return (
        f"<!doctype html><title>Letterhead</title><h1>Letterhead</h1>"
        f"<p>Mail for your domains at {settings.hostname}. Webmail and the admin panel come next.</p>"
    )
