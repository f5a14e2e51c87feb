"""The database session of one web request, shared by the admin panel, the API and webmail."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from controlplane.services import auth
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


OVERSIZED_LOGIN = "That login was too large to be one, and was refused."


def count_oversized_login(service: str) -> None:
    """A login body over the bound (web/security.py) counts as a failed guess from its network."""
    auth.record_oversized_login(
        db(), service=service, client_ip=client_ip(), user_agent=request.headers.get("User-Agent", "")
    )
    db().commit()


def close_session(_error: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
