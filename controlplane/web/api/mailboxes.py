"""Mailboxes of a domain: one at a time, or up to 1,000 in one request."""

from __future__ import annotations

import dataclasses

from flask_smorest import Blueprint

from controlplane.daemons import usage
from controlplane.errors import LetterheadError, NotFound
from controlplane.models import Mailbox
from controlplane.services import domains, mailboxes, sender_lists
from controlplane.web.api import current_actor, problem_for, tokens_allowed
from controlplane.web.api.schemas import (
    BulkMailboxesSchema,
    BulkResponseSchema,
    MailboxCreateSchema,
    MailboxListArgs,
    MailboxPageSchema,
    MailboxSchema,
    MailboxUpdateSchema,
    SenderListingSchema,
    SenderListsSchema,
)
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("api_mailboxes", __name__, description="Mailboxes")


def mailbox_bodies(rows: list[Mailbox]) -> list[dict]:
    used = usage.usage_of_mailboxes(current_settings(), rows)
    return [
        {
            "address": m.address, "display_name": m.display_name, "quota_bytes": m.quota_bytes,
            "active": m.active, "is_domain_admin": m.is_domain_admin,
            "used_bytes": used[m.address].bytes if m.address in used else None,
            "hourly_messages": m.sending_limit,
            "hourly_messages_is_default": m.hourly_messages is None,
        }
        for m in rows
    ]  # fmt: skip


def mailbox_at(name: str, local_part: str) -> Mailbox:
    """The mailbox `local_part` of domain `name`, within the token's scope (NotFound otherwise)."""
    domain = domains.get_domain(db(), current_actor(), name)
    mailbox = mailboxes.find_mailbox(db(), f"{local_part}@{domain.name}")
    if mailbox is None:
        raise NotFound(f"No such mailbox: {local_part}@{domain.display_name}.")
    return mailbox


