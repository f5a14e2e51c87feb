"""The admin panel at /admin: full admins manage their tenant, domain admins their domain.

Views stay thin: read the form, call a service with the logged-in actor, record the
action in the audit trail, commit, redirect. Every rule (limits, pool, scope) is the
services'; a refused call re-renders the page with the service's own message.

This module holds the blueprint, the logged-in user and what every area shares; each area
(login, domains, mailboxes, aliases, audit, tokens, admins, branding, logs) is a module of
its own that adds its routes to the blueprint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, flash, render_template, send_file
from flask_login import LoginManager, UserMixin

from controlplane.errors import LetterheadError, NotFound, NotInScope, ValidationError
from controlplane.models import Admin, Mailbox, Tenant
from controlplane.services import scope, storage
from controlplane.services.scope import Actor
from controlplane.web.access import allow, current_actor
from controlplane.web.requests import db
from controlplane.web.theme import inject_theme

blueprint = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
blueprint.context_processor(inject_theme)
STATIC_DIRECTORY = Path(__file__).parent / "static"


@blueprint.get("/admin.js")
@allow("public")
def script():
    """The panel's one script (the brand page's live preview), from this site only: the CSP
    allows no other and nothing inline."""
    return send_file(STATIC_DIRECTORY / "admin.js", mimetype="text/javascript", max_age=300, conditional=True)


login_manager = LoginManager()
login_manager.login_view = "admin.login"
PAGE_SIZE = 50


class PanelUser(UserMixin):
    """A logged-in full admin (`admin:ID`) or domain-admin mailbox (`mailbox:ID`)."""

    def __init__(self, user_id: str, actor: Actor, label: str) -> None:
        self.id, self.actor, self.label = user_id, actor, label

    @property
    def role(self) -> str:
        return "full_admin" if self.actor.kind == "tenant_admin" else "domain_admin"


@login_manager.user_loader
def load_user(user_id: str) -> PanelUser | None:
    kind, _, number = user_id.partition(":")
    if not number.isdigit():
        return None
    session = db()
    if kind == "admin":
        admin = session.get(Admin, int(number))
        if admin is None or not admin.in_service:
            return None
        return PanelUser(
            user_id, scope.tenant_admin(admin.tenant_id, name=f"admin:{admin.login}"), admin.login
        )
    if kind == "mailbox":
        mailbox = session.get(Mailbox, int(number))
        # A session outlives nothing it was given for: the role, the mailbox, its domain, its tenant.
        if mailbox is None or not (mailbox.is_domain_admin and mailbox.in_service):
            return None
        actor = scope.domain_admin(mailbox.domain.tenant_id, mailbox.domain_id, name=mailbox.address)
        return PanelUser(user_id, actor, mailbox.address)
    return None


def attempt(change: Callable[[], Any], success: str | Callable[[Any], str]) -> bool:
    """Run a change; commit and flash `success`, or roll back and flash the service's message.

    `success` may be a function of the change's result, for what exists only once it is made
    (a secret shown once).
    """
    try:
        result = change()
    except (NotFound, NotInScope):
        db().rollback()
        raise
    except LetterheadError as error:
        db().rollback()
        # Flashed messages travel in the session cookie: one quoting a huge submitted value
        # would outgrow what browsers and nginx accept (a 502 instead of the error).
        flash(_shortened(error.message), "error")
        return False
    db().commit()
    flash(success(result) if callable(success) else success, "ok")
    return True


FLASH_MESSAGE_LIMIT = 400


def _shortened(message: str) -> str:
    if len(message) <= FLASH_MESSAGE_LIMIT:
        return message
    return message[: FLASH_MESSAGE_LIMIT - 1] + "…"


@blueprint.errorhandler(NotFound)
def not_found(error: NotFound):
    return render_template("admin/error.html", message=error.message), 404


@blueprint.errorhandler(NotInScope)
def not_in_scope(error: NotInScope):
    return render_template("admin/error.html", message=error.message), 403


def current_tenant() -> Tenant:
    """The logged-in admin's tenant."""
    return db().get(Tenant, current_actor().tenant_id)


def size_or_none(text: str | None, field: str) -> int | None:
    """A size given in a form, or None for the service's default when the field is left empty."""
    return storage.parse_size(text, field=field) if (text or "").strip() else None


def whole_number(text: str | None, field: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise ValidationError(f"{field.replace('_', ' ')} must be a whole number.", field=field) from None


# Each area adds its routes to this blueprint.
from controlplane.web.admin import admins as _admins  # noqa: E402, F401
from controlplane.web.admin import aliases as _aliases  # noqa: E402, F401
from controlplane.web.admin import audit as _audit  # noqa: E402, F401
from controlplane.web.admin import branding as _branding  # noqa: E402, F401
from controlplane.web.admin import domains as _domains  # noqa: E402, F401
from controlplane.web.admin import login as _login  # noqa: E402, F401
from controlplane.web.admin import logs as _logs  # noqa: E402, F401
from controlplane.web.admin import mailboxes as _mailboxes  # noqa: E402, F401
from controlplane.web.admin import migrations as _migrations  # noqa: E402, F401
from controlplane.web.admin import tokens as _tokens  # noqa: E402, F401
