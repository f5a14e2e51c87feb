"""Brands: the server hostname a tenant's customers use (`mail.customer.com`) and its look.

A brand belongs to one tenant. A domain uses one of its tenant's brands, or none: then the
platform's own host serves it. The brand's certificate is the business of
services/certificates.py and the DNS records each domain needs of services/brand_dns.py; this
module owns names, appearance and which domain uses which brand.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import AlreadyExists, NotFound, ValidationError
from controlplane.models import Brand, Domain, Tenant
from controlplane.models.base import utcnow
from controlplane.render import TlsIdentity
from controlplane.services import audit, brand_images, scope
from controlplane.services.scope import Actor
from controlplane.settings import Settings
from controlplane.validation import normalize_hostname, validate_url

MAX_BRAND_NAME = 100
MAX_LOGO_BYTES = brand_images.MAX_IMAGE_BYTES
# The names a brand's certificate also covers for each domain using it (client setup).
SETUP_PREFIXES = ("autoconfig", "autodiscover", "mta-sts")


def signal_brands_changed(session: Session) -> None:
    """What the daemons serve depends on brands (certificates by SNI): re-apply after commit."""
    from controlplane.db import after_commit

    action = session.info.get("on_brands_changed")
    if action is not None:
        after_commit(session, "brands_changed", action)


def _brand_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A brand name is required.", field="name")
    name = name.strip()
    if len(name) > MAX_BRAND_NAME or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationError(
            f"A brand name is at most {MAX_BRAND_NAME} characters, without control characters.",
            field="name",
        )
    return name


def _accent_colour(value: str | None) -> str | None:
    """ "#rrggbb" (or "#rgb", written out), or None for the platform's."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip().lower()
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        text = "#" + "".join(ch * 2 for ch in text[1:])
    if not re.fullmatch(r"#[0-9a-f]{6}", text):
        raise ValidationError("The accent colour is written like #3a6ee8.", field="accent_colour")
    return text


def _line(value: str | None, field: str, what: str, limit: int) -> str | None:
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if len(text) > limit or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValidationError(f"{what} is one line of at most {limit} characters.", field=field)
    return text


def check_look(field: str, value: str | None) -> str | None:
    """One field of a brand's look as it would be saved (None: cleared). Raises ValidationError."""
    checks = {
        "accent_colour": _accent_colour,
        "page_title": lambda v: _line(v, "page_title", "The page title", 100),
        "footer_text": lambda v: _line(v, "footer_text", "The footer text", 200),
    }
    return checks[field](value)


def _support_url(url: str | None) -> str | None:
    if url is None or (isinstance(url, str) and not url.strip()):
        return None
    return validate_url(url.strip(), field="support_url")


def _brand_hostname(session: Session, settings: Settings, tenant: Tenant, hostname: str) -> str:
    """A name this tenant may claim: a real host name, not the platform's, not another
    tenant's brand, and not under a domain another tenant hosts (else a tenant could
    squat `mail.victim.com` before the victim adds its own brand)."""
    ascii_name = normalize_hostname(hostname, field="hostname")
    platform = normalize_hostname(settings.hostname)
    if ascii_name == platform or ascii_name.endswith("." + platform):
        raise ValidationError(f"{hostname} is the platform's own name.", field="hostname")
    if ascii_name.split(".")[0] in SETUP_PREFIXES:
        raise ValidationError(
            f"{hostname} starts with a name reserved for mail client setup; "
            "use e.g. mail." + ascii_name.split(".", 1)[1],
            field="hostname",
        )
    suffixes = [ascii_name.split(".", i)[-1] for i in range(ascii_name.count(".") + 1)]
    owners = session.scalars(select(Domain.tenant_id).where(Domain.name.in_(suffixes))).all()
    if any(owner != tenant.id for owner in owners):
        raise ValidationError(f"{hostname} lies in a domain hosted by someone else.", field="hostname")
    return ascii_name


def _require_free_hostname(session: Session, hostname: str, display: str, brand: Brand | None = None) -> None:
    existing = session.scalar(select(Brand).where(Brand.hostname == hostname))
    if existing is not None and existing is not brand:
        # Whose brand it is stays unsaid.
        raise AlreadyExists(f"{display} is already used by a brand.", field="hostname")


def _clear_other_shared(session: Session, brand: Brand) -> None:
    for other in session.scalars(
        select(Brand).where(Brand.tenant_id == brand.tenant_id, Brand.shared.is_(True), Brand.id != brand.id)
    ):
        other.shared = False
    session.flush()


