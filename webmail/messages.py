"""Messages as the webmail shows and writes them: parsed from raw MIME, built for sending.

A message's HTML reaches the browser only sanitised, in a sandboxed frame of its own
(webmail/html_mail.py); its text (the plain part, else the HTML's text) is what a reply quotes.
Attachments are offered only as downloads; inline images only as the image types below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import email.utils
import re
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser

from markupsafe import Markup, escape

from controlplane.services.webmail import MessageNotFound
from webmail.mailstore import header_date, header_text

_MESSAGE_ID = re.compile(r"^<[^<>\s]{1,500}>$")
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table",
    "tr", "ul",
}  # fmt: skip
_INVISIBLE_TAGS = {"head", "script", "style", "template", "title", "noscript"}


@dataclasses.dataclass(frozen=True)
class Attachment:
    index: int  # the part's position in the message's walk: how a download names it
    filename: str
    content_type: str
    size: int


@dataclasses.dataclass(frozen=True)
class ReadableMessage:
    uid: int
    subject: str
    sender: str
    reply_to: str
    to: str
    cc: str
    date: dt.datetime | None
    message_id: str
    references: str
    text: str
    text_came_from_html: bool
    attachments: list[Attachment]
    # The HTML part as sent (unsanitised: only html_mail.sanitise may pass it on), or "".
    html: str = ""


def parse(raw: bytes) -> EmailMessage:
    """The message as the standard library reads it, reached faster for large mail: its parser
    feeds every body line through Python (100 ms for 5 MB of attachments), while here each
    part's headers alone go through it and its body is cut out whole at its MIME boundaries.
    Anything the fast reading is unsure of (no closing boundary, a part it cannot cut) is read
    by the standard parser instead, as are small messages."""
    if len(raw) >= FAST_PARSE_FROM_BYTES:
        try:
            fast = _parse_fast(raw, depth=0)
        except _NotPlain:
            fast = None
        if fast is not None:
            return fast
    return BytesParser(policy=email.policy.default).parsebytes(raw)  # type: ignore[return-value]


# Below this the standard parser is quick enough, and the only reader.
FAST_PARSE_FROM_BYTES = 256 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _delimiters(body: bytes, marker: bytes) -> list[tuple[int, int, bool]]:
    """(start, end, closing) of each delimiter line of `body`: `marker` at the start of a line,
    then "--" for the closing one, then only spaces up to the end of the line. A delimiter's
    start includes the line break before it, which belongs to it (RFC 2046 5.1.1)."""
    found, position = [], 0
    while (index := body.find(marker, position)) != -1:
        position = index + len(marker)
        at_line_start = index == 0 or body[index - 1 : index] == b"\n"
        if not at_line_start:
            continue
        closing = body[position : position + 2] == b"--"
        after = position + 2 if closing else position
        line_end = body.find(b"\n", after)
        line_end = len(body) if line_end == -1 else line_end
        if body[after:line_end].strip(b" \t\r"):
            continue  # a longer boundary that starts like this one
        start = index - (2 if body[index - 2 : index] == b"\r\n" else 1) if index else 0
        found.append((start, line_end, closing))
        position = line_end
    return found


class _NotPlain(Exception):
    """The fast reading cannot be sure of this message: the standard parser reads it."""


def _parse_fast(raw: bytes, *, depth: int) -> EmailMessage:
    if depth > 10 or raw.startswith((b"\n", b"\r\n")):
        # A part without headers: its first paragraph break is no header end.
        raise _NotPlain()
    end = _HEADER_END.search(raw)
    if end is None:
        raise _NotPlain()
    head, body = raw[: end.end()], raw[end.end() :]
    message: EmailMessage = BytesParser(policy=email.policy.default).parsebytes(head, headersonly=True)  # type: ignore[assignment]
    if message.defects:
        raise _NotPlain()
    if message.get_content_maintype() == "multipart":
        boundary = message.get_boundary()
        if not boundary:
            raise _NotPlain()
        found = _delimiters(body, b"--" + boundary.encode("ascii", "strict"))
        if len(found) < 2 or not found[-1][2] or any(closing for _start, _end, closing in found[:-1]):
            raise _NotPlain()
        parts = []
        for (_start, after, _closing), (before, _end, _last) in zip(found, found[1:], strict=False):
            chunk = body[after:before]
            chunk = (
                chunk[2:] if chunk.startswith(b"\r\n") else chunk[1:] if chunk.startswith(b"\n") else chunk
            )
            parts.append(_parse_fast(chunk, depth=depth + 1))
        message.set_payload(parts)
        # As the standard parser keeps them: the text before the first delimiter (None when
        # there is none) and after the closing one's line ("" when nothing follows its line break).
        first, (_start, closing_end, _closing) = found[0], found[-1]
        message.preamble = body[: first[0]].decode("ascii", "surrogateescape") if first[0] > 0 else None
        message.epilogue = (
            body[closing_end + 1 :].decode("ascii", "surrogateescape") if closing_end < len(body) else None
        )
        return message
    if message.get_content_type() == "message/rfc822":
        message.set_payload([_parse_fast(body, depth=depth + 1)])
        return message
    # As the standard parser keeps a body: text, with bytes outside ASCII escaped.
    message.set_payload(body.decode("ascii", "surrogateescape"))
    return message


def read_message(uid: int, raw: bytes) -> ReadableMessage:
    """Headers, the text to show and the attachments of one raw message."""
    message = parse(raw)
    body_part = _body_part(message)
    text, from_html = "", False
    if body_part is not None:
        content = _part_text(body_part)
        from_html = body_part.get_content_subtype() == "html"
        text = html_to_text(content) if from_html else content
    message_id = header_text(message, "Message-ID").strip()
    html_part = _html_part(message)
    return ReadableMessage(
        uid=uid,
        subject=header_text(message, "Subject"),
        sender=header_text(message, "From"),
        reply_to=header_text(message, "Reply-To"),
        to=header_text(message, "To"),
        cc=header_text(message, "Cc"),
        date=header_date(message),
        message_id=message_id if _MESSAGE_ID.match(message_id) else "",
        references=header_text(message, "References"),
        text=text,
        text_came_from_html=from_html,
        attachments=[
            Attachment(index, _filename(part, index), part.get_content_type(), _decoded_size(part))
            for index, part in _attachment_parts(message, body_part)
            if part is not html_part
        ],
        html=_part_text(html_part) if html_part is not None else "",
    )


# Inline images shown in the frame: raster types a browser decodes without running anything.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def inline_image(raw: bytes, content_id: str) -> tuple[str, bytes]:
    """(content type, bytes) of the inline image part with this Content-ID. Raises MessageNotFound."""
    wanted = content_id.strip("<> ").lower()
    for part in parse(raw).walk():
        if part.is_multipart() or not wanted:
            continue
        named = str(part.get("Content-ID", "")).strip().strip("<>").lower() == wanted
        if named and part.get_content_type() in INLINE_IMAGE_TYPES:
            return part.get_content_type(), _payload(part)
    raise MessageNotFound()


def attachment_image(raw: bytes, index: int) -> tuple[str, bytes]:
    """(content type, bytes) of the attachment at `index` if it is a raster image. Raises
    MessageNotFound."""
    message = parse(raw)
    for part_index, part in _attachment_parts(message, _body_part(message)):
        if part_index == index and part.get_content_type() in INLINE_IMAGE_TYPES:
            return part.get_content_type(), _payload(part)
    raise MessageNotFound()


# http(s) addresses in plain text, up to a space, quote or angle bracket; trailing punctuation
# belongs to the sentence.
_WEB_ADDRESS = re.compile(r"https?://[^\s<>\"']+")


def linked_text(text: str) -> Markup:
    """`text` escaped, with its web addresses as links that open elsewhere without a Referer."""
    pieces, last = [], 0
    for match in _WEB_ADDRESS.finditer(text):
        address = match.group(0)
        trailing = len(address) - len(address.rstrip(".,;:!?)]}"))
        address = address[: len(address) - trailing]
        pieces.append(escape(text[last : match.start()]))
        pieces.append(
            Markup('<a href="{0}" target="_blank" rel="noopener noreferrer">{0}</a>').format(address)
        )
        last = match.start() + len(address)
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)


def _html_part(message: EmailMessage) -> Message | None:
    try:
        return message.get_body(preferencelist=("html",))
    except (KeyError, LookupError, ValueError):
        return None


def attachment(raw: bytes, index: int) -> tuple[str, bytes]:
    """(file name, content) of the attachment at `index`. Raises MessageNotFound."""
    message = parse(raw)
    for part_index, part in _attachment_parts(message, _body_part(message)):
        if part_index == index:
            return _filename(part, index), _payload(part)
    raise MessageNotFound()


def _body_part(message: EmailMessage) -> Message | None:
    try:
        return message.get_body(preferencelist=("plain", "html"))
    except (KeyError, LookupError, ValueError):
        return None


def _message_parts(message: Message) -> list[tuple[int, Message]]:
    """Each part with its position in `message.walk()`, not looking inside an attached message:
    a forwarded mail (message/rfc822) is one attachment, and its own parts are its own."""
    found: list[tuple[int, Message]] = []
    position = 0

    def visit(part: Message, hidden: bool) -> None:
        nonlocal position
        if not hidden:
            found.append((position, part))
        position += 1
        if part.is_multipart():
            for child in part.get_payload():  # type: ignore[union-attr]
                visit(child, hidden or part.get_content_type() == "message/rfc822")

    visit(message, False)
    return found


def _attachment_parts(message: EmailMessage, body_part: Message | None) -> list[tuple[int, Message]]:
    parts = []
    for index, part in _message_parts(message):
        if part is body_part:
            continue
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            continue
        disposition = part.get_content_disposition()
        is_alternative_text = part.get_content_maintype() == "text" and disposition != "attachment"
        if disposition == "attachment" or part.get_filename() or not is_alternative_text:
            parts.append((index, part))
    return parts


def _filename(part: Message, index: int) -> str:
    name = part.get_filename() or ""
    # Only the last path component, no control characters: it becomes a download's file name.
    name = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return name[:200] or f"attachment-{index}"


def _decoded_size(part: Message) -> int:
    """An attachment's size once decoded, without decoding it (a list shows sizes only)."""
    payload = part.get_payload()
    if (
        isinstance(payload, str)
        and str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
    ):
        characters = len(payload) - payload.count("\n") - payload.count("\r") - payload.count(" ")
        return max(0, characters * 3 // 4 - payload.rstrip().count("=", -3))
    return len(_payload(part))


def _payload(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        attached = part.get_payload()
        if isinstance(attached, list) and attached:
            return attached[0].as_bytes(policy=email.policy.SMTP)
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    return str(part.get_payload()).encode("utf-8", "replace")


def _part_text(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, ValueError, AttributeError):
        # An unknown or lying charset: show what can be read rather than nothing.
        return _payload(part).decode("utf-8", "replace")


class _TextFromHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self.hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.pieces.append("\n")
        elif tag == "td":
            self.pieces.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_TAGS:
            self.hidden_depth = max(0, self.hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.pieces.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: tags dropped, scripts and styles with their content."""
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.pieces).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- writing ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    content: bytes


def build_message(
    *,
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    body: str,
    in_reply_to: str = "",
    references: str = "",
    attachments: list[NewAttachment] | tuple[NewAttachment, ...] = (),
) -> EmailMessage:
    """A plain-text message from `sender` with `attachments` (a message/rfc822 one, a mail
    forwarded whole, goes as a message); reply headers are kept only when they are message IDs."""
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    if _MESSAGE_ID.match(in_reply_to):
        message["In-Reply-To"] = in_reply_to
        chain = [ref for ref in references.split() if _MESSAGE_ID.match(ref)][-20:]
        message["References"] = " ".join([*[ref for ref in chain if ref != in_reply_to], in_reply_to])
    message.set_content(body.replace("\r\n", "\n"))
    for item in attachments:
        if item.content_type == "message/rfc822":
            message.add_attachment(parse(item.content), disposition="attachment", filename=item.filename)
            continue
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(item.content, maintype=maintype, subtype=subtype, filename=item.filename)
    return message


def forwarded_whole(raw: bytes) -> NewAttachment:
    """A message to forward as an attachment, named after its subject."""
    subject = header_text(parse(raw), "Subject")
    name = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]", "", subject).strip(" .")[:100] or "message"
    return NewAttachment(f"{name}.eml", "message/rfc822", raw)


# What an attachment may be called and typed as, whatever a browser sent.
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


def uploaded_attachment(filename: str, content_type: str, content: bytes) -> NewAttachment:
    """An attachment from an upload: its name's last path component without control
    characters, and a well-formed type (else application/octet-stream)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(kind) or kind.startswith(("multipart/", "message/")):
        kind = "application/octet-stream"
    return NewAttachment(name[:200] or "attachment", kind, content)


def kept_attachments(raw: bytes, indices: set[int]) -> list[NewAttachment]:
    """The attachments of a message (a draft, or one forwarded) at these indices, to send again."""
    message = parse(raw)
    kept = []
    for index, part in _attachment_parts(message, _body_part(message)):
        if index in indices and part is not _html_part(message):
            kind = part.get_content_type()
            if kind.startswith("multipart/") or (kind.startswith("message/") and kind != "message/rfc822"):
                kind = "application/octet-stream"
            kept.append(NewAttachment(_filename(part, index), kind, _payload(part)))
    return kept


def plain_address(text: str) -> str:
    """The address alone of a header value like `Ann <ann@example.com>`, in lower case."""
    return email.utils.parseaddr(text)[1].lower()


def _without(addresses: list[str], own: set[str]) -> list[str]:
    seen, kept = set(own), []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


def _addresses(*values: str) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(list(values)) if "@" in address]


def reply_draft(
    original: ReadableMessage, *, reply_all: bool = False, own: set[str] | frozenset[str] = frozenset()
) -> dict[str, str]:
    """The fields of a reply: to the sender (or Reply-To), "Re:" once, the original quoted; to
    all: everyone else it was sent to in Cc, never the user's own addresses (`own`, lower case)."""
    subject = original.subject
    if not re.match(r"^\s*re\s*:", subject, re.IGNORECASE):
        subject = f"Re: {subject}"
    when = original.date.strftime("%Y-%m-%d %H:%M") if original.date else "an earlier date"
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.text.splitlines())
    own = {address.lower() for address in own}
    to = _without(_addresses(original.reply_to or original.sender), own) if reply_all else []
    cc = _without(_addresses(original.to, original.cc), own | {a.lower() for a in to}) if reply_all else []
    return {
        "to": ", ".join(to) if reply_all else original.reply_to or original.sender,
        "cc": ", ".join(cc),
        "subject": subject,
        "body": f"\n\nOn {when}, {original.sender} wrote:\n{quoted}\n",
        "in_reply_to": original.message_id,
        "references": " ".join(filter(None, [original.references, original.message_id])),
    }


def forward_draft(original: ReadableMessage) -> dict[str, str]:
    """The fields of a forward: "Fwd:" once, the original's headers and text below the user's."""
    subject = original.subject
    if not re.match(r"^\s*(fwd?|fw)\s*:", subject, re.IGNORECASE):
        subject = f"Fwd: {subject}"
    when = original.date.strftime("%Y-%m-%d %H:%M %z") if original.date else ""
    lines = ["", "", "---------- Forwarded message ----------", f"From: {original.sender}"]
    lines += [f"Date: {when}"] if when else []
    lines += [f"Subject: {original.subject}", f"To: {original.to}"]
    lines += [f"Cc: {original.cc}"] if original.cc else []
    return {
        "to": "",
        "cc": "",
        "subject": subject,
        "body": "\n".join([*lines, "", original.text, ""]),
        "in_reply_to": "",
        "references": "",
    }
