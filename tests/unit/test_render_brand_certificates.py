"""Brand certificates at scale: Dovecot's configuration never holds them (it re-parsed one filter
per certificate at every check and reload, faster than linearly: bench/brands.py); nginx's map
names one published file per certificate for all its names."""

from __future__ import annotations

import re

from controlplane.render import TlsIdentity, render_dovecot, render_nginx
from tests.unit.test_render_golden import golden_state


def brand_identities(count: int) -> tuple[TlsIdentity, ...]:
    identities = []
    for index in range(count):
        folder = f"/srv/letterhead/acme/live/mail.c{index}.example"
        for prefix in ("mail", "autoconfig", "autodiscover", "mta-sts"):
            identities.append(
                TlsIdentity(f"{prefix}.c{index}.example", f"{folder}/fullchain.pem", f"{folder}/privkey.pem")
            )
    return tuple(identities)


def test_dovecot_configuration_is_the_same_with_5000_brands_as_with_none() -> None:
    assert render_dovecot(golden_state(sni=brand_identities(5000))) == render_dovecot(golden_state())


def test_nginx_maps_every_name_to_its_certificates_one_published_file() -> None:
    conf = render_nginx(golden_state(sni=brand_identities(5000)))["nginx/nginx.conf"]
    entries = re.findall(r"\n        ((?:mail|autoconfig|autodiscover|mta-sts)\.c\d+\.example) (\S+);", conf)
    assert len(entries) == 20000
    files = {}
    for hostname, pem in entries:
        files.setdefault(hostname.split(".", 1)[1], set()).add(pem)
    assert len(files) == 5000 and all(len(pems) == 1 for pems in files.values())
    assert len({pem for pems in files.values() for pem in pems}) == 5000
    # nginx refuses to start when its map's hash cannot be built within this size.
    assert int(re.search(r"map_hash_max_size (\d+);", conf)[1]) >= 4 * 20000
