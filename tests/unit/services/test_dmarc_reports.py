"""DMARC aggregate reports: read from the mail a receiver sends (XML, zip or gzip), kept for the
hosted domain they are about and only for its admins, and hostile ones refused safely."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import zipfile
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import DmarcReport
from controlplane.services import dmarc_reports, scope
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_tenant

BEGIN = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def report_xml(
    domain: str = "own.test",
    report_id: str = "r-1",
    rows: tuple[tuple[str, int, str, str, str], ...] = (
        ("192.0.2.10", 40, "pass", "pass", "none"),
        ("198.51.100.7", 3, "fail", "fail", "reject"),
    ),
    begin: dt.datetime = BEGIN,
) -> bytes:
    records = "".join(
        f"<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>"
        f"<disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated></row>"
        f"<identifiers><header_from>{domain}</header_from></identifiers><auth_results><dkim><domain>{domain}</domain>"
        f"<result>{dkim}</result></dkim><spf><domain>{domain}</domain><result>{spf}</result></spf></auth_results></record>"
        for ip, count, dkim, spf, disposition in rows
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><feedback><report_metadata><org_name>big-mailer.example</org_name>'
        f"<email>noreply-dmarc@big-mailer.example</email><report_id>{report_id}</report_id><date_range>"
        f"<begin>{int(begin.timestamp())}</begin><end>{int(begin.timestamp()) + 86399}</end></date_range>"
        f"</report_metadata><policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p>"
        f"<pct>100</pct></policy_published>{records}</feedback>"
    ).encode()


def report_mail(attachment: bytes, filename: str, content_type: str) -> bytes:
    message = EmailMessage()
    message["From"] = "noreply-dmarc@big-mailer.example"
    message["To"] = "dmarc-reports@platform.test"
    message["Subject"] = "Report domain: own.test Submitter: big-mailer.example"
    message.set_content("This is an aggregate report.")
    maintype, subtype = content_type.split("/")
    message.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def zipped(data: bytes, name: str = "report.xml") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        # A fixed time: the same bytes in every test process (pytest-xdist compares collections).
        archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 12, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("attachment", "filename", "content_type"),
    [
        (zipped(report_xml()), "big-mailer.example!own.test!1!2.zip", "application/zip"),
        (gzip.compress(report_xml()), "big-mailer.example!own.test!1!2.xml.gz", "application/gzip"),
        (report_xml(), "report.xml", "text/xml"),
    ],
    ids=["zip", "gzip", "xml"],
)
def test_a_report_is_read_from_zip_gzip_or_plain_xml(attachment, filename, content_type) -> None:
    report = dmarc_reports.report_from_message(report_mail(attachment, filename, content_type))
    assert (report.organization, report.report_id, report.domain, report.policy) == (
        "big-mailer.example", "r-1", "own.test", "none",
    )  # fmt: skip
    assert report.begins_at == BEGIN
    assert [
        (r.source_ip, r.messages, r.dkim_aligned, r.spf_aligned, r.disposition) for r in report.records
    ] == [
        ("192.0.2.10", 40, True, True, "none"),
        ("198.51.100.7", 3, False, False, "reject"),
    ]
    assert report.records[0].dkim_results == "own.test: pass"


def test_a_tls_report_is_not_taken_for_a_dmarc_one() -> None:
    with pytest.raises(dmarc_reports.NoDmarcReport):
        dmarc_reports.report_from_message(report_mail(b"{}", "report.json.gz", "application/tlsrpt+gzip"))


BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><feedback>&lol3;</feedback>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&secret;</org_name></report_metadata></feedback>"""


