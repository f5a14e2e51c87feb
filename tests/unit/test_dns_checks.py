"""What a check shows as found and how it compares, with DNS answers whose case dnsmasq would fold.

dnsmasq lowercases the names it serves, so mixed-case names (which real zones do serve) are
given here by a resolver that answers from a table; tests/integration checks the rest against
a real DNS server.
"""

from __future__ import annotations

import types

import dns.rrset

from controlplane.dns.checks import check_record
from controlplane.dns.records import ExpectedRecord


class TableResolver:
    """Answers `resolve(name, type)` from {(name, type): (value, ...)}, as dnspython would."""

    def __init__(self, table: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.table = table

    def resolve(self, name: str, kind: str, raise_on_no_answer: bool = True):
        values = self.table.get((name, kind), ())
        rrset = dns.rrset.from_text_list(name, 300, "IN", kind, list(values)) if values else None
        return types.SimpleNamespace(rrset=rrset)


def test_names_found_keep_their_case_and_still_match_case_insensitively() -> None:
    resolver = TableResolver(
        {
            ("autoconfig.customer.test", "CNAME"): ("Mail.Customer.TEST.",),
            ("customer.test", "MX"): ("10 MAIL.customer.test.",),
            ("_imaps._tcp.customer.test", "SRV"): ("0 1 993 Mail.Customer.Test.",),
        }
    )
    cname = check_record(
        ExpectedRecord("autoconfig.customer.test", "CNAME", "mail.customer.test", ""), resolver
    )
    assert (cname.state, cname.found) == ("ok", ("Mail.Customer.TEST",))
    mx = check_record(ExpectedRecord("customer.test", "MX", "10 mail.customer.test", ""), resolver)
    assert (mx.state, mx.found) == ("ok", ("10 MAIL.customer.test",))
    srv = check_record(
        ExpectedRecord("_imaps._tcp.customer.test", "SRV", "0 1 993 mail.customer.test", ""), resolver
    )
    assert (srv.state, srv.found) == ("ok", ("0 1 993 Mail.Customer.Test",))


def test_txt_content_is_compared_with_its_case_and_shown_as_found() -> None:
    expected = ExpectedRecord("_mta-sts.customer.test", "TXT", "v=STSv1; id=AbC123", "")
    exact = TableResolver({("_mta-sts.customer.test", "TXT"): ('"v=STSv1;  id=AbC123"',)})
    assert check_record(expected, exact).state == "ok"  # spaces between fields carry no meaning
    other_case = TableResolver({("_mta-sts.customer.test", "TXT"): ('"v=STSv1; id=abc123"',)})
    check = check_record(expected, other_case)
    assert (check.state, check.found) == ("wrong", ("v=STSv1; id=abc123",))
