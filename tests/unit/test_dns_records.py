from __future__ import annotations

import pytest

from controlplane.dns.records import DkimRecord, expected_records
from controlplane.errors import ValidationError
from controlplane.settings import PROFILE_PORTS


def _records(**overrides):
    values = dict(
        domain="Bücher.example", brand_host="mail.bücher.example", platform_host="mail.letterhead.test",
        platform_addresses=("192.0.2.10", "2001:db8::10"), ports=PROFILE_PORTS["production"], mta_sts_id="1",
        tls_report_address="tls@x.test",
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


def _srv(records) -> dict[str, tuple[int, int, str]]:
    """SRV service -> (priority, port, target)."""
    values = {".".join(r.name.split(".")[:2]): r.value.split() for r in records if r.type == "SRV"}
    return {name: (int(v[0]), int(v[2]), v[3]) for name, v in values.items()}


def test_implicit_tls_srv_records_have_a_better_priority_than_their_starttls_twin() -> None:
    srv = _srv(_records())
    assert srv["_submissions._tcp"][0] < srv["_submission._tcp"][0], srv


def test_imap_and_pop3_with_starttls_are_announced_as_not_offered() -> None:
    # They present the platform's certificate, not the brand's: clients must use IMAPS and POP3S.
    srv = _srv(_records())
    assert srv["_imap._tcp"] == (0, 0, ".")
    assert srv["_pop3._tcp"] == (0, 0, ".")


def test_a_domain_without_a_brand_keeps_imap_and_pop3_with_starttls_on_the_platform_host() -> None:
    # The platform's own certificate is the right one there.
    srv = _srv(_records(brand_host="mail.letterhead.test"))
    assert srv["_imap._tcp"] == (10, 143, "mail.letterhead.test")
    assert srv["_pop3._tcp"] == (10, 110, "mail.letterhead.test")


def test_srv_records_name_the_configured_ports() -> None:
    development = _srv(_records(ports=PROFILE_PORTS["development"]))
    assert {name: port for name, (_, port, _) in development.items()} == {
        "_submissions._tcp": 2465, "_imaps._tcp": 2993, "_pop3s._tcp": 2995,
        "_submission._tcp": 2587, "_imap._tcp": 0, "_pop3._tcp": 0,
    }  # fmt: skip
    custom = _srv(_records(ports={**PROFILE_PORTS["production"], "imaps": 10993}))
    assert custom["_imaps._tcp"] == (0, 10993, "mail.xn--bcher-kva.example")


@pytest.mark.parametrize("bad", [{"imaps": 0}, {"imaps": 70000}, {"imaps": "993; x"}, {"pop3s": None}])
def test_a_port_that_is_no_port_never_becomes_a_record(bad) -> None:
    with pytest.raises(ValidationError):
        _records(ports={**PROFILE_PORTS["production"], **bad})


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


def test_with_a_relay_the_spf_suggestion_names_the_relay() -> None:
    by_name = [r for r in _records(relay_host="Smarthost.Example.net") if r.type == "TXT" and r.senders]
    assert [r.value for r in by_name] == ["v=spf1 a:smarthost.example.net -all"]
    assert by_name[0].senders.relay == "smarthost.example.net"
    by_address = [r for r in _records(relay_host="198.51.100.7") if r.type == "TXT" and r.senders]
    assert [r.value for r in by_address] == ["v=spf1 ip4:198.51.100.7 -all"]
    with pytest.raises(ValidationError):
        _records(relay_host="evil host;")


def test_dkim_dmarc_and_caa_records_are_planned() -> None:
    key = DkimRecord(selector="lh20261205", value="v=DKIM1; k=rsa; p=AAAA", active=True)
    planned = {r.judge: r for r in _records(dkim=(key,), caa_identity="letsencrypt.org") if r.judge}
    assert (planned["dkim"].name, planned["dkim"].value) == (
        "lh20261205._domainkey.xn--bcher-kva.example",
        "v=DKIM1; k=rsa; p=AAAA",
    )
    assert planned["dmarc"].name == "_dmarc.xn--bcher-kva.example" and planned["dmarc"].value.startswith(
        "v=DMARC1; p=none"
    )
    assert (planned["caa"].type, planned["caa"].value) == ("CAA", '0 issue "letsencrypt.org"')
    assert "caa" not in {r.judge for r in _records()}
    with pytest.raises(ValidationError):
        _records(dkim=(DkimRecord(selector="../x", value="v=DKIM1; p=A", active=True),))


def test_dmarc_reports_go_to_the_platform_which_authorises_them_in_its_own_zone() -> None:
    planned = _records(dmarc_report_address="dmarc-reports@mail.platform.test")
    (dmarc,) = [record for record in planned if record.judge == "dmarc"]
    assert dmarc.value == "v=DMARC1; p=none; rua=mailto:dmarc-reports@mail.platform.test"
    (authorisation,) = [record for record in planned if record.operator]
    assert authorisation.type == "TXT" and authorisation.value == "v=DMARC1"
    assert authorisation.name.endswith("._report._dmarc.mail.platform.test")
    assert "*._report._dmarc.mail.platform.test" in authorisation.note
    assert not [record for record in _records() if record.operator]  # no report address, no record
