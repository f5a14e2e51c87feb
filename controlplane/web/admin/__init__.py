"""The admin panel at /admin: full admins manage their tenant, domain admins their domain.

Views stay thin: read the form, call a service with the logged-in actor, record the
action in the audit trail, commit, redirect. Every rule (limits, pool, scope) is the
services'; a refused call re-renders the page with the service's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.exceptions import RequestEntityTooLarge

from controlplane.daemons import usage
from controlplane.errors import (
    AuthenticationFailed,
    LetterheadError,
    LoginThrottled,
    NotFound,
    NotInScope,
    SecondFactorRequired,
    ValidationError,
)
from controlplane.models import Admin, Domain, Mailbox, Tenant
from controlplane.services import (
    admins,
    aliases,
    audit,
    auth,
    domains,
    mailboxes,
    passwords,
    scope,
    storage,
    tokens,
)
from controlplane.services.scope import Actor
from controlplane.web.access import allow, current_actor
from controlplane.web.error_pages import render_error_page
from controlplane.web.requests import OVERSIZED_LOGIN, client_ip, count_oversized_login, current_settings, db
from controlplane.web.theme import inject_theme

blueprint = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
blueprint.context_processor(inject_theme)
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


# --- logging in and out -------------------------------------------------------------------------


@blueprint.errorhandler(RequestEntityTooLarge)
def oversized(error: RequestEntityTooLarge):
    if request.endpoint == "admin.login":
        count_oversized_login(auth.SERVICE)
        return render_template("admin/login.html", ask_code=False, message=OVERSIZED_LOGIN), 413
    return render_error_page(error)


@blueprint.route("/login", methods=["GET", "POST"])
@allow("public")
def login():
    if request.method == "GET":
        return render_template("admin/login.html", ask_code=False)
    form = request.form
    session = db()
    try:
        actor = auth.authenticate_admin(
            session, login=form.get("login", ""), password=form.get("password", ""),
            client_ip=client_ip(), user_agent=request.headers.get("User-Agent", ""),
            totp_code=form.get("totp_code") or None,
        )  # fmt: skip
    except SecondFactorRequired as error:
        session.commit()  # the attempt is on record
        return render_template("admin/login.html", ask_code=True, message=error.message, login=form["login"])
    except (AuthenticationFailed, LoginThrottled) as error:
        session.commit()  # the failure must count towards throttling
        status = 429 if isinstance(error, LoginThrottled) else 401
        return render_template("admin/login.html", ask_code=False, message=error.message), status
    session.commit()
    if actor.kind == "tenant_admin":
        admin = admins.find_admin(session, actor.name.removeprefix("admin:"))
        user = PanelUser(f"admin:{admin.id}", actor, admin.login)
    else:
        mailbox = mailboxes.find_mailbox(session, actor.name)
        user = PanelUser(f"mailbox:{mailbox.id}", actor, mailbox.address)
    login_user(user)
    return redirect(url_for("admin.dashboard"))


@blueprint.post("/logout")
@allow("full_admin", "domain_admin")
def logout():
    logout_user()
    return redirect(url_for("admin.login"))


# --- dashboard and domains ----------------------------------------------------------------------


def _tenant():
    return db().get(Tenant, current_actor().tenant_id)


@blueprint.get("/")
@allow("full_admin", "domain_admin")
def dashboard():
    actor = current_actor()
    if actor.kind == "domain_admin":
        return redirect(url_for("admin.domain", name=db().get(Domain, actor.domain_id).name))
    tenant = _tenant()
    pool = storage.pool_usage(db(), tenant)
    summaries = domains.list_domain_summaries(db(), actor, tenant)
    settings = current_settings()
    used = usage.used_by_domains(settings, [summary.domain.name for summary in summaries])
    entries = audit.recent_entries(db(), actor, tenant=tenant, limit=10)
    return render_template(
        "admin/dashboard.html", tenant=tenant, usage=pool, used=used, summaries=summaries, entries=entries,
        format_bytes=storage.format_bytes,
    )  # fmt: skip


@blueprint.post("/domains")
@allow("full_admin")
def create_domain():
    form = request.form
    attempt(
        lambda: domains.create_domain(
            db(), current_actor(), tenant=_tenant(), name=form.get("name", "").strip(),
            max_mailboxes=_whole_number(form.get("max_mailboxes"), "max_mailboxes"),
            max_aliases=_whole_number(form.get("max_aliases"), "max_aliases"),
            max_mailbox_bytes=_size_or_none(form.get("max_mailbox_size"), "max_mailbox_bytes"),
        ),
        "Domain created.",
    )  # fmt: skip
    return redirect(url_for("admin.dashboard"))


def _size_or_none(text: str | None, field: str) -> int | None:
    """A size given in a form, or None for the service's default when the field is left empty."""
    return storage.parse_size(text, field=field) if (text or "").strip() else None


