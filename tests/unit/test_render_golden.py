"""Renderers against golden files, byte for byte (regenerate with --update-golden)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from controlplane.render import (
    DaemonDatabase,
    DatabaseLogin,
    Paths,
    RenderState,
    SpamFilter,
    TlsIdentity,
    VmailAccount,
    digest_files,
    render_all,
    served_pem_path,
)
from controlplane.settings import PROFILE_PORTS

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"


def golden_state(*, sni: tuple[TlsIdentity, ...] = (), production: bool = False) -> RenderState:
    home = "/srv/letterhead"
    return RenderState(
        hostname="mail.platform.example",
        listen_address="all" if production else "127.0.0.1",
        ports=PROFILE_PORTS["production" if production else "development"],
        paths=Paths(
            home=home,
            database=f"{home}/db/letterhead.db",
            sni_database=f"{home}/db/sni.db",
            usage_database=f"{home}/usage/usage.db",
            live_config=f"{home}/config/live",
            mail_root=f"{home}/mail",
            log_dir=f"{home}/log",
            postfix_queue=f"{home}/postfix/queue",
            postfix_data=f"{home}/postfix/data",
            dovecot_base=f"{home}/run/dovecot",
            dovecot_state=f"{home}/dovecot-state",
            lmtp_socket=f"{home}/run/lmtp",
            auth_socket=f"{home}/run/auth-postfix",
            webmail_auth_socket=f"{home}/run/auth-webmail",
            sender_milter_socket=f"{home}/run/sender-milter.sock",
            run_dir=f"{home}/run",
            acme_webroot=f"{home}/acme/webroot",
            rspamd_dir=f"{home}/rspamd",
            redis_dir=f"{home}/redis",
            dkim_dir=f"{home}/dkim",
            tls_report_spool=f"{home}/reports/tls",
            served_tls=f"{home}/certs/served",
            haproxy_crt_list=f"{home}/certs/haproxy.crt-list",
        ),
        vmail=VmailAccount(name="vmail", uid=5000, gid=5000),
        default_tls=TlsIdentity(
            "mail.platform.example", f"{home}/certs/default.crt", f"{home}/certs/default.key"
        ),
        sni_identities=sni,
        relayhost="" if production else "[127.0.0.1]:2600",
        testing=not production,
        auth_penalty=production,
        spam=SpamFilter(nameservers=("127.0.0.1:5353",)) if production else SpamFilter(network_checks=False),
    )


BRANDS = (
    TlsIdentity(
        "mail.customer.example", "/srv/letterhead/certs/b1/fullchain.pem", "/srv/letterhead/certs/b1/key.pem"
    ),
    TlsIdentity(
        "MAIL.Bücher.example", "/srv/letterhead/certs/b2/fullchain.pem", "/srv/letterhead/certs/b2/key.pem"
    ),
)
POSTGRESQL = DaemonDatabase(
    driver="pgsql",
    host="db.platform.example",
    port=5432,
    name="letterhead",
    logins={
        "postfix": DatabaseLogin("letterhead_postfix", "postfix-secret"),
        "dovecot": DatabaseLogin("letterhead_dovecot", "dovecot-secret"),
        "dovecot_usage": DatabaseLogin("letterhead_dovecot_usage", "usage-secret"),
    },
)
CASES = {
    "development": golden_state(),
    "production-with-brands": golden_state(sni=BRANDS, production=True),
    # One of two mail nodes: proxying to the other's mailboxes.
    "production-on-postgresql": dataclasses.replace(
        golden_state(production=True),
        database=POSTGRESQL,
        node_name="mx1",
        node_address="10.0.0.1",
        peer_addresses=("10.0.0.2",),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_configs_match_golden_files(case: str, request: pytest.FixtureRequest) -> None:
    files = render_all(CASES[case])
    case_root = GOLDEN_ROOT / case
    if request.config.getoption("--update-golden"):
        for name, content in files.items():
            (case_root / name).parent.mkdir(parents=True, exist_ok=True)
            (case_root / name).write_text(content)
    expected = {str(p.relative_to(case_root)): p.read_text() for p in case_root.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(expected)
    for name, content in files.items():
        assert content == expected[name], f"{case}/{name} differs from its golden file"


def test_rendering_the_same_state_twice_gives_identical_bytes() -> None:
    state = golden_state(sni=BRANDS)
    assert render_all(state) == render_all(golden_state(sni=tuple(reversed(BRANDS))))
    assert digest_files(render_all(state)) == digest_files(render_all(state))


def test_sni_names_are_emitted_for_postfix_and_nginx_in_ascii() -> None:
    files = render_all(golden_state(sni=BRANDS))
    assert "tls_server_sni_maps = sqlite:${config_directory}/sql-sni.cf" in files["postfix/main.cf"]
    assert "dbpath = /srv/letterhead/db/sni.db" in files["postfix/sql-sni.cf"]
    assert re.search(
        r"\n        mail\.xn--bcher-kva\.example /srv/letterhead/certs/served/\w+\.pem;",
        files["nginx/nginx.conf"],
    )


def test_brands_change_neither_postfix_nor_dovecot_so_neither_is_reloaded_for_them() -> None:
    without, with_brands = render_all(golden_state()), render_all(golden_state(sni=BRANDS))
    unchanged = {name for name in without if name.startswith(("postfix/", "dovecot/"))}
    assert {name: without[name] for name in unchanged} == {name: with_brands[name] for name in unchanged}
    assert without["nginx/nginx.conf"] != with_brands["nginx/nginx.conf"]


def test_haproxy_names_no_brand_so_a_brand_change_leaves_its_config_alone() -> None:
    shared = "/srv/letterhead/acme/live/mail.reseller.example"
    brands = golden_state(
        sni=(TlsIdentity("mail.reseller.example", f"{shared}/fullchain.pem", f"{shared}/privkey.pem"),)
    )
    with_brand = render_all(brands)["haproxy/haproxy.cfg"]
    assert with_brand == render_all(golden_state(sni=()))["haproxy/haproxy.cfg"]
    binds = re.findall(r"\n    bind (\S+) ssl crt (\S+) crt-list (\S+)\n", with_brand)
    # IMAPS and POP3S, each with the default certificate's published file and the one crt-list.
    assert [port for port, _pem, _list in binds] == ["127.0.0.1:2993", "127.0.0.1:2995"]
    assert {(pem, crt_list) for _port, pem, crt_list in binds} == {
        (served_pem_path(brands.paths, brands.default_tls.cert_path, brands.default_tls.key_path),
         brands.paths.haproxy_crt_list)
    }  # fmt: skip
    assert "mail.reseller.example" not in with_brand and shared not in with_brand


def test_nginx_has_one_https_server_whatever_the_brands_and_maps_each_name_to_its_file() -> None:
    shared = "/srv/letterhead/acme/live/mail.reseller.example"
    names = ("mail.reseller.example", "autoconfig.customer.example", "mta-sts.customer.example")
    conf = render_all(
        golden_state(
            sni=tuple(TlsIdentity(name, f"{shared}/fullchain.pem", f"{shared}/privkey.pem") for name in names)
        )
    )["nginx/nginx.conf"]
    http = conf
    assert http.count("server {") == 2 and " ssl;" not in http  # port 80, and one for HTTPS
    assert "ssl_certificate $letterhead_tls;" in http and shared not in conf and "stream {" not in conf
    published = {re.search(rf"\n        {re.escape(name)} (\S+);", http)[1] for name in names}
    assert len(published) == 1 and next(iter(published)).startswith("/srv/letterhead/certs/served/")


@pytest.mark.parametrize(
    "hostname", ["mail.example.com\nbogus = 1", "mail example.com", "mail.example.com}", "mail.example.com;"]
)
def test_hostile_brand_hostnames_never_reach_a_config(hostname: str) -> None:
    from controlplane.errors import ValidationError

    with pytest.raises(ValidationError):
        render_all(golden_state(sni=(TlsIdentity(hostname, "/c/cert.pem", "/c/key.pem"),)))


@pytest.mark.parametrize("path", ["relative/cert.pem", "/c/cert.pem\nssl = no", "/c/{x}.pem", "/c/$x.pem"])
def test_unsafe_certificate_paths_never_reach_a_config(path: str) -> None:
    with pytest.raises(ValueError, match="Unsafe certificate path"):
        render_all(golden_state(sni=(TlsIdentity("mail.customer.example", path, "/c/key.pem"),)))


def test_on_postgresql_each_daemon_logs_in_as_its_own_role() -> None:
    files = render_all(CASES["production-on-postgresql"])
    postfix_maps = [
        name for name in files if name.startswith("postfix/sql-") and name != "postfix/sql-sni.cf"
    ]
    assert postfix_maps
    for name in postfix_maps:
        assert "user = letterhead_postfix\npassword = postfix-secret\n" in files[name], name
        assert "dovecot-secret" not in files[name]
    assert "proxy:pgsql:${config_directory}/sql-mailboxes.cf" in files["postfix/main.cf"]
    # The certificates by name stay in each node's own file.
    assert "dbpath = /srv/letterhead/db/sni.db" in files["postfix/sql-sni.cf"]
    assert "user=letterhead_dovecot password=dovecot-secret" in files["dovecot/dovecot-sql.conf.ext"]
    assert (
        "user=letterhead_dovecot_usage password=usage-secret" in files["dovecot/dovecot-dict-usage.conf.ext"]
    )
    assert "usage = pgsql:" in files["dovecot/dovecot.conf"]
    everything = "".join(files.values())
    assert "sqlite:" not in everything.replace("sqlite:${config_directory}/sql-sni.cf", "")


def test_systemd_units_match_golden_files(request: pytest.FixtureRequest) -> None:
    """The production install's units and command (render/systemd.py); systemd-analyze checks
    them in tests/unit/cli/test_install.py."""
    from controlplane.render.systemd import UnitPart, render_units
    from controlplane.runners.parts import PARTS

    files = render_units(
        hostname="mail.example.net", home=Path("/var/lib/letterhead"), python="/opt/letterhead/venv/bin/python",
        parts=[UnitPart(part.name, part.description) for part in PARTS], database_service="postgresql.service",
    )  # fmt: skip
    case_root = GOLDEN_ROOT / "systemd"
    if request.config.getoption("--update-golden"):
        for name, content in files.items():
            (case_root / name).parent.mkdir(parents=True, exist_ok=True)
            (case_root / name).write_text(content)
    expected = {str(p.relative_to(case_root)): p.read_text() for p in case_root.rglob("*") if p.is_file()}
    assert files == expected


def test_a_path_that_could_break_a_unit_file_is_refused() -> None:
    from controlplane.render.systemd import render_units

    for home in ("/var/lib/letter head", "/var/lib/x\nExecStart=/bin/sh", "relative/home"):
        with pytest.raises(ValueError, match="Not a plain absolute path"):
            render_units(hostname="mail.example.net", home=Path(home), python="/usr/bin/python3", parts=[])
