from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import (
    AlreadyExists,
    LimitReached,
    NotFound,
    NotInScope,
    PoolExhausted,
    ValidationError,
)
from controlplane.models import Alias, AliasDestination, AuditEntry, Mailbox
from controlplane.services import mailboxes, passwords, scope, storage
from tests.factories import KB, PASSWORD, make_alias, make_domain, make_tenant

# A real bcrypt hash (OpenWall test vector for "U*U").
BCRYPT_HASH = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def _mailbox_count(db) -> int:
    return db.scalar(select(func.count(Mailbox.id)))


def _stored_quota(db, mailbox: Mailbox) -> int:
    return db.scalar(select(Mailbox.quota_bytes).where(Mailbox.id == mailbox.id))


def _create(db, domain, actor=scope.OPERATOR, **kwargs) -> Mailbox:
    kwargs.setdefault("local_part", "john")
    kwargs.setdefault("quota_bytes", 10 * KB)
    if "password_hash" not in kwargs:
        kwargs.setdefault("password", PASSWORD)
    return mailboxes.create_mailbox(db, actor, domain=domain, **kwargs)


# --- creation -----------------------------------------------------------------------------------


def test_create_mailbox_normalizes_and_hashes(db) -> None:
    domain = make_domain(db, name="bücher.example")
    mailbox = _create(db, domain, local_part="John.Doe", display_name="  John Doe ")
    assert mailbox.address == "john.doe@xn--bcher-kva.example"
    assert mailbox.display_name == "John Doe"
    assert mailbox.password_hash.startswith("{SHA512-CRYPT}$6$")
    assert PASSWORD not in mailbox.password_hash
    assert passwords.verify_password(PASSWORD, mailbox.password_hash)
    assert mailboxes.find_mailbox(db, "JOHN.DOE@Bücher.Example") is mailbox


def test_domain_admin_creates_mailboxes_in_own_domain(db) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain, scope.domain_admin(domain.tenant_id, domain.id))
    assert mailbox.domain_id == domain.id
    assert not mailbox.is_domain_admin


@pytest.mark.parametrize("local_part", ["", "jo hn", "jo'hn", "jo%hn", "john.", "jöhn", "@"])
def test_bad_local_parts_are_refused_and_nothing_written(db, local_part: str) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError):
        _create(db, domain, local_part=local_part)
    assert _mailbox_count(db) == 0


def test_mailbox_count_limit_allows_exactly_n(db) -> None:
    domain = make_domain(db, name="three.example", max_mailboxes=3)
    for number in range(3):
        _create(db, domain, local_part=f"user{number}")
    with pytest.raises(LimitReached) as caught:
        _create(db, domain, local_part="user3")
    assert "at most 3 mailboxes" in caught.value.message
    assert "three.example" in caught.value.message
    assert _mailbox_count(db) == 3


def test_domain_with_zero_mailbox_limit_refuses_the_first_mailbox(db) -> None:
    domain = make_domain(db, max_mailboxes=0)
    with pytest.raises(LimitReached):
        _create(db, domain)
    assert _mailbox_count(db) == 0


def test_mailbox_limit_is_per_domain(db) -> None:
    tenant = make_tenant(db)
    full = make_domain(db, tenant=tenant, max_mailboxes=1)
    other = make_domain(db, tenant=tenant, max_mailboxes=1)
    _create(db, full)
    assert _create(db, other).domain_id == other.id


def test_mailbox_size_minimum_is_accepted_and_one_byte_less_refused(db) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, local_part="small", quota_bytes=KB - 1)
    assert "at least 1 KB" in caught.value.message
    assert _mailbox_count(db) == 0
    assert _create(db, domain, local_part="small", quota_bytes=KB).quota_bytes == KB