@pytest.mark.parametrize(
    ("attachment", "filename", "content_type", "words"),
    [
        (zipped(b"<" * 60 * 1024 * 1024), "bomb.zip", "application/zip", "unpacks to more than 20 MB"),
        (
            gzip.compress(b" " * 60 * 1024 * 1024),
            "bomb.xml.gz",
            "application/gzip",
            "unpacks to more than 20 MB",
        ),
        (BILLION_LAUGHS, "laughs.xml", "text/xml", "declares a DTD or entities"),
        (EXTERNAL_ENTITY, "secret.xml", "text/xml", "declares a DTD or entities"),
        (b"<feedback><report_metadata>", "broken.xml", "text/xml", "not valid XML"),
        (b"<html>hello</html>", "page.xml", "text/xml", "no <feedback>"),
        (b"not a zip at all", "report.zip", "application/zip", "not a readable zip archive"),
        (report_xml().replace(b"192.0.2.10", b"not-an-ip"), "r.xml", "text/xml", "is not an IP address"),
        (
            report_xml(begin=dt.datetime(1990, 1, 1, tzinfo=dt.UTC)),
            "r.xml",
            "text/xml",
            "not a time a report covers",
        ),
        (
            report_xml(begin=dt.datetime(2199, 1, 1, tzinfo=dt.UTC)),
            "r.xml",
            "text/xml",
            "not a time a report covers",
        ),
        (
            zipped(b"<feedback>" + b"<a/>" * 1_000_000 + b"</feedback>"),
            "many.zip",
            "application/zip",
            "more than 800000 elements",
        ),
    ],
    ids=[
        "zip-bomb",
        "gzip-bomb",
        "billion-laughs",
        "external-entity",
        "broken-xml",
        "not-dmarc",
        "not-zip",
        "bad-source-ip",
        "too-old",
        "future",
        "too-many-elements",
    ],
)
def test_hostile_or_broken_reports_are_refused_in_words(attachment, filename, content_type, words) -> None:
    with pytest.raises(ValidationError) as refused:
        dmarc_reports.report_from_message(report_mail(attachment, filename, content_type))
    assert words in str(refused.value)
    assert "root:" not in str(refused.value)


def test_reports_are_kept_once_for_hosted_domains_and_shown_to_their_admins_only(db: Session) -> None:
    tenant, rival = make_tenant(db), make_tenant(db)
    own = make_domain(db, tenant=tenant, name="own.test")
    sister = make_domain(db, tenant=tenant, name="sister.test")
    make_domain(db, tenant=rival, name="rival.test")
    first = dmarc_reports.receive_message(db, report_mail(zipped(report_xml()), "r.zip", "application/zip"))
    again = dmarc_reports.receive_message(db, report_mail(zipped(report_xml()), "r.zip", "application/zip"))
    elsewhere = dmarc_reports.receive_message(
        db, report_mail(report_xml(domain="not-hosted.example"), "r.xml", "text/xml")
    )
    next_day = report_xml(
        report_id="r-2",
        begin=BEGIN + dt.timedelta(days=1),
        rows=(("192.0.2.10", 10, "pass", "fail", "none"),),
    )
    dmarc_reports.receive_message(db, report_mail(next_day, "r2.xml", "text/xml"))
    assert (first.domain, first.already_kept, again.already_kept, elsewhere.domain) == (
        "own.test",
        False,
        True,
        "",
    )
    assert db.scalar(select(func.count()).select_from(DmarcReport)) == 2

    summary = dmarc_reports.domain_dmarc(
        db, scope.domain_admin(tenant.id, own.id), own, today=dt.date(2026, 12, 5)
    )
    assert summary.reports == 2
    by_day = {day.day: (day.passing, day.failing) for day in summary.days if day.total}
    assert by_day == {dt.date(2026, 12, 1): (40, 3), dt.date(2026, 12, 2): (10, 0)}
    first_sender, second_sender = summary.senders
    assert (first_sender.source_ip, first_sender.messages, first_sender.verdict) == (
        "192.0.2.10",
        50,
        "passes DMARC",
    )
    assert (first_sender.dkim_aligned, first_sender.spf_aligned) == (50, 40)
    assert (second_sender.rejected, second_sender.verdict.startswith("fails DMARC")) == (3, True)
    for stranger in (scope.domain_admin(tenant.id, sister.id), scope.tenant_admin(rival.id)):
        with pytest.raises(NotFound):
            dmarc_reports.domain_dmarc(db, stranger, own)
    assert dmarc_reports.domain_dmarc(db, OPERATOR, sister).reports == 0
