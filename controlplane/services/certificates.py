"""Certificates from the ACME server: which names one covers, when to order one, how to back off.

Each brand has one; so have the platform host and the setup names of domains without a brand,
grouped per tenant (services/platform_certificates.py decides their names; the ordering,
backoff and serving rules here are the same for all).

One certificate per brand, covering the brand host and the client-setup names
(`autoconfig.`, `autodiscover.`, `mta-sts.`) of each domain using the brand, keeping only the
names that lead to the platform in DNS (an ACME server would fail to validate the others, and
Let's Encrypt allows about 5 failed validations per name per hour). Nothing is ordered while the
brand host itself does not lead to the platform.

An order is placed only when no certificate covers the names, when names were added, or when
the certificate expires within RENEW_BEFORE: re-rendering configs never orders. A failed order
backs off (1 h, doubling to 24 h) and at most MAX_ORDERS_PER_RUN orders go out per run, so no
retry storm reaches the ACME server. Until a brand's certificate exists the default certificate
answers for its names, and nothing else is affected.

Unlike other services these functions take the Installation and commit themselves: certbot
runs for seconds (minutes against a slow ACME server) and its deploy hook, another process,
writes the result to the database, so no transaction may stay open while it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.resolver
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.certs import acme, shared
from controlplane.daemons import apply
from controlplane.dns.checks import PlatformCheck, resolves_to_platform
from controlplane.errors import NotFound, ValidationError
from controlplane.models import AcmeChallenge, Brand, PlatformCertificate
from controlplane.models.base import utcnow
from controlplane.runtime import Installation
from controlplane.services import configuration, nodes, platform_certificates
from controlplane.services.brand_dns import resolver_for
from controlplane.services.brands import setup_names
from controlplane.settings import Settings
from controlplane.validation import normalize_hostname

RENEW_BEFORE = dt.timedelta(days=30)
FIRST_BACKOFF = dt.timedelta(hours=1)
MAX_BACKOFF = dt.timedelta(hours=24)
MAX_ORDERS_PER_RUN = 10
MAX_NAMES_PER_CERTIFICATE = acme.MAX_NAMES_PER_CERTIFICATE


@dataclasses.dataclass(frozen=True)
class CertificateOutcome:
    """What a run did for one brand.

    `result`: "issued", "renewed", "current" (a certificate covers the names and is not
    due), "waiting_dns", "dns_unchecked" (the resolver did not answer), "failed",
    "backing_off" (a recent failure; not tried), "deferred" (this run's order cap was
    reached), "removed" (the certificate of a brand that no longer exists).
    """

    hostname: str
    result: str
    message: str = ""


# Whatever holds a certificate's state: a brand, or a platform certificate (same cert_* columns).
Holder = Brand | PlatformCertificate
# The holder's name check: its first name's, and the names to order.
NameCheck = tuple[PlatformCheck, tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class _Order:
    holder_type: type[Holder]
    holder_id: int
    hostname: str  # the certbot lineage: a brand's host, or a platform certificate's lineage
    names: tuple[str, ...]
    force_renewal: bool
    renewal: bool


def brand_names(brand: Brand) -> tuple[str, ...]:
    """Every name a brand's certificate may cover: its host first, then the setup names of
    each domain using it, sorted."""
    extra = sorted({name for domain in brand.domains for name in setup_names(domain)})
    return (brand.hostname, *extra)


def is_due(info: acme.CertificateInfo, now: dt.datetime) -> bool:
    return info.not_after - now <= RENEW_BEFORE


def backoff_delay(failures: int) -> dt.timedelta:
    """1 h after the first failure, doubling with each one, never more than 24 h."""
    return min(FIRST_BACKOFF * 2 ** max(failures - 1, 0), MAX_BACKOFF)


def candidate_names(holder: Holder) -> tuple[str, ...]:
    """Every name a holder's certificate may be served for."""
    return brand_names(holder) if isinstance(holder, Brand) else tuple(holder.wanted_names.split())


