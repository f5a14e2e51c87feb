from __future__ import annotations

import pytest

from controlplane.dns.records import expected_records
from controlplane.services.errors import ValidationError


def _records(**overrides):
    values = dict(
        domain="Bücher.example", brand_host="mail.bücher.example", platform_host="mail.letterhead.test",
        platform_addresses=("192.0.2.10", "2001:db8::10"), mta_sts_id="1", tls_report_address="tls@x.test",
    )  # fmt: skip
    return expected_records(**{**values, **overrides})


def test_records_name_the_branded_host_in_ascii_with_implicit_tls_first() -> None:
    records = _records()
    assert [(r.name, r.type) for r in records[:2]] == [
        ("mail.xn--bcher-kva.example", "A"), ("mail.xn--bcher-kva.example", "AAAA"),
    ]  # fmt: skip
    assert records[0].accepted == (("CNAME", "mail.letterhead.test"),)
    mx = next(r for r in records if r.type == "MX")
    assert (mx.name, mx.value) == ("xn--bcher-kva.example", "10 mail.xn--bcher-kva.example")
    srv = [r for r in records if r.type == "SRV"]
    assert srv[0].name.startswith("_submissions._tcp.") and srv[0].value.split()[2] == "465"
    assert {"autoconfig", "autodiscover", "mta-sts", "_mta-sts", "_smtp"} <= {
        r.name.split(".")[0] for r in records
    }


@pytest.mark.parametrize("field", ["domain", "brand_host", "platform_host"])
@pytest.mark.parametrize("bad", ["has space.example", "evil.example\n", 'quote".example', "x" * 300])
def test_hostile_names_never_become_records(field: str, bad: str) -> None:
    with pytest.raises(ValidationError):
        _records(**{field: bad})


@pytest.mark.parametrize(
    "overrides",
    [{"platform_addresses": ("192.0.2.1; rm",)}, {"tls_report_address": "no at sign"}, {"mta_sts_id": "a;b"}],
)
def test_addresses_and_ids_are_checked_too(overrides) -> None:
    with pytest.raises(ValidationError):
        _records(**overrides)
