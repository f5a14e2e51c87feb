"""Health of the app and its database, for nginx and monitoring (the webmail owns `/`)."""

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