def record_certificate(
    brand: Holder, info: acme.CertificateInfo, pems: tuple[str, str] | None = None
) -> bool:
    """The holder is served with this certificate for the names of its own it covers; `pems`
    (chain, key) are kept for the other mail nodes to serve.

    Returns whether anything the daemons serve changed (names or expiry).
    """
    served = " ".join(name for name in candidate_names(brand) if name in info.names)
    changed = (brand.cert_names, brand.cert_not_after) != (served, info.not_after)
    if pems is not None:
        brand.cert_chain_pem, brand.cert_key_pem = pems
    brand.cert_status, brand.cert_names, brand.cert_not_after = "issued", served, info.not_after
    brand.cert_error, brand.cert_failures, brand.cert_next_attempt_at = "", 0, None
    return changed


def record_failure(brand: Holder, error: str, now: dt.datetime) -> None:
    """A failed order: say why, and do not try again before the backoff has passed.

    A certificate that still serves keeps serving (its names stay recorded).
    """
    brand.cert_failures += 1
    brand.cert_next_attempt_at = now + backoff_delay(brand.cert_failures)
    brand.cert_status, brand.cert_error = "failed", error


def _check_names(
    settings: Settings, brand: Brand, resolver: dns.resolver.Resolver
) -> tuple[PlatformCheck, tuple[str, ...]]:
    """The brand host's check, and the names to order (the host plus setup names that lead here)."""
    addresses = settings.platform_address_list
    host = resolves_to_platform(resolver, brand.hostname, addresses)
    names: list[str] = []
    if host.ok:
        names = [n for n in brand_names(brand)[1:] if resolves_to_platform(resolver, n, addresses).ok]
    return host, capped_names(brand.hostname, names)


def capped_names(hostname: str, setup_names: list[str]) -> tuple[str, ...]:
    """The brand host, then whole domains' setup names (by domain) while they fit in one
    certificate: a shared brand of many domains covers the first ones, the rest of its
    domains' setup names are served with the default certificate."""
    by_domain: dict[str, list[str]] = {}
    for name in setup_names:
        by_domain.setdefault(name.split(".", 1)[1], []).append(name)
    kept = [hostname]
    for domain in sorted(by_domain):
        group = sorted(by_domain[domain])
        if len(kept) + len(group) > MAX_NAMES_PER_CERTIFICATE:
            break
        kept += group
    return tuple(kept)


def _newest_certificate(settings: Settings, brand: Holder) -> acme.CertificateInfo | None:
    """This node's certbot lineage, or the copy another mail node obtained (in the database),
    whichever lasts longer: a node never orders what another already holds."""
    candidates = [acme.current_certificate(settings, brand.hostname)]
    if brand.cert_chain_pem:
        with contextlib.suppress(ValueError):
            candidates.append(acme.read_certificate_pem(brand.cert_chain_pem))
    found = [info for info in candidates if info is not None]
    return max(found, key=lambda info: info.not_after) if found else None


def _decide(
    settings: Settings,
    brand: Holder,
    check_names: Callable[[], NameCheck],
    now: dt.datetime,
    *,
    retry_now: bool,
) -> _Order | tuple[CertificateOutcome, bool]:
    """An order to place, or what happened instead and whether the served state changed.

    `check_names` asks DNS (after the backoff check: a holder backing off costs no lookup)."""
    hostname = brand.hostname
    if not retry_now and brand.cert_next_attempt_at is not None and now < brand.cert_next_attempt_at:
        when = brand.cert_next_attempt_at.isoformat(timespec="minutes")
        return CertificateOutcome(
            hostname, "backing_off", f"Next attempt after {when} (last error: {brand.cert_error})"
        ), False
    host, names = check_names()
    current = _newest_certificate(settings, brand)
    usable = current is not None and current.not_after > now
    if host.state == "unchecked":
        return CertificateOutcome(hostname, "dns_unchecked", host.message), False
    if not host.ok:
        if usable:
            # It keeps serving until it expires; renewing it needs the DNS back.
            changed = record_certificate(brand, current)  # type: ignore[arg-type]
            brand.cert_error = f"{host.message} The certificate cannot be renewed until it does."
            return CertificateOutcome(hostname, "waiting_dns", brand.cert_error), changed
        brand.cert_status, brand.cert_error = "waiting_dns", host.message
        return CertificateOutcome(hostname, "waiting_dns", host.message), False
    if current is not None and current.covers(names) and not is_due(current, now):
        changed = record_certificate(brand, current)
        return CertificateOutcome(
            hostname, "current", f"Covers {len(current.names)} names until {current.not_after:%Y-%m-%d}."
        ), changed
    covered = current is not None and current.covers(names)
    return _Order(
        type(brand), brand.id, hostname, names, force_renewal=covered, renewal=current is not None and usable
    )


