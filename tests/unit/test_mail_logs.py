"""Searching ingested mail logs: matching by address, IP, message-id, queue ID and day, within scope."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.orm import Session

import cli
from controlplane.errors import NotInScope
from controlplane.logs.ingest import ingest_file
from controlplane.models import AuthEvent, MailTransaction
from controlplane.services import mail_logs
from controlplane.services.scope import OPERATOR, domain_admin, tenant_admin
from tests.factories import make_domain, make_mailbox, make_tenant

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


@pytest.fixture
def ingested(db: Session, tmp_path: Path):
    tenant = make_tenant(db, name="One")
    a_test = make_domain(db, tenant=tenant, name="a.test")
    make_mailbox(db, domain=a_test, local_part="alice")
    other = make_domain(db, tenant=make_tenant(db, name="Two"), name="client.example")
    db.commit()
    for name in ("postfix.log", "dovecot.log"):
        shutil.copy(FIXTURES / name, tmp_path / name)
        ingest_file(db, tmp_path / name, reference=REFERENCE)
    return tenant, a_test, other


def _message_ids(views: list[mail_logs.TransactionView]) -> list[str]:
    return [view.transaction.message_id for view in views]


def test_search_matches_message_id_queue_id_ip_and_recipient(db: Session, ingested) -> None:
    by_message_id, _ = mail_logs.search_transactions(db, OPERATOR, "<alias-2@client.example>")
    by_queue_id, _ = mail_logs.search_transactions(db, OPERATOR, "0F1E2D3C4B5")
    by_recipient, _ = mail_logs.search_transactions(db, OPERATOR, "nobody@a.test")
    by_ip, total = mail_logs.search_transactions(db, OPERATOR, "203.0.113.5")
    assert _message_ids(by_message_id) == ["alias-2@client.example"]
    assert _message_ids(by_queue_id) == ["filtered-5@client.example"]
    typed_lower, _ = mail_logs.search_transactions(db, OPERATOR, "0f1e2d3c4b5")
    assert _message_ids(typed_lower) == ["filtered-5@client.example"]
    assert [v.recipients[0].reason for v in by_recipient] == ["recipient not found"]
    assert (_message_ids(by_ip), total) == (["deferred-3@a.test"], 1)


@pytest.mark.parametrize("search", ["mail", "logins"])
def test_a_row_stored_during_a_search_is_in_neither_its_count_nor_its_page(
    db: Session, ingested, installation, search: str
) -> None:
    # The log follower stores a matching row just after the search counted (SQLAlchemy's event
    # on the count statement), before it reads its page.
    stored: list[int] = []

    def store_one_more(_conn, _cursor, statement: str, *_args) -> None:
        if stored or "count(*)" not in statement:
            return
        with installation.transaction() as other:
            row = (
                MailTransaction(time=REFERENCE, client_ip="203.0.113.5")
                if search == "mail"
                else AuthEvent(time=REFERENCE, service="imap", login="alice@a.test", account="alice@a.test",
                               client_ip="203.0.113.5", network="203.0.113.0/24", success=False)
            )  # fmt: skip
            other.add(row)
            other.flush()
            stored.append(row.id)

    engine = db.get_bind()
    event.listen(engine, "after_cursor_execute", store_one_more)
    try:
        if search == "mail":
            views, total = mail_logs.search_transactions(db, OPERATOR, "203.0.113.5")
            found = [view.transaction.id for view in views]
        else:
            events, total = mail_logs.search_logins(db, OPERATOR, "203.0.113.5")
            found = [login.id for login in events]
    finally:
        event.remove(engine, "after_cursor_execute", store_one_more)
    assert stored and stored[0] not in found
    assert total == len(found) > 0


def test_search_by_alias_address_finds_the_fanned_out_message(db: Session, ingested) -> None:
    found, _ = mail_logs.search_transactions(db, OPERATOR, "info@a.test")
    assert _message_ids(found) == ["alias-2@client.example"]


def test_search_by_day_excludes_other_days(db: Session, ingested) -> None:
    _, that_day = mail_logs.search_transactions(db, OPERATOR, on=dt.date(2026, 11, 24))
    _, next_day = mail_logs.search_transactions(db, OPERATOR, on=dt.date(2026, 11, 25))
    assert (that_day, next_day) == (8, 0)


def test_a_domain_admin_sees_only_mail_to_or_from_their_domain(db: Session, ingested) -> None:
    tenant, a_test, _ = ingested
    found, _ = mail_logs.search_transactions(db, domain_admin(tenant.id, a_test.id), domain=a_test)
    recipients = {r.recipient for view in found for r in view.recipients}
    assert "x@elsewhere.example" not in recipients  # the relay attempt touched no domain of ours
    assert {"alice@a.test", "nobody@a.test", "dave@remote.example"} <= recipients


def test_the_sending_domain_sees_every_recipient_of_its_message(db: Session, ingested) -> None:
    tenant, a_test, client_example = ingested
    other_domains, _ = mail_logs.search_transactions(
        db, domain_admin(client_example.tenant_id, client_example.id), "alias-2@client.example",
        domain=client_example,
    )  # fmt: skip
    assert {r.recipient for r in other_domains[0].recipients} == {"alice@a.test", "carol@a.test"}


def test_only_the_operator_searches_every_domain(db: Session, ingested) -> None:
    tenant, _, _ = ingested
    with pytest.raises(NotInScope):
        mail_logs.search_transactions(db, tenant_admin(tenant.id), "alice@a.test")


def test_login_search_is_scoped_to_the_tenants_accounts(db: Session, ingested) -> None:
    tenant, _, _ = ingested
    mine, _ = mail_logs.search_logins(db, tenant_admin(tenant.id), tenant=tenant)
    everything, _ = mail_logs.search_logins(db, OPERATOR, "198.51.100.9")
    assert {event.login for event in mine} == {"alice@a.test", "bob@a.test", "ghost@a.test"}
    assert [(e.service, e.success) for e in everything] == [
        ("pop3", False),
        ("imap", False),
        ("smtp", False),
    ]


def test_cli_ingests_then_searches_and_lists_logins(settings, installation, tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    shutil.copy(FIXTURES / "postfix.log", log)
    env = {"LETTERHEAD_HOME": str(settings.home)}
    runner = CliRunner()
    ingested = runner.invoke(cli.main, ["logs", "ingest", str(log), "--json"], env=env)
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.stdout)[0]["unparsed"] == 3
    searched = runner.invoke(cli.main, ["logs", "search", "nobody@a.test", "--json"], env=env)
    assert searched.exit_code == 0, searched.output
    [transaction] = json.loads(searched.stdout)["transactions"]
    assert transaction["recipients"][0]["reason"] == "recipient not found"
    table = runner.invoke(cli.main, ["logs", "search", "--date", "2026-11-24"], env=env)
    assert "relay denied" in table.stdout
    logins = runner.invoke(cli.main, ["logs", "auth", "alice@a.test", "--json"], env=env)
    assert json.loads(logins.stdout)["logins"][0]["service"] == "smtp"


def _visible_to(db: Session, tenant) -> list[str]:
    views, _ = mail_logs.search_transactions(
        db, tenant_admin(tenant.id, name="admin:x"), "alice@a.test", tenant=tenant
    )
    return _message_ids(views)


def test_mail_logged_before_its_domain_existed_becomes_the_new_domains(db: Session, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)  # a.test is not hosted yet
    tenant = make_tenant(db, name="Late")
    make_domain(db, tenant=tenant, name="a.test")
    assert "delivered-1@client.example" in _visible_to(db, tenant)


def test_a_previous_owners_mail_stays_out_of_sight_when_the_name_is_created_again(
    db: Session, ingested
) -> None:
    from controlplane.services import domains

    first_owner, a_test, _other = ingested
    assert "delivered-1@client.example" in _visible_to(db, first_owner)
    domains.delete_domain(db, OPERATOR, a_test)
    newcomer = make_tenant(db, name="Newcomer")
    make_domain(db, tenant=newcomer, name="a.test")
    assert _visible_to(db, newcomer) == []
