"""Warnings per tenant (certificates, DNS, pool) and the log follower's lag, at their edges."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from controlplane.errors import NotFound
from controlplane.models import Brand, LogCheckpoint
from controlplane.services import monitoring, scope
from tests.factories import make_domain, make_mailbox, make_tenant

KB = 1024
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _brand(db, tenant, hostname: str, **fields) -> Brand:
    brand = Brand(tenant=tenant, hostname=hostname, name=hostname, **fields)
    db.add(brand)
    db.flush()
    return brand


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cert_not_after": NOW + dt.timedelta(days=30)}, None),
        ({"cert_not_after": NOW + dt.timedelta(days=13)}, "expires on 2026-12-19"),
        ({"cert_not_after": NOW - dt.timedelta(hours=1)}, "expired on 2026-12-06"),
        (
            {"cert_status": "failed", "cert_error": "DNS points elsewhere"},
            "could be obtained for mail.certs.test: DNS points elsewhere",
        ),
    ],
)
def test_certificate_warnings(db, fields, expected) -> None:
    tenant = make_tenant(db, name="Certs")
    _brand(db, tenant, "mail.certs.test", **fields)
    messages = [w.message for w in monitoring.tenant_warnings(db, scope.OPERATOR, tenant, NOW)]
    if expected is None:
        assert messages == []
    else:
        assert len(messages) == 1 and expected in messages[0]


def test_dns_warnings_name_only_failing_records(db) -> None:
    tenant = make_tenant(db, name="Dns")
    checks = [
        {
            "name": "dns.test",
            "type": "MX",
            "expected": "10 mail.dns.test.",
            "state": "ok",
            "found": [],
            "note": "",
        },
        {
            "name": "dns.test",
            "type": "TXT",
            "expected": "v=spf1 mx -all",
            "state": "missing",
            "found": [],
            "note": "",
        },
        {
            "name": "_dmarc.dns.test",
            "type": "TXT",
            "expected": "v=DMARC1",
            "state": "unchecked",
            "found": [],
            "note": "",
        },
        {  # the platform operator's record: missing, but not the tenant's to fix
            "name": "dns.test._report._dmarc.platform.test",
            "type": "TXT",
            "expected": "v=DMARC1",
            "state": "missing",
            "found": [],
            "note": "",
            "operator": True,
        },
    ]
    brand = _brand(
        db,
        tenant,
        "mail.dns.test",
        dns_report=json.dumps({"dns.test": {"checked_at": NOW.isoformat(), "checks": checks}}),
    )
    make_domain(db, tenant=tenant, name="dns.test").brand = brand
    db.flush()
    db.expire(brand)
    [warning] = monitoring.tenant_warnings(db, scope.OPERATOR, tenant, NOW)
    assert warning.kind == "dns" and warning.message.endswith(": TXT dns.test.")


def test_a_nearly_full_pool_is_a_warning_and_others_tenants_are_not_seen(db) -> None:
    full, other = make_tenant(db, name="Full", pool=1000 * KB), make_tenant(db, name="Other", pool=1000 * KB)
    domain = make_domain(db, tenant=full, name="full.test", max_mailbox_bytes=1000 * KB)
    make_mailbox(db, domain=domain, local_part="ann", quota=900 * KB)
    _brand(db, other, "mail.other.test", cert_status="failed", cert_error="secret")
    warnings = monitoring.tenant_warnings(db, scope.OPERATOR, full, NOW)
    assert [w.kind for w in warnings] == ["pool"] and "90% given out" in warnings[0].message
    assert {w.about for w in monitoring.all_warnings(db, NOW)} == {"Full", "mail.other.test"}
    with pytest.raises(NotFound):  # as if it did not exist
        monitoring.tenant_warnings(db, scope.tenant_admin(full.id), other, NOW)
    assert monitoring.tenant_warnings(db, scope.tenant_admin(full.id), full, NOW) == warnings


def test_follower_lag_is_unread_bytes_and_the_time_since_the_last_complete_read(db) -> None:
    db.add(LogCheckpoint(path="/log/postfix.log", device=1, inode=10, offset=800, head="", updated_at=NOW))
    db.add(LogCheckpoint(path="/log/dovecot.log", device=1, inode=11, offset=500, head="", updated_at=NOW))
    db.flush()
    files = [monitoring.LogFile(1, 10, 1000), monitoring.LogFile(1, 11, 500), monitoring.LogFile(1, 12, 40)]
    last_read = NOW - dt.timedelta(seconds=90)
    # The third file has no checkpoint yet (rotated in): all of it is unread.
    assert monitoring.follower_lag(db, files, last_read, NOW) == monitoring.FollowerLag(240, 90.0)
    assert monitoring.follower_lag(db, files, None, NOW) == monitoring.FollowerLag(240, None)
    # Nothing left to read: no lag, however long ago the last read (a quiet night).
    assert monitoring.follower_lag(db, files[1:2], last_read, NOW) == monitoring.FollowerLag(0, 0.0)


def test_dns_warnings_are_for_the_brands_domains_as_they_are_now(db) -> None:
    tenant = make_tenant(db, name="Moved")
    checks = [
        {"name": "gone.test", "type": "MX", "expected": "10 x.", "state": "wrong", "found": [], "note": ""}
    ]
    _brand(
        db,
        tenant,
        "mail.moved.test",
        dns_report=json.dumps({"gone.test": {"checked_at": NOW.isoformat(), "checks": checks}}),
    )
    assert monitoring.tenant_warnings(db, scope.OPERATOR, tenant, NOW) == []
