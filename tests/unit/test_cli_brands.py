"""`letterhead brand ...`: the operator makes brands, gives them to domains and checks DNS."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
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


def test_dns_prints_each_records_state_and_fails_until_all_are_right(home) -> None:
    run(home, "create", "mail.a.test", "--tenant", "One", "--name", "A")
    run(home, "use", "a.test", "mail.a.test")
    for _resolver, port in dnsmasq(
        ["--host-record=mail.a.test,127.0.0.1", "--mx-host=a.test,mail.a.test,10"], zones=["a.test"]
    ):
        code, out, _ = run(home, "dns", "a.test", "--json", LETTERHEAD_DNS_RESOLVER=f"127.0.0.1:{port}")
        states = {(r["name"], r["type"]): r["state"] for r in json.loads(out)}
        assert states[("mail.a.test", "A")] == "ok" and states[("a.test", "MX")] == "ok"
        assert states[("autoconfig.a.test", "CNAME")] == "missing"
        code, out, _ = run(home, "dns", "a.test", LETTERHEAD_DNS_RESOLVER=f"127.0.0.1:{port}")
        assert code == 2 and "missing" in out