def test_mailbox_size_is_capped_by_the_domain_when_smaller_than_the_plan(db) -> None:
    domain = make_domain(db, tenant=make_tenant(db, max_mailbox_bytes=200 * KB), max_mailbox_bytes=50 * KB)
    with pytest.raises(LimitReached) as caught:
        _create(db, domain, local_part="big", quota_bytes=50 * KB + 1)
    assert "at most 50 KB" in caught.value.message
    assert _mailbox_count(db) == 0
    assert _create(db, domain, local_part="big", quota_bytes=50 * KB).quota_bytes == 50 * KB


def test_mailbox_size_is_capped_by_the_plan_when_smaller_than_the_domain(db) -> None:
    domain = make_domain(db, tenant=make_tenant(db, max_mailbox_bytes=30 * KB), max_mailbox_bytes=100 * KB)
    with pytest.raises(LimitReached) as caught:
        _create(db, domain, local_part="big", quota_bytes=30 * KB + 1)
    assert "at most 30 KB" in caught.value.message
    assert _mailbox_count(db) == 0
    assert _create(db, domain, local_part="big", quota_bytes=30 * KB).quota_bytes == 30 * KB


@pytest.mark.parametrize("quota", [True, 10.0 * KB, "10KB", None, 0, -KB])
def test_non_integer_or_non_positive_sizes_are_refused(db, quota) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError):
        _create(db, domain, quota_bytes=quota)
    assert _mailbox_count(db) == 0


def test_pool_may_be_filled_exactly_but_not_by_one_byte_more(db) -> None:
    tenant = make_tenant(db, pool=30 * KB)
    domain = make_domain(db, tenant=tenant)
    _create(db, domain, local_part="a", quota_bytes=10 * KB)
    with pytest.raises(PoolExhausted) as caught:
        _create(db, domain, local_part="b", quota_bytes=20 * KB + 1)
    assert "20 KB free of 30 KB" in caught.value.message
    assert _mailbox_count(db) == 1
    _create(db, domain, local_part="b", quota_bytes=20 * KB)
    assert storage.pool_usage(db, tenant) == storage.PoolUsage(total_bytes=30 * KB, allocated_bytes=30 * KB)
    with pytest.raises(PoolExhausted):
        _create(db, domain, local_part="c", quota_bytes=KB)
    assert _mailbox_count(db) == 2


def test_pool_is_shared_by_all_domains_of_a_tenant_only(db) -> None:
    tenant = make_tenant(db, pool=20 * KB)
    first, second = make_domain(db, tenant=tenant), make_domain(db, tenant=tenant)
    unrelated = make_domain(db, tenant=make_tenant(db, pool=100 * KB))
    _create(db, unrelated, quota_bytes=90 * KB)
    _create(db, first, quota_bytes=15 * KB)
    with pytest.raises(PoolExhausted):
        _create(db, second, quota_bytes=5 * KB + 1)
    assert _create(db, second, quota_bytes=5 * KB).quota_bytes == 5 * KB


def test_tenant_with_empty_pool_gets_no_mailbox(db) -> None:
    with pytest.raises(PoolExhausted):
        _create(db, make_domain(db, tenant=make_tenant(db, pool=0)), quota_bytes=KB)
    assert _mailbox_count(db) == 0


def test_deleting_a_mailbox_frees_its_storage_in_the_pool(db) -> None:
    tenant = make_tenant(db, pool=20 * KB)
    domain = make_domain(db, tenant=tenant)
    first = _create(db, domain, local_part="a", quota_bytes=20 * KB)
    with pytest.raises(PoolExhausted):
        _create(db, domain, local_part="b", quota_bytes=20 * KB)
    mailboxes.delete_mailbox(db, scope.OPERATOR, first)
    assert storage.allocated_bytes(db, tenant) == 0
    assert _create(db, domain, local_part="b", quota_bytes=20 * KB).quota_bytes == 20 * KB


# --- many at once -------------------------------------------------------------------------------


def _new(local_part: str, quota_bytes: int = 10 * KB, **kwargs) -> mailboxes.NewMailbox:
    if "password_hash" not in kwargs:
        kwargs.setdefault("password", PASSWORD)
    return mailboxes.NewMailbox(local_part=local_part, quota_bytes=quota_bytes, **kwargs)


