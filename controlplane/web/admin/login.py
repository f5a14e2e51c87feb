"""Logging in to the panel (password, then the second factor when on) and out."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import login_user, logout_user
from werkzeug.exceptions import RequestEntityTooLarge

from controlplane.errors import AuthenticationFailed, LoginThrottled, SecondFactorRequired
from controlplane.services import admins, auth, brands, mailboxes
from controlplane.web.access import allow
from controlplane.web.admin import PanelUser, blueprint
from controlplane.web.error_pages import render_error_page
from controlplane.web.requests import OVERSIZED_LOGIN, client_ip, count_oversized_login, db


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
            totp_code=form.get("totp_code") or None, host_tenant_id=brands.tenant_of_host(db(), request.host or ""),
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
