"""Mailboxes of a domain: create, quota, password, on and off, domain admin, delete; each one's
page with its allow and block lists of senders and its hourly sending limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import redirect, render_template, request, url_for

from controlplane.errors import ValidationError
from controlplane.models import Mailbox
from controlplane.services import domains, mailboxes, passwords, sender_lists, storage
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint
from controlplane.web.requests import db


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


@blueprint.get("/mailboxes/<int:mailbox_id>")
@allow("full_admin", "domain_admin")
def mailbox(mailbox_id: int):
    actor = current_actor()
    found = mailboxes.get_mailbox_by_id(db(), actor, mailbox_id)
    return render_template(
        "admin/mailbox.html", mailbox=found, lists=sender_lists.lists_of(db(), actor, found),
        hourly_messages=found.sending_limit,
        can_edit_limits=actor.kind != "domain_admin",
    )  # fmt: skip


def _back_to_mailbox(mailbox_id: int, change: Callable[[Mailbox], Any], success: str, anchor: str):
    found = mailboxes.get_mailbox_by_id(db(), current_actor(), mailbox_id)
    attempt(lambda: change(found), success)
    return redirect(url_for("admin.mailbox", mailbox_id=mailbox_id) + anchor)


@blueprint.post("/mailboxes/<int:mailbox_id>/senders")
@allow("full_admin", "domain_admin")
def list_sender(mailbox_id: int):
    sender, verdict = request.form.get("sender", ""), request.form.get("list", "")
    return _back_to_mailbox(
        mailbox_id, lambda m: sender_lists.add_sender(db(), current_actor(), m, sender, verdict),
        "Sender allowed." if verdict == "allow" else "Sender blocked.", "#senders",
    )  # fmt: skip


@blueprint.post("/mailboxes/<int:mailbox_id>/senders/remove")
@allow("full_admin", "domain_admin")
def unlist_sender(mailbox_id: int):
    sender = request.form.get("sender", "")
    return _back_to_mailbox(
        mailbox_id, lambda m: sender_lists.remove_sender(db(), current_actor(), m, sender),
        "Sender removed from the list.", "#senders",
    )  # fmt: skip


def _hourly_messages(text: str) -> int | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    if not text.isdigit():
        raise ValidationError("Messages per hour must be a whole number.", field="hourly_messages")
    return int(text)


@blueprint.post("/mailboxes/<int:mailbox_id>/hourly-limit")
@allow("full_admin")
def set_hourly_limit(mailbox_id: int):
    text = request.form.get("hourly_messages", "")
    return _back_to_mailbox(
        mailbox_id,
        lambda m: mailboxes.set_hourly_messages(db(), current_actor(), m, _hourly_messages(text)),
        "Sending limit saved.", "#sending",
    )  # fmt: skip
