"""Migration jobs: what an admin may start, what the CSV must say, and that old passwords are kept
sealed until the job is closed. The copies themselves run against real Dovecots in
tests/e2e/test_mail_migration.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import MigrationMailbox
from controlplane.services import mail_migration, scope
from controlplane.services.mail_migration import PasswordSeal
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox, make_tenant

SEAL = PasswordSeal("instance secret for tests")
OLD_PASSWORD = 'Old pässword, with "quotes" and $dollar'


def _csv(*rows: str) -> str:
    return "address,old server,old login,old password\n" + "\n".join(rows) + "\n"


def test_a_csv_is_read_whole_or_refused_with_every_problem_and_its_line() -> None:
    requests = mail_migration.parse_csv(
        _csv(
            "ann@new.test,imap.old.test,ann@old.test,secret one",
            'Bob@New.test,starttls://imap.old.test,bob," spaced "',
            "cy@new.test,imap.old.test:10993,cy,x",
        )
    )
    assert [(r.address, r.old_host, r.old_port, r.old_security) for r in requests] == [
        ("ann@new.test", "imap.old.test", 993, "imaps"),
        ("bob@new.test", "imap.old.test", 143, "starttls"),
        ("cy@new.test", "imap.old.test", 10993, "imaps"),
    ]
    assert requests[1].old_password == " spaced "
    with pytest.raises(ValidationError) as refused:
        mail_migration.parse_csv(
            _csv(
                "ann@new.test,imap.old.test,ann,pw",
                "ann@new.test,imap.old.test,ann,pw",
                "bob@new.test,http://imap.old.test,bob,pw",
                "cy@new.test,imap.old.test:99999,cy,pw",
                "dan@new.test,imap.old.test,dan",
                "eve@new.test,imap.old.test,eve,",
            )
        )
    message = str(refused.value)
    for expected in ("line 3: ann@new.test is listed twice", "line 4: Unknown connection security 'http'",
                     "line 5: The old server's port", "line 6: expected 4 fields", "line 7: the old password is missing"):  # fmt: skip
        assert expected in message
    with pytest.raises(ValidationError, match="lists no mailboxes"):
        mail_migration.parse_csv("address,old server,old login,old password\n")


def test_a_job_copies_into_the_domains_own_mailboxes_only(db: Session) -> None:
    tenant, other_tenant = make_tenant(db), make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="new.test")
    sister = make_domain(db, tenant=tenant, name="sister.test")
    foreign = make_domain(db, tenant=other_tenant, name="foreign.test")
    make_mailbox(db, domain=domain, local_part="ann")
    make_mailbox(db, domain=sister, local_part="sis")
    make_mailbox(db, domain=foreign, local_part="secret")
    request = mail_migration.single_request

    # Another tenant's mailbox and a free address are refused in the same words.
    for address in ("secret@foreign.test", "nobody@new.test", "sis@sister.test"):
        with pytest.raises(ValidationError) as refused:
            mail_migration.start_job(
                db, OPERATOR, domain, [request(address, "imap.old.test", "x", "pw")], SEAL
            )
        assert f"{address} is not a mailbox of new.test" in str(refused.value)
        assert "foreign" not in str(refused.value).replace(address, "")
    assert db.scalar(select(MigrationMailbox.id)) is None

    # A domain admin of another domain, and another tenant's admin, do not find the domain.
    for stranger in (scope.domain_admin(tenant.id, sister.id), scope.tenant_admin(other_tenant.id)):
        with pytest.raises(NotFound):
            mail_migration.start_job(
                db, stranger, domain, [request("ann@new.test", "imap.old.test", "a", "p")], SEAL
            )

    admin = scope.domain_admin(tenant.id, domain.id, name="ann@new.test")
    job = mail_migration.start_job(
        db, admin, domain, [request("ann@new.test", "imap.old.test", "a", OLD_PASSWORD)], SEAL
    )
    assert [row.state for row in job.mailboxes] == ["queued"]
    # A second job into a mailbox still being copied is refused.
    with pytest.raises(ValidationError, match="still under way"):
        mail_migration.start_job(
            db, admin, domain, [request("ann@new.test", "imap.old.test", "a", "p")], SEAL
        )
    # Only the domain's admins, its tenant's full admins and the operator see the job.
    assert mail_migration.get_job(db, scope.tenant_admin(tenant.id), job.id) is job
    for stranger in (scope.domain_admin(tenant.id, sister.id), scope.tenant_admin(other_tenant.id)):
        with pytest.raises(NotFound, match="No such migration job"):
            mail_migration.get_job(db, stranger, job.id)


def test_old_passwords_are_sealed_until_the_job_is_closed(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="new.test")
    make_mailbox(db, domain=domain, local_part="ann")
    job = mail_migration.start_job(
        db,
        OPERATOR,
        domain,
        [mail_migration.single_request("ann@new.test", "imap.old.test", "a", OLD_PASSWORD)],
        SEAL,
    )
    sealed = job.mailboxes[0].old_password_sealed
    assert sealed and OLD_PASSWORD not in sealed and "pässword" not in sealed
    assert SEAL.open(sealed) == OLD_PASSWORD
    with pytest.raises(ValidationError, match="instance secret changed"):
        PasswordSeal("another instance").open(sealed)

    claimed = mail_migration.claim_next(db, SEAL, None)
    assert claimed is not None and claimed.old_password == OLD_PASSWORD and claimed.address == "ann@new.test"
    assert mail_migration.claim_next(db, SEAL, None) is None  # taken once
    with pytest.raises(ValidationError, match="still copying"):
        mail_migration.close_job(db, OPERATOR, job)
    with pytest.raises(ValidationError, match="still copying"):
        mail_migration.run_again(db, OPERATOR, job)
    mail_migration.finish(db, claimed.row_id, copied_this_pass=3)
    db.refresh(job.mailboxes[0])
    assert (job.mailboxes[0].state, job.mailboxes[0].passes, job.mailboxes[0].messages_last_pass) == (
        "done",
        1,
        3,
    )

    mail_migration.run_again(db, OPERATOR, job)
    assert [(row.state, row.pass_kind) for row in job.mailboxes] == [("queued", "new")]
    mail_migration.close_job(db, OPERATOR, job)
    assert job.mailboxes[0].old_password_sealed is None
    assert job.mailboxes[0].state == "failed" and "Closed before it ran" in job.mailboxes[0].error
    with pytest.raises(ValidationError, match="closed"):
        mail_migration.run_again(db, OPERATOR, job)


def test_a_copy_killed_midway_goes_back_to_the_queue(db: Session) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="new.test")
    make_mailbox(db, domain=domain, local_part="ann")
    mail_migration.start_job(
        db, OPERATOR, domain, [mail_migration.single_request("ann@new.test", "imap.old.test", "a", "p")], SEAL
    )
    assert mail_migration.claim_next(db, SEAL, None) is not None
    assert mail_migration.claim_next(db, SEAL, None) is None
    assert mail_migration.recover_interrupted(db, None) == 1
    assert mail_migration.claim_next(db, SEAL, None) is not None


def test_a_copy_that_cannot_fit_says_so_before_it_starts() -> None:
    gib = 1024**3
    assert mail_migration.too_big_for_quota(gib, 0, 2 * gib) is None
    words = mail_migration.too_big_for_quota(3 * gib, gib // 2, 2 * gib)
    assert words is not None and "holds 3" in words and "raise this mailbox's storage" in words
