"""Checking DKIM as a receiver would: the records the DNS page asks a customer to publish, served
by dnsmasq on loopback, and dkimpy verifying a message against them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import dkim
import dns.resolver
from click.testing import CliRunner

from controlplane import cli
from controlplane.runners.scratch import ScratchStack
from tests.dnsserver import dnsmasq


def run_cli(stack: ScratchStack, *arguments: str) -> object:
    result = CliRunner().invoke(cli.main, [*arguments], env={"LETTERHEAD_HOME": str(stack.home)})
    assert result.exit_code in (0, 2), result.output  # 2: `brand dns` found records missing
    return json.loads(result.output)


def dkim_records_asked_for(stack: ScratchStack, domain: str) -> list[tuple[str, str]]:
    """The DKIM records the DNS check asks the customer to publish, as an operator sees them."""
    rows = run_cli(stack, "brand", "dns", domain, "--json")
    assert isinstance(rows, list)
    return [(row["name"], row["expected"]) for row in rows if "._domainkey." in row["name"]]


@contextlib.contextmanager
def serving(records: list[tuple[str, str]], zone: str) -> Iterator[dns.resolver.Resolver]:
    """dnsmasq on loopback publishing `records` as TXT, each split in strings of at most 255 bytes."""
    options = []
    for name, value in records:
        strings = [value[i : i + 250] for i in range(0, len(value), 250)]
        options.append(f"--txt-record={name}," + ",".join(strings))
    for resolver, _port in dnsmasq(options, zones=[zone]):
        yield resolver


def verifies(message: bytes, resolver: dns.resolver.Resolver) -> bool:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(record.strings) for record in answer)

    return dkim.verify(message, dnsfunc=lookup)


def signature_tags(message: bytes) -> dict[bytes, bytes]:
    header = message.split(b"\r\nDKIM-Signature:", 1)[1].split(b"\r\n\r\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (part.partition(b"=") for part in header.split(b";"))}


def selector_of(message: bytes) -> str:
    return signature_tags(message)[b"s"].decode()


def as_received(text: str) -> bytes:
    """A message smtp-sink wrote, with CRLF line ends as it was on the wire."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