@blueprint.route("/domains/<name>/mailboxes", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(MailboxListArgs, location="query")
@blueprint.response(200, MailboxPageSchema)
def list_mailboxes(args, name: str):
    """A page of the domain's mailboxes, optionally those whose address starts with `q`."""
    domain = domains.get_domain(db(), current_actor(), name)
    rows, total = mailboxes.page_of_mailboxes(
        db(), current_actor(), domain, search=args["q"], offset=(args["page"] - 1) * args["per_page"],
        limit=args["per_page"],
    )  # fmt: skip
    return {"items": mailbox_bodies(rows), "total": total, "page": args["page"], "per_page": args["per_page"]}


def _create(domain, item: dict) -> Mailbox:
    return mailboxes.create_mailbox(
        db(), current_actor(), domain=domain, local_part=item["local_part"], quota_bytes=item["quota_bytes"],
        password=item.get("password"), password_hash=item.get("password_hash"),
        display_name=item.get("display_name", ""), is_domain_admin=item.get("is_domain_admin", False),
    )  # fmt: skip


@blueprint.route("/domains/<name>/mailboxes", methods=["POST"])
@tokens_allowed("tenant", "domain", "signup")
@blueprint.arguments(MailboxCreateSchema)
@blueprint.response(201, MailboxSchema)
def create_mailbox(body, name: str):
    """Create a mailbox. Give `password`, or `password_hash` to move an account in from elsewhere.

    Sign-up tokens may call only this, in their own domain, within their hourly allowance.
    """
    mailbox = _create(domains.get_domain(db(), current_actor(), name, signup_allowed=True), body)
    db().commit()
    return mailbox_bodies([mailbox])[0]


@blueprint.route("/domains/<name>/mailboxes/bulk", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(BulkMailboxesSchema)
@blueprint.response(200, BulkResponseSchema)
def bulk_create_mailboxes(body, name: str):
    """Create up to 1,000 mailboxes; each item succeeds or fails on its own, reported in order."""
    domain = domains.get_domain(db(), current_actor(), name)
    items = body["mailboxes"]
    outcomes = mailboxes.create_mailboxes(
        db(), current_actor(), domain=domain,
        requested=[
            mailboxes.NewMailbox(
                local_part=item["local_part"], quota_bytes=item["quota_bytes"], password=item.get("password"),
                password_hash=item.get("password_hash"), display_name=item.get("display_name", ""),
                is_domain_admin=item.get("is_domain_admin", False),
            )
            for item in items
        ],
    )  # fmt: skip
    db().commit()
    results, created = [], 0
    for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        address = f"{item['local_part']}@{domain.name}"
        if isinstance(outcome, LetterheadError):
            response = problem_for(outcome)
            results.append(
                {"index": index, "address": address, "status": response.status_code, "error": response.json}
            )
            continue
        created += 1
        results.append({"index": index, "address": address, "status": 201, "error": None})
    return {"created": created, "failed": len(results) - created, "results": results}


@blueprint.route("/domains/<name>/mailboxes/<local_part>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, MailboxSchema)
def get_mailbox(name: str, local_part: str):
    return mailbox_bodies([mailbox_at(name, local_part)])[0]


@blueprint.route("/domains/<name>/mailboxes/<local_part>", methods=["PATCH"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(MailboxUpdateSchema)
@blueprint.response(200, MailboxSchema)
def update_mailbox(body, name: str, local_part: str):
    """Change storage, password (plain or hashed), display name, state, the domain-admin role or
    (full admins) how many messages it may send per hour."""
    actor, mailbox = current_actor(), mailbox_at(name, local_part)
    if "quota_bytes" in body:
        mailboxes.set_mailbox_quota(db(), actor, mailbox, body["quota_bytes"])
    if "password" in body or "password_hash" in body:
        mailboxes.set_mailbox_password(
            db(), actor, mailbox, password=body.get("password"), password_hash=body.get("password_hash")
        )
    if "display_name" in body or "active" in body:
        mailboxes.update_mailbox(
            db(), actor, mailbox, display_name=body.get("display_name"), active=body.get("active")
        )
    if "is_domain_admin" in body:
        mailboxes.set_domain_admin(db(), actor, mailbox, body["is_domain_admin"])
    if "hourly_messages" in body:
        mailboxes.set_hourly_messages(db(), actor, mailbox, body["hourly_messages"])
    db().commit()
    return mailbox_bodies([mailbox])[0]


@blueprint.route("/domains/<name>/mailboxes/<local_part>", methods=["DELETE"])
@tokens_allowed("tenant", "domain")
@blueprint.response(204)
def delete_mailbox(name: str, local_part: str):
    """Delete a mailbox and its mail; its storage returns to the pool."""
    mailboxes.delete_mailbox(db(), current_actor(), mailbox_at(name, local_part))
    db().commit()


@blueprint.route("/domains/<name>/mailboxes/<local_part>/senders", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, SenderListsSchema)
def get_sender_lists(name: str, local_part: str):
    """The mailbox's allow and block lists of senders."""
    return dataclasses.asdict(sender_lists.lists_of(db(), current_actor(), mailbox_at(name, local_part)))


@blueprint.route("/domains/<name>/mailboxes/<local_part>/senders/<sender>", methods=["PUT"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(SenderListingSchema)
@blueprint.response(200, SenderListsSchema)
def list_sender(body, name: str, local_part: str, sender: str):
    """Put a sender (an address, or @domain) on the allow or the block list; applies to the next delivery."""
    current = sender_lists.add_sender(
        db(), current_actor(), mailbox_at(name, local_part), sender, body["list"]
    )
    db().commit()
    return dataclasses.asdict(current)


@blueprint.route("/domains/<name>/mailboxes/<local_part>/senders/<sender>", methods=["DELETE"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, SenderListsSchema)
def unlist_sender(name: str, local_part: str, sender: str):
    """Take a sender off either list."""
    current = sender_lists.remove_sender(db(), current_actor(), mailbox_at(name, local_part), sender)
    db().commit()
    return dataclasses.asdict(current)
