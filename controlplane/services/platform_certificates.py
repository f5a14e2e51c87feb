"""The names certificates cover besides the brands': the platform host and the setup names
(`autoconfig.`, `autodiscover.`, `mta-sts.`) of domains without a brand.

The platform host (MX, client setup, webmail and MTA-STS for every domain without a brand) has
a certificate of its own, served as the default one once issued; until then the self-signed
one answers. On mail nodes each node's host has one, ordered by the node that orders all.

A tenant's domains without a brand have their setup names in certificates of that tenant only,
up to MAX_NAMES_PER_CERTIFICATE names each: a certificate lists every name it covers, and one
tenant's customers must never be named in a certificate served to another tenant's. A domain
stays in the group it was put in while it fits, so a new domain orders one certificate again,
not every group after it. Only names that lead to the platform in DNS are ordered (an ACME
server would fail to validate the others); when the resolver does not answer, the groups are
left as they were.

services/certificates.py orders, backs off and serves them, as it does brands'.
"""

from __future__ import annotations

import itertools

import dns.resolver
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.certs.acme import MAX_NAMES_PER_CERTIFICATE
from controlplane.dns.checks import PlatformCheck, resolves_to_platform
from controlplane.models import Domain, PlatformCertificate
from controlplane.models.base import utcnow
from controlplane.render import TlsIdentity
from controlplane.services.brands import setup_names_for
from controlplane.settings import Settings
from controlplane.validation import normalize_hostname

PLATFORM, SETUP = "platform", "setup"


def setup_lineage(tenant_id: int, number: int) -> str:
    """A setup group's certbot lineage: named after its tenant's number, never a customer's name."""
    return f"setup-t{tenant_id}-{number}"


def _domain_of(setup_name: str) -> str:
    return setup_name.split(".", 1)[1]


# tenant id -> {domain name: its setup names that lead here, or None when DNS did not answer}
SetupChecks = dict[int, dict[str, list[str] | None]]


def unbranded_domains(session: Session) -> dict[int, list[str]]:
    """Every tenant's domains without a brand, by tenant."""
    rows = session.execute(
        select(Domain.tenant_id, Domain.name)
        .where(Domain.brand_id.is_(None))
        .order_by(Domain.tenant_id, Domain.name)
    ).all()
    return {tenant: [name for _, name in group] for tenant, group in itertools.groupby(rows, lambda r: r[0])}


def check_setup_names(
    settings: Settings, domains_by_tenant: dict[int, list[str]], resolver: dns.resolver.Resolver
) -> tuple[SetupChecks, list[PlatformCheck]]:
    """Which setup names lead here, asked of DNS outside any transaction (it may take seconds per
    name while a resolver is slow). Also the checks it did not answer."""
    addresses = settings.platform_address_list
    checks: SetupChecks = {}
    unanswered: list[PlatformCheck] = []
    for tenant_id, domain_names in domains_by_tenant.items():
        for domain_name in domain_names:
            found: list[str] | None = []
            for name in setup_names_for(domain_name):
                check = resolves_to_platform(resolver, name, addresses)
                if check.state == "unchecked":
                    unanswered.append(check)
                    found = None
                    break
                if check.ok:
                    found.append(name)  # type: ignore[union-attr]
            checks.setdefault(tenant_id, {})[domain_name] = found
    return checks, unanswered


def plan(session: Session, settings: Settings, checks: SetupChecks | None) -> bool:
    """Bring the platform host's certificate and (with `checks`) every tenant's setup groups up
    to date (flushed, not committed). Whether a name served until now lost its certificate (a
    group that goes): the daemons must then stop serving it before its files are removed."""
    hostname = normalize_hostname(settings.hostname)
    platform = session.scalar(select(PlatformCertificate).where(PlatformCertificate.lineage == hostname))
    if platform is None:
        platform = PlatformCertificate(lineage=hostname, kind=PLATFORM, wanted_names=hostname)
        session.add(platform)
    served_changed = False
    if not settings.node_name:
        # A single machine serves one platform host: one left by a former hostname setting goes
        # (its lineage is then removed); mail nodes keep every node's.
        for former in session.scalars(
            select(PlatformCertificate).where(
                PlatformCertificate.kind == PLATFORM, PlatformCertificate.lineage != hostname
            )
        ):
            served_changed |= bool(former.cert_names)
            session.delete(former)
    if checks is None:
        session.flush()
        return served_changed
    existing: dict[int, list[PlatformCertificate]] = {}
    for group in session.scalars(
        select(PlatformCertificate).where(PlatformCertificate.kind == SETUP).order_by(PlatformCertificate.id)
    ):
        existing.setdefault(group.tenant_id, []).append(group)  # type: ignore[arg-type]
    for tenant_id in sorted(set(checks) | set(existing)):
        groups = existing.get(tenant_id, [])
        former: dict[str, list[str]] = {}
        for group in groups:
            for name in group.wanted_names.split():
                former.setdefault(_domain_of(name), []).append(name)
        leading_here: dict[str, list[str]] = {}
        for domain_name, names in checks.get(tenant_id, {}).items():
            if names is None:
                # DNS did not answer for it: it keeps the names it had, and nothing is ordered
                # for it; the tenant's other domains go on.
                names = former.get(domain_name, [])
            if names:
                leading_here[domain_name] = names
        served_changed |= _regroup(session, tenant_id, groups, leading_here)
    session.flush()
    return served_changed


