"""The user's own mailbox over IMAP (Dovecot) and sending through submission (Postfix), as that user.

The webmail logs in to both servers with the user's own address and password on every request,
so it can only ever reach what the user's mail client could: another user's folders and
messages are not addressable at all, whatever a URL says.

Both servers are this installation's own, on loopback: connections use implicit TLS (IMAPS and
submissions) and trust the installation's default certificate (plus the system's CAs), with no
host name check because they go to an address, not a name.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import email.policy
import email.utils
import imaplib
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser

from controlplane.daemons import dovecot_auth
from controlplane.errors import ValidationError
from controlplane.services.webmail import MailServiceUnavailable, MessageNotFound
from controlplane.settings import Settings
from controlplane.validation import domain_to_unicode

TIMEOUT_SECONDS = 15
SPECIAL_USES = ("\\Sent", "\\Trash", "\\Drafts", "\\Junk")
_FALLBACK_SPECIAL_NAMES = {"\\Sent": "Sent", "\\Trash": "Trash", "\\Drafts": "Drafts", "\\Junk": "Junk"}
_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')
_SUMMARY_HEADERS = "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)]"


class SubmissionRefused(Exception):
    """The submission server refused the message or some recipients; `message` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Folder:
    name: str  # the IMAP name, decoded from modified UTF-7: what URLs carry
    special_use: str = ""
    total: int = 0
    unread: int = 0

    @property
    def label(self) -> str:
        return "Inbox" if self.name == "INBOX" else self.name


@dataclasses.dataclass(frozen=True)
class MessageSummary:
    uid: int
    sender: str
    recipients: str
    subject: str
    date: dt.datetime | None
    size: int
    unread: bool
    flagged: bool = False


@dataclasses.dataclass(frozen=True)
class MessagePage:
    folder: str
    messages: list[MessageSummary]
    total: int
    page: int
    pages: int


@dataclasses.dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes
    unread: bool


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Trust the installation's default certificate, whether self-signed or issued."""
    context = ssl.create_default_context()
    default_certificate = settings.certs_dir / "default.crt"
    if default_certificate.exists():
        context.load_verify_locations(cafile=str(default_certificate))
        # The leaf itself is trusted, so its chain need not end at a root.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def server_address(settings: Settings) -> str:
    """Where the app reaches this installation's daemons: loopback when they listen everywhere."""
    if settings.listen_address in ("all", "", "0.0.0.0", "::"):
        return "127.0.0.1"
    return settings.listen_address


def mail_server_accepts(settings: Settings, address: str, password: str, client_ip: str) -> bool:
    """Whether Dovecot accepts this login from the browser at `client_ip` (its auth penalty and
    logs then apply to that address, not to the app's). Raises MailServiceUnavailable."""
    try:
        return dovecot_auth.password_accepted(
            settings.webmail_auth_socket,
            login=address,
            password=password,
            client_ip=client_ip,
            service="imap",
        )
    except dovecot_auth.AuthServiceUnavailable as error:
        raise MailServiceUnavailable(str(error)) from error


class LoginRefused(Exception):
    """The IMAP server said no to the address and password."""


