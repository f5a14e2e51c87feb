"""Each domain's DKIM keys: made with the domain, rotated on demand with an overlap in which both
keys are published, and the DNS record the customer must publish for each.

A key signs from the moment its transaction commits (the selector map is published after
commit: daemons/dkim_keys.py); a rotated-away key stays `retiring`, still in the DNS plan, for
OVERLAP, so that mail signed with it before the rotation keeps verifying wherever it waits.
Selectors are named by date ("lh20261205", then "lh20261205b" for a second key that day).
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.daemons import dkim_keys
from controlplane.db import after_commit
from controlplane.models import DkimKey, Domain
from controlplane.services import audit, changes, scope
from controlplane.services.scope import Actor

SELECTOR_PREFIX = "lh"
OVERLAP = dt.timedelta(days=7)
RSA_BITS = 2048


def _dkim_dir(session: Session) -> Path:
    folder = session.info.get("dkim_dir")
    if not folder:
        raise RuntimeError("This session belongs to no installation: it has no DKIM key folder.")
    return Path(folder)


def _new_selector(session: Session, domain: Domain, today: dt.date) -> str:
    taken = set(session.scalars(select(DkimKey.selector).where(DkimKey.domain_id == domain.id)))
    base = f"{SELECTOR_PREFIX}{today:%Y%m%d}"
    for suffix in ("", *"bcdefghijklmnopqrstuvwxyz"):
        if base + suffix not in taken:
            return base + suffix
    raise RuntimeError(f"More than 25 DKIM keys made for {domain.name} on {today}.")


def _rsa_key() -> tuple[bytes, str]:
    """(private key PEM, public key as DNS publishes it: base64 of its SubjectPublicKeyInfo)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode("ascii")


def create_key(session: Session, domain: Domain, *, now: dt.datetime | None = None) -> DkimKey:
    """A new active key for `domain` (RSA 2048); the caller makes any previous one retire."""
    now = now or dt.datetime.now(dt.UTC)
    selector = _new_selector(session, domain, now.date())
    pem, public = _rsa_key()
    dkim_keys.write_private_key(_dkim_dir(session), domain.name, selector, pem)
    key = DkimKey(
        domain=domain,
        selector=selector,
        algorithm="rsa-2048",
        public_key=public,
        private_key=pem.decode("ascii"),
        state="active",
    )
    key.created_at = now
    session.add(key)
    session.flush()
    changes.signal(session, "dkim_changed")
    return key


def active_key(session: Session, domain: Domain) -> DkimKey | None:
    return session.scalar(
        select(DkimKey)
        .where(DkimKey.domain_id == domain.id, DkimKey.state == "active")
        .order_by(DkimKey.id.desc())
    )


def published_keys(session: Session, domain: Domain) -> list[DkimKey]:
    """The keys the domain's DNS must publish: the active one, then those retiring."""
    keys = session.scalars(
        select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.state != "retired").order_by(DkimKey.id)
    ).all()
    return sorted(keys, key=lambda k: (k.state != "active", -k.id))


def rotate_key(session: Session, actor: Actor, domain: Domain, *, now: dt.datetime | None = None) -> DkimKey:
    """A new key signs from now on; the old one stays published for OVERLAP."""
    scope.require_domain(actor, domain)
    now = now or dt.datetime.now(dt.UTC)
    previous = active_key(session, domain)
    if previous is not None:
        previous.state = "retiring"
        previous.retire_after = now + OVERLAP
    key = create_key(session, domain, now=now)
    audit.record_change(
        session, actor, "domain.dkim_rotate", domain.name, tenant_id=domain.tenant_id, domain_id=domain.id,
        selector=key.selector, previous=previous.selector if previous else None,
    )  # fmt: skip
    return key


def retire_expired_keys(session: Session, *, now: dt.datetime | None = None) -> list[str]:
    """Keys past their overlap: retired, their private files removed after commit. Returns
    "domain selector" for each."""
    now = now or dt.datetime.now(dt.UTC)
    expired = session.scalars(
        select(DkimKey).where(DkimKey.state == "retiring", DkimKey.retire_after <= now)
    ).all()
    dkim_dir = _dkim_dir(session) if expired else None
    retired = []
    for key in expired:
        # It signs nothing any more: its private half goes from the database too.
        key.state, key.private_key = "retired", None
        name, selector = key.domain.name, key.selector
        retired.append(f"{name} {selector}")
        after_commit(
            session,
            f"dkim-remove-{name}-{selector}",
            lambda name=name, selector=selector: dkim_keys.remove_private_key(dkim_dir, name, selector),
        )
    return retired


def remove_keys_after_commit(session: Session, keys: list[tuple[str, str]]) -> None:
    """Once the session commits (a domain was deleted), remove these (domain, selector) key files;
    the selector map no longer names them."""
    if not keys:
        return
    dkim_dir = _dkim_dir(session)
    changes.signal(session, "dkim_changed")
    for name, selector in keys:
        after_commit(
            session,
            f"dkim-remove-{name}-{selector}",
            lambda name=name, selector=selector: dkim_keys.remove_private_key(dkim_dir, name, selector),
        )


def ensure_keys(session: Session) -> list[str]:
    """Give every domain without an active key one (domains made before DKIM existed here, or
    restored without their keys); returns their names."""
    keyless = session.scalars(
        select(Domain)
        .where(~select(DkimKey.id).where(DkimKey.domain_id == Domain.id, DkimKey.state == "active").exists())
        .order_by(Domain.name)
    ).all()
    dkim_dir = _dkim_dir(session)
    made = []
    for domain in keyless:
        create_key(session, domain)
        made.append(domain.name)
    for key in session.scalars(select(DkimKey).where(DkimKey.state == "active")).all():
        path = dkim_keys.key_path(dkim_dir, key.domain.name, key.selector)
        if key.private_key is None and path.exists():
            # Made before keys were kept in the database: keep it there too, for every node.
            key.private_key = dkim_keys.read_private_key(dkim_dir, key.domain.name, key.selector).decode(
                "ascii"
            )
        elif key.private_key is None:
            # Lost everywhere (a restore without the key folder): it signs nothing, replace it.
            key.state = "retired"
            create_key(session, key.domain)
            made.append(key.domain.name)
    return made


def active_selectors(session: Session) -> dict[str, str]:
    rows = session.execute(
        select(Domain.name, DkimKey.selector).join(DkimKey.domain).where(DkimKey.state == "active")
    )
    return {name: selector for name, selector in rows}


def publish(session: Session, dkim_dir: Path) -> None:
    """Make rspamd's selector map name each domain's active key, first writing into this node's
    key folder any key it lacks (made on another node)."""
    keys = session.execute(
        select(Domain.name, DkimKey.selector, DkimKey.private_key)
        .join(DkimKey.domain)
        .where(DkimKey.state == "active", DkimKey.private_key.is_not(None))
    ).all()
    for domain, selector, pem in keys:
        path = dkim_keys.key_path(dkim_dir, domain, selector)
        # Missing, or another key under the same name (a domain deleted and made again the same
        # day gets the same selector): the database's is the one every node signs with.
        if not path.exists() or path.read_bytes() != pem.encode("ascii"):
            dkim_keys.write_private_key(dkim_dir, domain, selector, pem.encode("ascii"))
    dkim_keys.publish_selectors(dkim_dir, active_selectors(session))


def record_name(key: DkimKey) -> str:
    return f"{key.selector}._domainkey.{key.domain.name}"


def record_value(key: DkimKey) -> str:
    kind = "ed25519" if key.algorithm == "ed25519" else "rsa"
    return f"v=DKIM1; k={kind}; p={key.public_key}"
