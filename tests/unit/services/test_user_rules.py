"""A user's own rules as one Sieve script: checked input, a script Dovecot's compiler takes, and
read back only as the webmail wrote it."""

from __future__ import annotations

import json

import pytest

from controlplane.errors import ValidationError
from controlplane.services import sieve, user_rules

OWN = "ann@a.test"


def _rules() -> user_rules.UserRules:
    rules = user_rules.UserRules(
        vacation=user_rules.vacation(
            enabled=True, start="2026-12-10", end="2026-12-20", subject='Away "now"', text="Back soon.\nAnn"
        ),  # fmt: skip
        forwarding=user_rules.forwarding(address="me@home.test", keep_copy=True, own=OWN),
    )
    rules = user_rules.with_filter(rules, user_rules.mail_filter(
        field="from", match="contains", value='news" ; discard; "', action="fileinto", argument="News", own=OWN))  # fmt: skip
    return user_rules.with_filter(rules, user_rules.mail_filter(
        field="size", match="over", value="2m", action="reject", argument="Too large", own=OWN))  # fmt: skip


def test_the_script_compiles_quotes_what_the_user_typed_and_reads_back() -> None:
    script = user_rules.to_sieve(_rules(), addresses=[OWN, "sales@a.test"])
    sieve.compile_script(script, name="letterhead")
    assert 'header :contains "from" "news\\" ; discard; \\""' in script
    assert user_rules.from_sieve(script) == _rules()


def test_a_refusal_comes_before_the_vacation_reply_and_forwarding() -> None:
    """Sieve runs no reject beside a vacation reply or a redirect: the message would be kept."""
    script = user_rules.to_sieve(_rules(), addresses=[OWN])
    assert script.index("reject") < script.index("vacation :days") < script.index("redirect")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"field": "size", "match": "contains", "value": "2M"}, "over or under"),
        ({"action": "forward", "argument": OWN}, "mailbox it is for"),
        ({"action": "fileinto", "argument": "INBOX"}, "other than the inbox"),
        ({"field": "header", "header": "Bad Header"}, "Name the header"),
        ({"value": "two\nlines"}, "one line"),
    ],
)
def test_a_filter_that_cannot_be_is_refused(changes: dict, words: str) -> None:
    fields = {"field": "subject", "match": "contains", "value": "x", "action": "read", **changes}
    with pytest.raises(ValidationError, match=words):
        user_rules.mail_filter(own=OWN, **fields)


def test_a_script_edited_by_hand_is_not_read_as_the_webmails() -> None:
    script = user_rules.to_sieve(_rules(), addresses=[OWN])
    first, rest = script.split("\n", 1)
    data = json.loads(first.split(": ", 1)[1])
    data["filters"][0]["match"] = "regex"
    edited = first.split(": ", 1)[0] + ": " + json.dumps(data) + "\n" + rest
    assert user_rules.from_sieve(edited) is None
    assert user_rules.from_sieve("keep;\n") is None
