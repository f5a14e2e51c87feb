"""Client addresses grouped as one client: logins are counted (throttled, and stored from the
daemons' logs) per network, since one person easily changes address within it."""

from __future__ import annotations

import ipaddress
import re

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A dotted IPv4 address as ipaddress accepts it (no leading zeros): most clients. The log
# ingest asks for tens of thousands of addresses, and ipaddress took 25 µs for each.
_PLAIN_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def client_network(client_ip: str) -> str:
    """The network throttled as one client: the /24 of an IPv4 address, the /64 of an IPv6 one."""
    if _PLAIN_IPV4.fullmatch(client_ip):
        return client_ip[: client_ip.rindex(".")] + ".0/24"
    try:
        address = ipaddress.ip_address(client_ip.strip().split("%")[0])
    except ValueError:
        return client_ip[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network((address, prefix), strict=False))
