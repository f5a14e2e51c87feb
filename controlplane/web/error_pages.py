"""The pages a browser gets for the framework's own errors (400, 404, 405, 413, 500), in the
brand's look: the panel's frame under /admin, the webmail's elsewhere. The API answers
problem+json instead (web/api), and its paths never reach these pages."""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from controlplane.db import database_problem, server_reason
from controlplane.web.security import area_of
from controlplane.web.theme import DEFAULT_THEME, current_theme

# Plain words per status; the framework's own descriptions are written for developers.
EXPLANATIONS = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    403: ("Not allowed", "You may not open this page."),
    404: ("Not found", "There is no page at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "What was sent is too large."),
    429: ("Too many requests", "Too many requests: wait a moment and try again."),
    500: ("Something went wrong", "Something went wrong on our side. Please try again in a moment."),
    503: (
        "Unavailable for a moment",
        "This could not be done just now, and nothing was changed. Please try again.",
    ),
}


def render_error_page(error: HTTPException):
    """A branded page for an HTTP error of the panel, the webmail or the setup documents."""
    status = error.code or 500
    title, message = EXPLANATIONS.get(status, (error.name, "This request could not be completed."))
    try:
        theme = current_theme()
    except Exception:  # the database itself may be why we are here
        theme = DEFAULT_THEME
    template = "admin/error.html" if area_of(request.path) == "admin" else "webmail/error.html"
    response = render_template(template, title=title, message=message, theme=theme)
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return response, status, headers


def internal_error(error: InternalServerError):
    # Flask has already logged the exception; the user gets words, never a traceback.
    if area_of(request.path) == "api":
        from controlplane.web.api import problem

        return problem(500, "Internal error", "Something went wrong on our side. Please try again.")
    return render_error_page(error)


def database_unavailable(error: OperationalError):
    """A full disk, a long writer's lock or a database server gone: the request's transaction
    is rolled back; the person is told so in words (the operator reads the cause in the log)."""
    current_app.logger.error("database unavailable: %s", server_reason(error))
    if area_of(request.path) == "api":
        from controlplane.web.api import problem

        return problem(503, "Unavailable", database_problem(error))
    return render_error_page(ServiceUnavailable())


def init_app(app: Flask) -> None:
    app.register_error_handler(InternalServerError, internal_error)
    app.register_error_handler(OperationalError, database_unavailable)