def _creations(db) -> list[str]:
    return list(db.scalars(select(AuditEntry.target).where(AuditEntry.action == "mailbox.create")))


def test_create_mailboxes_refuses_each_bad_item_alone_and_reports_every_item_in_order(db) -> None:
    domain = make_domain(db, name="many.example", max_mailbox_bytes=50 * KB)
    make_alias(db, domain=domain, local_part="sales", destinations=["someone@elsewhere.example"])
    hashed = passwords.hash_password("imported password")
    outcomes = mailboxes.create_mailboxes(
        db, scope.OPERATOR, domain=domain,
        requested=[
            _new("Anna", display_name=" Anna "), _new("jo hn"), _new("bob", password_hash=hashed),
            _new("anna"), _new("sales"), _new("big", quota_bytes=50 * KB + 1), _new("short", password="short"),
            _new("both", password_hash=hashed, password=PASSWORD), _new("carl"),
        ],
    )  # fmt: skip
    kinds = [type(outcome).__name__ for outcome in outcomes]
    assert kinds == [
        "Mailbox", "ValidationError", "Mailbox", "AlreadyExists", "AlreadyExists", "LimitReached",
        "ValidationError", "ValidationError", "Mailbox",
    ]  # fmt: skip
    anna, bob, carl = outcomes[0], outcomes[2], outcomes[8]
    assert (anna.address, anna.display_name) == ("anna@many.example", "Anna")
    assert passwords.verify_password(PASSWORD, anna.password_hash)
    assert bob.password_hash == hashed
    assert "taken by a mailbox" in outcomes[3].message
    assert "taken by an alias" in outcomes[4].message
    assert outcomes[6].field == "password"
    assert _mailbox_count(db) == 3
    assert sorted(_creations(db)) == [anna.address, bob.address, carl.address]
    assert mailboxes.find_mailbox(db, "carl@many.example") is carl


def test_create_mailboxes_counts_the_domain_limit_down_within_one_batch(db) -> None:
    domain = make_domain(db, max_mailboxes=3)
    _create(db, domain, local_part="first")
    outcomes = mailboxes.create_mailboxes(
        db, scope.OPERATOR, domain=domain, requested=[_new(f"user{n}") for n in range(4)]
    )
    assert [isinstance(outcome, Mailbox) for outcome in outcomes] == [True, True, False, False]
    assert isinstance(outcomes[2], LimitReached)
    assert "at most 3 mailboxes" in outcomes[2].message
    assert _mailbox_count(db) == 3


def test_create_mailboxes_counts_the_pool_down_and_a_smaller_mailbox_still_fits(db) -> None:
    tenant = make_tenant(db, pool=25 * KB)
    domain = make_domain(db, tenant=tenant)
    outcomes = mailboxes.create_mailboxes(
        db, scope.OPERATOR, domain=domain,
        requested=[_new("a"), _new("b"), _new("c"), _new("d", quota_bytes=5 * KB)],
    )  # fmt: skip
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "Mailbox",
        "Mailbox",
        "PoolExhausted",
        "Mailbox",
    ]
    assert "5 KB free of 25 KB" in outcomes[2].message
    assert storage.pool_usage(db, tenant) == storage.PoolUsage(total_bytes=25 * KB, allocated_bytes=25 * KB)


def test_create_mailboxes_hashes_many_plain_passwords_each_for_its_own_mailbox(db) -> None:
    count = passwords.PARALLEL_FROM + 4
    domain = make_domain(db, tenant=make_tenant(db, pool=count * KB), max_mailboxes=count)
    outcomes = mailboxes.create_mailboxes(
        db, scope.OPERATOR, domain=domain,
        requested=[_new(f"user{n}", quota_bytes=KB, password=f"password of user {n}") for n in range(count)],
    )  # fmt: skip
    for number, mailbox in enumerate(outcomes):
        assert mailbox.local_part == f"user{number}"
        assert passwords.verify_password(f"password of user {number}", mailbox.password_hash)
    assert len(_creations(db)) == count