def _regroup(
    session: Session, tenant_id: int, groups: list[PlatformCertificate], leading_here: dict[str, list[str]]
) -> bool:
    """Put each domain's names in the group that had them while they fit, the others in the
    first group with room, or a new group; a group left with no names goes. Whether a group
    with a certificate served went."""
    placed: dict[int, list[str]] = {id(group): [] for group in groups}
    former = {_domain_of(name): group for group in groups for name in group.wanted_names.split()}
    pending = []
    for domain_name, names in leading_here.items():
        group = former.get(domain_name)
        if group is not None and len(placed[id(group)]) + len(names) <= MAX_NAMES_PER_CERTIFICATE:
            placed[id(group)] += names
        else:
            pending.append(names)
    numbers = {int(group.lineage.rsplit("-", 1)[1]) for group in groups}
    for names in pending:
        group = next(
            (g for g in groups if len(placed[id(g)]) + len(names) <= MAX_NAMES_PER_CERTIFICATE), None
        )
        if group is None:
            number = next(n for n in itertools.count(1) if n not in numbers)
            numbers.add(number)
            group = PlatformCertificate(
                lineage=setup_lineage(tenant_id, number), kind=SETUP, tenant_id=tenant_id
            )
            session.add(group)
            groups.append(group)
            placed[id(group)] = []
        placed[id(group)] += names
    served_went = False
    for group in groups:
        if placed[id(group)]:
            group.wanted_names = " ".join(sorted(placed[id(group)]))
        else:
            served_went |= bool(group.cert_names)
            session.delete(group)
    return served_went


def check_names(
    settings: Settings, certificate: PlatformCertificate, resolver: dns.resolver.Resolver
) -> tuple[PlatformCheck, tuple[str, ...]]:
    """What certificates.py asks of a holder: its first name's check and the names to order.

    A platform host is checked now; a setup group's names were checked by `plan` this run."""
    if certificate.kind == PLATFORM:
        check = resolves_to_platform(resolver, certificate.lineage, settings.platform_address_list)
        return check, (certificate.lineage,)
    names = tuple(certificate.wanted_names.split())
    return PlatformCheck(certificate.lineage, "ok" if names else "missing"), names


def served_files(settings: Settings, lineage: str) -> tuple[str, str] | None:
    """The chain and key a lineage is served from, if its files are there."""
    from controlplane.certs.acme import certificate_paths
    from controlplane.certs.shared import shared_paths

    # A mail node's copy from the database (the newest, whichever node renewed it), else this
    # machine's own certbot lineage.
    for cert, key in (shared_paths(settings.certs_dir, lineage), certificate_paths(settings, lineage)):
        if cert.is_file() and key.is_file():
            return str(cert), str(key)
    return None


def platform_identity(session: Session, settings: Settings) -> TlsIdentity | None:
    """The platform host's certificate from the ACME server, when one is issued and current:
    the default certificate the daemons serve."""
    hostname = normalize_hostname(settings.hostname)
    row = session.execute(
        select(PlatformCertificate.cert_names, PlatformCertificate.cert_not_after).where(
            PlatformCertificate.lineage == hostname, PlatformCertificate.kind == PLATFORM
        )
    ).first()
    if row is None or hostname not in row.cert_names.split():
        return None
    if row.cert_not_after is not None and row.cert_not_after <= utcnow():
        return None
    files = served_files(settings, hostname)
    return TlsIdentity(hostname, *files) if files else None


def setup_identities(session: Session, settings: Settings) -> tuple[TlsIdentity, ...]:
    """Every setup name a group's current certificate covers, with the files it is served from:
    only for a domain that is its tenant's and without a brand now. A domain deleted and then
    added by another tenant (or given a brand) is never served a certificate made before, which
    lists the first tenant's other customers."""
    now = utcnow()
    unbranded = {name: tenant_id for tenant_id, names in unbranded_domains(session).items() for name in names}
    identities: list[TlsIdentity] = []
    for lineage, tenant_id, cert_names, not_after in session.execute(
        select(
            PlatformCertificate.lineage,
            PlatformCertificate.tenant_id,
            PlatformCertificate.cert_names,
            PlatformCertificate.cert_not_after,
        )
        .where(PlatformCertificate.kind == SETUP, PlatformCertificate.cert_names != "")
        .order_by(PlatformCertificate.id)
    ):
        if not_after is not None and not_after <= now:
            continue
        files = served_files(settings, lineage)
        if files:
            identities.extend(
                TlsIdentity(name, *files)
                for name in cert_names.split()
                if unbranded.get(_domain_of(name)) == tenant_id
            )
    return tuple(identities)


def list_platform_certificates(session: Session) -> list[PlatformCertificate]:
    """The platform hosts' and setup groups' certificates, for the operator."""
    return list(
        session.scalars(
            select(PlatformCertificate).order_by(PlatformCertificate.kind, PlatformCertificate.id)
        )
    )
