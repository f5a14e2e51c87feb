"""The SPF record is judged by what it means: the platform may send, and `all` is no pass."""

from __future__ import annotations

import pytest

from controlplane.dns.spf import MAX_LOOKUPS, LookupFailed, Senders, judge, relay_mechanism

PLATFORM = Senders(
    domain="customer.example",
    hosts=("mail.customer.example", "mail.platform.example"),
    addresses=("192.0.2.10", "2001:db8::10"),
)
# What DNS answers in these tests, by (name, type); anything else has no records.
ZONE = {
    ("customer.example", "A"): ("192.0.2.10",),
    ("customer.example", "AAAA"): ("2001:db8::10",),
    ("website.example", "A"): ("198.51.100.7",),
    ("other-provider.example", "MX"): ("10 mx.other-provider.example",),
    ("mx.other-provider.example", "A"): ("198.51.100.1",),
    ("our-spf.example", "TXT"): ("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",),
    ("elsewhere-spf.example", "TXT"): ("v=spf1 ip4:198.51.100.0/24 -all",),
    ("empty.example", "TXT"): ("google-site-verification=abc",),
    ("loop.example", "TXT"): ("v=spf1 include:loop.example -all",),
}


def lookup(name: str, kind: str) -> tuple[str, ...]:
    return ZONE.get((name.lower(), kind), ())


def verdict(*records: str):
    return judge(records, PLATFORM, lookup)


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 mx -all",  # our suggestion
        "v=spf1 mx ~all",
        "v=spf1 a mx ~all",  # the domain's own A/AAAA happen to be the platform's too
        "v=spf1 a:mail.customer.example -all",
        "V=SPF1 MX:Customer.Example ?all",
        "v=spf1 a:mail.platform.example ~all",
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/48 -all",
        "v=spf1 include:our-spf.example include:elsewhere-spf.example ~all",
        "v=spf1 redirect=our-spf.example",
        "v=spf1 mx exp=explain.customer.example -all",
    ],
)
def test_records_that_let_the_platform_send_and_refuse_others_are_right(record: str) -> None:
    assert verdict(record).right, verdict(record).reason


def test_a_pass_all_is_wrong_in_words() -> None:
    for record in ("v=spf1 mx +all", "v=spf1 mx all"):
        result = verdict(record)
        assert not result.right and "lets every server on the Internet send" in result.reason


def test_several_spf_records_are_wrong_however_right_each_is() -> None:
    result = verdict("v=spf1 mx -all", "v=spf1 a -all", "google-site-verification=abc")
    assert not result.right and "2 SPF records" in result.reason and "merge" in result.reason


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ("v=spf1 a:website.example -all", "192.0.2.10 (fail by `-all`)"),
        ("v=spf1 mx:other-provider.example ~all", "(softfail by `~all`)"),
        ("v=spf1 include:elsewhere-spf.example -all", "does not authorise the platform's mail host"),
        ("v=spf1 -ip4:192.0.2.10 mx -all", "192.0.2.10 (fail by `-ip4:192.0.2.10`)"),
        ("v=spf1 ip4:192.0.2.10 -all", "2001:db8::10 (fail by `-all`)"),  # IPv6 left out
    ],
)
def test_a_record_that_leaves_the_platform_out_says_which_address_and_why(record: str, words: str) -> None:
    result = verdict(record)
    assert not result.right and words in result.reason
    assert "Add `mx`" in result.reason and "mail.customer.example" in result.reason


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ("v=spf1 mx", "does not end in `-all` or `~all`"),
        ("v=spf1 mx bogus -all", "`bogus` is not an SPF mechanism"),
        ("v=spf1 ip4:not-an-address -all", "does not name a network"),
        ("v=spf1 ip4:2001:db8::/32 -all", "other IP version"),
        ("v=spf1 include:empty.example -all", "empty.example, which it includes or redirects to, has no SPF"),
        ("v=spf1 include:loop.example -all", f"more than {MAX_LOOKUPS} DNS lookups"),
        ("v=spf1 redirect=a.example redirect=b.example", "two `redirect=`"),
    ],
)
def test_records_receivers_reject_or_that_say_nothing_of_others_are_wrong_in_words(record, words) -> None:
    result = verdict(record)
    assert not result.right and words in result.reason, result.reason


def test_mechanisms_that_depend_on_the_connecting_client_do_not_count_as_authorising() -> None:
    for record in ("v=spf1 ptr -all", "v=spf1 exists:%{i}.spf.customer.example -all", "v=spf1 a:%{d} -all"):
        assert not verdict(record).right, record


def test_a_name_the_record_relies_on_that_does_not_answer_is_the_records_problem() -> None:
    def failing(name: str, kind: str) -> tuple[str, ...]:
        if name == "broken.example":
            raise LookupFailed("timed out")
        return lookup(name, kind)

    result = judge(["v=spf1 include:broken.example mx -all"], PLATFORM, failing)
    assert not result.right and "relies on broken.example" in result.reason and "timed out" in result.reason


def test_with_a_relay_the_relays_addresses_must_pass_not_the_platforms() -> None:
    def lookup(name: str, kind: str) -> tuple[str, ...]:
        return {("relay.example", "A"): ("198.51.100.7",)}.get((name, kind), ())

    relayed = Senders(
        "a.test", ("mail.a.test", "mail.letterhead.test"), ("192.0.2.10",), relay="relay.example"
    )
    assert judge(["v=spf1 a:relay.example -all"], relayed, lookup).right
    verdict = judge(["v=spf1 ip4:192.0.2.10 -all"], relayed, lookup)
    assert (
        not verdict.right and "relay relay.example" in verdict.reason and "a:relay.example" in verdict.reason
    )
    by_address = Senders("a.test", ("mail.a.test",), ("192.0.2.10",), relay="198.51.100.7")
    assert judge(["v=spf1 ip4:198.51.100.0/24 ~all"], by_address, lookup).right
    assert (
        relay_mechanism("198.51.100.7") == "ip4:198.51.100.7"
        and relay_mechanism("r.example") == "a:r.example"
    )
