"""The webmail's fast reading of large mail gives exactly what the standard library's parser
gives, and leaves to it whatever it cannot be sure of."""

from __future__ import annotations

import email.message
import email.policy
import os
from email.parser import BytesParser

import pytest

from webmail import messages

PADDING = os.urandom(messages.FAST_PARSE_FROM_BYTES)  # large enough for the fast reading


def standard(raw: bytes) -> email.message.EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def summary(message) -> list:
    parts = []
    for part in message.walk():
        item = [
            part.get_content_type(),
            part.get_filename(),
            sorted(part.items()),
            part.preamble,
            part.epilogue,
        ]
        if not part.is_multipart():
            item.append(part.get_payload(decode=True))
            if part.get_content_maintype() == "text":
                item.append(part.get_content())
        parts.append(item)
    return parts


def _mixed() -> email.message.EmailMessage:
    mail = email.message.EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ann <ann@a.test>", "bob@b.test", "Grüße, the plan"
    mail.set_content("Plain text with Umlaute: Grüße.\n--not a boundary\n")
    mail.add_alternative("<p>HTML <b>Grüße</b></p>", subtype="html")
    mail.add_attachment(PADDING, maintype="application", subtype="octet-stream", filename="data.bin")
    inner = email.message.EmailMessage()
    inner["Subject"] = "Forwarded"
    inner.set_content("inner text")
    inner.add_attachment(b"%PDF" + PADDING[:1000], maintype="application", subtype="pdf", filename="i.pdf")
    mail.add_attachment(inner, disposition="attachment", filename="inner.eml")
    return mail


def _eight_bit() -> bytes:
    boundary = b"XYZ"
    return (
        b"From: a@a.test\r\nSubject: 8 bit\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        b"This is the preamble.\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Straße ünd €\r\n".encode()
        + b"--XYZlonger is not this boundary\r\n--XYZ  \r\nContent-Type: application/octet-stream\r\n\r\n"
        + PADDING.replace(b"\r", b"").replace(b"\n--" + boundary, b"")
        + b"\r\n--XYZ--\r\nThe epilogue.\r\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        _mixed().as_bytes(),
        _mixed().as_bytes().replace(b"\n", b"\r\n"),
        _eight_bit(),
    ],
    ids=["mixed-lf", "mixed-crlf", "eight-bit-preamble-epilogue"],
)
def test_the_fast_reading_is_the_standard_one(raw: bytes) -> None:
    fast = messages._parse_fast(raw, depth=0)
    assert summary(fast) == summary(standard(raw))


@pytest.mark.parametrize(
    "raw",
    [
        # No closing delimiter: the standard parser decides what the parts are.
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\n" + PADDING,
        # No boundary at all.
        b"Content-Type: multipart/mixed\r\n\r\n" + PADDING,
        # A part without headers, whose first paragraph could pass for them.
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nContent-Type: text/html\r\n\r\nfirst\r\n"
        + PADDING.replace(b"--B", b"")
        + b"\r\n--B--\r\n",
        # No blank line after the headers.
        b"Subject: x\r\n" + PADDING.replace(b"\n", b" "),
    ],
    ids=["unclosed", "no-boundary", "headerless-part", "no-body"],
)
def test_what_the_fast_reading_is_unsure_of_goes_to_the_standard_parser(raw: bytes) -> None:
    with pytest.raises(messages._NotPlain):
        messages._parse_fast(raw, depth=0)
    assert summary(messages.parse(raw)) == summary(standard(raw))