def renew_certificates(
    installation: Installation,
    *,
    hostnames: Iterable[str] | None = None,
    retry_now: bool = False,
    max_orders: int = MAX_ORDERS_PER_RUN,
    resolver: dns.resolver.Resolver | None = None,
    now: dt.datetime | None = None,
) -> list[CertificateOutcome]:
    """Order what is missing or due for every brand, then for the platform host and the setup
    names of domains without a brand (or only for the brands or platform hosts named), then
    serve it.

    Raises NotFound for a name that is neither a brand's host nor a platform certificate's.
    """
    settings = installation.settings
    resolver = resolver or resolver_for(settings)
    now = now or utcnow()
    outcomes: list[CertificateOutcome] = []
    served_changed = False
    if hostnames is None:
        served_changed, planned = _plan_platform_certificates(installation, resolver)
        outcomes += planned
    with installation.sessions() as session:
        query = select(Brand.id).order_by(Brand.id)
        platform_query = select(PlatformCertificate.id).order_by(PlatformCertificate.id)
        if hostnames is not None:
            wanted = [_hostname(name) for name in hostnames]
            found = dict(
                session.execute(select(Brand.hostname, Brand.id).where(Brand.hostname.in_(wanted))).all()
            )
            found_platform = dict(
                session.execute(
                    select(PlatformCertificate.lineage, PlatformCertificate.id).where(
                        PlatformCertificate.lineage.in_(wanted)
                    )
                ).all()
            )
            missing = [name for name in wanted if name not in found and name not in found_platform]
            if missing:
                raise NotFound(f"No brand has the hostname {', '.join(missing)}.")
            query = query.where(Brand.id.in_(found.values()))
            platform_query = platform_query.where(PlatformCertificate.id.in_(found_platform.values()))
        holders: list[tuple[type[Holder], int]] = [(Brand, id_) for id_ in session.scalars(query)]
        holders += [(PlatformCertificate, id_) for id_ in session.scalars(platform_query)]

    orders = 0
    for holder_type, holder_id in holders:
        with installation.transaction() as session:
            holder = session.get(holder_type, holder_id)
            if holder is None:
                continue
            decision = _decide(
                settings, holder, _name_check(settings, holder, resolver), now, retry_now=retry_now
            )
            if isinstance(decision, tuple):
                outcome, changed = decision
                outcomes.append(outcome)
                served_changed |= changed
                continue
            orderer = nodes.certificate_node(session) if settings.node_name else None
            if orderer is not None and orderer != settings.node_name:
                # One node orders for all (one ACME account, one order per name); the others
                # serve what it obtained.
                outcomes.append(CertificateOutcome(holder.hostname, "deferred", f"Node {orderer} orders it."))
                continue
            if orders >= max_orders:
                outcomes.append(
                    CertificateOutcome(holder.hostname, "deferred", f"At most {max_orders} orders per run.")
                )
                continue
        orders += 1
        outcome, changed = _place_order(installation, decision)
        outcomes.append(outcome)
        served_changed |= changed
    if served_changed:
        publish_certificates(installation)
    if hostnames is None:
        # After publishing: the daemons no longer serve a removed group's files.
        outcomes += remove_unused_certificates(installation)
    return outcomes


