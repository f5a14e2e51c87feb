"""The DNS records that make `mail.customer.com` the customer's mail host.

Pure: from names to the records a person must create, in the order the panel shows them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

from controlplane.dns.spf import Senders, relay_mechanism
from controlplane.errors import ValidationError
from controlplane.validation import normalize_address, normalize_domain, normalize_hostname

# RFC 6186 services with the name of their port in settings and their SRV priority: RFC 8314
# §5.1 asks that implicit TLS be preferred, and a client picks the lowest priority it can use.
SRV_SERVICES = (
    ("_submissions._tcp", "submissions", 0),
    ("_imaps._tcp", "imaps", 0),
    ("_pop3s._tcp", "pop3s", 0),
    ("_submission._tcp", "submission", 10),
    ("_imap._tcp", "imap", 10),
    ("_pop3._tcp", "pop3", 10),
)
# IMAP and POP3 with STARTTLS present the platform host's certificate whatever the name (HAProxy
# ends TLS for brands on IMAPS and POP3S only): for a brand host they are announced as not
# offered (RFC 6186 §4, target "."); a domain without a brand uses the platform host anyway.
STARTTLS_PLATFORM_ONLY = ("imap", "pop3")


@dataclasses.dataclass(frozen=True)
class ExpectedRecord:
    """One record to create. `accepted` lists other forms that work as well (a CNAME where an
    A record is the clean form); `note` says in plain words what the record is for."""

    name: str
    type: str
    value: str
    note: str
    accepted: tuple[tuple[str, str], ...] = ()
    # For the SPF record: whom it must let send. Any record that does is right (dns/spf.py).
    senders: Senders | None = None
    # How a found record is judged when not by equality (dns/checks.py): "dkim" (the same
    # public key), "dmarc" (any DMARC policy), "caa" (the CA may issue for the name).
    judge: str = ""
    # Published by the platform's operator in the platform's own zone, not by the domain's owner:
    # listed so both know it, never counted against the domain (its admins cannot fix it).
    operator: bool = False


@dataclasses.dataclass(frozen=True)
class DkimRecord:
    """A DKIM key the domain's DNS must publish: its selector, the TXT value, and whether it
    signs now or is kept for mail signed before a rotation (until `retire_after`, a date)."""

    selector: str
    value: str
    active: bool
    retire_after: str = ""


def expected_records(
    *,
    domain: str,
    brand_host: str,
    platform_host: str,
    platform_addresses: tuple[str, ...],
    ports: Mapping[str, int],
    mta_sts_id: str,
    tls_report_address: str | None,
    dkim: tuple[DkimRecord, ...] = (),
    dmarc_report_address: str | None = None,
    caa_identity: str = "",
    relay_host: str = "",
) -> list[ExpectedRecord]:
    """Everything `domain` needs to use `brand_host` for mail, client setup, MTA-STS and TLS reports;
    the SRV records name the ports the platform listens on (`ports`, by settings' port names)."""
    domain, brand = normalize_domain(domain), normalize_hostname(brand_host)
    platform = normalize_hostname(platform_host)
    if tls_report_address is not None:
        tls_report_address = normalize_address(tls_report_address, field="tls_report_address")
    if dmarc_report_address is not None:
        dmarc_report_address = normalize_address(dmarc_report_address, field="dmarc_report_address")
    try:
        platform_addresses = tuple(str(ipaddress.ip_address(a)) for a in platform_addresses)
    except ValueError as error:
        raise ValidationError(f"Not an IP address: {error}", field="platform_addresses") from None
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", mta_sts_id):
        raise ValidationError("An MTA-STS policy id is 1 to 32 letters and digits.", field="mta_sts_id")
    for _service, port_name, _priority in SRV_SERVICES:
        port = ports.get(port_name)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValidationError(f"The {port_name} port is not a port number: {port!r}.", field="ports")
    records: list[ExpectedRecord] = []
    # RFC 2181 §10.3: an MX must not point at a CNAME. A/AAAA records are the clean form; a
    # CNAME to the platform host works with most senders and is accepted, with that note.
    for address in platform_addresses:
        kind = "AAAA" if ":" in address else "A"
        records.append(
            ExpectedRecord(
                brand,
                kind,
                address,
                "The branded host: where mail clients, webmail and other mail servers connect.",
                accepted=(("CNAME", platform),),
            )  # fmt: skip
        )
    records.append(
        ExpectedRecord(domain, "MX", f"10 {brand}", "Mail for the domain goes to the branded host.")
    )
    if relay_host:
        try:
            relay = str(ipaddress.ip_address(relay_host))
        except ValueError:
            relay = normalize_hostname(relay_host)
        records.append(
            ExpectedRecord(
                domain,
                "TXT",
                f"v=spf1 {relay_mechanism(relay)} -all",
                f"SPF: the platform's mail leaves through the relay {relay}. Any record that lets the "
                "relay send and ends in -all or ~all is right too (your relay's provider may give an include).",
                senders=Senders(domain, (brand, platform), platform_addresses, relay=relay),
            )
        )
    else:
        records.append(
            ExpectedRecord(
                domain,
                "TXT",
                "v=spf1 mx -all",
                "SPF: only the domain's mail hosts send its mail. Any record that lets the platform send "
                "and ends in -all or ~all is right too.",
                senders=Senders(domain, (brand, platform), platform_addresses),
            )
        )
    for key in dkim:
        if not re.fullmatch(r"[a-z0-9]{1,63}", key.selector):
            raise ValidationError(f"Not a DKIM selector: {key.selector!r}.", field="dkim")
        records.append(
            ExpectedRecord(
                f"{key.selector}._domainkey.{domain}",
                "TXT",
                key.value,
                "DKIM: receivers verify the signature on the domain's mail with this key."
                if key.active
                else "DKIM: the previous key, kept published so that mail signed before the rotation "
                f"still verifies; remove it after {key.retire_after}.",
                judge="dkim",
            )
        )
    reports_to = f"; rua=mailto:{dmarc_report_address}" if dmarc_report_address else ""
    records.append(
        ExpectedRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none{reports_to}",
            "DMARC: what receivers do with mail that fails SPF and DKIM for the domain"
            + (
                ", and where they send their daily reports (shown on the domain's DMARC page)"
                if reports_to
                else ""
            )
            + ". Start with p=none (report only); once reports show all the domain's real mail "
            "passing, tighten to p=quarantine, then p=reject.",
            judge="dmarc",
        )
    )
    report_host = dmarc_report_address.rpartition("@")[2] if dmarc_report_address else ""
    if report_host and report_host != domain and not report_host.endswith("." + domain):
        # RFC 7489 §7.1: a receiver sends reports to another domain only if that domain agrees.
        records.append(
            ExpectedRecord(
                f"{domain}._report._dmarc.{report_host}",
                "TXT",
                "v=DMARC1",
                f"In {report_host}'s own zone, published by the platform's operator (not in the "
                f"domain's): it lets receivers send this domain's DMARC reports to {dmarc_report_address}. "
                f"One wildcard record, *._report._dmarc.{report_host}, serves every domain.",
                operator=True,
            )
        )
    if caa_identity:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?", caa_identity):
            raise ValidationError(f"Not a CA's domain for CAA: {caa_identity!r}.", field="caa_identity")
        records.append(
            ExpectedRecord(
                brand,
                "CAA",
                f'0 issue "{caa_identity}"',
                "CAA: only this certificate authority may issue certificates for the branded host "
                "(without any CAA record, every authority may). A CAA record on a parent domain "
                "applies too.",
                judge="caa",
            )
        )
    for label in ("autoconfig", "autodiscover", "mta-sts"):
        records.append(
            ExpectedRecord(
                f"{label}.{domain}",
                "CNAME",
                brand,
                {
                    "autoconfig": "Thunderbird and others find their settings here.",
                    "autodiscover": "Outlook finds its settings here.",
                    "mta-sts": "Serves the MTA-STS policy over HTTPS.",
                }[label],
            )  # fmt: skip
        )
    for service, port_name, priority in SRV_SERVICES:
        if port_name in STARTTLS_PLATFORM_ONLY and brand != platform:
            records.append(
                ExpectedRecord(
                    f"{service}.{domain}",
                    "SRV",
                    "0 0 0 .",
                    "RFC 6186: not offered here; mail clients use the implicit-TLS port above, where "
                    "the branded certificate is served.",
                )  # fmt: skip
            )
            continue
        records.append(
            ExpectedRecord(
                f"{service}.{domain}",
                "SRV",
                f"{priority} 1 {ports[port_name]} {brand}",
                "RFC 6186: mail clients find the server and port.",
            )  # fmt: skip
        )
    records.append(
        ExpectedRecord(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={mta_sts_id}",
            "MTA-STS: senders must use TLS to reach the domain (the id changes with the policy).",
        )  # fmt: skip
    )
    if tls_report_address is not None:  # only an address that receives mail is published
        records.append(
            ExpectedRecord(
                f"_smtp._tls.{domain}",
                "TXT",
                f"v=TLSRPTv1; rua=mailto:{tls_report_address}",
                "TLS-RPT: where other servers report TLS problems reaching the domain.",
            )  # fmt: skip
        )
    return records