def test_create_mailboxes_lets_only_full_admins_grant_the_domain_admin_role(db) -> None:
    domain = make_domain(db)
    outcomes = mailboxes.create_mailboxes(
        db, scope.domain_admin(domain.tenant_id, domain.id), domain=domain,
        requested=[_new("boss", is_domain_admin=True), _new("staff")],
    )  # fmt: skip
    assert isinstance(outcomes[0], ValidationError)
    assert outcomes[0].field == "is_domain_admin"
    assert isinstance(outcomes[1], Mailbox) and not outcomes[1].is_domain_admin


def test_create_mailboxes_is_not_for_sign_up_actors(db) -> None:
    domain = make_domain(db)
    with pytest.raises(NotFound):
        mailboxes.create_mailboxes(
            db, scope.signup(domain.tenant_id, domain.id), domain=domain, requested=[_new("new")]
        )
    assert _mailbox_count(db) == 0


def test_create_mailboxes_outside_the_actors_tenant_finds_no_domain(db) -> None:
    domain = make_domain(db)
    other = make_tenant(db)
    with pytest.raises(NotFound):
        mailboxes.create_mailboxes(db, scope.tenant_admin(other.id), domain=domain, requested=[_new("new")])
    assert _mailbox_count(db) == 0


# --- quota changes ------------------------------------------------------------------------------


def test_raising_a_quota_within_the_pool_succeeds_up_to_the_last_byte(db) -> None:
    tenant = make_tenant(db, pool=30 * KB)
    domain = make_domain(db, tenant=tenant)
    _create(db, domain, local_part="a", quota_bytes=10 * KB)
    mailbox = _create(db, domain, local_part="b", quota_bytes=10 * KB)
    with pytest.raises(PoolExhausted):
        mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 20 * KB + 1)
    assert _stored_quota(db, mailbox) == 10 * KB
    mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 20 * KB)
    assert _stored_quota(db, mailbox) == 20 * KB


def test_lowering_a_quota_in_a_full_pool_succeeds(db) -> None:
    tenant = make_tenant(db, pool=20 * KB)
    mailbox = _create(db, make_domain(db, tenant=tenant), quota_bytes=20 * KB)
    mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 5 * KB)
    assert _stored_quota(db, mailbox) == 5 * KB
    mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 5 * KB)
    assert _stored_quota(db, mailbox) == 5 * KB


def test_lowering_a_quota_still_respects_the_minimum_and_raising_the_maximum(db) -> None:
    mailbox = _create(db, make_domain(db, max_mailbox_bytes=50 * KB), quota_bytes=10 * KB)
    with pytest.raises(ValidationError):
        mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, KB - 1)
    with pytest.raises(LimitReached):
        mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 50 * KB + 1)
    assert _stored_quota(db, mailbox) == 10 * KB
    mailboxes.set_mailbox_quota(db, scope.OPERATOR, mailbox, 50 * KB)
    assert _stored_quota(db, mailbox) == 50 * KB


# --- uniqueness ---------------------------------------------------------------------------------


def test_address_taken_by_a_mailbox_already_exists_in_any_case(db) -> None:
    domain = make_domain(db)
    _create(db, domain, local_part="john")
    with pytest.raises(AlreadyExists) as caught:
        _create(db, domain, local_part="JOHN")
    assert "taken by a mailbox" in caught.value.message
    assert _mailbox_count(db) == 1


def test_address_taken_by_an_alias_already_exists(db) -> None:
    domain = make_domain(db)
    make_alias(db, domain=domain, local_part="info", destinations=["someone@elsewhere.example"])
    with pytest.raises(AlreadyExists) as caught:
        _create(db, domain, local_part="info")
    assert "alias" in caught.value.message
    assert _mailbox_count(db) == 0


