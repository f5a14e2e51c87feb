"""The REST API at /api/v1: bearer tokens, problem+json errors, an OpenAPI document made from
the code, and interactive docs at /api/docs whose assets the app serves itself.

Handlers stay thin like the panel's: read the request, call a service with the token's
actor, commit, answer. The services decide what a token may see or change.
"""

from __future__ import annotations

import functools
import http
from collections.abc import Callable
from typing import Any

import swagger_ui_bundle
from flask import Flask, g, jsonify, request, send_from_directory
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from controlplane.daemons.process import DaemonError
from controlplane.errors import (
    AlreadyExists,
    AuthenticationFailed,
    LetterheadError,
    LimitReached,
    NotFound,
    NotInScope,
    PoolExhausted,
    StorageUnavailable,
    ValidationError,
)
from controlplane.models import ApiToken
from controlplane.services import tokens
from controlplane.services.scope import Actor
from controlplane.web.error_pages import render_error_page
from controlplane.web.requests import db

PROBLEM = "application/problem+json"
TOKEN_KINDS = frozenset({"tenant", "domain", "signup"})
STATUS_OF = [
    (AuthenticationFailed, 401, "Not authenticated"),
    (NotFound, 404, "Not found"),
    (NotInScope, 403, "Not allowed"),
    (ValidationError, 422, "Invalid input"),
    (AlreadyExists, 409, "Already exists"),
    (LimitReached, 409, "Limit reached"),
    (PoolExhausted, 409, "Storage pool exhausted"),
    (StorageUnavailable, 503, "Storage unavailable"),
]


class ProblemSchema(Schema):
    """What `problem()` answers: RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        metadata={"description": "Messages by field (for a malformed request: by location, then field)"}
    )


class LetterheadApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        # flask-smorest documents its own error body as application/json; ours is problem+json.
        problem_content = {PROBLEM: {"schema": ProblemSchema}}
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["content"] = problem_content
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response(
            "DEFAULT_ERROR", {"description": "Any other error", "content": problem_content}, lazy=True
        )

    def handle_http_exception(self, error: HTTPException):
        # flask-smorest answers every HTTP error of the app; only the API's are problem+json.
        if not request.path.startswith("/api/"):
            return render_error_page(error)
        data = getattr(error, "data", {}) or {}
        errors = data.get("messages") or data.get("errors")
        response = problem(error.code or 500, error.name, error.description or error.name, errors=errors)
        # Keep the error's own headers but its HTML type, e.g. a 405's Allow (RFC 9110).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        response.headers.update(data.get("headers") or {})
        return response


def problem(status: int, title: str, detail: str, **extra: Any):
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({key: value for key, value in extra.items() if value is not None})
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    return response


def problem_for(error: LetterheadError):
    for error_type, status, title in STATUS_OF:
        if isinstance(error, error_type):
            errors = {error.field: [error.message]} if error.field else None
            return problem(status, title, error.message, errors=errors)
    return problem(400, "Refused", error.message)


def tokens_allowed(*kinds: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare which token kinds may call an API route, and authenticate the bearer token.

    The declaration (`allowed_roles`) is what tests/web checks on every route; the token's
    actor is then passed to the services, which decide what it may touch.
    """
    if not kinds or set(kinds) - TOKEN_KINDS:
        raise ValueError(f"tokens_allowed() needs kinds from {sorted(TOKEN_KINDS)}")

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, presented = header.partition(" ")
            try:
                actor, token = tokens.authenticate_token(
                    db(), presented.strip() if scheme.lower() == "bearer" else ""
                )
            except AuthenticationFailed as error:
                response = problem_for(error)
                response.headers["WWW-Authenticate"] = 'Bearer realm="letterhead"'
                return response
            if token.kind not in kinds:
                # What this token may not use does not exist for it.
                return problem(404, "Not found", "No such resource for this token.")
            db().commit()  # the token's last use
            g.actor, g.token = actor, token
            try:
                return view(*args, **kwargs)
            except LetterheadError as error:
                db().rollback()
                return problem_for(error)
            except DaemonError as error:
                # The installation, not the request, is at fault (a daemon or folder missing).
                db().rollback()
                return problem(503, "Service unavailable", str(error))

        guarded.allowed_roles = frozenset(f"token:{kind}" for kind in kinds)  # type: ignore[attr-defined]
        # Any token route answers these, so the OpenAPI document says so once, here.
        return Blueprint.doc(responses={"401": "UNAUTHORIZED", "404": "NOT_FOUND"})(guarded)

    return decorate


def current_actor() -> Actor:
    return g.actor


def current_token() -> ApiToken:
    return g.token


def init_app(app: Flask, csrf) -> None:
    from controlplane.web.api import aliases, brands, domains, logs, mailboxes, migrations, sieve

    app.config.update(
        API_TITLE="Letterhead",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Manage domains, mailboxes, aliases and filters of your tenant."},
            "security": [{"bearer": []}],
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        },
    )
    api = LetterheadApi(app)
    for module in (domains, mailboxes, aliases, sieve, logs, brands, migrations):
        csrf.exempt(module.blueprint)  # bearer tokens, no cookies: nothing to forge
        api.register_blueprint(module.blueprint, url_prefix="/api/v1")

    @app.get("/api/docs/assets/<path:filename>")
    def swagger_ui_assets(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    # The routes flask-smorest adds (the document and the docs page) are public by design.
    for endpoint in ("api-docs.openapi_json", "api-docs.openapi_swagger_ui", "swagger_ui_assets"):
        app.view_functions[endpoint] = _public(app.view_functions[endpoint])


def _public(view: Callable[..., Any]) -> Callable[..., Any]:
    def public_view(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    public_view.allowed_roles = frozenset({"public"})  # type: ignore[attr-defined]
    return public_view
