"""The database session of one web request, shared by the admin panel, the API and webmail."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from controlplane.settings import Settings


def current_settings() -> Settings:
    return current_app.extensions["letterhead"].settings


def client_ip() -> str:
    return request.remote_addr or ""


def db() -> Session:
    """The request's session; views commit what succeeded, teardown closes it."""
    if "db" not in g:
        g.db = current_app.extensions["letterhead"].sessions()
        # Services put it in the audit trail with every change they make.
        g.db.info["client_ip"] = client_ip()
    return g.db


def close_session(_error: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
