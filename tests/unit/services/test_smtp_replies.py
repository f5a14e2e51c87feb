"""SMTP replies in words: the basic code, refined by the enhanced code's subject."""

from __future__ import annotations

import pytest

from controlplane.services.smtp_replies import explain_reply


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("550 5.1.1", "refused: mailbox unavailable or policy; the mailbox does not exist"),
        ("452 4.2.2", "insufficient storage (temporary); the mailbox is full"),
        ("4.4.1", "temporary failure, will retry; no answer from the receiving host"),
        ("250 2.0.0", "OK, done"),
        ("599", "permanent failure"),
        ("", ""),
        ("not a code", ""),
    ],
)
def test_a_reply_is_said_in_words(code: str, words: str) -> None:
    assert explain_reply(code) == words
