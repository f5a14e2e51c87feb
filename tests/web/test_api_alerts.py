"""Domain alerts through the API and the panel: set by a domain's admins for an address of the
domain, refused in words for any other address, invisible to another domain's token."""

from __future__ import annotations

from tests.web import test_api
from tests.web.test_admin_panel import log_in, post
from tests.web.test_api import problem_of

api, secrets = test_api.api, test_api.secrets


def test_a_domain_token_sets_and_reads_its_domains_alerts_only(api) -> None:
    body = {"recipient": "ann@a.test", "bounce_threshold": 5, "storage_warning": True}
    saved = api("a", "PUT", "/domains/a.test/alerts", json=body)
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json() == body
    assert api("one", "GET", "/domains/a.test/alerts").get_json() == body
    outside = api("a", "PUT", "/domains/a.test/alerts", json={**body, "recipient": "boss@elsewhere.example"})
    assert problem_of(outside, 422)["detail"] == "Alerts go to an address of a.test (a mailbox or an alias)."
    assert api("b", "GET", "/domains/a.test/alerts").status_code == 404
    assert api("two", "PUT", "/domains/a.test/alerts", json=body).status_code == 404
    assert api("one", "GET", "/domains/b.test/alerts").status_code == 404  # none set
    off = api(
        "a", "PUT", "/domains/a.test/alerts", json={"recipient": "ann@a.test", "bounce_threshold": None}
    )
    assert off.status_code == 200 and api("a", "GET", "/domains/a.test/alerts").status_code == 404


def test_the_domain_page_saves_the_alerts_form(app, world) -> None:
    client = app.test_client()
    assert log_in(client, "ann@a.test").status_code == 302
    page = client.get("/admin/domains/a.test").get_data(as_text=True)
    assert 'name="recipient" value="ann@a.test"' in page  # the admin's own address, suggested
    saved = post(client, "/admin/domains/a.test/alerts",
                 {"recipient": "ann@a.test", "bounce_threshold": "3", "storage_warning": "on"})  # fmt: skip
    assert saved.status_code == 302
    page = client.get("/admin/domains/a.test").get_data(as_text=True)
    assert (
        "Alerts saved." in page and 'name="bounce_threshold" inputmode="numeric" size="6" value="3"' in page
    )
    refused = post(client, "/admin/domains/a.test/alerts", {"recipient": "x@b.test", "bounce_threshold": "3"})
    assert refused.status_code == 302
    assert "Alerts go to an address of a.test" in client.get("/admin/domains/a.test").get_data(as_text=True)