def create_brand(
    session: Session,
    actor: Actor,
    settings: Settings,
    *,
    tenant: Tenant,
    hostname: str,
    name: str,
    support_url: str | None = None,
    shared: bool = False,
) -> Brand:
    """Full admins add brands to their tenant; a hostname is one brand's on the platform."""
    scope.require_full_admin(actor, tenant)
    ascii_name = _brand_hostname(session, settings, tenant, hostname)
    brand_name, url = _brand_name(name), _support_url(support_url)
    _require_free_hostname(session, ascii_name, hostname)
    brand = Brand(tenant=tenant, hostname=ascii_name, name=brand_name, support_url=url, shared=False)
    session.add(brand)
    session.flush()
    if shared:
        _clear_other_shared(session, brand)
        brand.shared = True
    session.flush()
    audit.record_change(session, actor, "brand.create", ascii_name, tenant_id=tenant.id, shared=bool(shared))
    signal_brands_changed(session)
    return brand


_UNSET = object()


def update_brand(
    session: Session,
    actor: Actor,
    settings: Settings,
    brand: Brand,
    *,
    name: str | None = None,
    support_url: str | None | object = _UNSET,
    shared: bool | None = None,
    hostname: str | None = None,
    accent_colour: str | None | object = _UNSET,
    page_title: str | None | object = _UNSET,
    footer_text: str | None | object = _UNSET,
) -> Brand:
    """Change a brand's look or name (None or "" clears a look's field: the platform's
    then). A new hostname starts its certificate afresh. Nothing changes unless all is valid."""
    scope.require_full_admin(actor, brand.tenant)
    changes: dict[str, object] = {}
    look = {}
    if accent_colour is not _UNSET:
        look["accent_colour"] = _accent_colour(accent_colour)  # type: ignore[arg-type]
    if page_title is not _UNSET:
        look["page_title"] = _line(page_title, "page_title", "The page title", 100)  # type: ignore[arg-type]
    if footer_text is not _UNSET:
        look["footer_text"] = _line(footer_text, "footer_text", "The footer text", 200)  # type: ignore[arg-type]
    new_name = _brand_name(name) if name is not None else None
    new_url = _support_url(support_url) if support_url is not _UNSET else _UNSET  # type: ignore[arg-type]
    new_host = None
    if hostname is not None:
        new_host = _brand_hostname(session, settings, brand.tenant, hostname)
        _require_free_hostname(session, new_host, hostname, brand)
    if new_name is not None and new_name != brand.name:
        brand.name, changes["name"] = new_name, new_name
    if new_url is not _UNSET and new_url != brand.support_url:
        brand.support_url, changes["support_url"] = new_url, new_url  # type: ignore[assignment]
    if new_host is not None and new_host != brand.hostname:
        changes["hostname"] = new_host
        brand.hostname = new_host
        brand.cert_status, brand.cert_names, brand.cert_error = "none", "", ""
        brand.cert_not_after, brand.cert_failures, brand.cert_next_attempt_at = None, 0, None
        brand.dns_report, brand.dns_checked_at = "", None
    for field, value in look.items():
        if value != getattr(brand, field):
            setattr(brand, field, value)
            changes[field] = value
    if shared is not None and bool(shared) != brand.shared:
        if shared:
            _clear_other_shared(session, brand)
        brand.shared, changes["shared"] = bool(shared), bool(shared)
    session.flush()
    if changes:
        audit.record_change(
            session, actor, "brand.update", brand.hostname, tenant_id=brand.tenant_id, **changes
        )
        signal_brands_changed(session)
    return brand


def set_brand_image(session: Session, actor: Actor, brand: Brand, kind: str, data: bytes | None) -> Brand:
    """Set the brand's "logo", "logo_dark" (for dark pages) or "favicon" (the tab's icon): a PNG,
    JPEG or WebP within size and pixel limits, or an SVG, kept only as rebuilt from an
    allow-list (services/brand_images.py); None removes it."""
    scope.require_full_admin(actor, brand.tenant)
    if kind not in brand_images.KINDS:
        raise ValidationError("The image is the logo, logo_dark or favicon.", field="kind")
    if data is None:
        content, content_type = None, None
    else:
        checked = brand_images.check_image(data, kind)
        content, content_type = checked.content, checked.content_type
    setattr(brand, kind, content)
    setattr(brand, f"{kind}_type", content_type)
    session.flush()
    audit.record_change(
        session, actor, f"brand.{kind}", brand.hostname, tenant_id=brand.tenant_id, removed=content is None
    )
    return brand


def delete_brand(session: Session, actor: Actor, brand: Brand) -> None:
    """Domains that used it go back to the platform's host; its certificate is no longer served."""
    scope.require_full_admin(actor, brand.tenant)
    hostname, tenant_id = brand.hostname, brand.tenant_id
    for domain in list(brand.domains):
        domain.brand = None
    session.delete(brand)
    session.flush()
    audit.record_change(session, actor, "brand.delete", hostname, tenant_id=tenant_id)
    signal_brands_changed(session)


def set_domain_brand(session: Session, actor: Actor, domain: Domain, brand: Brand | None) -> Domain:
    """Full admins choose which of their brands a domain uses (None: the platform's host)."""
    scope.require_full_admin(actor, domain.tenant)
    if brand is not None and brand.tenant_id != domain.tenant_id:
        raise NotFound("No such brand.")
    if domain.brand_id == (brand.id if brand else None):
        return domain
    domain.brand = brand
    session.flush()
    audit.record_change(
        session, actor, "domain.brand", domain.name, tenant_id=domain.tenant_id, domain_id=domain.id,
        brand=brand.hostname if brand else None,
    )  # fmt: skip
    signal_brands_changed(session)
    return domain


