"""Live state of the records in dns/records.py, checked with dnspython.

The resolver is configurable (address and port), so tests point it at a DNS server on
loopback and nothing leaves the machine. A record is `ok`, `missing`, `wrong` (with what
was found), `propagating` (the zone's authoritative server already answers right, the
resolver not yet), or `unchecked` (the resolver did not answer). Values found are kept as
DNS gave them; names in them compare case-insensitively, TXT content exactly, and the SPF
record by its meaning (dns/spf.py).
"""

from __future__ import annotations

import dataclasses

import dns.exception
import dns.name
import dns.resolver

from controlplane.dns import spf
from controlplane.dns.records import ExpectedRecord

# TXT records share a name with unrelated ones (verification tokens...): only these
# prefixes say which TXT record an expectation is about.
TXT_KINDS = ("v=spf1", "v=STSv1", "v=TLSRPTv1", "v=DMARC1")


@dataclasses.dataclass(frozen=True)
class RecordCheck:
    expected: ExpectedRecord
    state: str
    found: tuple[str, ...] = ()
    note: str = ""


def make_resolver(address: str, port: int = 53, timeout: float = 3.0) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


class _NoAnswer(Exception):
    """The resolver did not answer at all (timeout, refused)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _display(kind: str, text: str) -> str:
    """A value as DNS gave it: TXT content untouched, other records in their presentation form
    without the root's trailing dot (as the expected values are written), case kept."""
    return text if kind == "TXT" else " ".join(text.split()).rstrip(".").rstrip()


NOT_OFFERED = "srv: not offered"


def _comparable(kind: str, text: str) -> str:
    """What two values must share to be the same record: names (everything in an A, AAAA,
    CNAME, MX or SRV value) are case-insensitive in DNS; TXT content is not, but runs of
    spaces between its fields carry no meaning."""
    if kind == "TXT":
        return " ".join(text.split())
    shown = _display(kind, text).lower()
    if kind == "SRV" and len(shown.split()) == 3:
        # Target "." (gone with the trailing dot): "not offered" (RFC 6186 §4), whatever the
        # priority, weight and port say.
        return NOT_OFFERED
    return shown