def test_same_local_part_in_another_domain_is_fine(db) -> None:
    _create(db, make_domain(db), local_part="john")
    _create(db, make_domain(db), local_part="john")
    assert _mailbox_count(db) == 2


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("", "at least 8"),
        ("short12", "at least 8"),
        ("x" * 257, "at most 256"),
        ("long enough\x00", "NUL"),
        ("long enough\n", "line breaks"),
        ("long\renough", "line breaks"),
    ],
)
def test_bad_passwords_are_refused_and_nothing_written(db, password: str, words: str) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, password=password)
    assert words in caught.value.message
    assert _mailbox_count(db) == 0


def test_password_of_exactly_8_and_256_characters_is_accepted(db) -> None:
    domain = make_domain(db)
    assert passwords.verify_password(
        "x" * 8, _create(db, domain, local_part="a", password="x" * 8).password_hash
    )
    _create(db, domain, local_part="b", password="y" * 256)
    assert _mailbox_count(db) == 2


def test_password_and_hash_together_or_neither_are_refused(db) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError):
        _create(db, domain, password=PASSWORD, password_hash=passwords.hash_password(PASSWORD))
    with pytest.raises(ValidationError):
        mailboxes.create_mailbox(db, scope.OPERATOR, domain=domain, local_part="x", quota_bytes=KB)
    assert _mailbox_count(db) == 0


def test_pre_hashed_sha512_crypt_password_is_stored_as_given(db) -> None:
    hashed = passwords.hash_password("imported secret")
    mailbox = _create(db, make_domain(db), password_hash=hashed)
    assert mailbox.password_hash == hashed
    assert passwords.verify_password("imported secret", mailbox.password_hash)


def test_pre_hashed_bcrypt_password_is_accepted(db) -> None:
    mailbox = _create(db, make_domain(db), password_hash="{BLF-CRYPT}" + BCRYPT_HASH)
    assert mailbox.password_hash == "{BLF-CRYPT}" + BCRYPT_HASH


@pytest.mark.parametrize(
    ("password_hash", "words"),
    [
        ("", "must start with its scheme"),
        ("$6$rounds=5000$salt$hash", "must start with its scheme"),
        ("{SHA512-CRYPT}garbage", "not a valid SHA512-CRYPT hash"),
        ("{SHA512-CRYPT}", "not a valid SHA512-CRYPT hash"),
        ("{SHA512-CRYPT}$6$salt$has h", "not a valid SHA512-CRYPT hash"),
        ("{SHA512-CRYPT}$6$salt$hash'", "not a valid SHA512-CRYPT hash"),
        ("{BLF-CRYPT}$6$salt$hash", "not a valid BLF-CRYPT hash"),
        ("{PLAIN}secret", "Unsupported password scheme 'PLAIN'"),
        ("{MD5-CRYPT}$1$salt$hash", "Unsupported password scheme"),
    ],
)
def test_bad_pre_hashed_passwords_are_refused(db, password_hash: str, words: str) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, password_hash=password_hash)
    assert words in caught.value.message
    assert _mailbox_count(db) == 0


def test_truncated_sha512_crypt_hash_is_refused(db) -> None:
    with pytest.raises(ValidationError):
        _create(db, make_domain(db), password_hash="{SHA512-CRYPT}$6$x")


def test_set_mailbox_password_replaces_the_hash(db) -> None:
    mailbox = _create(db, make_domain(db))
    mailboxes.set_mailbox_password(db, scope.OPERATOR, mailbox, password="brand new secret")
    stored = db.scalar(select(Mailbox.password_hash).where(Mailbox.id == mailbox.id))
    assert passwords.verify_password("brand new secret", stored)
    assert not passwords.verify_password(PASSWORD, stored)


def test_set_mailbox_password_refuses_bad_passwords_and_keeps_the_old_one(db) -> None:
    mailbox = _create(db, make_domain(db))
    for kwargs in ({"password": "short"}, {"password_hash": "{PLAIN}x"}, {}):
        with pytest.raises(ValidationError):
            mailboxes.set_mailbox_password(db, scope.OPERATOR, mailbox, **kwargs)
    stored = db.scalar(select(Mailbox.password_hash).where(Mailbox.id == mailbox.id))
    assert passwords.verify_password(PASSWORD, stored)


