"""`letterhead logs search|auth`: the operator's view of the same records the panel shows."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from tests.factories import make_domain, make_mailbox

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
# Year-less syslog stamps are dated by the file's modification time: pin it.
MODIFIED = dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def home(settings, installation, tmp_path: Path):
    with installation.transaction() as session:
        make_mailbox(session, domain=make_domain(session, name="a.test"), local_part="alice")
    files = []
    for name in ("postfix.log", "dovecot.log", "dialogue.log"):
        shutil.copy(FIXTURES / name, tmp_path / name)
        os.utime(tmp_path / name, (MODIFIED, MODIFIED))
        files.append(str(tmp_path / name))
    code, out, err = run(settings.home, "ingest", *files)
    assert code == 0, err
    return settings.home


def run(home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["logs", *args], env={"LETTERHEAD_HOME": str(home)})
    return result.exit_code, result.stdout, result.stderr


def test_search_prints_one_row_per_recipient_with_outcome_and_reason(home) -> None:
    code, out, _ = run(home, "search", "nobody@a.test")
    assert code == 0
    header, row, count = out.splitlines()
    assert header.split() == ["TIME", "CLIENT", "SENDER", "RECIPIENT", "OUTCOME", "STATUS", "REASON"]
    assert row.split() == [
        "2026-11-24T00:19:40+00:00", "client.example[192.0.2.10]", "bob@client.example", "nobody@a.test",
        "refused", "550", "5.1.1", "recipient", "not", "found",
    ]  # fmt: skip
    assert count == "1 of 1 transactions"


def test_search_by_day_lists_that_days_transactions_only(home) -> None:
    code, out, _ = run(home, "search", "--date", "2026-11-24", "--limit", "3")
    assert code == 0
    assert out.splitlines()[-1] == "3 of 8 transactions"
    code, out, _ = run(home, "search", "--date", "2026-11-25", "--json")
    assert [t["queue_ids"] for t in json.loads(out)["transactions"]] == [[], ["4jZVKg4ZFCzJJQ3"]]


def test_search_json_carries_the_smtp_dialogue_in_order(home) -> None:
    code, out, _ = run(home, "search", "4jZVKg4ZFCzJJQ3", "--json")
    assert code == 0
    found = json.loads(out)
    assert found["total"] == 1
    [transaction] = found["transactions"]
    assert transaction["recipients"][0]["outcome"] == "delivered"
    dialogue = transaction["dialogue"]
    assert len(dialogue) == 19
    assert dialogue[0] == {
        "time": "2026-11-25T19:36:23+00:00",
        "from": "server",
        "text": "220 mail.letterhead.test ESMTP",
    }
    assert dialogue[1]["from"] == "client" and dialogue[1]["text"] == "ehlo client.example"
    assert dialogue[-1]["text"] == "250 2.0.0 Ok: queued as 4jZVKg4ZFCzJJQ3"


def test_search_with_dialogue_prints_client_and_server_lines(home) -> None:
    code, out, _ = run(home, "search", "nobody@p.test", "--dialogue")
    assert code == 0
    lines = out.splitlines()
    assert "  19:36:23  C: rcpt TO:<nobody@p.test>" in lines
    assert (
        "  19:36:23  S: 550 5.1.1 <nobody@p.test>: Recipient address rejected: User unknown in virtual mailbox table"
        in lines
    )
    assert lines[lines.index("  19:36:23  C: QUIT") + 1] == "  19:36:23  S: 221 2.0.0 Bye"


def test_a_search_that_finds_nothing_says_so(home) -> None:
    code, out, _ = run(home, "search", "nobody@nowhere.example")
    assert (code, out.splitlines()) == (0, ["(none)", "0 of 0 transactions"])


def test_an_impossible_date_is_refused_before_any_search(home) -> None:
    code, _, err = run(home, "search", "--date", "2026-02-30")
    assert code == 2
    assert "Invalid value for '--date'" in err


def test_auth_lists_login_attempts_newest_first_with_why_they_failed(home) -> None:
    code, out, _ = run(home, "auth", "198.51.100.9")
    assert code == 0
    header, *rows, count = out.splitlines()
    assert header.split() == ["TIME", "SERVICE", "LOGIN", "CLIENT_IP", "SUCCESS", "REASON"]
    assert [row.split()[1:] for row in rows] == [
        ["pop3", "ghost@a.test", "198.51.100.9", "False", "wrong", "password", "or", "unknown", "user"],
        ["imap", "alice@a.test", "198.51.100.9", "False", "wrong", "password", "or", "unknown", "user"],
        ["smtp", "198.51.100.9", "False", "wrong", "password", "or", "unknown", "user"],
    ]
    assert count == "3 of 3 login attempts"


def test_auth_json_finds_a_users_logins_across_services(home) -> None:
    code, out, _ = run(home, "auth", "alice@a.test", "--json")
    assert code == 0
    logins = json.loads(out)["logins"]
    assert [(e["service"], e["success"], e["client_ip"]) for e in logins] == [
        ("imap", False, "198.51.100.9"),
        ("imap", True, "192.0.2.10"),
        ("smtp", True, "203.0.113.5"),
    ]


def test_json_carries_each_recipients_relay_and_the_servers_reply(home) -> None:
    code, out, _ = run(home, "search", "--date", "2026-11-24", "--json")
    assert code == 0
    recipients = [r for t in json.loads(out)["transactions"] for r in t["recipients"]]
    delivered = [r for r in recipients if r["outcome"] == "delivered"]
    assert delivered and all(r["relay"] and r["server_reply"].startswith("250") for r in delivered)
    refused = [r for r in recipients if r["outcome"] == "refused"]
    assert refused and all(r["server_reply"].startswith(("4", "5")) for r in refused)