def _values(resolver: dns.resolver.Resolver, name: str, kind: str) -> tuple[str, ...]:
    try:
        answer = resolver.resolve(name, kind, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return ()
    except dns.exception.Timeout as error:
        raise _NoAnswer(str(error), timed_out=True) from error
    except dns.resolver.NoNameservers as error:
        raise _NoAnswer(str(error)) from error
    if answer.rrset is None:
        return ()
    values = []
    for record in answer.rrset:
        if kind == "TXT":
            values.append(b"".join(record.strings).decode(errors="replace"))
        else:
            values.append(record.to_text())
    return tuple(sorted(_display(kind, value) for value in values))


def _relevant(expected: ExpectedRecord, found: tuple[str, ...]) -> tuple[str, ...]:
    if expected.type != "TXT":
        return found
    if spf.is_spf(expected.value):
        return tuple(value for value in found if spf.is_spf(value))
    kind = next((k.lower() for k in TXT_KINDS if expected.value.lower().startswith(k.lower())), None)
    return tuple(value for value in found if kind is None or value.lower().startswith(kind))


def _spf_lookup(resolver: dns.resolver.Resolver) -> spf.Lookup:
    def lookup(name: str, kind: str) -> tuple[str, ...]:
        try:
            return _values(resolver, name, kind)
        except _NoAnswer as error:
            raise spf.LookupFailed(str(error)) from error

    return lookup


def _tags(value: str) -> dict[str, str]:
    """A DKIM or DMARC record's tags (RFC 6376 3.2): "v=DKIM1; k=rsa; p=..." -> {"v": ..., ...}."""
    tags = {}
    for part in value.split(";"):
        name, _, tag_value = part.partition("=")
        if name.strip():
            tags[name.strip().lower()] = "".join(tag_value.split())
    return tags


def _judge_dkim(expected: ExpectedRecord, found: tuple[str, ...]) -> tuple[bool, str]:
    wanted = _tags(expected.value)["p"]
    published = [_tags(value).get("p", "") for value in found]
    if wanted in published:
        return True, ""
    if any(published):
        return False, "A different key is published under this selector: publish this one instead."
    return False, ""


def _judge_dmarc(found: tuple[str, ...]) -> tuple[bool, str]:
    if len(found) > 1:
        return False, "Several DMARC records: receivers ignore them all (RFC 7489 6.6.3). Keep one."
    policy = _tags(found[0]).get("p", "").lower() if found else ""
    if policy not in ("none", "quarantine", "reject"):
        return False, "A DMARC record needs a policy: p=none, p=quarantine or p=reject." if found else ""
    if policy == "none":
        return (
            True,
            "Report only (p=none): tighten to p=quarantine, then p=reject, once reports show all real mail passing.",
        )
    return True, ""


def _caa_records(resolver: dns.resolver.Resolver, name: str) -> tuple[str, tuple[str, ...]]:
    """The CAA record set that governs `name` (RFC 8659 3): its own, else the closest parent's."""
    labels = name.split(".")
    for start in range(len(labels) - 1):
        candidate = ".".join(labels[start:])
        found = _values(resolver, candidate, "CAA")
        if found:
            return candidate, found
    return name, ()


def _judge_caa(
    expected: ExpectedRecord, resolver: dns.resolver.Resolver
) -> tuple[bool, tuple[str, ...], str]:
    owner, found = _caa_records(resolver, expected.name)
    if not found:
        return False, (), ""
    identity = expected.value.split('"')[1].lower()
    issuers = []
    for value in found:
        parts = value.split(None, 2)
        if len(parts) == 3 and parts[1].lower() == "issue":
            issuers.append(parts[2].strip('"').split(";")[0].strip().lower())
    inherited = f" (set on {owner})" if owner != expected.name else ""
    if identity in issuers:
        return True, found, f"Allowed{inherited}."
    if not issuers:
        return True, found, f"The CAA records{inherited} restrict no issuer."
    return (
        False,
        found,
        f"CAA{inherited} lets only {', '.join(issuers)} issue: certificates for this host would be refused.",
    )


def _matches(resolver: dns.resolver.Resolver, expected: ExpectedRecord) -> tuple[bool, tuple[str, ...], str]:
    if expected.judge == "caa":
        return _judge_caa(expected, resolver)
    found = _relevant(expected, _values(resolver, expected.name, expected.type))
    if expected.judge == "dkim":
        right, note = _judge_dkim(expected, found)
        return right, found, note
    if expected.judge == "dmarc":
        right, note = _judge_dmarc(found)
        return right, found, note
    if expected.senders is not None:
        if not found:
            return False, found, ""
        verdict = spf.judge(found, expected.senders, _spf_lookup(resolver))
        if verdict.right and _comparable("TXT", expected.value) not in {_comparable("TXT", v) for v in found}:
            return True, found, "Not the suggested record, but it lets the platform send and refuses others."
        return verdict.right, found, verdict.reason
    wanted = _comparable(expected.type, expected.value)
    if wanted == NOT_OFFERED and found and any(_comparable(expected.type, v) != wanted for v in found):
        # A client takes any target it is given: "not offered" only counts alone.
        return False, found, "Remove the other records: clients would still use their server."
    if wanted in {_comparable(expected.type, v) for v in found}:
        return True, found, ""
    for kind, value in expected.accepted:
        other = _values(resolver, expected.name, kind)
        if _comparable(kind, value) in {_comparable(kind, v) for v in other}:
            return True, other, f"found as {kind} {value}: accepted, though {expected.type} is the clean form"
    return False, found, ""


def check_record(
    expected: ExpectedRecord,
    resolver: dns.resolver.Resolver,
    authoritative: dns.resolver.Resolver | None = None,
) -> RecordCheck:
    return _check(expected, resolver, authoritative)[0]


def _check(
    expected: ExpectedRecord,
    resolver: dns.resolver.Resolver,
    authoritative: dns.resolver.Resolver | None,
) -> tuple[RecordCheck, bool]:
    """The check, and whether the resolver timed out (it will not answer the next question either)."""
    try:
        right, found, note = _matches(resolver, expected)
    except _NoAnswer as error:
        return RecordCheck(
            expected, "unchecked", note=f"The resolver did not answer: {error}"
        ), error.timed_out
    if right:
        return RecordCheck(expected, "ok", found, note), False
    if authoritative is not None:
        try:
            right_at_source, _, _ = _matches(authoritative, expected)
        except _NoAnswer:
            right_at_source = False
        if right_at_source:
            return RecordCheck(
                expected, "propagating", found, "The domain's own server has it; resolvers will follow."
            ), False
    return RecordCheck(expected, "wrong" if found else "missing", found, note), False


def check_records(
    expected: list[ExpectedRecord],
    resolver: dns.resolver.Resolver,
    authoritative: dns.resolver.Resolver | None = None,
) -> list[RecordCheck]:
    """The state of each expected record, in the order given. Once the resolver times out the
    rest are left unchecked without asking: a dead resolver would cost its whole timeout per
    record, and the page or command waiting for the check would hang for minutes."""
    checks: list[RecordCheck] = []
    silent: str | None = None
    for record in expected:
        if silent is not None:
            checks.append(RecordCheck(record, "unchecked", note=silent))
            continue
        check, timed_out = _check(record, resolver, authoritative)
        checks.append(check)
        silent = check.note if timed_out else None
    return checks


@dataclasses.dataclass(frozen=True)
class PlatformCheck:
    """Whether a name leads to the platform: `state` is "ok", "missing", "wrong" or "unchecked"."""

    name: str
    state: str
    found: tuple[str, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def resolves_to_platform(
    resolver: dns.resolver.Resolver, name: str, addresses: tuple[str, ...]
) -> PlatformCheck:
    """A name leads to the platform when it has addresses (directly or through a CNAME) and
    every one is the platform's: an ACME server may validate over any of them, IPv6 first."""
    try:
        found = _values(resolver, name, "A") + _values(resolver, name, "AAAA")
    except _NoAnswer as error:
        return PlatformCheck(
            name, "unchecked", message=f"The DNS resolver did not answer for {name}: {error}"
        )
    expected = " or ".join(addresses) or "(no platform address configured)"
    if not found:
        return PlatformCheck(
            name,
            "missing",
            message=f"{name} has no A or AAAA record: point it at {expected} (or CNAME it to the platform host).",
        )
    stray = [address for address in found if address not in addresses]
    if stray:
        return PlatformCheck(
            name,
            "wrong",
            found,
            f"{name} points at {', '.join(found)}, not only at the platform ({expected}).",
        )
    return PlatformCheck(name, "ok", found)
