"""Test data made through the services, so fixtures obey the same limits as users."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from controlplane.models import Admin, Alias, Domain, Mailbox, Tenant
from controlplane.services import admins, aliases, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR

KB = 1024
PASSWORD = "correct horse battery"
_counter = itertools.count(1)


def make_tenant(session: Session, *, name: str | None = None, pool: int = 1000 * KB, **kwargs) -> Tenant:
    return tenants.create_tenant(
        session, OPERATOR, name=name or f"Tenant {next(_counter)}", storage_pool_bytes=pool, **kwargs
    )


def make_domain(
    session: Session,
    *,
    tenant: Tenant | None = None,
    name: str | None = None,
    max_mailboxes: int = 10,
    max_aliases: int = 10,
    max_mailbox_bytes: int = 100 * KB,
) -> Domain:
    return domains.create_domain(
        session,
        OPERATOR,
        tenant=tenant or make_tenant(session),
        name=name or f"d{next(_counter)}.test",
        max_mailboxes=max_mailboxes,
        max_aliases=max_aliases,
        max_mailbox_bytes=max_mailbox_bytes,
    )


def make_mailbox(
    session: Session, *, domain: Domain, local_part: str | None = None, quota: int = 10 * KB, **kwargs
) -> Mailbox:
    kwargs.setdefault("password", PASSWORD)
    return mailboxes.create_mailbox(
        session,
        OPERATOR,
        domain=domain,
        local_part=local_part or f"user{next(_counter)}",
        quota_bytes=quota,
        **kwargs,
    )


def make_alias(session: Session, *, domain: Domain, local_part: str, destinations: list[str]) -> Alias:
    return aliases.create_alias(
        session, OPERATOR, domain=domain, local_part=local_part, destinations=destinations
    )


def make_admin(
    session: Session, *, tenant: Tenant | None = None, login: str | None = None, password: str = PASSWORD
) -> Admin:
    return admins.create_admin(
        session,
        OPERATOR,
        tenant=tenant or make_tenant(session),
        login=login or f"admin{next(_counter)}",
        password=password,
    )


def insert_raw_rows(
    connection,
    *,
    domains: tuple[str, ...] = ("a.test",),
    mailboxes: tuple[tuple[str, str, int], ...] = (),
    aliases: tuple[str, ...] = (),
) -> None:
    """A tenant, its domains, mailboxes of the first domain (local part, password hash, quota) and
    aliases, in plain SQL: for databases at an older migration than the models, or tests that must
    not go through the services. Columns every revision since 0002 has."""
    connection.exec_driver_sql(
        "INSERT INTO tenant (id, name, storage_pool_bytes, max_mailbox_bytes, active) VALUES (1, 't', 99, 9, true)"
    )
    for number, name in enumerate(domains, start=1):
        connection.exec_driver_sql(
            "INSERT INTO domain (id, tenant_id, name, max_mailboxes, max_aliases, max_mailbox_bytes, active) "
            f"VALUES ({number}, 1, '{name}', 5, 5, 9, true)"
        )
    for number, (local_part, password_hash, quota) in enumerate(mailboxes, start=1):
        connection.exec_driver_sql(
            "INSERT INTO mailbox (domain_id, local_part, password_hash, quota_bytes, display_name, active, "
            f"is_domain_admin, storage_key) VALUES (1, '{local_part}', '{password_hash}', {quota}, '', true, false, "
            f"'k{number}')"
        )
    for local_part in aliases:
        connection.exec_driver_sql(
            f"INSERT INTO alias (domain_id, local_part, active) VALUES (1, '{local_part}', true)"
        )
