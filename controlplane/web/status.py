"""Health of the app and its database, for nginx and monitoring (the webmail owns `/`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from controlplane.runners import health as installation_health
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


@blueprint.get("/metrics")
@allow("public")
def metrics():
    """Prometheus's scrape, on the platform host only, for the holder of `metrics_token`: the
    figures of `letterhead status` (every tenant's) are the operator's alone."""
    installation = current_app.extensions["letterhead"]
    settings = installation.settings
    host = (request.host or "").rsplit(":", 1)[0].lower().rstrip(".")
    if not settings.metrics_token or host != settings.hostname:
        abort(404)
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(offered.encode(), settings.metrics_token.encode()):
        return Response("A metrics token is needed (Authorization: Bearer ...).\n", 401,
                        {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"})  # fmt: skip
    return Response(installation_health.metrics(installation_health.check(installation)), 200,
                    {"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"})  # fmt: skip
