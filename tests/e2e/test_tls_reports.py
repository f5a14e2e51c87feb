"""A TLS report's whole way: a sender's MTA mails it over SMTP to the address every domain's
TLS-RPT record names, Postfix spools it, `letterhead tls-reports read` keeps it, and a tenant
reads it through the API over HTTPS on the platform host; another tenant learns nothing."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from controlplane.daemons.process import wait_until
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brand_dns, domains, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import api_call
from tests.unit.services import test_dmarc_reports

pytestmark = pytest.mark.e2e

KB = 1024


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ScratchStack, dict[str, str]]]:
    scratch = ScratchStack()
    try:
        scratch.start(web=True)
        secrets = {}
        with scratch.installation.transaction() as session:
            for name, domain_name in (("Alpha", "alpha-rpt.test"), ("Beta", "beta-rpt.test")):
                tenant = tenants.create_tenant(session, OPERATOR, name=name, storage_pool_bytes=1000 * KB)
                domains.create_domain(
                    session, OPERATOR, tenant=tenant, name=domain_name, max_mailboxes=5, max_aliases=5
                )
                _, secrets[name] = tokens.create_token(
                    session, OPERATOR, tenant=tenant, kind="tenant", name="t"
                )
        yield scratch, secrets
    finally:
        scratch.stop()


def report_mail(stack: ScratchStack, attachment: bytes, report_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "noreply-smtp-tls-reporting@sender.test"
    message["To"] = brand_dns.tls_report_address(stack.settings)
    message["Subject"] = f"Report Domain: alpha-rpt.test Submitter: sender.test Report-ID: <{report_id}>"
    message["TLS-Report-Domain"] = "alpha-rpt.test"
    message["TLS-Report-Submitter"] = "sender.test"
    message.set_content("This is an aggregate TLS report from sender.test.")
    message.add_attachment(
        attachment,
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=f"sender.test!alpha-rpt.test!{report_id}.json.gz",
    )
    return message


def report_document(report_id: str) -> dict:
    def policy(domain: str, ok: int, failures: list[dict]) -> dict:
        return {
            "policy": {"policy-type": "sts", "policy-domain": domain, "mx-host": ["mail.letterhead.test"]},
            "summary": {"total-successful-session-count": ok,
                        "total-failure-session-count": sum(f["failed-session-count"] for f in failures)},
            "failure-details": failures,
        }  # fmt: skip

    expired = {"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.25",
               "receiving-mx-hostname": "mail.letterhead.test", "failed-session-count": 4}  # fmt: skip
    return {
        "organization-name": "Sender Test Mail",
        "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
        "contact-info": "tls-reports@sender.test",
        "report-id": report_id,
        "policies": [policy("alpha-rpt.test", 250, [expired]), policy("beta-rpt.test", 40, []),
                     policy("nobody-hosts-this.test", 9, [])],
    }  # fmt: skip


def deliver(stack: ScratchStack, message: EmailMessage) -> None:
    """As a sending MTA: port 25, the platform host's TLS-report address."""
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("mta.sender.test")
        smtp.send_message(message)


def read_spool(stack: ScratchStack) -> list[str]:
    """`letterhead tls-reports read`, as the operator (or the periodic runner, every 30 s) runs it."""
    return letterhead(stack.home, "tls-reports", "read").stdout.splitlines()