class MailStore:
    """One IMAP session as the logged-in user; use `MailStore.open(...)` as a context manager."""

    def __init__(self, connection: imaplib.IMAP4) -> None:
        self.connection = connection
        # Servers announce MOVE only after login; imaplib keeps the list from before.
        status, data = connection.capability()
        _expect_ok(status, data, "CAPABILITY")
        self.capabilities = frozenset(data[-1].decode(errors="replace").upper().split())
        self._folders: list[Folder] | None = None
        self._selected: tuple[str, bool] | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: Settings, address: str, password: str) -> Iterator[MailStore]:
        """Log in to IMAP. Raises LoginRefused, MailServiceUnavailable."""
        try:
            connection = imaplib.IMAP4_SSL(
                server_address(settings),
                settings.ports["imaps"],
                ssl_context=tls_context(settings),
                timeout=TIMEOUT_SECONDS,
            )
        except (OSError, imaplib.IMAP4.error) as error:
            raise MailServiceUnavailable(f"IMAP connection: {error}") from error
        try:
            try:
                # AUTHENTICATE PLAIN carries UTF-8; imaplib's LOGIN would refuse a non-ASCII password.
                credentials = f"\0{address}\0{password}".encode("utf-8", "surrogatepass")
                connection.authenticate("PLAIN", lambda _challenge: credentials)
            except imaplib.IMAP4.abort as error:
                raise MailServiceUnavailable(f"IMAP login: {error}") from error
            except imaplib.IMAP4.error as error:
                # [UNAVAILABLE] is Dovecot's "I could not check": its auth backend is down.
                if "UNAVAILABLE" in str(error):
                    raise MailServiceUnavailable(f"IMAP login: {error}") from error
                raise LoginRefused() from error
            try:
                yield cls(connection)
            except (imaplib.IMAP4.error, OSError) as error:
                # A dropped connection, or a reply imaplib cannot take: the server's side either way.
                raise MailServiceUnavailable(f"IMAP: {error}") from error
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                connection.logout()

    # --- folders ------------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        """Every folder with its message and unread counts, INBOX first, then by name."""
        if self._folders is not None:
            return self._folders
        status, lines = self.connection.list()
        _expect_ok(status, lines, "LIST")
        folders = []
        for flags, name in _parse_list(lines):
            if "\\noselect" in flags.lower() or "\\nonexistent" in flags.lower():
                continue
            special = next((use for use in SPECIAL_USES if use.lower() in flags.lower()), "")
            status, data = self.connection.status(_quote(name), "(MESSAGES UNSEEN)")
            total = unread = 0
            if status == "OK" and data and data[0]:
                counts = dict(re.findall(rb"(MESSAGES|UNSEEN) (\d+)", data[0]))
                total, unread = int(counts.get(b"MESSAGES", 0)), int(counts.get(b"UNSEEN", 0))
            folders.append(Folder(name=name, special_use=special, total=total, unread=unread))
        self._folders = sorted(folders, key=lambda folder: (folder.name != "INBOX", folder.name.lower()))
        return self._folders

    # --- folders the user keeps -----------------------------------------------------------------

    def _own_folder(self, name: str) -> Folder:
        """An existing folder the user made (not INBOX nor a special-use one). Raises
        MessageNotFound or ValidationError."""
        found = next((folder for folder in self.folders() if folder.name == name), None)
        if found is None:
            raise MessageNotFound()
        if found.name == "INBOX" or found.special_use:
            raise ValidationError(
                f"{found.label} is one of the mailbox's own folders: it stays.", field="name"
            )
        return found

    def create_folder(self, name: str) -> str:
        name = folder_name(name)
        if any(folder.name.lower() == name.lower() for folder in self.folders()):
            raise ValidationError(f"There is a folder called {name} already.", field="name")
        status, data = self.connection.create(_quote(name))
        _expect_ok(status, data, "CREATE")
        self.connection.subscribe(_quote(name))
        self._folders = None
        return name

    def rename_folder(self, name: str, new_name: str) -> str:
        self._own_folder(name)
        new_name = folder_name(new_name)
        if any(folder.name.lower() == new_name.lower() and folder.name != name for folder in self.folders()):
            raise ValidationError(f"There is a folder called {new_name} already.", field="new_name")
        self._leave(name)
        status, data = self.connection.rename(_quote(name), _quote(new_name))
        _expect_ok(status, data, "RENAME")
        self.connection.subscribe(_quote(new_name))
        self._folders = None
        return new_name

    def delete_folder(self, name: str) -> int:
        """Delete a folder of the user's own; its messages go to Trash first. Returns how many."""
        found = self._own_folder(name)
        moved = 0
        if found.total:
            trash = self.special_folder("\\Trash")
            self._select(name, readonly=False)
            status, data = self.connection.uid("SEARCH", "ALL")
            _expect_ok(status, data, "SEARCH")
            uids = (data[0] or b"").split()
            if uids:
                status, data = self.connection.uid("COPY", b",".join(uids).decode(), _quote(trash))
                _expect_ok(status, data, "COPY")
                moved = len(uids)
        self._leave(name)
        self.connection.unsubscribe(_quote(name))
        status, data = self.connection.delete(_quote(name))
        _expect_ok(status, data, "DELETE")
        self._folders = None
        return moved

    def _leave(self, name: str) -> None:
        if self._selected is not None and self._selected[0] == name:
            # CLOSE expunges nothing here: the webmail marks \Deleted only with its own EXPUNGE.
            self.connection.close()
            self._selected = None

    def special_folder(self, use: str) -> str:
        """The name of the folder marked `use` (e.g. "\\Sent"), or its usual name."""
        for folder in self.folders():
            if folder.special_use == use:
                return folder.name
        return _FALLBACK_SPECIAL_NAMES[use]

    def _select(self, folder: str, *, readonly: bool) -> None:
        # A folder selected for writing serves reading too.
        if self._selected in ((folder, readonly), (folder, False)):
            return
        if not folder or any(ch in folder for ch in "\r\n\0"):
            raise MessageNotFound()
        try:
            status, _ = self.connection.select(_quote(folder), readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            # A name the server cannot even parse names no folder of this user.
            raise MessageNotFound() from None
        if status != "OK":
            raise MessageNotFound()
        self._selected = (folder, readonly)

    # --- messages -----------------------------------------------------------------------------

    def message_page(
        self,
        folder: str,
        page: int,
        page_size: int,
        *,
        search: str = "",
        search_in: str = "all",
        sort: str = "arrival",
        ascending: bool = False,
    ) -> MessagePage:
        """One page of `folder`, newest (last arrived) first or in the `sort` order (SORT_KEYS,
        sorted by the server); with `search`, only the messages whose `search_in` (SEARCH_FIELDS)
        holds it, as the server finds them. Raises MessageNotFound."""
        self._select(folder, readonly=True)
        criteria = self._search_criteria(search, search_in)
        if sort == "arrival":
            uids = self._uids_newest_first(criteria)
            if ascending:
                uids.reverse()
        else:
            uids = self._sorted_uids(sort, ascending, criteria)
        pages = max(1, -(-len(uids) // page_size))
        page = min(max(page, 1), pages)
        chosen = uids[(page - 1) * page_size : page * page_size]
        messages = self._summaries(chosen) if chosen else []
        return MessagePage(folder=folder, messages=messages, total=len(uids), page=page, pages=pages)

    @staticmethod
    def _search_criteria(search: str, search_in: str) -> tuple[str, ...]:
        words = " ".join(search.split())
        if not words:
            return ("ALL",)
        key = SEARCH_FIELDS.get(search_in)
        if key is None:
            raise ValidationError(f"Search in {' or '.join(SEARCH_FIELDS)}.", field="in")
        return ("CHARSET", "UTF-8", key, words)

    def conversation(self, folder: str, uid: int) -> list[MessageSummary]:
        """The other messages of `uid`'s thread in this folder, oldest first; empty when it stands
        alone or the server cannot thread. The server threads them by References: Dovecot's REFS,
        which unlike RFC 5256's REFERENCES never joins strangers' messages for a shared subject."""
        algorithm = next(
            (name for name in ("REFS", "REFERENCES") if f"THREAD={name}" in self.capabilities), None
        )
        if algorithm is None:
            return []
        self._select(folder, readonly=True)
        status, data = self.connection.uid("THREAD", algorithm, "UTF-8", "ALL")
        _expect_ok(status, data, "THREAD")
        thread = next((members for members in _threads(data[0] or b"") if uid in members), [])
        others = sorted(member for member in thread if member != uid)
        return self._summaries(others) if others else []

    def _summaries(self, uids: list[int]) -> list[MessageSummary]:
        """Summaries of these messages of the selected folder, in the order given."""
        fetch_items = f"(UID FLAGS RFC822.SIZE INTERNALDATE {_SUMMARY_HEADERS})"
        status, data = self.connection.uid("FETCH", ",".join(map(str, uids)), fetch_items)
        _expect_ok(status, data, "FETCH")
        found = {
            summary.uid: summary
            for summary in filter(None, (_summary(m, lit) for m, lit in _fetch_records(data)))
        }
        return [found[uid] for uid in uids if uid in found]

    def _sorted_uids(self, sort: str, ascending: bool, criteria: tuple[str, ...]) -> list[int]:
        key = SORT_KEYS.get(sort)
        if key is None or "SORT" not in self.capabilities:
            raise ValidationError(f"Sort by {', '.join(SORT_KEYS)} or arrival.", field="sort")
        # Ties (a newsletter's many copies) keep the newest first within the order asked for.
        program = f"({'' if ascending else 'REVERSE '}{key} REVERSE ARRIVAL)"
        if criteria == ("ALL",):
            status, data = self.connection.uid("SORT", program, "UTF-8", "ALL")
        else:
            *keys, words = criteria
            self.connection.literal = words.encode("utf-8")
            status, data = self.connection.uid("SORT", program, "UTF-8", *keys[2:])
        _expect_ok(status, data, "SORT")
        return [int(uid) for uid in (data[0] or b"").split()]

    def _uids_newest_first(self, criteria: tuple[str, ...] = ("ALL",)) -> list[int]:
        # The order of arrival in this folder: UIDs only grow, so unlike SORT (REVERSE ARRIVAL),
        # whose ties (a second's worth of deliveries) come oldest first, it never ties.
        if criteria == ("ALL",):
            status, data = self.connection.uid("SEARCH", "ALL")
        else:
            # The words go as a literal: any text, in any script, reaches the server unquoted.
            *keys, words = criteria
            self.connection.literal = words.encode("utf-8")
            status, data = self.connection.uid("SEARCH", *keys)
        _expect_ok(status, data, "SEARCH")
        return sorted((int(uid) for uid in (data[0] or b"").split()), reverse=True)

    def fetch(self, folder: str, uid: int, *, mark_read: bool = False) -> FetchedMessage:
        """The whole message; reading it marks it read when asked. Raises MessageNotFound."""
        self._select(folder, readonly=not mark_read)
        status, data = self.connection.uid("FETCH", str(uid), "(UID FLAGS BODY.PEEK[])")
        _expect_ok(status, data, "FETCH")
        for meta, literal in _fetch_records(data):
            if _uid_of(meta) == uid:
                unread = b"\\seen" not in _flags_of(meta).lower()
                if mark_read and unread:
                    self.set_read(folder, uid, True)
                return FetchedMessage(uid=uid, raw=literal, unread=unread and not mark_read)
        raise MessageNotFound()

    def set_read(self, folder: str, uid: int, read: bool) -> None:
        """Mark one message read or unread. Raises MessageNotFound."""
        self._select(folder, readonly=False)
        self._require_uid(uid)
        change = "+FLAGS.SILENT" if read else "-FLAGS.SILENT"
        status, data = self.connection.uid("STORE", str(uid), change, "(\\Seen)")
        _expect_ok(status, data, "STORE")

    def move_to_trash(self, folder: str, uid: int) -> None:
        """Move a message to Trash; deleting from Trash itself deletes for good. Raises MessageNotFound."""
        trash = self.special_folder("\\Trash")
        self._select(folder, readonly=False)
        self._require_uid(uid)
        if folder == trash:
            self._expunge(uid)
            return
        if "MOVE" in self.capabilities:
            status, data = self.connection.uid("MOVE", str(uid), _quote(trash))
            _expect_ok(status, data, "MOVE")
            return
        status, data = self.connection.uid("COPY", str(uid), _quote(trash))
        _expect_ok(status, data, "COPY")
        self._expunge(uid)

    # --- many messages at once ------------------------------------------------------------------

    def _existing(self, uids: list[int]) -> str:
        """The UID set of those of `uids` in the selected folder (others are ignored)."""
        if not uids:
            raise ValidationError("Select at least one message.", field="uid")
        wanted = ",".join(str(uid) for uid in sorted(set(uids)))
        status, data = self.connection.uid("SEARCH", "UID", wanted)
        _expect_ok(status, data, "SEARCH")
        found = (data[0] or b"").split()
        if not found:
            raise MessageNotFound()
        return b",".join(found).decode()

    def set_flag(self, folder: str, uids: list[int], flag: str, on: bool) -> int:
        """Set or clear \\Seen or \\Flagged on these messages. Returns how many."""
        if flag not in ("\\Seen", "\\Flagged"):
            raise ValidationError("Only read and flagged can be set.", field="flag")
        self._select(folder, readonly=False)
        uid_set = self._existing(uids)
        status, data = self.connection.uid(
            "STORE", uid_set, "+FLAGS.SILENT" if on else "-FLAGS.SILENT", f"({flag})"
        )
        _expect_ok(status, data, "STORE")
        return uid_set.count(",") + 1

    def move(self, folder: str, uids: list[int], target: str) -> int:
        """Move these messages to another of the user's folders. Returns how many."""
        if target == folder:
            raise ValidationError("They are in that folder already.", field="target")
        if not any(existing.name == target for existing in self.folders()):
            raise ValidationError("There is no such folder to move them to.", field="target")
        self._select(folder, readonly=False)
        uid_set = self._existing(uids)
        if "MOVE" in self.capabilities:
            status, data = self.connection.uid("MOVE", uid_set, _quote(target))
            _expect_ok(status, data, "MOVE")
        else:
            status, data = self.connection.uid("COPY", uid_set, _quote(target))
            _expect_ok(status, data, "COPY")
            self._expunge_set(uid_set)
        self._folders = None
        return uid_set.count(",") + 1

    def delete_many(self, folder: str, uids: list[int]) -> int:
        """To Trash; from Trash itself, for good. Returns how many."""
        trash = self.special_folder("\\Trash")
        if folder != trash:
            return self.move(folder, uids, trash)
        self._select(folder, readonly=False)
        uid_set = self._existing(uids)
        self._expunge_set(uid_set)
        self._folders = None
        return uid_set.count(",") + 1

    def _expunge_set(self, uid_set: str) -> None:
        status, data = self.connection.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
        _expect_ok(status, data, "STORE")
        status, data = self.connection.uid("EXPUNGE", uid_set)
        _expect_ok(status, data, "EXPUNGE")

    def _expunge(self, uid: int) -> None:
        status, data = self.connection.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        _expect_ok(status, data, "STORE")
        status, data = self.connection.uid("EXPUNGE", str(uid))
        _expect_ok(status, data, "EXPUNGE")

    def _require_uid(self, uid: int) -> None:
        status, data = self.connection.uid("SEARCH", "UID", str(uid))
        _expect_ok(status, data, "SEARCH")
        if str(uid).encode() not in (data[0] or b"").split():
            raise MessageNotFound()

    def save_sent(self, message: EmailMessage) -> None:
        """Keep a copy of a sent message in the Sent folder, already read."""
        sent = self.special_folder("\\Sent")
        status, data = self.connection.append(
            _quote(sent), "(\\Seen)", imaplib.Time2Internaldate(time.time()), message.as_bytes()
        )
        _expect_ok(status, data, "APPEND")
        self._folders = None

    def save_draft(self, message: EmailMessage) -> int:
        """Keep `message` in the Drafts folder; its UID there."""
        drafts = self.special_folder("\\Drafts")
        status, data = self.connection.append(
            _quote(drafts), "(\\Draft \\Seen)", imaplib.Time2Internaldate(time.time()), message.as_bytes()
        )
        _expect_ok(status, data, "APPEND")
        self._folders = None
        found = re.search(
            rb"APPENDUID \d+ (\d+)", b" ".join(item for item in data if isinstance(item, bytes))
        )
        if found is None:
            raise MailServiceUnavailable("IMAP APPEND: the server did not say where the draft went")
        return int(found.group(1))

    def discard_draft(self, uid: int) -> None:
        """Delete a draft for good (it was sent, or saved again). Raises MessageNotFound."""
        self._select(self.special_folder("\\Drafts"), readonly=False)
        self._require_uid(uid)
        self._expunge(uid)
        self._folders = None

    def recent_recipients(self, messages: int = 300, limit: int = 500) -> list[str]:
        """The addresses the user wrote to in their last `messages` sent, most recent first:
        what the compose form offers to complete."""
        try:
            self._select(self.special_folder("\\Sent"), readonly=True)
        except MessageNotFound:
            return []
        uids = self._uids_newest_first()[:messages]
        if not uids:
            return []
        status, data = self.connection.uid(
            "FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[HEADER.FIELDS (TO CC)])"
        )
        _expect_ok(status, data, "FETCH")
        by_uid = {}
        for meta, literal in _fetch_records(data):
            uid = _uid_of(meta)
            if uid is not None:
                parsed = email.message_from_bytes(literal, policy=email.policy.default)
                by_uid[uid] = [header_text(parsed, "To"), header_text(parsed, "Cc")]
        seen: dict[str, None] = {}
        for uid in uids:
            for _name, address in email.utils.getaddresses(by_uid.get(uid, [])):
                if "@" in address and len(seen) < limit:
                    seen.setdefault(address.lower(), None)
        return list(seen)


def submit(
    settings: Settings,
    address: str,
    password: str,
    message: EmailMessage,
    recipients: list[str],
    *,
    sender: str = "",
) -> None:
    """Send through the submission server (implicit TLS, AUTH as the user), as `sender` (one of
    their identities, checked by the server) or their own address.

    Raises SubmissionRefused (nothing or not everyone was accepted: the reason is the server's)
    or MailServiceUnavailable.
    """
    try:
        with smtplib.SMTP_SSL(
            server_address(settings),
            settings.ports["submissions"],
            context=tls_context(settings),
            timeout=TIMEOUT_SECONDS,
        ) as client:
            _authenticate_plain(client, address, password)
            refused = client.send_message(message, from_addr=sender or address, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as error:
        raise SubmissionRefused(_refusal_text(error.recipients)) from error
    except smtplib.SMTPAuthenticationError as error:
        raise SubmissionRefused("The mail server did not accept your login for sending.") from error
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
        raise SubmissionRefused(f"The mail server refused the message: {_smtp_text(error)}") from error
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        raise MailServiceUnavailable(f"submission: {error}") from error
    if refused:
        raise SubmissionRefused("Sent, except to: " + _refusal_text(refused))


def _authenticate_plain(client: smtplib.SMTP, address: str, password: str) -> None:
    """AUTH PLAIN in UTF-8 (RFC 4616); smtplib's login() sends ASCII only."""
    client.ehlo_or_helo_if_needed()
    credentials = f"\0{address}\0{password}".encode("utf-8", "surrogatepass")
    code, reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(credentials).decode())
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _refusal_text(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {reply.decode(errors='replace')})" for address, (code, reply) in refused.items()
    )


def _smtp_text(error: smtplib.SMTPResponseException) -> str:
    message = error.smtp_error
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{error.smtp_code} {text}"


# --- IMAP syntax ----------------------------------------------------------------------------------


def _expect_ok(status: str, data: list, command: str) -> None:
    if status != "OK":
        detail = b" ".join(item for item in data if isinstance(item, bytes)).decode(errors="replace")
        if (
            command in ("SELECT", "FETCH", "STORE", "MOVE", "COPY", "SEARCH", "EXPUNGE")
            and "NONEXISTENT" in detail
        ):
            raise MessageNotFound()
        raise MailServiceUnavailable(f"IMAP {command}: {status} {detail}")


MAX_FOLDER_NAME = 100


def folder_name(text: str) -> str:
    """A new folder's name: one level (no "/"), printable, at most MAX_FOLDER_NAME characters."""
    name = " ".join((text or "").split())
    if not name:
        raise ValidationError("Give the folder a name.", field="name")
    if len(name) > MAX_FOLDER_NAME:
        raise ValidationError(f"A folder name may be at most {MAX_FOLDER_NAME} characters.", field="name")
    if "/" in name or any(ord(ch) < 32 or ch in '"\\*%' for ch in name) or name.upper() == "INBOX":
        raise ValidationError(f"{name!r} cannot be a folder name: no / \\ * % or quotes.", field="name")
    return name


# Where a search looks (IMAP SEARCH keys, answered by the server): TEXT is headers and body.
SEARCH_FIELDS = {"all": "TEXT", "from": "FROM", "to": "TO", "subject": "SUBJECT", "body": "BODY"}
MAX_SEARCH_LENGTH = 200
# How a folder may be sorted besides by arrival (IMAP SORT keys, RFC 5256).
SORT_KEYS = {"date": "DATE", "from": "FROM", "subject": "SUBJECT", "size": "SIZE"}


def _threads(answer: bytes) -> list[list[int]]:
    """The UIDs of each top-level thread in a THREAD answer: "(1)(2 3 (4)(5))" -> [[1], [2, 3, 4, 5]]."""
    threads: list[list[int]] = []
    depth = 0
    for token in re.findall(rb"\(|\)|\d+", answer):
        if token == b"(":
            if depth == 0:
                threads.append([])
            depth += 1
        elif token == b")":
            depth = max(0, depth - 1)
        elif threads:
            threads[-1].append(int(token))
    return threads


def _quote(folder: str) -> str:
    encoded = encode_folder_name(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_list(lines: list) -> Iterator[tuple[str, str]]:
    """(flags, decoded name) of each LIST line; names may come quoted, bare or as literals."""
    for line in lines:
        if line is None:
            continue
        if isinstance(line, tuple):
            match = _LIST_LINE.match(line[0])
            raw_name = line[1]
        else:
            match = _LIST_LINE.match(line)
            raw_name = match.group("name") if match else b""
            if raw_name.startswith(b'"') and raw_name.endswith(b'"'):
                raw_name = re.sub(rb"\\(.)", rb"\1", raw_name[1:-1])
        if match is None:
            continue
        yield (
            match.group("flags").decode(errors="replace"),
            decode_folder_name(raw_name.decode("ascii", "replace")),
        )


def _fetch_records(data: list) -> Iterator[tuple[bytes, bytes]]:
    """(metadata, literal) per FETCH response; metadata after the literal is joined to the front."""
    items = list(data)
    for index, item in enumerate(items):
        if not isinstance(item, tuple):
            continue
        meta, literal = item[0], item[1]
        following = items[index + 1] if index + 1 < len(items) else None
        if isinstance(following, bytes):
            meta = meta + b" " + following
        yield meta, literal


def _uid_of(meta: bytes) -> int | None:
    match = re.search(rb"\bUID (\d+)", meta)
    return int(match.group(1)) if match else None


def _flags_of(meta: bytes) -> bytes:
    match = re.search(rb"\bFLAGS \(([^)]*)\)", meta)
    return match.group(1) if match else b""


def _summary(meta: bytes, header_bytes: bytes) -> MessageSummary | None:
    uid = _uid_of(meta)
    if uid is None:
        return None
    size_match = re.search(rb"\bRFC822\.SIZE (\d+)", meta)
    headers = BytesParser(policy=email.policy.default).parsebytes(header_bytes, headersonly=True)
    date = header_date(headers)
    if date is None:
        internal = re.search(rb'INTERNALDATE "([^"]+)"', meta)
        if internal:
            with contextlib.suppress(ValueError):
                date = dt.datetime.strptime(internal.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    return MessageSummary(
        uid=uid,
        sender=header_text(headers, "From"),
        recipients=header_text(headers, "To"),
        subject=header_text(headers, "Subject"),
        date=date,
        size=int(size_match.group(1)) if size_match else 0,
        unread=b"\\seen" not in _flags_of(meta).lower(),
        flagged=b"\\flagged" in _flags_of(meta).lower(),
    )


def header_text(message, name: str) -> str:
    """A header as readable text; a malformed header is shown as it came, never an error."""
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):
        value = None
    if value is None:
        raw = next((raw for key, raw in message.raw_items() if key.lower() == name.lower()), "")
        return str(raw)
    return " ".join(str(value).split())


def header_date(message) -> dt.datetime | None:
    try:
        value = message.get("Date")
        return email.utils.parsedate_to_datetime(str(value)) if value else None
    except (ValueError, TypeError, IndexError):
        return None


# --- modified UTF-7 (RFC 3501 5.1.3): how IMAP spells folder names outside ASCII -------------------


def encode_folder_name(name: str) -> str:
    encoded, pending = [], []

    def flush() -> None:
        if pending:
            chunk = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            encoded.append("&" + chunk.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            encoded.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(encoded)


def decode_folder_name(name: str) -> str:
    def decode(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", decode, name)


def display_domain(address: str) -> str:
    """An address with its domain in Unicode, as people write it."""
    local_part, at, domain = address.rpartition("@")
    return f"{local_part}@{domain_to_unicode(domain)}" if at else address