def get_brand(session: Session, actor: Actor, brand_id: int) -> Brand:
    """A brand in the actor's tenant; domain admins see only the brand their domain uses."""
    brand = session.get(Brand, brand_id)
    if brand is None:
        raise NotFound("No such brand.")
    if actor.is_operator:
        return brand
    if actor.tenant_id != brand.tenant_id or actor.kind == "signup":
        raise NotFound("No such brand.")
    if actor.domain_id is not None:
        domain = session.get(Domain, actor.domain_id)
        if domain is None or domain.brand_id != brand.id:
            raise NotFound("No such brand.")
    return brand


def get_brand_by_hostname(session: Session, actor: Actor, hostname: str) -> Brand:
    try:
        ascii_name = normalize_hostname(hostname)
    except ValidationError:
        raise NotFound(f"No such brand: {hostname!r}.") from None
    brand = session.scalar(select(Brand).where(Brand.hostname == ascii_name))
    missing = f"No such brand: {hostname}."
    if brand is None:
        raise NotFound(missing)
    try:
        return get_brand(session, actor, brand.id)
    except NotFound:
        raise NotFound(missing) from None  # the same words as for a name nobody has


def list_brands(session: Session, actor: Actor, tenant: Tenant) -> list[Brand]:
    scope.require_tenant(actor, tenant)
    if actor.kind == "signup":
        return []
    query = select(Brand).where(Brand.tenant_id == tenant.id).order_by(Brand.hostname)
    if actor.domain_id is not None:
        query = query.join(Domain, Domain.brand_id == Brand.id).where(Domain.id == actor.domain_id)
    return list(session.scalars(query))


def find_brand_for_host(session: Session, host: str) -> Brand | None:
    """The brand a web request is served under, from its Host: the brand host itself, or a
    setup name (`autoconfig.customer.com`) of a domain using the brand."""
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ascii_name = normalize_hostname(host.lower())
    except ValidationError:
        return None
    brand = session.scalar(select(Brand).where(Brand.hostname == ascii_name))
    if brand is not None:
        return brand
    prefix, _, rest = ascii_name.partition(".")
    if prefix in SETUP_PREFIXES and rest:
        return session.scalar(
            select(Brand).join(Domain, Domain.brand_id == Brand.id).where(Domain.name == rest)
        )
    return None


def tenant_of_host(session: Session, host: str) -> int | None:
    """The tenant whose brand host `host` is; None for the platform's own (logins on a brand
    host are that tenant's alone: services/auth.py, services/webmail.py)."""
    brand = find_brand_for_host(session, host)
    return brand.tenant_id if brand is not None else None


def server_hostname(settings: Settings, domain: Domain) -> str:
    """The host a domain's users and senders use: its brand's, or the platform's."""
    return domain.brand.hostname if domain.brand is not None else normalize_hostname(settings.hostname)


def setup_names(domain: Domain) -> tuple[str, ...]:
    return setup_names_for(domain.name)


def setup_names_for(domain_name: str) -> tuple[str, ...]:
    """The names mail clients and senders look up for a domain's setup (autoconfig, MTA-STS...)."""
    return tuple(f"{prefix}.{domain_name}" for prefix in SETUP_PREFIXES)


def served_identities(session: Session, settings: Settings) -> tuple[TlsIdentity, ...]:
    """Every name a brand certificate covers, with the files the daemons serve it from: the
    brand host, and the setup names of the domains using the brand now (a domain moved away,
    or deleted and added again by another tenant, is not served the certificate made before).

    A brand without a certificate (or whose files are gone) is left out: the default
    certificate then answers for its names, and nothing else is affected.
    """
    from controlplane.services.platform_certificates import served_files

    now = utcnow()
    identities = []
    using: dict[int, set[str]] = {}
    for brand_id, domain_name in session.execute(
        select(Domain.brand_id, Domain.name).where(Domain.brand_id.is_not(None))
    ):
        using.setdefault(brand_id, set()).update(setup_names_for(domain_name))
    # Only the columns needed: every brand change reads all brands, and a whole row carries
    # its logo (up to 256 KB) and DNS report.
    rows = session.execute(
        select(Brand.id, Brand.hostname, Brand.cert_names, Brand.cert_not_after)
        .where(Brand.cert_names != "")
        .order_by(Brand.id)
    )
    for brand_id, hostname, cert_names, not_after in rows:
        if not_after is not None and not_after <= now:
            continue
        files = served_files(settings, hostname)
        if files is None:
            continue
        current = using.get(brand_id, set()) | {hostname}
        identities.extend(TlsIdentity(name, *files) for name in cert_names.split() if name in current)
    return tuple(identities)
