"""DKIM keys: made with the domain, rotated with an overlap, retired, and the files rspamd reads."""

from __future__ import annotations

import base64
import datetime as dt
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from controlplane.daemons import dkim_keys
from controlplane.errors import NotFound
from controlplane.models import DkimKey
from controlplane.services import dkim, domains, scope
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings
from tests.factories import make_domain, make_tenant

DAY = dt.datetime(2026, 12, 5, 9, tzinfo=dt.UTC)


def _selector_map(settings: Settings) -> str:
    return (settings.dkim_dir / dkim_keys.SELECTOR_MAP).read_text()


def test_a_new_domain_gets_a_key_rspamd_alone_can_read_and_signs_once_committed(
    db: Session, settings: Settings
) -> None:
    domain = make_domain(db, name="fresh.test")
    (key,) = domain.dkim_keys
    assert (key.state, key.algorithm) == ("active", "rsa-2048")
    assert key.selector == f"lh{dt.date.today():%Y%m%d}"
    path = dkim_keys.key_path(settings.dkim_dir, "fresh.test", key.selector)
    status = path.stat()
    assert stat.S_IMODE(status.st_mode) == 0o400 and path.owner() == "_rspamd"
    assert stat.S_IMODE(settings.dkim_dir.stat().st_mode) == 0o750 and settings.dkim_dir.group() == "_rspamd"
    # The private file and the public half in the database are one pair.
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64encode(public).decode() == key.public_key
    assert private.key_size == 2048
    # Not signing before the transaction commits; signing right after.
    assert "fresh.test" not in (
        _selector_map(settings) if (settings.dkim_dir / "selectors.map").exists() else ""
    )
    db.commit()
    assert f"fresh.test {key.selector}\n" in _selector_map(settings)


def test_a_rotation_signs_with_a_new_key_and_keeps_the_old_one_published_for_the_overlap(
    db: Session, settings: Settings
) -> None:
    domain = make_domain(db, name="rotating.test")
    (first,) = domain.dkim_keys
    second = dkim.rotate_key(db, OPERATOR, domain, now=DAY)
    third = dkim.rotate_key(db, OPERATOR, domain, now=DAY + dt.timedelta(hours=1))
    # Named by date, a letter added for another key the same day.
    assert second.selector.startswith("lh20261205") and third.selector.startswith("lh20261205")
    assert len({first.selector, second.selector, third.selector}) == 3
    assert third.selector[-1] in "bc"
    assert [k.state for k in dkim.published_keys(db, domain)] == ["active", "retiring", "retiring"]
    assert dkim.published_keys(db, domain)[0] is third
    db.commit()
    assert _selector_map(settings) == f"rotating.test {third.selector}\n"
    # The DNS records the domain must publish: both keys, the signing one first.
    plan = [r for r in domains_dns_plan(settings, domain) if r.judge == "dkim"]
    assert [r.name.split(".")[0] for r in plan] == [third.selector, second.selector, first.selector]
    assert "remove it after 2026-12-12" in plan[1].note


def domains_dns_plan(settings: Settings, domain):
    from controlplane.services import brand_dns

    return brand_dns.dns_plan(settings, domain)


def test_keys_past_their_overlap_retire_and_their_files_go_after_commit(
    db: Session, settings: Settings
) -> None:
    domain = make_domain(db, name="old.test")
    (first,) = domain.dkim_keys
    dkim.rotate_key(db, OPERATOR, domain, now=DAY)
    db.commit()
    old_file = dkim_keys.key_path(settings.dkim_dir, "old.test", first.selector)
    assert dkim.retire_expired_keys(db, now=DAY + dt.timedelta(days=6)) == []
    assert dkim.retire_expired_keys(db, now=DAY + dkim.OVERLAP) == [f"old.test {first.selector}"]
    assert old_file.exists()
    db.commit()
    assert not old_file.exists() and first.state == "retired"
    assert [k.state for k in dkim.published_keys(db, domain)] == ["active"]


def test_deleting_a_domain_removes_its_keys_and_its_map_line(db: Session, settings: Settings) -> None:
    domain = make_domain(db, name="gone.test")
    keep = make_domain(db, name="kept.test")
    db.commit()
    (key,) = domain.dkim_keys
    path = dkim_keys.key_path(settings.dkim_dir, "gone.test", key.selector)
    domains.delete_domain(db, OPERATOR, domain)
    db.commit()
    assert not path.exists()
    assert _selector_map(settings) == f"kept.test {keep.dkim_keys[0].selector}\n"


def test_domains_without_a_usable_key_get_one(db: Session, settings: Settings) -> None:
    lost = make_domain(db, name="lost.test")  # its key was kept nowhere: made before keys were kept here
    keyless = make_domain(db, name="keyless.test")
    db.delete(keyless.dkim_keys[0])
    lost.dkim_keys[0].private_key = None
    db.flush()
    dkim_keys.key_path(settings.dkim_dir, "lost.test", lost.dkim_keys[0].selector).unlink()
    assert sorted(dkim.ensure_keys(db)) == ["keyless.test", "lost.test"]
    db.commit()
    selectors = dkim.active_selectors(db)
    for name in ("keyless.test", "lost.test"):
        assert dkim_keys.key_path(settings.dkim_dir, name, selectors[name]).exists()
    assert dkim.ensure_keys(db) == []


def test_a_node_without_a_key_file_writes_it_from_the_database_and_signs_with_the_same_key(
    db: Session, settings: Settings
) -> None:
    domain = make_domain(db, name="shared.test")
    db.commit()
    (key,) = domain.dkim_keys
    path = dkim_keys.key_path(settings.dkim_dir, "shared.test", key.selector)
    original = path.read_bytes()
    path.unlink()  # another node's key folder: the key was made elsewhere
    assert dkim.ensure_keys(db) == []  # not replaced: every node must sign with one key
    dkim.publish(db, settings.dkim_dir)
    assert path.read_bytes() == original and path.stat().st_mode & 0o777 == 0o400
    assert _selector_map(settings) == f"shared.test {key.selector}\n"


def test_a_key_made_before_keys_were_kept_in_the_database_is_read_in(db: Session, settings: Settings) -> None:
    domain = make_domain(db, name="legacy.test")
    (key,) = domain.dkim_keys
    pem, key.private_key = key.private_key, None
    db.flush()
    assert dkim.ensure_keys(db) == []
    assert key.private_key == pem


def test_a_domain_admin_rotates_its_own_domain_only(db: Session) -> None:
    tenant = make_tenant(db)
    own = make_domain(db, tenant=tenant, name="own.test")
    other = make_domain(db, name="other.test")
    actor = scope.domain_admin(tenant.id, own.id, "postmaster@own.test")
    dkim.rotate_key(db, actor, own)
    with pytest.raises(NotFound):
        dkim.rotate_key(db, actor, other)
    assert [k.state for k in other.dkim_keys] == ["active"]


def test_key_file_names_never_leave_the_folder(settings: Settings) -> None:
    for domain, selector in (("../etc", "lh1"), ("a.test", "../x"), ("a.test/b", "lh1"), ("a..test", "lh1")):
        with pytest.raises(ValueError):
            dkim_keys.key_path(settings.dkim_dir, domain, selector)
    assert DkimKey.__tablename__ == "dkim_key"