def _plan_platform_certificates(
    installation: Installation, resolver: dns.resolver.Resolver
) -> tuple[bool, list[CertificateOutcome]]:
    """The platform host's certificate, and the setup names' groups where this node orders (a
    single machine, or the mail node that orders for all). DNS is asked between two short
    transactions, never inside one. Whether a served name lost its certificate, and what to say."""
    settings = installation.settings
    with installation.sessions() as session:
        orders_here = not settings.node_name or nodes.certificate_node(session) == settings.node_name
        domains_by_tenant = platform_certificates.unbranded_domains(session) if orders_here else {}
    checks, unanswered = platform_certificates.check_setup_names(settings, domains_by_tenant, resolver)
    said = [
        CertificateOutcome(
            check.name, "dns_unchecked", f"Its setup names are left as they were: {check.message}"
        )
        for check in unanswered
    ]
    try:
        with installation.transaction() as session:
            return platform_certificates.plan(session, settings, checks if orders_here else None), said
    except IntegrityError:
        # Another run (another node's, an operator's) planned the same group at once: next run.
        return False, [
            *said,
            CertificateOutcome("setup names", "deferred", "Planned by another run meanwhile."),
        ]


def _name_check(
    settings: Settings, holder: Holder, resolver: dns.resolver.Resolver
) -> Callable[[], NameCheck]:
    if isinstance(holder, Brand):
        return lambda: _check_names(settings, holder, resolver)
    return lambda: platform_certificates.check_names(settings, holder, resolver)


def _place_order(installation: Installation, order: _Order) -> tuple[CertificateOutcome, bool]:
    settings = installation.settings
    try:
        info = acme.obtain_certificate(
            settings, order.hostname, order.names, force_renewal=order.force_renewal
        )
    except acme.CertbotError as error:
        with installation.transaction() as session:
            brand = session.get(order.holder_type, order.holder_id)
            if brand is not None:
                record_failure(brand, str(error), utcnow())
                when = brand.cert_next_attempt_at.isoformat(timespec="minutes")  # type: ignore[union-attr]
                return CertificateOutcome(
                    order.hostname, "failed", f"{error}\nNext attempt after {when}."
                ), False
        return CertificateOutcome(order.hostname, "failed", str(error)), False
    with installation.transaction() as session:
        brand = session.get(order.holder_type, order.holder_id)
        # The deploy hook has normally recorded and published it already; if it could not
        # (it failed, or the brand is gone), this run does.
        changed = brand is not None and record_certificate(
            brand, info, acme.certificate_pems(settings, order.hostname)
        )
        _announce_to_other_nodes(session, settings)
    result = "renewed" if order.renewal else "issued"
    names = ", ".join(info.names)
    return CertificateOutcome(
        order.hostname, result, f"{names}; valid until {info.not_after:%Y-%m-%d %H:%M} UTC."
    ), changed


def certificate_deployed(installation: Installation, lineage: str | Path) -> str:
    """certbot's deploy hook: record the new certificate of a brand (or of a platform
    certificate) and serve it right away."""
    lineage = Path(lineage)
    hostname = lineage.name
    info = acme.read_certificate(lineage / "fullchain.pem")
    with installation.transaction() as session:
        brand: Holder | None = session.scalar(select(Brand).where(Brand.hostname == hostname))
        if brand is None:
            brand = session.scalar(select(PlatformCertificate).where(PlatformCertificate.lineage == hostname))
        if brand is None:
            return f"No brand has the hostname {hostname}: nothing to serve."
        record_certificate(brand, info, acme.certificate_pems(installation.settings, hostname))
        _announce_to_other_nodes(session, installation.settings)
    publish_certificates(installation)
    return f"Serving the certificate of {hostname} ({', '.join(info.names)}) until {info.not_after:%Y-%m-%d}."


def publish_certificates(installation: Installation) -> None:
    """Re-render, check and reload; a renewed certificate at an unchanged path still needs
    Dovecot and nginx to reload (they read certificates then). Postfix reads its SNI map
    at each handshake, and HAProxy takes the renewed file through its admin socket: apply
    republishes both."""
    settings = installation.settings
    if not settings.live_config.exists():
        return  # not prepared yet: `letterhead up` renders the first generation
    with installation.transaction() as session:
        before = apply.live_generation(session, settings.node_name)
        generation = configuration.apply_current_configuration(session, settings)
    if generation.status != "live":
        raise acme.CertbotError(
            f"The configuration serving the new certificate was refused; the previous one still serves:\n"
            f"{generation.error}"
        )
    if before is not None and generation.id == before.id:
        apply.reload_running_daemons(settings, ("dovecot", "nginx"))