# --- roles and scope ----------------------------------------------------------------------------


def test_domain_admin_cannot_create_a_domain_admin(db) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, scope.domain_admin(domain.tenant_id, domain.id), is_domain_admin=True)
    assert caught.value.field == "is_domain_admin"
    assert _mailbox_count(db) == 0


def test_domain_admin_cannot_grant_the_domain_admin_role(db) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain)
    with pytest.raises(NotInScope):
        mailboxes.set_domain_admin(db, scope.domain_admin(domain.tenant_id, domain.id), mailbox, True)
    assert db.scalar(select(Mailbox.is_domain_admin).where(Mailbox.id == mailbox.id)) is False


def test_tenant_admin_grants_and_revokes_the_domain_admin_role(db) -> None:
    domain = make_domain(db)
    actor = scope.tenant_admin(domain.tenant_id)
    mailbox = _create(db, domain, actor, is_domain_admin=True)
    assert mailbox.is_domain_admin
    mailboxes.set_domain_admin(db, actor, mailbox, False)
    assert db.scalar(select(Mailbox.is_domain_admin).where(Mailbox.id == mailbox.id)) is False


@pytest.mark.parametrize("intruder_kind", ["domain_admin_of_sibling_domain", "other_tenant_admin"])
def test_outsiders_cannot_touch_a_mailbox(db, intruder_kind: str) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain, local_part="victim", quota_bytes=10 * KB, display_name="Victim")
    if intruder_kind == "domain_admin_of_sibling_domain":
        sibling = make_domain(db, tenant=domain.tenant)
        intruder = scope.domain_admin(domain.tenant_id, sibling.id)
    else:
        intruder = scope.tenant_admin(make_tenant(db).id)
    with pytest.raises(NotFound):
        mailboxes.get_mailbox(db, intruder, mailbox.address)
    with pytest.raises(NotFound):
        mailboxes.update_mailbox(db, intruder, mailbox, display_name="Pwned", local_part="pwned")
    with pytest.raises(NotFound):
        mailboxes.set_mailbox_quota(db, intruder, mailbox, 20 * KB)
    with pytest.raises(NotFound):
        mailboxes.set_mailbox_password(db, intruder, mailbox, password="attacker secret")
    with pytest.raises(NotFound):
        mailboxes.list_mailboxes(db, intruder, domain)
    with pytest.raises(NotFound):
        _create(db, domain, intruder, local_part="planted")
    with pytest.raises(NotFound):
        mailboxes.delete_mailbox(db, intruder, mailbox)
    row = db.execute(
        select(Mailbox.local_part, Mailbox.display_name, Mailbox.quota_bytes, Mailbox.password_hash).where(
            Mailbox.id == mailbox.id
        )
    ).one()
    assert row[:3] == ("victim", "Victim", 10 * KB)
    assert passwords.verify_password(PASSWORD, row[3])
    assert _mailbox_count(db) == 1


def test_get_mailbox_of_unknown_or_malformed_address_is_not_found(db) -> None:
    domain = make_domain(db)
    for address in (f"nobody@{domain.name}", "not an address", "a@b@c"):
        with pytest.raises(NotFound):
            mailboxes.get_mailbox(db, scope.OPERATOR, address)


