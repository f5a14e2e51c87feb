"""DNS checks of branded access against a real DNS server (dnsmasq) on loopback."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import dns.resolver
import pytest

from controlplane.dns.checks import check_records, make_resolver
from controlplane.dns.records import DkimRecord, expected_records
from controlplane.runners.scratch import free_ports
from controlplane.settings import PROFILE_PORTS
from tests.dnsserver import dnsmasq

PLATFORM_ADDRESS = "127.0.0.10"


def _dnsmasq(*records: str) -> Iterator[dns.resolver.Resolver]:
    for resolver, _port in dnsmasq(records, zones=["brand.test"], probe_address=PLATFORM_ADDRESS):
        yield resolver


BRAND = [
    f"--host-record=mail.brand.test,{PLATFORM_ADDRESS}",
    "--mx-host=brand.test,mail.brand.test,10",
    "--txt-record=brand.test,v=spf1 mx -all",
    "--txt-record=brand.test,google-site-verification=unrelated",
    "--cname=autoconfig.brand.test,mail.brand.test",
    "--cname=mta-sts.brand.test,mail.brand.test",
    "--srv-host=_submissions._tcp.brand.test,mail.brand.test,465,0,1",
    "--srv-host=_imaps._tcp.brand.test,mail.brand.test,994,0,1",  # a wrong port
    "--txt-record=_mta-sts.brand.test,v=STSv1; id=20261125",
    "--txt-record=_smtp._tls.brand.test,v=TLSRPTv1; rua=mailto:someone-else@elsewhere.test",
]


@pytest.fixture
def resolver() -> Iterator[dns.resolver.Resolver]:
    if not (shutil.which("dnsmasq") or shutil.which("/usr/sbin/dnsmasq")):
        pytest.fail("dnsmasq is not installed: run `make install-test-system`.")
    yield from _dnsmasq(*BRAND)


def _expected():
    return expected_records(
        domain="brand.test", brand_host="mail.brand.test", platform_host="mail.letterhead.test",
        platform_addresses=(PLATFORM_ADDRESS,), ports=PROFILE_PORTS["production"], mta_sts_id="20261125",
        tls_report_address="tls@brand.test",
    )  # fmt: skip


def _states(checks) -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    return {(c.expected.name, c.expected.type): (c.state, c.found) for c in checks}


def _spf(*records: str):
    """The check of brand.test's SPF record when its TXT records are `records`."""
    for resolver in _dnsmasq(*(f"--txt-record=brand.test,{record}" for record in records)):
        (check,) = [
            c
            for c in check_records(_expected(), resolver)
            if c.expected.name == "brand.test" and c.expected.type == "TXT"
        ]
        return check


def test_each_record_is_found_right_missing_or_wrong_with_what_was_found(resolver) -> None:
    states = _states(check_records(_expected(), resolver))
    assert states[("mail.brand.test", "A")][0] == "ok"
    assert states[("brand.test", "MX")] == ("ok", ("10 mail.brand.test",))
    assert states[("brand.test", "TXT")] == ("ok", ("v=spf1 mx -all",))  # the unrelated TXT is ignored
    assert states[("autoconfig.brand.test", "CNAME")][0] == "ok"
    assert states[("autodiscover.brand.test", "CNAME")] == ("missing", ())
    assert states[("_submissions._tcp.brand.test", "SRV")][0] == "ok"
    assert states[("_imaps._tcp.brand.test", "SRV")] == ("wrong", ("0 1 994 mail.brand.test",))
    assert states[("_pop3s._tcp.brand.test", "SRV")] == ("missing", ())
    assert states[("_mta-sts.brand.test", "TXT")][0] == "ok"
    # What was found is shown as found: TXT content keeps its case.
    assert states[("_smtp._tls.brand.test", "TXT")] == (
        "wrong", ("v=TLSRPTv1; rua=mailto:someone-else@elsewhere.test",)
    )  # fmt: skip


