"""The domain's DMARC page in the panel: the chart and the senders from receivers' reports, for the
domain's admins and its tenant's; another tenant's admin finds no such domain."""

from __future__ import annotations

import datetime as dt

from controlplane.services import dmarc_reports
from tests.unit.services.test_dmarc_reports import report_mail, report_xml, zipped
from tests.web.test_admin_panel import log_in


def test_the_dmarc_page_shows_each_day_and_sender_to_the_domains_admins_only(app, world) -> None:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with world.transaction() as session:
        dmarc_reports.receive_message(
            session, report_mail(zipped(report_xml(domain="a.test", begin=today)), "r.zip", "application/zip")
        )
    for login in ("boss", "ann@a.test"):
        client = app.test_client()
        assert log_in(client, login).status_code == 302
        page = client.get("/admin/domains/a.test/dmarc")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "1 report over the last 30 days" in html
        assert f'data-day="{today.date().isoformat()}" data-passing="40" data-failing="3"' in html
        assert 'data-source="192.0.2.10"' in html and "passes DMARC" in html
        assert 'data-source="198.51.100.7"' in html and "fails DMARC" in html
    rival = app.test_client()
    assert log_in(rival, "rival").status_code == 302
    refused = rival.get("/admin/domains/a.test/dmarc")
    assert refused.status_code == 404 and "192.0.2.10" not in refused.get_data(as_text=True)
    quiet = app.test_client()
    log_in(quiet, "boss")
    assert "No DMARC report received" in quiet.get("/admin/domains/b.test/dmarc").get_data(as_text=True)