def test_mailbox_search_finds_local_parts_by_their_start_literally(db) -> None:
    domain = make_domain(db)
    for local_part in ("anna", "anna.k", "bob", "hannah", "a_b", "axb"):
        _create(db, domain, local_part=local_part, quota_bytes=KB)

    def names(**kwargs) -> list[str]:
        return [m.local_part for m in mailboxes.list_mailboxes(db, scope.OPERATOR, domain, **kwargs)]

    assert names() == ["a_b", "anna", "anna.k", "axb", "bob", "hannah"]
    # A prefix search (it reads only the matching rows of the index): "ann" is not in the middle of hannah.
    assert names(search=" ANN ") == ["anna", "anna.k"]
    assert names(search="anna.") == ["anna.k"]
    assert names(search="a_") == ["a_b"]
    assert names(search="_") == []
    assert names(search="%") == []
    # A whole address pasted in the box searches by its local part.
    assert names(search=f"Anna@{domain.name}") == ["anna", "anna.k"]
    assert names(offset=1, limit=2) == ["anna", "anna.k"]
    assert mailboxes.count_mailboxes(db, domain) == 6
    page, total = mailboxes.page_of_mailboxes(db, scope.OPERATOR, domain, search="a", limit=2)
    assert ([m.local_part for m in page], total) == (["a_b", "anna"], 4)
    assert mailboxes.page_of_mailboxes(db, scope.OPERATOR, domain, limit=1)[1] == 6


# --- renaming and deleting ----------------------------------------------------------------------


def test_renaming_a_mailbox_keeps_its_id_and_storage(db) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain, local_part="bob")
    mailbox_id, storage_key = mailbox.id, mailbox.storage_key
    mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, local_part="Robert")
    renamed = mailboxes.find_mailbox(db, f"robert@{domain.name}")
    assert renamed is not None
    assert (renamed.id, renamed.storage_key) == (mailbox_id, storage_key)
    assert mailboxes.find_mailbox(db, f"bob@{domain.name}") is None
    assert _mailbox_count(db) == 1


def test_renaming_to_the_same_name_in_another_case_is_a_no_op(db) -> None:
    mailbox = _create(db, make_domain(db), local_part="bob")
    mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, local_part="BOB")
    assert mailbox.local_part == "bob"


@pytest.mark.parametrize("taken_by", ["mailbox", "alias"])
def test_renaming_to_a_taken_name_is_refused(db, taken_by: str) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain, local_part="bob")
    if taken_by == "mailbox":
        _create(db, domain, local_part="carol")
    else:
        make_alias(db, domain=domain, local_part="carol", destinations=["x@elsewhere.example"])
    with pytest.raises(AlreadyExists):
        mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, local_part="carol")
    assert db.scalar(select(Mailbox.local_part).where(Mailbox.id == mailbox.id)) == "bob"


def test_renaming_to_an_invalid_name_is_refused(db) -> None:
    mailbox = _create(db, make_domain(db), local_part="bob")
    with pytest.raises(ValidationError):
        mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, local_part="bo b")
    assert db.scalar(select(Mailbox.local_part).where(Mailbox.id == mailbox.id)) == "bob"


def test_renaming_a_mailbox_updates_aliases_that_forward_to_it(db) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain, local_part="bob")
    alias = make_alias(db, domain=domain, local_part="team", destinations=[f"bob@{domain.name}"])
    mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, local_part="robert")
    db.expire(alias)
    assert alias.destination_addresses == [f"robert@{domain.name}"]


def test_update_mailbox_changes_display_name_and_active(db) -> None:
    mailbox = _create(db, make_domain(db))
    mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, display_name=" New Name ", active=False)
    assert db.execute(select(Mailbox.display_name, Mailbox.active).where(Mailbox.id == mailbox.id)).one() == (
        "New Name",
        False,
    )


