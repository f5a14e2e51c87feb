"""`letterhead brand ...`: the operator makes brands, gives them to domains and checks DNS."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import cli
from controlplane.models import Brand
from tests import images
from tests.dnsserver import dnsmasq
from tests.factories import make_domain, make_tenant


@pytest.fixture
def home(settings, installation):
    with installation.transaction() as session:
        one = make_tenant(session, name="One")
        make_domain(session, tenant=one, name="a.test")
        make_domain(session, tenant=make_tenant(session, name="Two"), name="c.test")
    return settings.home


def run(home, *args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli.main,
        ["brand", *args],
        env={"LETTERHEAD_HOME": str(home), "LETTERHEAD_DNS_RESOLVER": "127.0.0.1:9", **env},
    )
    return result.exit_code, result.stdout, result.stderr


def test_the_operator_makes_a_brand_and_gives_it_to_a_domain(home) -> None:
    code, out, err = run(home, "create", "Mail.A.test", "--tenant", "One", "--name", "A Mail", "--json")
    assert code == 0, err
    assert json.loads(out)["hostname"] == "mail.a.test"
    assert run(home, "use", "a.test", "mail.a.test")[0] == 0
    code, out, _ = run(home, "list", "--tenant", "One", "--json")
    assert [(b["hostname"], b["domains"]) for b in json.loads(out)] == [("mail.a.test", "a.test")]
    code, _, err = run(home, "use", "c.test", "mail.a.test")
    assert code == 1 and "No such brand" in err
    assert run(home, "delete", "mail.a.test", "--yes")[0] == 0
    assert json.loads(run(home, "list", "--tenant", "One", "--json")[1]) == []


def test_bad_hostnames_are_refused_with_the_reason(home) -> None:
    code, _, err = run(home, "create", "mail_a.test", "--tenant", "One", "--name", "A")
    assert code == 1 and "underscores" in err


@pytest.mark.integration  # a real dnsmasq on loopback
def test_dns_prints_each_records_state_and_fails_until_all_are_right(home) -> None:
    run(home, "create", "mail.a.test", "--tenant", "One", "--name", "A")
    run(home, "use", "a.test", "mail.a.test")
    for _resolver, port in dnsmasq(
        [
            "--host-record=mail.a.test,127.0.0.1",
            "--mx-host=a.test,mail.a.test,10",
            "--txt-record=a.test,v=spf1 mx +all",
        ],
        zones=["a.test"],
    ):
        code, out, _ = run(home, "dns", "a.test", "--json", LETTERHEAD_DNS_RESOLVER=f"127.0.0.1:{port}")
        states = {(r["name"], r["type"]): r["state"] for r in json.loads(out)}
        assert states[("mail.a.test", "A")] == "ok" and states[("a.test", "MX")] == "ok"
        assert states[("autoconfig.a.test", "CNAME")] == "missing"
        code, out, _ = run(home, "dns", "a.test", LETTERHEAD_DNS_RESOLVER=f"127.0.0.1:{port}")
        assert code == 2 and "missing" in out
        # What is wrong with the SPF record is said in the table, not only in JSON.
        assert "`+all` lets every server on the Internet send as a.test" in out


def _brand(installation, hostname: str = "mail.a.test") -> Brand | None:
    with installation.sessions() as session:
        return session.scalar(select(Brand).where(Brand.hostname == hostname))


def test_the_operator_renames_a_brand_and_changes_its_support_link_and_logo(
    home, installation, tmp_path
) -> None:
    run(
        home,
        "create",
        "mail.a.test",
        "--tenant",
        "One",
        "--name",
        "A Mail",
        "--support-url",
        "https://help.a.test/",
    )
    logo = tmp_path / "logo.png"
    logo.write_bytes(images.png(64, 28))
    code, out, err = run(home, "update", "Mail.A.test", "--name", "Acme Mail", "--logo", str(logo), "--json")
    assert code == 0, err
    assert (json.loads(out)["name"], json.loads(out)["logo"]) == ("Acme Mail", "image/png")
    brand = _brand(installation)
    assert (brand.name, brand.support_url, brand.logo) == (
        "Acme Mail",
        "https://help.a.test/",
        logo.read_bytes(),
    )
    code, _, err = run(home, "update", "mail.a.test", "--support-url", "https://support.a.test/")
    assert code == 0, err
    assert _brand(installation).support_url == "https://support.a.test/"
    assert run(home, "update", "mail.a.test", "--no-support-url", "--no-logo")[0] == 0
    brand = _brand(installation)
    assert (brand.name, brand.support_url, brand.logo) == ("Acme Mail", None, None)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--logo", "GIF"], "PNG, JPEG, WebP or SVG"),
        (["--logo", "BIG"], "256 KB"),
        (["--accent", "red"], "written like #3a6ee8"),
        (["--favicon", "WIDE"], "must be 16 to 512 wide"),
        (["--support-url", "javascript:alert(1)"], "must start with https://"),
        (["--name", " "], "name is required"),
        (["--support-url", "https://x.test/", "--no-support-url"], "not both"),
        (["--logo", "GIF", "--no-logo"], "not both"),
        (["--title", "X", "--no-title"], "not both"),
        ([], "Nothing to change"),
    ],
)
def test_brand_update_refuses_what_the_panel_refuses_and_changes_nothing(
    home, installation, tmp_path, args, words
):
    run(home, "create", "mail.a.test", "--tenant", "One", "--name", "A Mail")
    files = {
        "GIF": b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;",
        "BIG": images.png() + b"\0" * 300_000,
        "WIDE": images.png(600, 20),
    }
    for key, data in files.items():
        (tmp_path / key).write_bytes(data)
    code, _, err = run(home, "update", "mail.a.test", *(str(tmp_path / a) if a in files else a for a in args))
    assert code == 1 and words in err, err
    brand = _brand(installation)
    assert (brand.name, brand.support_url, brand.logo) == ("A Mail", None, None)


def test_brand_update_of_an_unknown_brand_says_so(home) -> None:
    code, _, err = run(home, "update", "mail.nowhere.test", "--name", "X")
    assert code == 1 and "No such brand" in err


def test_brand_update_sets_and_clears_the_whole_look(home, installation, tmp_path) -> None:
    run(home, "create", "mail.a.test", "--tenant", "One", "--name", "A Mail")
    (tmp_path / "dark.svg").write_bytes(images.SVG_WITH_SCRIPT)
    (tmp_path / "icon.png").write_bytes(images.png(32, 32))
    code, out, err = run(home, "update", "mail.a.test", "--accent", "#C0F", "--title", "A webmail",
                         "--footer", "A Mail, 1 Main Street", "--logo-dark", str(tmp_path / "dark.svg"),
                         "--favicon", str(tmp_path / "icon.png"), "--json")  # fmt: skip
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["accent_colour"], shown["page_title"], shown["footer_text"]) == (
        "#cc00ff", "A webmail", "A Mail, 1 Main Street",
    )  # fmt: skip
    assert (shown["logo_dark"], shown["favicon"]) == ("image/svg+xml", "image/png")
    brand = _brand(installation)
    assert (
        b"script" not in brand.logo_dark
        and b"onload" not in brand.logo_dark
        and b"tracker" not in brand.logo_dark
    )
    code, out, err = run(home, "update", "mail.a.test", "--no-accent", "--no-title", "--no-footer",
                         "--no-logo-dark", "--no-favicon", "--json")  # fmt: skip
    assert code == 0, err
    brand = _brand(installation)
    assert (brand.accent_colour, brand.page_title, brand.footer_text, brand.logo_dark, brand.favicon) == (
        None, None, None, None, None,
    )  # fmt: skip
