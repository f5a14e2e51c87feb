"""`letterhead token ...`: the operator makes, lists and revokes API tokens from the shell."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from controlplane.errors import AuthenticationFailed
from controlplane.services import tokens
from tests.factories import make_domain, make_tenant


@pytest.fixture
def home(settings, installation):
    """An installation with tenants One (a.test) and Two (c.test); the CLI finds it by LETTERHEAD_HOME."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One")
        make_domain(session, tenant=one, name="a.test")
        make_domain(session, tenant=make_tenant(session, name="Two"), name="c.test")
    return settings.home


def run(home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["token", *args], env={"LETTERHEAD_HOME": str(home)})
    return result.exit_code, result.stdout, result.stderr


def test_a_created_token_prints_its_secret_once_and_the_secret_works(home, installation) -> None:
    code, out, _ = run(home, "create", "--tenant", "One", "--kind", "tenant", "--name", "billing", "--json")
    assert code == 0, out
    made = json.loads(out)
    assert (made["kind"], made["tenant"], made["domain"], made["name"]) == ("tenant", "One", "", "billing")
    assert made["secret"].startswith(f"lh_{made['prefix']}_")
    with installation.sessions() as session:
        actor, token = tokens.authenticate_token(session, made["secret"])
        assert (actor.kind, token.created_by) == ("tenant_admin", "operator")
    code, listed, _ = run(home, "list", "--tenant", "One", "--json")
    assert code == 0 and made["secret"] not in listed
    assert [row["prefix"] for row in json.loads(listed)] == [made["prefix"]]


def test_the_table_output_names_the_secret_once(home) -> None:
    code, out, _ = run(
        home, "create", "--tenant", "One", "--domain", "a.test", "--kind", "domain", "--name", "robot"
    )
    assert code == 0 and out.count("Secret (shown once") == 1 and "a.test" in out
    code, listed, _ = run(home, "list", "--tenant", "One")
    assert code == 0 and "robot" in listed and "lh_" not in listed


def test_a_signup_token_carries_its_hourly_limit(home) -> None:
    code, out, _ = run(home, "create", "--tenant", "One", "--domain", "a.test", "--kind", "signup",
                       "--name", "form", "--hourly-limit", "7", "--json")  # fmt: skip
    assert code == 0, out
    assert (json.loads(out)["kind"], json.loads(out)["hourly_limit"]) == ("signup", 7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "Nobody", "--kind", "tenant"], "No tenant named"),
        (["--tenant", "One", "--kind", "domain"], "Name the domain"),
        (["--tenant", "One", "--kind", "domain", "--domain", "c.test"], "Name the domain"),  # Two's domain
        (["--tenant", "One", "--kind", "domain", "--domain", "nowhere.test"], "No such domain"),
        (["--tenant", "One", "--kind", "tenant", "--domain", "a.test"], "name no domain"),
        (
            ["--tenant", "One", "--kind", "domain", "--domain", "a.test", "--hourly-limit", "5"],
            "hourly limit",
        ),
        (
            ["--tenant", "One", "--kind", "signup", "--domain", "a.test", "--hourly-limit", "0"],
            "between 1 and",
        ),
    ],
)
def test_a_refused_token_is_explained_and_nothing_is_made(home, args, message) -> None:
    code, out, err = run(home, "create", "--name", "x", *args)
    assert code == 1 and message in err and "Secret" not in out
    for tenant in ("One", "Two"):
        assert run(home, "list", "--tenant", tenant, "--json")[1].strip() == "[]"


def test_revoking_by_prefix_refuses_the_token_from_then_on(home, installation) -> None:
    made = json.loads(
        run(home, "create", "--tenant", "One", "--kind", "tenant", "--name", "old", "--json")[1]
    )
    code, out, _ = run(home, "revoke", f"lh_{made['prefix']}")
    assert code == 0 and f"Revoked the tenant token {made['prefix']} (old) of One" in out
    with installation.sessions() as session, pytest.raises(AuthenticationFailed):
        tokens.authenticate_token(session, made["secret"])
    [row] = json.loads(run(home, "list", "--tenant", "One", "--json")[1])
    assert row["revoked_at"] != ""
    assert run(home, "revoke", made["prefix"])[0] == 0  # revoking twice changes nothing


def test_an_unknown_prefix_is_refused(home) -> None:
    code, _, err = run(home, "revoke", "0123456789ab")
    assert code == 1 and "No token with the prefix" in err