def test_deleting_a_mailbox_removes_it_from_aliases_and_deletes_aliases_left_empty(db) -> None:
    domain = make_domain(db)
    bob = _create(db, domain, local_part="bob")
    _create(db, domain, local_part="carol")
    make_alias(db, domain=domain, local_part="only-bob", destinations=[f"bob@{domain.name}"])
    make_alias(db, domain=domain, local_part="also-bob", destinations=[f"bob@{domain.name}"])
    make_alias(
        db, domain=domain, local_part="both", destinations=[f"bob@{domain.name}", f"carol@{domain.name}"]
    )
    make_alias(
        db, domain=make_domain(db, tenant=domain.tenant), local_part="sibling",
        destinations=[f"bob@{domain.name}", "x@y.example"],
    )  # fmt: skip
    mailboxes.delete_mailbox(db, scope.OPERATOR, bob)
    assert _mailbox_count(db) == 1
    remaining = db.execute(
        select(Alias.local_part, AliasDestination.address)
        .join(AliasDestination, AliasDestination.alias_id == Alias.id)
        .order_by(Alias.local_part, AliasDestination.address)
    ).all()
    assert [tuple(row) for row in remaining] == [("both", f"carol@{domain.name}"), ("sibling", "x@y.example")]
    assert db.scalar(select(func.count(Alias.id))) == 2
    trail = db.execute(
        select(AuditEntry.action, AuditEntry.target)
        .where(AuditEntry.action.in_(["alias.delete", "alias.destinations"]))
        .order_by(AuditEntry.id)
    ).all()
    assert sorted(tuple(row) for row in trail) == sorted(
        [
            ("alias.delete", f"only-bob@{domain.name}"),
            ("alias.delete", f"also-bob@{domain.name}"),
            ("alias.destinations", f"both@{domain.name}"),
            ("alias.destinations", trail_target_of_sibling(db)),
        ]
    )


def trail_target_of_sibling(db) -> str:
    return db.scalar(select(Alias).where(Alias.local_part == "sibling")).address


def test_deleting_a_mailbox_never_changes_another_tenants_alias_pointing_at_it(db) -> None:
    domain = make_domain(db)
    bob = _create(db, domain, local_part="bob")
    other_tenant_domain = make_domain(db)
    theirs = make_alias(
        db, domain=other_tenant_domain, local_part="to-bob", destinations=[f"bob@{domain.name}"]
    )
    trail_before = db.scalar(
        select(func.count(AuditEntry.id)).where(AuditEntry.tenant_id == other_tenant_domain.tenant_id)
    )
    mailboxes.delete_mailbox(db, scope.OPERATOR, bob)
    db.expire_all()
    assert [d.address for d in db.get(Alias, theirs.id).destinations] == [f"bob@{domain.name}"]
    assert (
        db.scalar(
            select(func.count(AuditEntry.id)).where(AuditEntry.tenant_id == other_tenant_domain.tenant_id)
        )
        == trail_before
    )


def test_renaming_a_mailbox_never_changes_another_tenants_alias_pointing_at_it(db) -> None:
    domain = make_domain(db)
    bob = _create(db, domain, local_part="bob")
    mine = make_alias(db, domain=domain, local_part="mine", destinations=[f"bob@{domain.name}"])
    theirs = make_alias(db, domain=make_domain(db), local_part="to-bob", destinations=[f"bob@{domain.name}"])
    mailboxes.update_mailbox(db, scope.OPERATOR, bob, local_part="robert")
    db.expire_all()
    assert [d.address for d in db.get(Alias, mine.id).destinations] == [f"robert@{domain.name}"]
    assert [d.address for d in db.get(Alias, theirs.id).destinations] == [f"bob@{domain.name}"]


def test_deleting_a_mailbox_leaves_no_alias_forwarding_to_a_deleted_alias(db) -> None:
    domain = make_domain(db)
    bob = _create(db, domain, local_part="bob")
    _create(db, domain, local_part="carol")
    make_alias(db, domain=domain, local_part="team", destinations=[f"bob@{domain.name}"])
    make_alias(
        db, domain=domain, local_part="all", destinations=[f"team@{domain.name}", f"carol@{domain.name}"]
    )
    mailboxes.delete_mailbox(db, scope.OPERATOR, bob)
    destinations = db.scalars(select(AliasDestination.address)).all()
    assert destinations == [f"carol@{domain.name}"]


def test_domain_admin_deletes_a_mailbox_in_own_domain(db) -> None:
    domain = make_domain(db)
    mailbox = _create(db, domain)
    mailboxes.delete_mailbox(db, scope.domain_admin(domain.tenant_id, domain.id), mailbox)
    assert _mailbox_count(db) == 0
