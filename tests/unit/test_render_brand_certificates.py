"""Dovecot's memory grows per local_name filter: one filter per brand certificate, and a
config-process limit that grows with them, never below 1 GB (see bench/brands.py for the failure it prevents)."""

from __future__ import annotations

from controlplane.render import TlsIdentity, dovecot_config_vsz_mb, render_dovecot
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


def test_one_dovecot_filter_per_certificate_names_all_its_hosts() -> None:
    conf = render_dovecot(golden_state(sni=brand_identities(2)))["dovecot/dovecot.conf"]
    assert sum(line.startswith("local_name ") for line in conf.splitlines()) == 2
    assert (
        'local_name "autoconfig.c0.example autodiscover.c0.example mail.c0.example mta-sts.c0.example" {\n'
        "  ssl_cert = </srv/letterhead/acme/live/mail.c0.example/fullchain.pem\n"
    ) in conf


def test_dovecot_config_process_limit_grows_with_brand_certificates() -> None:
    none = render_dovecot(golden_state())["dovecot/dovecot.conf"]
    assert f"vsz_limit = {dovecot_config_vsz_mb(0)}M" in none
    many = render_dovecot(golden_state(sni=brand_identities(5000)))["dovecot/dovecot.conf"]
    assert f"vsz_limit = {dovecot_config_vsz_mb(5000)}M" in many
    # Seen: 586 MB resident for 4,000 filters, so about 150 KB each plus the process itself.
    for count in (0, 1, 1000, 5000, 20000):
        assert dovecot_config_vsz_mb(count) * 1024 > 64 * 1024 + (count + 1) * 150
    # The config process that parses a reload still runs under the previous limit.
    assert dovecot_config_vsz_mb(0) * 1024 > 64 * 1024 + 6000 * 150
