from __future__ import annotations

import pytest

from controlplane.errors import PoolExhausted, ValidationError
from controlplane.services import storage
from tests.factories import KB, make_domain, make_mailbox, make_tenant

MB = 1024 * KB
GB = 1024 * MB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5GB", 5 * GB),
        ("5gb", 5 * GB),
        ("5 GB", 5 * GB),
        ("5G", 5 * GB),
        ("5GiB", 5 * GB),
        ("500 MB", 500 * MB),
        ("500M", 500 * MB),
        ("1.5gb", GB + GB // 2),
        ("2TB", 2 * 1024 * GB),
        ("64KB", 64 * KB),
        ("  64 kib ", 64 * KB),
        ("100", 100),
        ("100B", 100),
        ("0", 0),
        (1024, 1024),
        (0, 0),
    ],
)
def test_parse_size_reads_units_as_powers_of_1024(text, expected: int) -> None:
    assert storage.parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "", "GB", "-1GB", "-5", "5XB", "5BB", "5 G B K", "1,5GB", True, None]
)
def test_parse_size_refuses_what_is_not_a_size(text) -> None:
    with pytest.raises(ValidationError) as caught:
        storage.parse_size(text, field="pool")
    assert "write e.g. 5GB" in caught.value.message
    assert caught.value.field == "pool"


@pytest.mark.parametrize("text", ["nan", "inf", "infGB", "1e400"])
def test_parse_size_refuses_nan_and_infinity_with_validation_error(text: str) -> None:
    with pytest.raises(ValidationError):
        storage.parse_size(text)


def test_parse_size_refuses_negative_integers() -> None:
    with pytest.raises(ValidationError):
        storage.parse_size(-1)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (KB, "1 KB"),
        (KB + KB // 2, "1.5 KB"),
        (500 * MB, "500 MB"),
        (5 * GB, "5 GB"),
        (GB + GB // 2, "1.5 GB"),
        (3 * 1024 * GB, "3072 GB"),
    ],
)
def test_format_bytes_uses_the_largest_whole_unit(count: int, text: str) -> None:
    assert storage.format_bytes(count) == text


@pytest.mark.parametrize("text", ["5GB", "500MB", "1.5GB", "64KB"])
def test_format_bytes_and_parse_size_round_trip(text: str) -> None:
    assert storage.parse_size(storage.format_bytes(storage.parse_size(text))) == storage.parse_size(text)


def test_largest_mailbox_is_the_smaller_of_plan_and_domain(db) -> None:
    small_plan = make_domain(db, tenant=make_tenant(db, max_mailbox_bytes=30 * KB), max_mailbox_bytes=50 * KB)
    small_domain = make_domain(
        db, tenant=make_tenant(db, max_mailbox_bytes=80 * KB), max_mailbox_bytes=50 * KB
    )
    assert storage.largest_mailbox_bytes(small_plan) == 30 * KB
    assert storage.largest_mailbox_bytes(small_domain) == 50 * KB


def test_pool_usage_counts_every_domain_of_the_tenant(db) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    make_mailbox(db, domain=make_domain(db, tenant=tenant), quota=10 * KB)
    make_mailbox(db, domain=make_domain(db, tenant=tenant), quota=15 * KB)
    make_mailbox(db, domain=make_domain(db), quota=40 * KB)
    usage = storage.pool_usage(db, tenant)
    assert (usage.total_bytes, usage.allocated_bytes, usage.free_bytes) == (100 * KB, 25 * KB, 75 * KB)


def test_require_pool_allows_zero_and_negative_changes_even_when_full(db) -> None:
    tenant = make_tenant(db, pool=10 * KB)
    make_mailbox(db, domain=make_domain(db, tenant=tenant), quota=10 * KB)
    storage.require_pool(db, tenant, 0)
    storage.require_pool(db, tenant, -KB)
    with pytest.raises(PoolExhausted):
        storage.require_pool(db, tenant, 1)
