"""A tenant's full admins, and an admin's own account with its second factor."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user

from controlplane.models import Admin
from controlplane.services import admins, auth
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint, current_tenant
from controlplane.web.requests import db


def _current_admin() -> Admin:
    return admins.get_admin_by_id(db(), current_actor(), int(current_user.id.removeprefix("admin:")))


@blueprint.get("/admins")
@allow("full_admin")
def admin_list():
    tenant = current_tenant()
    return render_template(
        "admin/admins.html", admins=admins.list_admins(db(), current_actor(), tenant), me=_current_admin()
    )


@blueprint.post("/admins")
@allow("full_admin")
def create_admin():
    form = request.form
    attempt(
        lambda: admins.create_admin(
            db(), current_actor(), tenant=current_tenant(), login=form.get("login", "").strip(),
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