def test_an_spf_record_is_right_by_meaning_not_by_spelling() -> None:
    check = _spf("v=spf1 A MX ~all")
    assert (check.state, check.found) == ("ok", ("v=spf1 A MX ~all",))
    assert "Not the suggested record" in check.note
    # Through an include, resolved by the same DNS server.
    for resolver in _dnsmasq(
        "--txt-record=brand.test,v=spf1 include:_spf.brand.test -all",
        f"--txt-record=_spf.brand.test,v=spf1 ip4:{PLATFORM_ADDRESS}/32 ~all",
    ):
        (check,) = [c for c in check_records(_expected(), resolver) if c.expected.value.startswith("v=spf1")]
        assert check.state == "ok", check.note


def test_a_wrong_spf_record_says_what_is_wrong_in_words() -> None:
    several = _spf("v=spf1 mx -all", "v=spf1 a -all")
    assert several.state == "wrong" and "2 SPF records" in several.note
    assert set(several.found) == {"v=spf1 mx -all", "v=spf1 a -all"}
    anyone = _spf("v=spf1 mx +all")
    assert anyone.state == "wrong" and "lets every server on the Internet send" in anyone.note
    elsewhere = _spf("v=spf1 ip4:198.51.100.0/24 -all")
    assert elsewhere.state == "wrong" and f"{PLATFORM_ADDRESS} (fail by `-all`)" in elsewhere.note
    assert _spf("google-site-verification=unrelated").state == "missing"


def test_srv_records_must_prefer_implicit_tls() -> None:
    records = [
        "--host-record=mail.brand.test,127.0.0.10",
        "--srv-host=_submissions._tcp.brand.test,mail.brand.test,465,0,1",
        "--srv-host=_submission._tcp.brand.test,mail.brand.test,587,10,1",
        "--srv-host=_imap._tcp.brand.test,mail.brand.test,143,0,1",  # offered, with the platform's certificate: wrong
        "--srv-host=_pop3._tcp.brand.test",  # no target: "not offered" (RFC 6186 §4), as expected
    ]
    for resolver in _dnsmasq(*records):
        states = _states(check_records(_expected(), resolver))
        assert states[("_submissions._tcp.brand.test", "SRV")][0] == "ok"
        assert states[("_submission._tcp.brand.test", "SRV")][0] == "ok"
        assert states[("_imap._tcp.brand.test", "SRV")] == ("wrong", ("0 1 143 mail.brand.test",))
        assert states[("_pop3._tcp.brand.test", "SRV")] == ("ok", ("0 0 1",))


def test_not_offered_counts_only_alone() -> None:
    # An old record left beside "not offered" still sends clients to STARTTLS with the wrong name.
    records = [
        "--srv-host=_pop3._tcp.brand.test",
        "--srv-host=_pop3._tcp.brand.test,mail.brand.test,110,10,1",
    ]
    for resolver in _dnsmasq(*records):
        (check,) = [
            c for c in check_records(_expected(), resolver) if c.expected.name == "_pop3._tcp.brand.test"
        ]
        assert check.state == "wrong"
        assert "Remove the other records" in check.note


def test_a_cname_to_the_platform_is_accepted_where_an_a_record_is_the_clean_form() -> None:
    records = ["--cname=mail.brand.test,mail.letterhead.test"]
    for resolver in _dnsmasq(*records):
        (check,) = [c for c in check_records(_expected(), resolver) if c.expected.type == "A"]
        assert check.state == "ok"


def test_a_record_the_authoritative_server_has_but_the_resolver_not_yet_is_propagating(resolver) -> None:
    for authoritative in _dnsmasq(*BRAND, "--cname=autodiscover.brand.test,mail.brand.test"):
        checks = _states(check_records(_expected(), resolver, authoritative))
        assert checks[("autodiscover.brand.test", "CNAME")][0] == "propagating"
        assert checks[("_pop3s._tcp.brand.test", "SRV")][0] == "missing"


