"""TLS reports (RFC 8460) as senders mail them, and as an attacker would: parsed, kept per hosted
domain once, refused when hostile, and shown only within the viewer's scope."""

from __future__ import annotations

import gzip
import json
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import TlsReport
from controlplane.services import tls_reports
from controlplane.services.scope import OPERATOR, domain_admin, tenant_admin
from tests.factories import make_domain, make_tenant


def report(*policies: dict, report_id: str = "2026-12-05T00:00:00Z_example") -> dict:
    return {
        "organization-name": "Example Sender Inc.",
        "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
        "contact-info": "smtp-tls-reporting@sender.example",
        "report-id": report_id,
        "policies": list(policies),
    }


def policy(domain: str, ok: int, failed: int, failures: list[dict] | None = None) -> dict:
    entry = {
        "policy": {"policy-type": "sts", "policy-domain": domain, "policy-string": ["version: STSv1"]},
        "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
    }
    if failures is not None:
        entry["failure-details"] = failures
    return entry


EXPIRED = {
    "result-type": "certificate-expired",
    "sending-mta-ip": "192.0.2.10",
    "receiving-mx-hostname": "mail.platform.test",
    "receiving-ip": "198.51.100.5",
    "failed-session-count": 3,
    "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED",
}


def mail(
    content: bytes, content_type: str = "application/tlsrpt+gzip", filename: str = "report.json.gz"
) -> bytes:
    message = EmailMessage()
    message["From"] = "noreply@sender.example"
    message["To"] = "tls-reports@mail.platform.test"
    message["Subject"] = "Report Domain: hosted.test"
    message.set_content("This is an aggregate TLS report.")
    maintype, subtype = content_type.split("/")
    message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def stored(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(TlsReport))


def test_a_gzipped_report_is_kept_for_the_hosted_domains_it_names_and_only_once(db: Session) -> None:
    domain = make_domain(db, name="hosted.test")
    document = report(policy("hosted.test", 120, 3, [EXPIRED]), policy("not-hosted.example", 5, 0))
    message = mail(gzip.compress(json.dumps(document).encode()))

    assert tls_reports.receive_message(db, message) == tls_reports.Kept(["hosted.test"], 0)
    assert tls_reports.receive_message(db, message) == tls_reports.Kept([], 1)  # sent again: kept once

    (shown,) = tls_reports.domain_reports(db, OPERATOR, domain)
    assert (shown.organization, shown.successful_sessions, shown.failed_sessions) == (
        "Example Sender Inc.",
        120,
        3,
    )
    (failure,) = shown.failures
    assert failure.words == "our certificate had expired"
    assert (failure.sending_mta_ip, failure.failed_sessions) == ("192.0.2.10", 3)
    assert failure.details == "X509_V_ERR_CERT_HAS_EXPIRED"
    assert stored(db) == 1


def test_a_plain_json_report_is_read_too(db: Session) -> None:
    make_domain(db, name="hosted.test")
    message = mail(
        json.dumps(report(policy("hosted.test", 7, 0))).encode(), "application/tlsrpt+json", "r.json"
    )
    assert tls_reports.receive_message(db, message).domains == ["hosted.test"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (gzip.compress(b"{" + b" " * (tls_reports.MAX_REPORT_BYTES + 10) + b"}"), "unpacks to more than"),
        (b"\x1f\x8bnot really gzip", "not valid gzip"),
        (gzip.compress(b"[" * 100_000 + b"]" * 100_000), "not valid JSON"),
        (gzip.compress(json.dumps({"policies": []}).encode()), "date-range"),
        (
            gzip.compress(
                json.dumps(
                    report(policy("hosted.test", 1, 0))
                    | {
                        "date-range": {
                            "start-datetime": "0001-01-01T00:00:00+01:00",
                            "end-datetime": "2026-12-05T00:00:00Z",
                        }
                    }
                ).encode()
            ),
            "not a date and time",
        ),
        (
            gzip.compress(
                json.dumps(
                    report(policy("hosted.test", 1, 0))
                    | {
                        "date-range": {
                            "start-datetime": "2026-12-06T00:00:00Z",
                            "end-datetime": "2026-12-05T00:00:00Z",
                        }
                    }
                ).encode()
            ),
            "ends before it starts",
        ),
        (gzip.compress(json.dumps(report(policy("hosted.test", -1, 0))).encode()), "session count"),
        (gzip.compress(json.dumps(report({"policy": "x"})).encode()), "“policy” object"),
    ],
    ids=[
        "gzip-bomb",
        "bad-gzip",
        "deep-json",
        "no-date-range",
        "year-one",
        "backwards",
        "negative-count",
        "wrong-shape",
    ],
)
def test_hostile_or_broken_reports_are_refused_with_words_and_store_nothing(
    db: Session, content: bytes, reason: str
) -> None:
    make_domain(db, name="hosted.test")
    with pytest.raises(ValidationError) as refused:
        tls_reports.receive_message(db, mail(content))
    assert reason in refused.value.message
    assert stored(db) == 0


def test_a_mail_without_a_report_is_refused(db: Session) -> None:
    message = EmailMessage()
    message["From"] = "someone@elsewhere.example"
    message.set_content("hello")
    with pytest.raises(ValidationError, match="carries no TLS report"):
        tls_reports.receive_message(db, message.as_bytes())


def test_reports_are_shown_to_the_domains_admins_and_tenant_only(db: Session) -> None:
    alpha, beta = make_tenant(db, name="Alpha"), make_tenant(db, name="Beta")
    watched = make_domain(db, tenant=alpha, name="watched.test")
    sibling = make_domain(db, tenant=alpha, name="sibling.test")
    make_domain(db, tenant=beta, name="beta.test")
    tls_reports.receive_message(
        db, mail(gzip.compress(json.dumps(report(policy("watched.test", 1, 0))).encode()))
    )

    assert len(tls_reports.domain_reports(db, tenant_admin(alpha.id), watched)) == 1
    assert len(tls_reports.domain_reports(db, domain_admin(alpha.id, watched.id), watched)) == 1
    for outsider in (tenant_admin(beta.id), domain_admin(alpha.id, sibling.id)):
        with pytest.raises(NotFound) as refused:
            tls_reports.domain_reports(db, outsider, watched)
        assert str(refused.value) == "No such domain."