def remove_unused_certificates(installation: Installation) -> list[CertificateOutcome]:
    """Revoke and delete the certificates of brands (and platform certificates) that are gone
    (or were renamed)."""
    settings = installation.settings
    with installation.sessions() as session:
        in_use = set(session.scalars(select(Brand.hostname)))
        in_use |= set(session.scalars(select(PlatformCertificate.lineage)))
    outcomes = []
    for name in acme.lineage_names(settings):
        if name in in_use:
            continue
        try:
            acme.delete_certificate(settings, name)
        except acme.CertbotError as error:
            outcomes.append(CertificateOutcome(name, "failed", f"Could not remove the certificate: {error}"))
        else:
            outcomes.append(CertificateOutcome(name, "removed", "No brand uses it any more."))
    return outcomes


# ACME tokens are base64url (RFC 8555 §8.1); the answer is the token, a dot and a thumbprint.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VALIDATION = re.compile(r"[A-Za-z0-9_-]{1,255}\.[A-Za-z0-9_-]{1,255}")


def store_challenge(session: Session, token: str, validation: str) -> None:
    """certbot's auth hook on a mail node: keep the HTTP-01 answer where every node's web app
    finds it (the ACME server may reach any of them). Raises ValidationError."""
    if not _TOKEN.fullmatch(token or "") or not _VALIDATION.fullmatch(validation or ""):
        raise ValidationError("Not an ACME HTTP-01 token and answer.")
    challenge = session.get(AcmeChallenge, token) or AcmeChallenge(token=token)
    challenge.validation = validation
    session.add(challenge)
    session.flush()


def remove_challenge(session: Session, token: str) -> None:
    """certbot's cleanup hook: the answer is no longer needed."""
    challenge = session.get(AcmeChallenge, token) if _TOKEN.fullmatch(token or "") else None
    if challenge is not None:
        session.delete(challenge)
        session.flush()


def challenge_answer(session: Session, token: str) -> str | None:
    """The answer an ACME server expects at /.well-known/acme-challenge/<token>, if one waits."""
    if not _TOKEN.fullmatch(token):
        return None
    return session.scalar(select(AcmeChallenge.validation).where(AcmeChallenge.token == token))


def _announce_to_other_nodes(session: Session, settings: Settings) -> None:
    if settings.node_name:
        nodes.raise_generation(session)


def write_shared_certificates(session: Session, settings: Settings) -> bool:
    """On a mail node: write every brand certificate a node obtained (kept in the database) into
    this node's folder, and forget the copies no longer needed. Whether any file changed
    (the daemons then reload: they read certificates only then)."""
    rows = session.execute(
        select(Brand.hostname, Brand.cert_chain_pem, Brand.cert_key_pem).where(
            Brand.cert_chain_pem.is_not(None), Brand.cert_key_pem.is_not(None)
        )
    ).all()
    rows += session.execute(
        select(
            PlatformCertificate.lineage, PlatformCertificate.cert_chain_pem, PlatformCertificate.cert_key_pem
        ).where(
            PlatformCertificate.cert_chain_pem.is_not(None), PlatformCertificate.cert_key_pem.is_not(None)
        )
    ).all()
    changed, kept = False, set()
    for hostname, chain, key in rows:
        # Even where certbot's own lineage is: the database holds the newest, whichever node renewed.
        changed |= shared.write_shared_certificate(settings.certs_dir, hostname, chain, key)
        kept.add(hostname)
    return shared.remove_other_shared_certificates(settings.certs_dir, kept) or changed


def list_brand_certificates(session: Session) -> list[Brand]:
    """Every brand with its certificate state, for the operator."""
    return list(session.scalars(select(Brand).order_by(Brand.hostname)))


def _hostname(name: str) -> str:
    try:
        return normalize_hostname(name)
    except ValidationError:
        raise NotFound(f"No brand has the hostname {name!r}.") from None