def test_a_resolver_that_does_not_answer_leaves_records_unchecked_after_one_timeout() -> None:
    (port,) = free_ports(1)
    silent = make_resolver("127.0.0.1", port, timeout=1.0)
    started = time.monotonic()
    checks = check_records(_expected(), silent)
    assert {c.state for c in checks} == {"unchecked"} and all("did not answer" in c.note for c in checks)
    # One timeout, not one per record (a "Check DNS now" click used to wait 14 of them).
    assert len(checks) > 10 and time.monotonic() - started < 3


# --- DKIM, DMARC and CAA: judged by meaning, not by the text -----------------------------------

DKIM_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 300 + "IDAQAB"
DKIM = DkimRecord(selector="lh20261205", value=f"v=DKIM1; k=rsa; p={DKIM_KEY}", active=True)


def _hygiene_checks(*records: str) -> dict[str, tuple[str, tuple[str, ...], str]]:
    expected = expected_records(
        domain="brand.test", brand_host="mail.brand.test", platform_host="mail.letterhead.test",
        platform_addresses=(PLATFORM_ADDRESS,), ports=PROFILE_PORTS["production"], mta_sts_id="20261125",
        tls_report_address=None, dkim=(DKIM,), caa_identity="letsencrypt.org",
    )  # fmt: skip
    for resolver in _dnsmasq(*records):
        return {
            c.expected.judge: (c.state, c.found, c.note)
            for c in check_records(expected, resolver)
            if c.expected.judge
        }
    raise AssertionError("dnsmasq did not start")


def _txt(name: str, value: str) -> str:
    return f"--txt-record={name}," + ",".join(value[i : i + 250] for i in range(0, len(value), 250))


def test_a_dkim_key_is_right_when_its_public_key_matches_whatever_the_spacing() -> None:
    published = _txt("lh20261205._domainkey.brand.test", f"k=rsa;p={DKIM_KEY[:100]} {DKIM_KEY[100:]}")
    assert _hygiene_checks(published)["dkim"][0] == "ok"
    other = _txt("lh20261205._domainkey.brand.test", f"v=DKIM1; k=rsa; p={DKIM_KEY[:-8]}AAAAAAAA")
    state, found, note = _hygiene_checks(other)["dkim"]
    assert state == "wrong" and found and "different key" in note
    assert _hygiene_checks()["dkim"][0] == "missing"


def test_any_dmarc_policy_is_right_and_p_none_says_how_to_tighten() -> None:
    state, _, note = _hygiene_checks(_txt("_dmarc.brand.test", "v=DMARC1; p=none; rua=mailto:d@brand.test"))[
        "dmarc"
    ]
    assert state == "ok" and "p=quarantine" in note
    assert _hygiene_checks(_txt("_dmarc.brand.test", "v=DMARC1; p=reject"))["dmarc"][:1] == ("ok",)
    assert _hygiene_checks()["dmarc"][0] == "missing"
    two = _hygiene_checks(
        _txt("_dmarc.brand.test", "v=DMARC1; p=none"), _txt("_dmarc.brand.test", "v=DMARC1; p=reject")
    )
    assert two["dmarc"][0] == "wrong" and "Several DMARC records" in two["dmarc"][2]


def test_caa_is_judged_on_the_host_or_the_closest_parent_that_has_one() -> None:
    assert _hygiene_checks("--caa-record=mail.brand.test,0,issue,letsencrypt.org")["caa"][0] == "ok"
    inherited = _hygiene_checks("--caa-record=brand.test,0,issue,letsencrypt.org")["caa"]
    assert inherited[0] == "ok" and "set on brand.test" in inherited[2]
    refused = _hygiene_checks("--caa-record=brand.test,0,issue,other-ca.example")["caa"]
    assert refused[0] == "wrong" and "other-ca.example" in refused[2]
    assert _hygiene_checks()["caa"][0] == "missing"
