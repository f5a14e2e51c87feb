"""Health of the app and its database, for nginx and monitoring (the webmail owns `/`)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from controlplane.runners import stack
from controlplane.web.access import allow

blueprint = Blueprint("status", __name__)


@blueprint.get("/healthz")
@allow("public")
def health():
    installation = current_app.extensions["letterhead"]
    with installation.sessions() as session:
        session.execute(text("SELECT 1"))
    return jsonify(status="ok")


@blueprint.get("/health")
@allow("public")
def parts_health():
    """Each part of the installation up or down, and nothing more: no PIDs, ports or paths, as
    anyone may ask. 200 when all are up, 503 otherwise (what a monitor alerts on)."""
    installation = current_app.extensions["letterhead"]
    settings = installation.settings
    try:
        with installation.sessions() as session:
            session.execute(text("SELECT 1"))
        parts = {"database": True}
    except SQLAlchemyError:
        parts = {"database": False}
    # The app answers this request, so the web part is up whatever its PID file says.
    parts.update(
        {part.name: part.name == "web" or part.alive(settings) for part in stack.parts_to_run(settings)}
    )
    body = {"status": "up" if all(parts.values()) else "down",
            "parts": {name: "up" if up else "down" for name, up in parts.items()}}  # fmt: skip
    return jsonify(body), 200 if body["status"] == "up" else 503
