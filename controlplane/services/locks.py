"""One tenant's changes happen one at a time, so a limit check and the write it guards are one unit.

A check reads usage (mailboxes in a domain, storage given out of the pool, sign-ups this hour)
and a write then adds to it. Two requests that both read before either writes would both pass
(eight mailboxes where the limit is five). Every service that checks a tenant's limits first
calls `lock_tenant`, which holds a lock on the tenant's row until the transaction ends:

- PostgreSQL: `SELECT ... FOR UPDATE` on the tenant's row; under READ COMMITTED every later
  statement of the transaction sees what the previous holder committed.
- SQLite: a write to the tenant's row, which takes the database's single write lock (waiting
  for the current writer, up to the busy timeout). Reads before the first write run outside any
  transaction (the driver begins one at the first write), so what is read after this is current.

Objects loaded before the lock may hold stale values (a domain's limits, a tenant's pool): they
are expired so that the checks read them again.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane.models import Tenant


def lock_tenant(session: Session, tenant_id: int) -> None:
    """Hold the tenant's change lock until the transaction ends; call before reading usage."""
    if session.get_bind().dialect.name == "sqlite":
        # A write that changes nothing: taking SQLite's write lock is what it is for.
        session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name),
            execution_options={"synchronize_session": False},
        )
    else:
        session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    for instance in list(session.identity_map.values()):
        if instance not in session.new and not session.is_modified(instance):
            session.expire(instance)
