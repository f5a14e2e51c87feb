"""Senders whose remote images a webmail user always sees: chosen on one of their messages, so
their newsletters need no "Show them" click. Each user's own choice, for their own mailbox;
admins have no say (and see nothing) here.
"""

from __future__ import annotations

import email.utils

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import ImageSender, Mailbox
from controlplane.services import locks
from controlplane.services.scope import Actor

MAX_SENDERS = 1000


def _require_owner(actor: Actor, mailbox: Mailbox) -> None:
    if actor.kind != "mailbox" or actor.mailbox_id != mailbox.id:
        raise NotFound("No such mailbox.")


def sender_address(from_header: str) -> str:
    """The address in a From header, lower case; "" when there is none worth remembering."""
    address = email.utils.parseaddr(from_header)[1].strip().lower()
    if len(address) > 254 or address.count("@") != 1 or any(c.isspace() or ord(c) < 32 for c in address):
        return ""
    local, domain = address.split("@")
    return address if local and "." in domain else ""


def senders(session: Session, actor: Actor, mailbox: Mailbox) -> list[str]:
    _require_owner(actor, mailbox)
    return list(
        session.scalars(
            select(ImageSender.sender)
            .where(ImageSender.mailbox_id == mailbox.id)
            .order_by(ImageSender.sender)
        )
    )


def shows_images(session: Session, actor: Actor, mailbox: Mailbox, from_header: str) -> bool:
    _require_owner(actor, mailbox)
    address = sender_address(from_header)
    return (
        bool(address)
        and session.scalar(
            select(ImageSender.id).where(ImageSender.mailbox_id == mailbox.id, ImageSender.sender == address)
        )
        is not None
    )


def always_show(session: Session, actor: Actor, mailbox: Mailbox, from_header: str) -> str:
    """Remember the sender of `from_header`; returns its address."""
    _require_owner(actor, mailbox)
    address = sender_address(from_header)
    if not address:
        raise ValidationError("This message names no sender address to remember.", field="sender")
    # The count and the addition are one unit, however many tabs click at once.
    locks.lock_tenant(session, mailbox.domain.tenant_id)
    if shows_images(session, actor, mailbox, address):
        return address
    count = session.scalar(select(func.count()).where(ImageSender.mailbox_id == mailbox.id))
    if count >= MAX_SENDERS:
        raise ValidationError(
            f"You already always see images from {MAX_SENDERS} senders: remove some in the settings first.",
            field="sender",
        )
    session.add(ImageSender(mailbox_id=mailbox.id, sender=address))
    session.flush()
    return address


def stop_showing(session: Session, actor: Actor, mailbox: Mailbox, sender: str) -> None:
    _require_owner(actor, mailbox)
    found = session.scalar(
        select(ImageSender).where(
            ImageSender.mailbox_id == mailbox.id, ImageSender.sender == sender.strip().lower()
        )
    )
    if found is None:
        raise NotFound(f"Images from {sender[:100]} were not always shown.")
    session.delete(found)
    session.flush()
