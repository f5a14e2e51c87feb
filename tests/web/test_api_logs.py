"""The logs API: the panel's viewers over bearer tokens, with the same scoping.

Logs are read by the real ingestion code from the lines in tests/web/test_admin_logs.py.
Each refusal has a rightful twin that gets the record, so it fails if a scope check goes.
"""

from __future__ import annotations

import json

from tests.web import test_admin_logs, test_api
from tests.web.test_admin_logs import transaction_id
from tests.web.test_api import problem_of

# Fixtures shared with the panel's logs tests and the other API tests.
logged, talked = test_admin_logs.logged, test_admin_logs.talked
api, secrets = test_api.api, test_api.secrets


def items(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


def message_ids(response) -> set[str]:
    return {item["message_id"] for item in items(response)}


def test_a_tenant_token_lists_a_day_and_filters_it(api, logged) -> None:
    day = api("one", "GET", "/logs/transactions?date=2026-11-24")
    assert message_ids(day) == {"to-ann@sender.example", "to-bob@sender.example", "", "big@sender.example"}
    assert day.get_json()["total"] == 4
    assert message_ids(api("one", "GET", "/logs/transactions?date=2026-11-24&result=bounced")) == {
        "big@sender.example"
    }
    assert message_ids(api("one", "GET", "/logs/transactions?date=2026-11-24&domain=b.test")) == {
        "to-bob@sender.example",
        "",
    }
    assert message_ids(api("one", "GET", "/logs/transactions?direction=out")) == {"from-bob@b.test"}


def test_search_across_days_returns_the_envelope_and_each_recipients_result(api, logged) -> None:
    [found] = items(api("one", "GET", "/logs/transactions", query_string={"q": "<big@sender.example>"}))
    assert (found["client_name"], found["client_ip"], found["sender"], found["size"], found["queue_ids"]) == (
        "sender.example",
        "192.0.2.20",
        "carl@sender.example",
        90000,
        ["5E6F7A8B9C0"],
    )
    [recipient] = found["recipients"]
    assert recipient["recipient"] == "ann@a.test"
    assert (recipient["outcome"], recipient["result"], recipient["reason"]) == (
        "bounced",
        "bounced",
        "mailbox full",
    )
    assert recipient["status_meaning"] == "permanent failure; the mailbox is full"
    by_ip = items(api("one", "GET", "/logs/transactions", query_string={"q": "198.51.100.30"}))
    assert [r["reason"] for item in by_ip for r in item["recipients"]] == ["recipient not found"]


def test_one_transaction_comes_with_its_dialogue(api, logged) -> None:
    response = api("a", "GET", f"/logs/transactions/{transaction_id(logged, 'to-ann@sender.example')}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["message_id"] == "to-ann@sender.example" and isinstance(body["dialogue"], list)
    assert [r["outcome"] for r in body["recipients"]] == ["delivered"]


def test_the_dialogue_tells_client_from_server_and_hides_other_domains_recipients(api, talked) -> None:
    talk = transaction_id(talked, "talk@sender.example")
    dialogue = api("one", "GET", f"/logs/transactions/{talk}").get_json()["dialogue"]
    assert [(s["side"], s["text"], s["code"]) for s in dialogue[:2]] == [
        ("server", "220 mail.letterhead.test ESMTP", "220"),
        ("client", "ehlo sender.example", ""),
    ]
    assert dialogue[0]["meaning"] == "server ready" and dialogue[0]["elapsed_seconds"] is None
    assert [s["elapsed_seconds"] for s in dialogue if s["text"].startswith("mail FROM")] == [1.0]
    texts = [s["text"] for s in api("a", "GET", f"/logs/transactions/{talk}").get_json()["dialogue"]]
    assert "rcpt TO:<ann@a.test>" in texts and not any("bob@b.test" in text for text in texts)


def test_a_domain_token_of_b_gets_nothing_of_a(api, logged) -> None:
    to_ann = transaction_id(logged, "to-ann@sender.example")
    assert api("a", "GET", f"/logs/transactions/{to_ann}").status_code == 200
    refused = problem_of(api("b", "GET", f"/logs/transactions/{to_ann}"), 404)
    assert "ann@a.test" not in str(refused)
    for query in ("ann@a.test", "<to-ann@sender.example>", "1A2B3C4D5E6", "192.0.2.20"):
        assert items(api("a", "GET", "/logs/transactions", query_string={"q": query})), query
        assert items(api("b", "GET", "/logs/transactions", query_string={"q": query})) == [], query
    problem_of(api("b", "GET", "/logs/transactions?domain=a.test"), 404)
    problem_of(api("b", "GET", "/logs/auth?domain=a.test"), 404)
    assert items(api("b", "GET", "/logs/auth", query_string={"q": "ann@a.test"})) == []
    assert [e["login"] for e in items(api("a", "GET", "/logs/auth", query_string={"q": "ann@a.test"}))] == [
        "ann@a.test"
    ]


def test_another_tenants_token_gets_nothing_of_ours(api, logged) -> None:
    to_bob = transaction_id(logged, "to-bob@sender.example")
    assert api("one", "GET", f"/logs/transactions/{to_bob}").status_code == 200
    problem_of(api("two", "GET", f"/logs/transactions/{to_bob}"), 404)
    assert message_ids(api("two", "GET", "/logs/transactions?date=2026-11-24")) == {"secret-plan@c.test"}
    assert items(api("two", "GET", "/logs/transactions", query_string={"q": "bob@b.test"})) == []
    assert {e["login"] for e in items(api("two", "GET", "/logs/auth"))} == {"secret@c.test"}
    problem_of(api("two", "GET", "/logs/transactions?domain=a.test"), 404)


def test_logins_filter_by_service_and_result(api, logged) -> None:
    everything = items(api("one", "GET", "/logs/auth"))
    assert {(e["service"], e["login"], e["success"]) for e in everything} == {
        ("imap", "ann@a.test", True),
        ("pop3", "bob@b.test", False),
        ("smtp", "bob@b.test", True),
    }
    [failed] = items(api("one", "GET", "/logs/auth?result=failure"))
    assert (failed["service"], failed["client_ip"], failed["reason"]) == (
        "pop3",
        "198.51.100.41",
        "wrong password or unknown user",
    )
    assert [e["service"] for e in items(api("b", "GET", "/logs/auth?service=smtp"))] == ["smtp"]
    assert items(api("a", "GET", "/logs/auth?service=pop3")) == []


def test_day_counts_per_result(api, logged) -> None:
    response = api("one", "GET", "/logs/days?last=2026-11-25&days=3")
    assert response.status_code == 200
    assert response.get_json() == [
        {"day": "2026-11-23", "accepted": 0, "refused": 0, "deferred": 1, "bounced": 0, "total": 1},
        {"day": "2026-11-24", "accepted": 2, "refused": 1, "deferred": 0, "bounced": 1, "total": 4},
        {"day": "2026-11-25", "accepted": 0, "refused": 0, "deferred": 0, "bounced": 0, "total": 0},
    ]
    [a_only] = api("a", "GET", "/logs/days?last=2026-11-24&days=1").get_json()
    assert (a_only["accepted"], a_only["bounced"], a_only["total"]) == (1, 1, 2)


def test_malformed_filters_are_422_problems(api, logged) -> None:
    for query in ("date=yesterday", "result=lost", "direction=sideways", "per_page=501", "page=0"):
        problem_of(api("one", "GET", f"/logs/transactions?{query}"), 422)
    problem_of(api("one", "GET", "/logs/auth?service=telnet"), 422)
    problem_of(api("one", "GET", "/logs/days?days=0"), 422)
    problem_of(api("one", "GET", "/logs/days?last=0001-01-02"), 422)
    problem_of(api("one", "GET", f"/logs/transactions/{2**70}"), 404)


def test_signup_tokens_and_anonymous_callers_see_no_logs(api, logged) -> None:
    problem_of(api("signup", "GET", "/logs/transactions"), 404)
    problem_of(api(None, "GET", "/logs/auth"), 401)


def test_the_openapi_document_describes_the_logs(app) -> None:
    paths = app.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    assert {
        "/api/v1/logs/transactions",
        "/api/v1/logs/transactions/{transaction_id}",
        "/api/v1/logs/auth",
    } <= set(paths)
    parameters = {p["name"] for p in paths["/api/v1/logs/transactions"]["get"]["parameters"]}
    assert {"q", "date", "result", "direction", "domain", "page", "per_page"} <= parameters


def test_the_story_of_an_address_in_words_and_only_within_the_tokens_scope(api, logged) -> None:
    story = api("one", "GET", "/logs/story", query_string={"address": "carl@sender.example"})
    assert story.status_code == 200, story.get_data(as_text=True)
    body = story.get_json()
    assert (
        body["summary"]
        == "3 messages to or from carl@sender.example; their recipients: 2 accepted, 1 bounced."
    )
    assert [line["sentence"] for line in body["lines"]] == [
        "Returned to the sender: ann@a.test could not be reached: mailbox full.",
        "Delivered to bob@b.test's mailbox.",
        "Delivered to ann@a.test's mailbox.",
    ]
    assert body["lines"][0]["mailbox_note"].startswith("The mailbox was full then")
    between = api(
        "one", "GET", "/logs/story", query_string={"address": "carl@sender.example", "other": "bob@b.test"}
    )
    assert [line["recipient"] for line in between.get_json()["lines"]] == ["bob@b.test"]
    # a.test's token: only a.test's part of carl's mail; another tenant: nothing of it at all.
    a_only = api("a", "GET", "/logs/story", query_string={"address": "carl@sender.example"}).get_json()
    assert {line["recipient"] for line in a_only["lines"]} == {"ann@a.test"}
    foreign = api("two", "GET", "/logs/story", query_string={"address": "carl@sender.example"}).get_json()
    assert foreign["lines"] == [] and foreign["messages"] == 0
    assert "b.test" not in json.dumps(foreign) and "a.test" not in json.dumps(foreign)
    refused = api("one", "GET", "/logs/story", query_string={"address": "not an address"})
    assert problem_of(refused, 422)["detail"] == "'not an address' is not an email address."