def _whole_number(text: str | None, field: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise ValidationError(f"{field.replace('_', ' ')} must be a whole number.", field=field) from None


@blueprint.get("/domains/<name>")
@allow("full_admin", "domain_admin")
def domain(name: str):
    actor = current_actor()
    found = domains.get_domain(db(), actor, name)
    search = request.args.get("q", "").strip()
    page_text = request.args.get("page", "1")
    page = max(int(page_text), 1) if page_text.isdigit() else 1
    rows, total = mailboxes.page_of_mailboxes(
        db(), actor, found, search=search, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    used = usage.usage_of_mailboxes(current_settings(), rows)
    return render_template(
        "admin/domain.html", domain=found, counts=domains.domain_counts(db(), found), mailboxes=rows,
        total=total, page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), search=search,
        aliases=aliases.list_aliases(db(), actor, found), can_edit_limits=actor.kind != "domain_admin",
        largest=storage.largest_mailbox_bytes(found), format_bytes=storage.format_bytes, used=used,
    )  # fmt: skip


@blueprint.post("/domains/<name>/limits")
@allow("full_admin")
def update_limits(name: str):
    form = request.form
    found = domains.get_domain(db(), current_actor(), name)
    attempt(
        lambda: domains.update_domain(
            db(), current_actor(), found,
            max_mailboxes=_whole_number(form.get("max_mailboxes"), "max_mailboxes"),
            max_aliases=_whole_number(form.get("max_aliases"), "max_aliases"),
            max_mailbox_bytes=storage.parse_size(form.get("max_mailbox_size", ""), field="max_mailbox_bytes"),
        ),
        "Limits saved.",
    )  # fmt: skip
    return redirect(url_for("admin.domain", name=found.name))


@blueprint.post("/domains/<name>/active")
@allow("full_admin")
def set_domain_active(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    active = request.form.get("active") == "1"
    attempt(
        lambda: domains.update_domain(db(), current_actor(), found, active=active),
        f"{found.display_name} "
        + ("accepts mail again." if active else "is deactivated: it refuses mail and logins."),
    )
    return redirect(url_for("admin.dashboard"))


@blueprint.post("/domains/<name>/delete")
@allow("full_admin")
def delete_domain(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    domain_name = found.name
    if request.form.get("confirm", "") != domain_name:
        flash(
            f"Type {domain_name} to confirm: its mailboxes, their mail and its aliases go with it.", "error"
        )
        return redirect(url_for("admin.domain", name=domain_name))
    attempt(lambda: domains.delete_domain(db(), current_actor(), found), f"{domain_name} deleted.")
    return redirect(url_for("admin.dashboard"))


# --- mailboxes ----------------------------------------------------------------------------------


@blueprint.post("/domains/<name>/mailboxes")
@allow("full_admin", "domain_admin")
def create_mailbox(name: str):
    form = request.form
    found = domains.get_domain(db(), current_actor(), name)
    generated = passwords.generate_password() if not form.get("password") else None
    attempt(
        lambda: mailboxes.create_mailbox(
            db(), current_actor(), domain=found, local_part=form.get("local_part", "").strip(),
            quota_bytes=storage.parse_size(form.get("quota", ""), field="quota_bytes"),
            password=form.get("password") or generated, display_name=form.get("display_name", ""),
        ),
        "Mailbox created." + (f" Its password, shown once: {generated}" if generated else ""),
    )  # fmt: skip
    return redirect(url_for("admin.domain", name=found.name))


def _on_mailbox(mailbox_id: int, change: Callable[[Mailbox], Any], success: str):
    mailbox = mailboxes.get_mailbox_by_id(db(), current_actor(), mailbox_id)
    domain_name = mailbox.domain.name
    attempt(lambda: change(mailbox), success)
    return redirect(url_for("admin.domain", name=domain_name))


@blueprint.post("/mailboxes/<int:mailbox_id>/quota")
@allow("full_admin", "domain_admin")
def set_quota(mailbox_id: int):
    size = request.form.get("quota", "")
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.set_mailbox_quota(db(), current_actor(), m, storage.parse_size(size)),
        "Storage changed; the next delivery sees it.",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/password")
@allow("full_admin", "domain_admin")
def set_password(mailbox_id: int):
    password = request.form.get("password", "")
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.set_mailbox_password(db(), current_actor(), m, password=password),
        "Password changed.",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/reset-password")
@allow("full_admin", "domain_admin")
def reset_password(mailbox_id: int):
    generated = passwords.generate_password()
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.set_mailbox_password(db(), current_actor(), m, password=generated),
        f"Password reset. The new one, shown once: {generated}",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/active")
@allow("full_admin", "domain_admin")
def set_active(mailbox_id: int):
    active = request.form.get("active") == "1"
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.update_mailbox(db(), current_actor(), m, active=active),
        "Mailbox activated." if active else "Mailbox deactivated.",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/domain-admin")
@allow("full_admin")
def set_domain_admin(mailbox_id: int):
    granted = request.form.get("granted") == "1"
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.set_domain_admin(db(), current_actor(), m, granted),
        "Domain-admin role granted." if granted else "Domain-admin role revoked.",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/delete")
@allow("full_admin", "domain_admin")
def delete_mailbox(mailbox_id: int):
    return _on_mailbox(
        mailbox_id, lambda m: mailboxes.delete_mailbox(db(), current_actor(), m), "Mailbox deleted."
    )


# --- aliases ------------------------------------------------------------------------------------


def _destinations_field() -> str:
    return request.form.get("destinations", "").replace("\n", ",")


@blueprint.post("/domains/<name>/aliases")
@allow("full_admin", "domain_admin")
def create_alias(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    local_part, destinations = request.form.get("local_part", "").strip(), _destinations_field()
    attempt(
        lambda: aliases.create_alias(
            db(), current_actor(), domain=found, local_part=local_part, destinations=destinations
        ),
        "Alias created.",
    )
    return redirect(url_for("admin.domain", name=found.name))


def _on_alias(alias_id: int, change: Callable[[Any], Any], success: str):
    alias = aliases.get_alias_by_id(db(), current_actor(), alias_id)
    domain_name = alias.domain.name
    attempt(lambda: change(alias), success)
    return redirect(url_for("admin.domain", name=domain_name))


@blueprint.post("/aliases/<int:alias_id>/destinations")
@allow("full_admin", "domain_admin")
def set_alias_destinations(alias_id: int):
    destinations = _destinations_field()
    return _on_alias(
        alias_id,
        lambda a: aliases.set_alias_destinations(db(), current_actor(), a, destinations),
        "Alias saved.",
    )


@blueprint.post("/aliases/<int:alias_id>/delete")
@allow("full_admin", "domain_admin")
def delete_alias(alias_id: int):
    return _on_alias(alias_id, lambda a: aliases.delete_alias(db(), current_actor(), a), "Alias deleted.")


@blueprint.get("/audit")
@allow("full_admin", "domain_admin")
def audit_trail():
    actor = current_actor()
    domain_filter = None
    if actor.kind == "domain_admin":
        domain_filter = db().get(Domain, actor.domain_id)
    entries, total = audit.list_entries(db(), actor, tenant=_tenant(), domain=domain_filter, limit=200)
    return render_template("admin/audit.html", entries=entries, total=total)


# --- API tokens ---------------------------------------------------------------------------------


@blueprint.get("/tokens")
@allow("full_admin", "domain_admin")
def token_list():
    actor = current_actor()
    tenant = _tenant()
    return render_template(
        "admin/tokens.html", tokens=tokens.list_tokens(db(), actor, tenant),
        domains=domains.list_domains(db(), actor, tenant), may_make_tenant_tokens=actor.kind == "tenant_admin",
        default_hourly_limit=tokens.DEFAULT_SIGNUP_HOURLY_LIMIT, token_prefix=tokens.TOKEN_PREFIX,
    )  # fmt: skip


@blueprint.post("/tokens")
@allow("full_admin", "domain_admin")
def create_token():
    form = request.form
    kind, domain_name, limit = form.get("kind", ""), form.get("domain", ""), form.get("hourly_limit", "")
    # Looked up in the actor's scope: another domain's name meets NotFound, as everywhere.
    found = domains.get_domain(db(), current_actor(), domain_name) if domain_name else None
    attempt(
        lambda: tokens.create_token(
            db(), current_actor(), tenant=_tenant(), kind=kind, name=form.get("name", ""), domain=found,
            hourly_limit=_whole_number(limit, "hourly_limit") if limit.strip() else None,
        ),
        lambda made: f"Token {made[0].name} created. Its secret, shown once: {made[1]}",
    )  # fmt: skip
    return redirect(url_for("admin.token_list"))


@blueprint.post("/tokens/<int:token_id>/revoke")
@allow("full_admin", "domain_admin")
def revoke_token(token_id: int):
    found = tokens.get_token(db(), current_actor(), token_id)
    attempt(
        lambda: tokens.revoke_token(db(), current_actor(), found),
        f"Token {found.name} revoked: it is refused from its next request on.",
    )
    return redirect(url_for("admin.token_list"))


# --- full admins and the second factor ----------------------------------------------------------


def _current_admin() -> Admin:
    return admins.get_admin_by_id(db(), current_actor(), int(current_user.id.removeprefix("admin:")))


@blueprint.get("/admins")
@allow("full_admin")
def admin_list():
    tenant = _tenant()
    return render_template(
        "admin/admins.html", admins=admins.list_admins(db(), current_actor(), tenant), me=_current_admin()
    )


@blueprint.post("/admins")
@allow("full_admin")
def create_admin():
    form = request.form
    attempt(
        lambda: admins.create_admin(
            db(), current_actor(), tenant=_tenant(), login=form.get("login", "").strip(),
            password=form.get("password", ""),
        ),
        "Admin added.",
    )  # fmt: skip
    return redirect(url_for("admin.admin_list"))


@blueprint.post("/admins/<int:admin_id>/delete")
@allow("full_admin")
def delete_admin(admin_id: int):
    login = admins.get_admin_by_id(db(), current_actor(), admin_id).login
    attempt(lambda: admins.delete_admin(db(), current_actor(), login), f"{login} removed.")
    return redirect(url_for("admin.admin_list"))


@blueprint.get("/account")
@allow("full_admin")
def account():
    me = _current_admin()
    # A new secret is offered on each visit; it is stored only once a code proves the app holds it.
    secret = None if me.totp_secret else auth.new_totp_secret()
    uri = auth.totp_provisioning_uri(secret, login=me.login) if secret else None
    return render_template("admin/account.html", me=me, secret=secret, uri=uri)


@blueprint.post("/account/totp")
@allow("full_admin")
def enable_totp():
    form = request.form
    attempt(
        lambda: auth.enable_totp(
            db(), current_actor(), _current_admin(), form.get("secret", ""), form.get("totp_code", "")
        ),
        "Two-factor login is on: from now on you also enter the app's code.",
    )
    return redirect(url_for("admin.account"))


@blueprint.post("/account/totp/disable")
@allow("full_admin")
def disable_totp():
    attempt(lambda: auth.disable_totp(db(), current_actor(), _current_admin()), "Two-factor login is off.")
    return redirect(url_for("admin.account"))


# The branding pages and the logs viewers add their routes to this blueprint.
from controlplane.web.admin import branding as _branding  # noqa: E402, F401
from controlplane.web.admin import logs as _logs  # noqa: E402, F401