def until_reports(stack: ScratchStack, secret: str, domain: str, count: int, timeout: float = 45.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        status, body = api_call(stack, secret, "GET", f"/domains/{domain}/tls-reports")
        assert status == 200, body
        if len(body) >= count or time.monotonic() > deadline:
            return body
        read_spool(stack)
        time.sleep(0.5)


def test_a_mailed_report_is_read_and_shown_to_its_domains_tenant_only(world) -> None:
    stack, secrets = world
    document = report_document("2026-12-05_alpha-1")
    deliver(stack, report_mail(stack, gzip.compress(json.dumps(document).encode()), "2026-12-05_alpha-1"))

    (alpha_report,) = until_reports(stack, secrets["Alpha"], "alpha-rpt.test", 1)

    assert (alpha_report["organization"], alpha_report["successful_sessions"], alpha_report["failed_sessions"]) == (
        "Sender Test Mail", 250, 4,
    )  # fmt: skip
    (failure,) = alpha_report["failures"]
    assert failure["explanation"] == "our certificate had expired"
    assert failure["sending_mta_ip"] == "192.0.2.25"
    (beta_report,) = until_reports(stack, secrets["Beta"], "beta-rpt.test", 1)
    assert beta_report["failures"] == [] and beta_report["successful_sessions"] == 40
    # Beta asking for Alpha's domain gets what a domain that does not exist gets.
    outsider = api_call(stack, secrets["Beta"], "GET", "/domains/alpha-rpt.test/tls-reports")
    nowhere = api_call(stack, secrets["Beta"], "GET", "/domains/no-such-domain.test/tls-reports")
    assert outsider[0] == nowhere[0] == 404
    assert json.dumps(outsider[1]).replace("alpha-rpt.test", "X") == json.dumps(nowhere[1]).replace(
        "no-such-domain.test", "X"
    )
    # The operator's view says the same, in words.
    shown = letterhead(stack.home, "tls-reports", "show", "alpha-rpt.test").stdout
    assert "Sender Test Mail" in shown and "4 × our certificate had expired" in shown


def test_the_same_report_mailed_again_is_kept_once(world) -> None:
    stack, secrets = world
    document = report_document("2026-12-05_alpha-1")
    deliver(stack, report_mail(stack, gzip.compress(json.dumps(document).encode()), "2026-12-05_alpha-1"))
    assert wait_until(lambda: any("was kept before" in line for line in read_spool(stack)), timeout=30)

    assert len(until_reports(stack, secrets["Alpha"], "alpha-rpt.test", 2, timeout=2)) == 1


def test_a_gzip_bomb_is_refused_and_kept_aside_and_mail_goes_on(world) -> None:
    stack, secrets = world
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}")
    assert len(bomb) < 200 * KB
    deliver(stack, report_mail(stack, bomb, "bomb"))

    refused = stack.settings.tls_report_spool.parent / "tls-refused"
    deadline = time.monotonic() + 45
    while not (refused.is_dir() and any(refused.iterdir())) and time.monotonic() < deadline:
        read_spool(stack)
        time.sleep(0.5)

    assert refused.is_dir() and len(list(refused.iterdir())) == 1
    assert len(until_reports(stack, secrets["Alpha"], "alpha-rpt.test", 2, timeout=1)) == 1
    # A good one after it is read as before.
    document = report_document("2026-12-06_alpha-2")
    deliver(stack, report_mail(stack, gzip.compress(json.dumps(document).encode()), "2026-12-06_alpha-2"))
    assert len(until_reports(stack, secrets["Alpha"], "alpha-rpt.test", 2)) == 2


def test_a_mailed_dmarc_report_is_read_and_shown_to_its_domains_tenant_only(world) -> None:
    """The DMARC record every domain publishes names the platform's dmarc-reports@: a receiver's
    zipped aggregate report mailed there lands in the same spool and is shown per domain."""
    stack, secrets = world
    with stack.installation.sessions() as session:
        plan = brand_dns.dns_plan(stack.settings, domains.find_domain(session, "alpha-rpt.test"))
    (dmarc,) = [record for record in plan if record.judge == "dmarc"]
    address = brand_dns.dmarc_report_address(stack.settings)
    assert dmarc.value.endswith(f"; rua=mailto:{address}")
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    xml = test_dmarc_reports.report_xml(domain="alpha-rpt.test", report_id="dmarc-alpha-1", begin=today)
    message = EmailMessage()
    message["From"], message["To"] = "noreply-dmarc@big-mailer.example", address
    message["Subject"] = "Report domain: alpha-rpt.test Submitter: big-mailer.example"
    message.set_content("This is an aggregate report.")
    message.add_attachment(test_dmarc_reports.zipped(xml), maintype="application", subtype="zip",
                           filename="big-mailer.example!alpha-rpt.test!1!2.zip")  # fmt: skip
    deliver(stack, message)
    assert wait_until(
        lambda: any(
            line.startswith("DMARC report") and "kept for alpha-rpt.test" in line
            for line in read_spool(stack)
        ),
        timeout=30,
    )
    status, summary = api_call(stack, secrets["Alpha"], "GET", "/domains/alpha-rpt.test/dmarc-reports")
    assert status == 200, summary
    assert summary["reports"] == 1
    assert [(s["source_ip"], s["messages"], s["passing"]) for s in summary["senders"]] == [
        ("192.0.2.10", 40, 40), ("198.51.100.7", 3, 0),
    ]  # fmt: skip
    assert summary["days"][-1] == {"day": today.date().isoformat(), "passing": 40, "failing": 3}
    outsider = api_call(stack, secrets["Beta"], "GET", "/domains/alpha-rpt.test/dmarc-reports")
    assert outsider[0] == 404 and "192.0.2.10" not in json.dumps(outsider[1])
