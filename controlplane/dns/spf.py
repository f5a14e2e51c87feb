"""Judging a domain's SPF record by what it means (RFC 7208), not by its spelling.

Customers rarely copy our suggestion verbatim: `v=spf1 a mx ~all`, or their other provider's
include beside ours, are just as right. A record is right when every platform address would
get a pass from it and it ends in an `all` that is not a pass (`-all`, `~all`, `?all`).
Otherwise the verdict says in words what is wrong. Names are looked up through the caller's
`lookup(name, type)`, so the checker's resolver (and its failures) apply and the judge can be
tested without DNS.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Sequence

# RFC 7208 §4.6.4: more DNS-querying terms than this is a permanent error for receivers.
MAX_LOOKUPS = 10
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
QUALIFIER_WORDS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9._-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z0-9]+)(?::([^/]*))?(/.*)?$")
_DUAL_CIDR = re.compile(r"^(?:/(\d{1,2}))?(?://(\d{1,3}))?$")

Lookup = Callable[[str, str], tuple[str, ...]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True)
class Senders:
    """Who a domain's SPF record must let send: the platform, known by the names that lead to it
    by design (the brand host and the platform's own host) and by its addresses. With a relay
    (the `relayhost` setting), mail leaves from the relay instead: its addresses, looked up when
    the record is judged, are the ones that must pass."""

    domain: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    relay: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    right: bool
    reason: str = ""


class SpfProblem(Exception):
    """The record is one receivers reject (a permanent error in RFC 7208's words), or one they
    cannot evaluate because a name it relies on does not answer."""


class LookupFailed(Exception):
    """Raised by a `lookup` when DNS gave no answer at all (timeout, refused, server failure)."""


@dataclasses.dataclass(frozen=True)
class Term:
    text: str
    qualifier: str
    mechanism: str
    target: str = ""
    cidr4: int = 32
    cidr6: int = 128


@dataclasses.dataclass(frozen=True)
class Record:
    terms: tuple[Term, ...]
    redirect: str | None = None


def is_spf(text: str) -> bool:
    """RFC 7208 §4.5: a record is SPF when its version section is exactly `v=spf1`."""
    return text.split(" ", 1)[0].lower() == "v=spf1"


def parse(text: str) -> Record:
    """The terms of an SPF record. Raises SpfProblem for what receivers would reject."""
    if not is_spf(text):
        raise SpfProblem(f"{text!r} is not an SPF record.")
    terms, redirect = [], None
    for token in text.split()[1:]:
        modifier = _MODIFIER.match(token)
        if modifier is not None:
            if modifier.group(1).lower() == "redirect":
                if redirect is not None:
                    raise SpfProblem("It has two `redirect=` modifiers; receivers reject it.")
                redirect = modifier.group(2).rstrip(".")
            continue  # exp= and unknown modifiers change nothing about who may send
        terms.append(_term(token))
    return Record(tuple(terms), redirect)


def _term(token: str) -> Term:
    match = _MECHANISM.match(token)
    mechanism = match.group(2).lower() if match else ""
    if match is None or mechanism not in MECHANISMS:
        raise SpfProblem(f"`{token}` is not an SPF mechanism; receivers reject the record.")
    qualifier, target, cidr = match.group(1) or "+", (match.group(3) or "").rstrip("."), match.group(4) or ""
    if mechanism in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(target + cidr, strict=False)
        except ValueError:
            raise SpfProblem(f"`{token}` does not name a network.") from None
        if (mechanism == "ip4") != (network.version == 4):
            raise SpfProblem(f"`{token}` names a network of the other IP version.")
        return Term(token, qualifier, mechanism, str(network))
    if mechanism in ("include", "exists") and not target:
        raise SpfProblem(f"`{token}` needs a domain name.")
    if mechanism == "all" and (target or cidr):
        raise SpfProblem(f"`{token}`: `all` takes no argument.")
    if mechanism in ("a", "mx"):
        lengths = _DUAL_CIDR.match(cidr)
        if lengths is None or int(lengths.group(1) or 32) > 32 or int(lengths.group(2) or 128) > 128:
            raise SpfProblem(f"`{token}` has a bad prefix length.")
        return Term(
            token, qualifier, mechanism, target, int(lengths.group(1) or 32), int(lengths.group(2) or 128)
        )
    if cidr:
        raise SpfProblem(f"`{token}`: `{mechanism}` takes no prefix length.")
    return Term(token, qualifier, mechanism, target)


def relay_mechanism(relay: str) -> str:
    """The SPF term that lets a relay send: `ip4:`/`ip6:` for an address, `a:` for a name."""
    try:
        address = ipaddress.ip_address(relay)
    except ValueError:
        return f"a:{relay}"
    return f"ip{address.version}:{address}"


def judge(records: Sequence[str], senders: Senders, lookup: Lookup) -> Verdict:
    """Whether the SPF records found for `senders.domain` let the platform send and refuse others."""
    spf = [text for text in records if is_spf(text)]
    if not spf:
        return Verdict(False, "There is no SPF record.")
    if len(spf) > 1:
        return Verdict(
            False,
            f"There are {len(spf)} SPF records; receivers treat several as an error (RFC 7208 §4.5): "
            "merge them into one.",
        )
    try:
        return _Judgement(senders, lookup).verdict(spf[0])
    except SpfProblem as problem:
        return Verdict(False, str(problem))


class _Judgement:
    def __init__(self, senders: Senders, lookup: Lookup) -> None:
        self.senders, self._lookup = senders, lookup
        self.our_hosts = {host.lower().rstrip(".") for host in senders.hosts}
        self.lookups = 0

    def verdict(self, text: str) -> Verdict:
        record = parse(text)
        ending = self._ending(record)
        if ending is None:
            return Verdict(
                False, "It does not end in `-all` or `~all`, so it says nothing about other senders."
            )
        if ending.qualifier == "+":
            return Verdict(
                False, f"`{ending.text}` lets every server on the Internet send as {self.senders.domain}."
            )
        refused = []
        for text_address in self._sending_addresses():
            self.lookups = 0  # each address is one evaluation for a receiver
            address = ipaddress.ip_address(text_address)
            outcome = self._evaluate(self.senders.domain, record, address)
            if outcome is None or outcome.qualifier != "+":
                result = "neutral" if outcome is None else QUALIFIER_WORDS[outcome.qualifier]
                by = f" by `{outcome.text}`" if outcome is not None else ""
                refused.append(f"{text_address} ({result}{by})")
        if refused and self.senders.relay:
            relay = self.senders.relay
            return Verdict(
                False,
                f"It does not authorise the relay {relay} that sends the platform's mail: "
                f"{', '.join(refused)}. Add `{relay_mechanism(relay)}` (or the include your relay's provider gives).",
            )
        if refused:
            host = self.senders.hosts[0]
            return Verdict(
                False,
                f"It does not authorise the platform's mail host {host}: {', '.join(refused)}. "
                f"Add `mx` (the domain's MX is {host}) or `a:{host}`.",
            )
        return Verdict(True)

    def _sending_addresses(self) -> tuple[str, ...]:
        if not self.senders.relay:
            return self.senders.addresses
        relay = self.senders.relay
        try:
            return (str(ipaddress.ip_address(relay)),)
        except ValueError:
            pass  # a name: its addresses
        try:
            found = self._lookup(relay, "A") + self._lookup(relay, "AAAA")
        except LookupFailed as error:
            raise SpfProblem(f"The relay {relay} could not be looked up ({error}).") from None
        if not found:
            raise SpfProblem(f"The relay {relay} has no address in DNS: mail cannot leave through it.")
        return found

    def _ending(self, record: Record, depth: int = 0) -> Term | None:
        """The `all` that decides for everyone else (through `redirect=` when there is none)."""
        for term in record.terms:
            if term.mechanism == "all":
                return term
        if record.redirect and depth < MAX_LOOKUPS:
            return self._ending(self._record(record.redirect), depth + 1)
        return None

    def lookup(self, name: str, kind: str) -> tuple[str, ...]:
        # The record itself was found, so the resolver works: a name it relies on that does
        # not answer is the record's problem (receivers get a temporary error), not ours.
        try:
            return self._lookup(name, kind)
        except LookupFailed as error:
            raise SpfProblem(
                f"It relies on {name}, whose {kind} records could not be looked up ({error}); "
                "receivers would get a temporary error."
            ) from None

    def _count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SpfProblem(
                f"It needs more than {MAX_LOOKUPS} DNS lookups (at `{term}`); receivers reject it (RFC 7208 §4.6.4)."
            )

    def _record(self, domain: str) -> Record:
        found = [text for text in self.lookup(domain, "TXT") if is_spf(text)]
        if len(found) != 1:
            raise SpfProblem(
                f"{domain}, which it includes or redirects to, has "
                f"{'no' if not found else len(found)} SPF record{'s' if len(found) > 1 else ''}."
            )
        return parse(found[0])

    def _evaluate(self, domain: str, record: Record, address: Address) -> Term | None:
        """The term that decides for `address` (RFC 7208 §4.6.2: the first that matches)."""
        for term in record.terms:
            if self._matches(domain, term, address):
                return term
        if record.redirect:
            self._count(f"redirect={record.redirect}")
            return self._evaluate(record.redirect, self._record(record.redirect), address)
        return None

    def _matches(self, domain: str, term: Term, address: Address) -> bool:
        if term.mechanism == "all":
            return True
        if term.mechanism in ("ip4", "ip6"):
            return address in ipaddress.ip_network(term.target)
        self._count(term.text)
        target = (term.target or domain).lower()
        if "%" in target:
            return False  # a macro depends on the sender; it cannot be judged here
        if term.mechanism == "include":
            inner = self._evaluate(target, self._record(target), address)
            return inner is not None and inner.qualifier == "+"
        if term.mechanism == "a":
            return target in self.our_hosts or self._in_addresses(target, term, address)
        if term.mechanism == "mx":
            # The domain's own MX is the brand host (its MX record is checked on its own row).
            if target == self.senders.domain.lower():
                return True
            hosts = [value.split()[-1].rstrip(".").lower() for value in self.lookup(target, "MX")]
            return any(h in self.our_hosts or self._in_addresses(h, term, address) for h in hosts[:10])
        # ptr (deprecated, RFC 7208 §5.5) and exists depend on the connecting client: a
        # receiver may match them, but they cannot be counted on to authorise the platform.
        return False

    def _in_addresses(self, name: str, term: Term, address: Address) -> bool:
        kind, length = ("A", term.cidr4) if address.version == 4 else ("AAAA", term.cidr6)
        return any(
            address in ipaddress.ip_network(f"{found}/{length}", strict=False)
            for found in self.lookup(name, kind)
        )
