"""`letterhead domain dkim|dkim-rotate|spam`, `tenant limits`, `mailbox set-hourly-limit`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from tests.factories import make_domain, make_mailbox, make_tenant


@pytest.fixture
def home(settings, installation):
    with installation.transaction() as session:
        tenant = make_tenant(session, name="One")
        domain = make_domain(session, tenant=tenant, name="a.test")
        make_mailbox(session, domain=domain, local_part="ann")
    return settings.home


def run(home, *args: str) -> tuple[int, object]:
    result = CliRunner().invoke(cli.main, [*args, "--json"], env={"LETTERHEAD_HOME": str(home)})
    return result.exit_code, (json.loads(result.stdout) if result.exit_code == 0 else result.stderr)


def test_dkim_keys_are_shown_and_rotated(home) -> None:
    code, keys = run(home, "domain", "dkim", "a.test")
    assert code == 0 and [k["state"] for k in keys] == ["active"]
    assert keys[0]["record_name"] == f"{keys[0]['selector']}._domainkey.a.test"
    assert keys[0]["record_value"].startswith("v=DKIM1; k=rsa; p=MII")
    code, rotated = run(home, "domain", "dkim-rotate", "a.test")
    assert code == 0 and [k["state"] for k in rotated] == ["active", "retiring"]
    assert rotated[1]["selector"] == keys[0]["selector"] and rotated[1]["retire_after"]


def test_spam_thresholds_are_set_shown_and_reset(home) -> None:
    code, shown = run(home, "domain", "spam", "a.test", "--junk-score", "4", "--reject-score", "12")
    assert code == 0 and (shown["junk_score"], shown["reject_score"], shown["junk_score_is_default"]) == (
        4,
        12,
        False,
    )
    code, shown = run(home, "domain", "spam", "a.test", "--reject-score", "default")
    assert code == 0 and (shown["junk_score"], shown["reject_score"], shown["reject_score_is_default"]) == (
        4,
        15,
        True,
    )
    code, error = run(home, "domain", "spam", "a.test", "--junk-score", "20")
    assert code != 0 and "below the reject score" in error


def test_sending_limits_for_a_tenant_and_a_mailbox(home) -> None:
    code, tenant = run(
        home, "tenant", "limits", "One", "--mailbox-hourly-messages", "40", "--max-recipients", "9"
    )
    assert code == 0 and (tenant["mailbox_hourly_messages"], tenant["max_recipients_per_message"]) == (40, 9)
    code, shown = run(home, "mailbox", "set-hourly-limit", "ann@a.test", "--messages", "5")
    assert code == 0 and (shown["hourly_messages"], shown["is_tenant_default"]) == (5, False)
    code, shown = run(home, "mailbox", "set-hourly-limit", "ann@a.test", "--messages", "default")
    assert code == 0 and (shown["hourly_messages"], shown["is_tenant_default"]) == (40, True)


def test_greylisting_is_turned_on_and_off(home) -> None:
    code, shown = run(home, "domain", "spam", "a.test", "--greylisting")
    assert code == 0 and shown["greylisting"] is True
    code, shown = run(home, "domain", "spam", "a.test")
    assert code == 0 and shown["greylisting"] is True
    code, shown = run(home, "domain", "spam", "a.test", "--no-greylisting")
    assert code == 0 and shown["greylisting"] is False
