"""Sieve filter rules: checked names, Dovecot's compiler as the judge of a script, scope per
address (another tenant's mailbox fails exactly like a missing one), one audit entry per call,
and reading back or deactivating a mailbox's filter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from controlplane.errors import NotFound, ValidationError
from controlplane.models import AuditEntry
from controlplane.services import scope, sieve
from tests.factories import make_domain, make_mailbox, make_tenant

JUNK = 'require "fileinto";\nif header :contains "subject" "[spam]" { fileinto "Junk"; }\n'


@pytest.mark.parametrize("name", ["", ".hidden", "../escape", "a/b", "x" * 65, "spaces here"])
def test_a_filter_name_that_could_become_a_path_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        sieve.validate_filter_name(name)
    assert refused.value.field == "name"


def test_the_compiler_judges_the_script_and_its_words_name_the_filter() -> None:
    assert sieve.compile_script(JUNK, name="junk").script == JUNK.encode()
    with pytest.raises(ValidationError) as refused:
        sieve.compile_script('if header :contains "subject" {', name="broken")
    message = str(refused.value)
    assert refused.value.field == "script" and "broken: line 1" in message and "lh-sievec" not in message
    with pytest.raises(ValidationError, match="NUL"):
        sieve.compile_script("keep;\0", name="nul")


@pytest.fixture
def world(db, settings):
    settings.mail_root.mkdir(parents=True, exist_ok=True)
    tenant, rival = make_tenant(db), make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="a.test")
    other = make_domain(db, tenant=rival, name="r.test")
    return {
        "tenant": tenant,
        "domain": domain,
        "ann": make_mailbox(db, domain=domain, local_part="ann"),
        "bob": make_mailbox(db, domain=domain, local_part="bob"),
        "rival": make_mailbox(db, domain=other, local_part="eve"),
    }


def test_a_filter_reaches_the_mailboxes_named_and_another_tenants_fails_like_a_missing_one(
    db, settings, world
) -> None:
    actor = scope.tenant_admin(world["tenant"].id, name="admin:boss")
    report = sieve.set_filter_for_addresses(
        db,
        actor,
        settings,
        ["ann@a.test", "bob@a.test", "eve@r.test", "nobody@a.test"],
        name="junk",
        script=JUNK,
    )
    assert (report.applied, report.failed) == (2, 2)
    errors = {result.address: str(result.error) for result in report.results if result.error is not None}
    assert errors["eve@r.test"].replace("eve@r.test", "X") == errors["nobody@a.test"].replace(
        "nobody@a.test", "X"
    )
    for name in ("ann", "bob"):
        active = sieve.get_active_filter(db, actor, settings, world[name])
        assert active is not None and (active.name, active.script) == ("junk", JUNK)
    assert sieve.get_active_filter(db, scope.OPERATOR, settings, world["rival"]) is None
    [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "sieve.apply")).all()
    assert entry.details["mailboxes"] == 2 and entry.tenant_id == world["tenant"].id


def test_a_domain_admin_reaches_only_their_domain_and_deactivating_stops_the_filter(
    db, settings, world
) -> None:
    ann_admin = scope.domain_admin(world["tenant"].id, world["domain"].id, name="ann@a.test")
    sieve.set_filter_for_mailbox(db, ann_admin, settings, world["bob"], name="junk", script=JUNK)
    with pytest.raises(NotFound):
        sieve.set_filter_for_mailbox(db, ann_admin, settings, world["rival"], name="junk", script=JUNK)
    with pytest.raises(NotFound):
        sieve.get_active_filter(db, ann_admin, settings, world["rival"])

    assert sieve.deactivate_filter(db, ann_admin, settings, world["bob"]) is True
    assert sieve.get_active_filter(db, ann_admin, settings, world["bob"]) is None
    assert sieve.deactivate_filter(db, ann_admin, settings, world["bob"]) is False
    [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "sieve.deactivate")).all()
    assert entry.details["filter"] == "junk"


def _users_active_script(settings, mailbox, name: str, script: str) -> Path:
    home = settings.mail_root / mailbox.storage_key
    (home / "sieve").mkdir(parents=True)
    (home / "sieve" / f"{name}.sieve").write_text(script)
    os.symlink(f"sieve/{name}.sieve", home / ".dovecot.sieve")
    return home


def test_admin_filters_written_as_the_active_script_move_once_and_users_own_stay(db, settings, world) -> None:
    """Before admin filters had a place of their own the API made them the active script; the
    first `up` after moves those its audit trail names, and nothing a user made."""
    actor = scope.tenant_admin(world["tenant"].id, name="admin:boss")
    sieve.set_filter_for_mailbox(db, actor, settings, world["bob"], name="invoices", script=JUNK)
    sieve.deactivate_filter(db, actor, settings, world["bob"])
    ann = _users_active_script(settings, world["ann"], "invoices", JUNK)
    bob = settings.mail_root / world["bob"].storage_key
    (bob / "sieve").mkdir()
    (bob / "sieve" / "holiday.sieve").write_text("keep;\n")
    os.symlink("sieve/holiday.sieve", bob / ".dovecot.sieve")
    # Another tenant's audit trail does not name "invoices": eve's own script of that name stays.
    eve = _users_active_script(settings, world["rival"], "invoices", "keep;\n")
    db.flush()
    assert sieve.move_admin_filters(db, settings) == 1
    assert sieve.get_active_filter(db, scope.OPERATOR, settings, world["ann"]) == sieve.ActiveFilter(
        "invoices", JUNK
    )
    assert not os.path.lexists(ann / ".dovecot.sieve")
    assert os.readlink(bob / ".dovecot.sieve") == "sieve/holiday.sieve"
    assert os.readlink(eve / ".dovecot.sieve") == "sieve/invoices.sieve"
    # Once: a later `up` looks no more.
    assert sieve.move_admin_filters(db, settings) == 0


def test_an_admins_filter_may_not_use_dovecots_own_extensions() -> None:
    """pipe and environment serve Letterhead's junk filing and learning: a filter feeding every
    message to the shared spam classifier would poison it for every tenant."""
    with pytest.raises(ValidationError, match="vnd.dovecot"):
        sieve.compile_script('require "vnd.dovecot.pipe";\npipe :copy "learn-ham.sh";\n', name="evil")
