"""The webmail pages at `/`: thin views over the user's own IMAP session and the webmail service.

Each request that shows mail opens one IMAP session as the logged-in user (webmail/mailstore.py),
so a message UID or folder name in a URL can only ever name something in their own mailbox.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import RequestEntityTooLarge

from controlplane.daemons import usage
from controlplane.errors import AuthenticationFailed, LetterheadError, LoginThrottled, ValidationError
from controlplane.services import brands, image_senders, mailboxes, sender_lists, storage, user_rules
from controlplane.services import webmail as rules
from controlplane.services.webmail import MailServiceUnavailable, MessageNotFound
from controlplane.web.access import allow
from controlplane.web.error_pages import render_error_page
from controlplane.web.requests import OVERSIZED_LOGIN, client_ip, count_oversized_login, current_settings, db
from controlplane.web.theme import current_theme, inject_theme
from webmail import html_mail, messages, session
from webmail.mailstore import (
    MAX_SEARCH_LENGTH,
    SEARCH_FIELDS,
    SORT_KEYS,
    LoginRefused,
    MailStore,
    SubmissionRefused,
    mail_server_accepts,
    submit,
)
from webmail.managesieve import SieveClient

log = logging.getLogger(__name__)
blueprint = Blueprint("webmail", __name__, template_folder="templates")
STATIC_DIRECTORY = Path(__file__).parent / "static"
blueprint.context_processor(inject_theme)
PAGE_SIZE = 25


@blueprint.before_request
def load_user() -> None:
    session.load()


@blueprint.after_request
def protect(response: Response) -> Response:
    # The Content-Security-Policy and the other headers are the app's (web/security.py).
    if g.get("mailbox_user") is not None:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@blueprint.errorhandler(MailServiceUnavailable)
def mail_unavailable(error: MailServiceUnavailable):
    return render_template("webmail/error.html", title="Mail unavailable", message=error.message), 503


@blueprint.errorhandler(MessageNotFound)
def message_not_found(error: MessageNotFound):
    return render_template("webmail/error.html", title="Not found", message=error.message), 404


def _mailstore():
    """The logged-in user's IMAP session for this request; a refused login ends the webmail session."""
    user = session.current_user()
    store = MailStore.open(current_settings(), user.address, user.password)
    return _LoggedOutOnRefusal(store)


class _LoggedOutOnRefusal:
    """Wraps MailStore.open: if IMAP now refuses the stored password, the user logs in again."""

    def __init__(self, manager) -> None:
        self.manager = manager

    def __enter__(self) -> MailStore:
        try:
            return self.manager.__enter__()
        except LoginRefused:
            session.end()
            raise _PasswordNoLongerAccepted() from None

    def __exit__(self, *exc_info) -> bool | None:
        return self.manager.__exit__(*exc_info)


class _PasswordNoLongerAccepted(Exception):
    """The password kept at login was changed since: log in again."""


@blueprint.errorhandler(_PasswordNoLongerAccepted)
def password_changed(_error: _PasswordNoLongerAccepted):
    flash("Your password was not accepted any more. Please log in again.", "error")
    return redirect(url_for("webmail.login"))


# --- logging in and out -------------------------------------------------------------------------


@blueprint.get("/webmail.css")
@allow("public")
def stylesheet():
    """The stylesheet, coloured by the brand the page is served under (no inline styles: see the CSP)."""
    theme = current_theme()
    # The page names its colours in the address (base.html): a changed accent is fetched at
    # once, and the panel's preview shows one not yet saved. Only colours pass.
    css = render_template(
        "webmail/webmail.css",
        accent=_css_colour("#" + request.args.get("accent", ""), _css_colour(theme.accent, "#3a6ee8")),
        header=_css_colour("#" + request.args.get("header", ""), _css_colour(theme.header, "#1d2330")),
    )
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


@blueprint.get("/webmail.js")
@allow("public")
def script():
    """The keyboard shortcuts (webmail/static/webmail.js): the one script the webmail's pages
    load, from this site only (the CSP allows no other and nothing inline)."""
    return send_file(
        STATIC_DIRECTORY / "webmail.js", mimetype="text/javascript", max_age=300, conditional=True
    )


def _css_colour(value: str, fallback: str) -> str:
    """A theme colour reaches CSS only as #rgb or #rrggbb: CSS templates are not escaped."""
    return value if re.fullmatch(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?", value or "") else fallback


@blueprint.errorhandler(RequestEntityTooLarge)
def oversized(error: RequestEntityTooLarge):
    if request.endpoint == "webmail.login":
        count_oversized_login(rules.SERVICE)
        return render_template("webmail/login.html", message=OVERSIZED_LOGIN, address="", next=""), 413
    return render_error_page(error)


@blueprint.route("/login", methods=["GET", "POST"])
@allow("public")
def login():
    if request.method == "GET":
        if g.get("mailbox_user") is not None:
            return redirect(url_for("webmail.inbox"))
        return render_template("webmail/login.html", address="", next=_safe_next(request.args.get("next")))
    form = request.form
    settings = current_settings()
    address = form.get("address", "")
    try:
        canonical = rules.authenticate_mailbox_user(
            db(), address=address, password=form.get("password", ""), client_ip=client_ip(),
            user_agent=request.headers.get("User-Agent", ""),
            mail_server_accepts=lambda login, password: mail_server_accepts(settings, login, password, client_ip()),
            host_tenant_id=brands.tenant_of_host(db(), request.host or ""),
        )  # fmt: skip
    except (AuthenticationFailed, LoginThrottled) as error:
        db().commit()  # the failure must count towards throttling
        status = 429 if isinstance(error, LoginThrottled) else 401
        page = render_template(
            "webmail/login.html", message=error.message, address=address, next=form.get("next")
        )
        return page, status
    except MailServiceUnavailable:
        db().commit()
        raise
    db().commit()
    session.start(canonical, form.get("password", ""))
    return redirect(_safe_next(form.get("next")) or url_for("webmail.inbox"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not send the user elsewhere."""
    if not target:
        return ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    # A line break would end up in the Location header: refuse any control character.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return ""
    if "\\" in target or parts.path.startswith(("/login", "/logout")):
        return ""
    return target.rstrip("?")


@blueprint.post("/logout")
@allow("mailbox_user")
def logout():
    session.end()
    flash("You are logged out.", "ok")
    return redirect(url_for("webmail.login"))


# --- reading ------------------------------------------------------------------------------------


@blueprint.get("/")
@allow("mailbox_user")
def inbox():
    return folder_page("INBOX")


@blueprint.get("/folder")
@allow("mailbox_user")
def folder():
    return folder_page(request.args.get("name", "INBOX"))


def folder_page(name: str):
    page_number = _whole_number(request.args.get("page", "1"), "page")
    search = request.args.get("q", "")[:MAX_SEARCH_LENGTH]
    search_in = request.args.get("in", "all")
    if search_in not in SEARCH_FIELDS or any(ord(ch) < 32 for ch in search):
        raise _BadRequest("Search in all, from, to, subject or body, for text on one line.")
    sort, order = request.args.get("sort", "arrival"), request.args.get("order", "desc")
    if (sort != "arrival" and sort not in SORT_KEYS) or order not in ("asc", "desc"):
        raise _BadRequest("Sort by arrival, date, from, subject or size, asc or desc.")
    with _mailstore() as store:
        page = store.message_page(
            name,
            page_number,
            PAGE_SIZE,
            search=search,
            search_in=search_in,
            sort=sort,
            ascending=order == "asc",
        )
        folders = store.folders()
        is_drafts = name == store.special_folder("\\Drafts")
    # What every link of this list keeps: the search and the order.
    kept = {
        key: value
        for key, value in (("q", search.strip()), ("in", search_in), ("sort", sort), ("order", order))
        if value
        and not (key == "in" and not search.strip())
        and (key, value) not in (("sort", "arrival"), ("order", "desc"))
    }
    return render_template(
        "webmail/folder.html", folders=folders, current=name, page=page, format_bytes=storage.format_bytes,
        search=search.strip(), search_in=search_in, search_fields=SEARCH_FIELDS, sort=sort, order=order, kept=kept,
        is_drafts=is_drafts,
    )  # fmt: skip


BULK_ACTIONS = {
    "read": ("Marked as read.", lambda store, folder, uids, _: store.set_flag(folder, uids, "\\Seen", True)),
    "unread": (
        "Marked as unread.",
        lambda store, folder, uids, _: store.set_flag(folder, uids, "\\Seen", False),
    ),
    "flag": ("Flagged.", lambda store, folder, uids, _: store.set_flag(folder, uids, "\\Flagged", True)),
    "unflag": (
        "Flag removed.",
        lambda store, folder, uids, _: store.set_flag(folder, uids, "\\Flagged", False),
    ),
    "delete": ("Deleted.", lambda store, folder, uids, _: store.delete_many(folder, uids)),
    "move": ("Moved.", lambda store, folder, uids, target: store.move(folder, uids, target)),
}


@blueprint.post("/folder/selected")
@allow("mailbox_user")
def change_selected():
    """Mark, flag, move or delete the messages ticked in a folder's list."""
    form = request.form
    folder_name = form.get("folder", "INBOX")
    action = BULK_ACTIONS.get(form.get("action", ""))
    if action is None:
        raise _BadRequest("Mark, flag, move or delete the selected messages.")
    uids = [_whole_number(value, "uid") for value in form.getlist("uid")[:1000]]
    done, change = action
    try:
        with _mailstore() as store:
            count = change(store, folder_name, uids, form.get("target", ""))
    except ValidationError as error:
        flash(error.message, "error")
    else:
        flash(f"{done} ({count} message{'' if count == 1 else 's'})", "ok")
    return redirect(url_for("webmail.folder", name=folder_name, page=form.get("page") or None))


@blueprint.get("/message/<int:uid>")
@allow("mailbox_user")
def message(uid: int):
    folder_name = request.args.get("folder", "INBOX")
    with _mailstore() as store:
        fetched = store.fetch(folder_name, uid, mark_read=True)
        conversation = store.conversation(folder_name, uid)
        folders = store.folders()
    readable = messages.read_message(uid, fetched.raw)
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    always = bool(readable.html) and image_senders.shows_images(db(), actor, mailbox, readable.sender)
    allow_remote = request.args.get("remote") == "1" or always
    safe = _safe_html(readable, folder_name, allow_remote=allow_remote) if readable.html else None
    return render_template(
        "webmail/message.html", folders=folders, current=folder_name, message=readable,
        format_bytes=storage.format_bytes, safe_html=safe, allow_remote=allow_remote,
        image_types=messages.INLINE_IMAGE_TYPES, sender_address=image_senders.sender_address(readable.sender),
        images_always_shown=always, conversation=conversation,
    )  # fmt: skip


def _safe_html(
    readable: messages.ReadableMessage, folder_name: str, *, allow_remote: bool
) -> html_mail.SafeHtml:
    return html_mail.sanitise(
        readable.html,
        inline_image_url=lambda content_id: url_for(
            "webmail.inline_image", uid=readable.uid, content_id=content_id, folder=folder_name
        ),
        allow_remote=allow_remote,
    )


@blueprint.get("/message/<int:uid>/html")
@allow("mailbox_user")
def message_html(uid: int):
    """The frame the message page shows a message's HTML in: sanitised, no script, and nothing
    from elsewhere unless the user asked for remote images (`remote=1`)."""
    folder_name = request.args.get("folder", "INBOX")
    allow_remote = request.args.get("remote") == "1"
    with _mailstore() as store:
        fetched = store.fetch(folder_name, uid)
    readable = messages.read_message(uid, fetched.raw)
    response = Response(html_mail.document(_safe_html(readable, folder_name, allow_remote=allow_remote)))
    response.headers["Content-Security-Policy"] = html_mail.frame_policy(allow_remote=allow_remote)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.post("/message/<int:uid>/always-show-images")
@allow("mailbox_user")
def always_show_images(uid: int):
    """Show this message's sender's remote images from now on, in every message of theirs."""
    folder_name = request.form.get("folder", "INBOX")
    with _mailstore() as store:
        fetched = store.fetch(folder_name, uid)
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    try:
        address = image_senders.always_show(
            db(), actor, mailbox, messages.read_message(uid, fetched.raw).sender
        )
    except LetterheadError as error:
        db().rollback()
        flash(error.message, "error")
    else:
        db().commit()
        flash(f"Images from {address} are shown from now on.", "ok")
    return redirect(url_for("webmail.message", uid=uid, folder=folder_name))


def _raw_message(uid: int) -> bytes:
    """The message `uid` of the folder the request names, as it is stored (not marked read)."""
    with _mailstore() as store:
        return store.fetch(request.args.get("folder", "INBOX"), uid).raw


def _sandboxed(content_type: str, content: bytes | str) -> Response:
    """A part of a message served on its own: nothing in it may load or run anything."""
    response = Response(content, mimetype=content_type)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@blueprint.get("/message/<int:uid>/inline/<path:content_id>")
@allow("mailbox_user")
def inline_image(uid: int, content_id: str):
    return _sandboxed(*messages.inline_image(_raw_message(uid), content_id))


@blueprint.get("/message/<int:uid>/source")
@allow("mailbox_user")
def message_source(uid: int):
    """The message as it arrived, headers and all, as text: never rendered as anything else."""
    return _sandboxed("text/plain", _raw_message(uid).decode("utf-8", "replace"))


@blueprint.get("/message/<int:uid>/attachments/<int:index>/preview")
@allow("mailbox_user")
def preview_attachment(uid: int, index: int):
    """An image attachment shown in the page: raster types only (an SVG could carry script)."""
    return _sandboxed(*messages.attachment_image(_raw_message(uid), index))


@blueprint.app_template_filter("linked")
def linked(text: str) -> Markup:
    """Plain text with its web addresses as links (opening elsewhere, without a Referer)."""
    return messages.linked_text(text)


@blueprint.get("/message/<int:uid>/attachments/<int:index>")
@allow("mailbox_user")
def download_attachment(uid: int, index: int):
    filename, content = messages.attachment(_raw_message(uid), index)
    response = _sandboxed("application/octet-stream", content)
    # Always a download, whatever the sender called it: an HTML "attachment" never renders here.
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response


@blueprint.post("/message/<int:uid>/read")
@allow("mailbox_user")
def mark_read(uid: int):
    folder_name = request.form.get("folder", "INBOX")
    read = request.form.get("read") == "1"
    with _mailstore() as store:
        store.set_read(folder_name, uid, read)
    flash("Marked as read." if read else "Marked as unread.", "ok")
    if read:
        return redirect(url_for("webmail.message", uid=uid, folder=folder_name))
    return redirect(url_for("webmail.folder", name=folder_name))


@blueprint.post("/message/<int:uid>/delete")
@allow("mailbox_user")
def delete(uid: int):
    folder_name = request.form.get("folder", "INBOX")
    with _mailstore() as store:
        trash = store.special_folder("\\Trash")
        store.move_to_trash(folder_name, uid)
    flash("Deleted for good." if folder_name == trash else f"Moved to {trash}.", "ok")
    return redirect(url_for("webmail.folder", name=folder_name))


# --- writing ------------------------------------------------------------------------------------

COMPOSE_FIELDS = ("to", "cc", "subject", "body", "in_reply_to", "references", "sender")
# Where attachments already on the server come from: a draft being resumed, or a message being
# forwarded (its attachments, or the whole of it as one).
SOURCE_KINDS = ("draft", "forward", "forward-whole")
# How much an address field of a draft may hold, as typed (a draft need not be valid yet).
MAX_DRAFT_FIELD = 2000


@blueprint.get("/compose")
@allow("mailbox_user")
def compose():
    """A new message; with `reply` (and `all`), `forward` (and `whole`) or `draft`, one built
    from that message of `folder`."""
    draft = dict.fromkeys(COMPOSE_FIELDS, "")
    source = {"kind": "", "folder": "", "uid": ""}
    source_attachments: list[messages.Attachment] = []
    folder_name = request.args.get("folder", "INBOX")
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    identities = rules.sending_identities(db(), actor, mailbox)
    with _mailstore() as store:
        for argument in ("reply", "forward", "draft"):
            if not request.args.get(argument):
                continue
            uid = _whole_number(request.args[argument], argument)
            if argument == "draft":
                folder_name = store.special_folder("\\Drafts")
            original = messages.read_message(uid, store.fetch(folder_name, uid).raw)
            if argument == "reply":
                draft = messages.reply_draft(
                    original, reply_all=request.args.get("all") == "1", own=set(identities)
                )
            elif argument == "forward":
                draft = messages.forward_draft(original)
                whole = request.args.get("whole") == "1"
                source = {"kind": "forward-whole" if whole else "forward", "folder": folder_name, "uid": uid}
                source_attachments = [] if whole else original.attachments
            else:
                # A reply's draft keeps its thread: build_message put the replied-to ID last.
                replied_to = original.references.split()[-1] if original.references.split() else ""
                draft = {
                    "to": original.to, "cc": original.cc, "subject": original.subject,
                    "body": original.text, "in_reply_to": replied_to, "references": original.references,
                    "sender": messages.plain_address(original.sender),
                }  # fmt: skip
                source = {"kind": "draft", "folder": folder_name, "uid": uid}
                source_attachments = original.attachments
            break
        folders = store.folders()
        known = store.recent_recipients()
    return render_template(
        "webmail/compose.html", folders=folders, current="", draft=draft, message=None,
        identities=identities, source=source, source_attachments=source_attachments,
        known_addresses=known, size_limit=storage.format_bytes(rules.MAX_MESSAGE_BYTES),
        forwarded_whole=source["kind"] == "forward-whole",
    )  # fmt: skip


@blueprint.post("/compose")
@allow("mailbox_user")
def send():
    """Send the message, or keep it as a draft (`action=save`), with the files uploaded and the
    attachments kept from its source (a resumed draft, a forwarded message)."""
    user = session.current_user()
    draft = {field: request.form.get(field, "") for field in COMPOSE_FIELDS}
    saving = request.form.get("action") == "save"
    source = {
        "kind": request.form.get("source_kind", ""),
        "folder": request.form.get("source_folder", ""),
        "uid": request.form.get("source_uid", ""),
    }
    actor, mailbox = rules.own_mailbox(db(), user.address)
    identities = rules.sending_identities(db(), actor, mailbox)
    try:
        sender = rules.require_sending_identity(db(), actor, mailbox, draft["sender"])
        if saving:
            to, cc = _draft_field(draft["to"]), _draft_field(draft["cc"])
        else:
            to = rules.parse_recipients(draft["to"], field="to")
            cc = rules.parse_recipients(draft["cc"], field="cc")
            rules.check_outgoing(to=to, cc=cc, subject=draft["subject"], body=draft["body"])
        uploads = [
            messages.uploaded_attachment(upload.filename or "", upload.mimetype or "", upload.read())
            for upload in request.files.getlist("attachments")
            if upload.filename
        ]
        with _mailstore() as store:
            attachments = [*_source_attachments(store, source), *uploads]
            outgoing = messages.build_message(
                sender=sender, to=to, cc=cc, subject=draft["subject"].replace("\r", " ").replace("\n", " "),
                body=draft["body"], in_reply_to=draft["in_reply_to"], references=draft["references"],
                attachments=attachments,
            )  # fmt: skip
            rules.check_message_size(len(outgoing.as_bytes()))
            if saving:
                saved = store.save_draft(outgoing)
                if source["kind"] == "draft":
                    store.discard_draft(int(source["uid"]))
                flash("Draft saved.", "ok")
                return redirect(url_for("webmail.compose", draft=saved))
            submit(current_settings(), user.address, user.password, outgoing, [*to, *cc], sender=sender)
            # Sent: what follows must never make it look unsent (and invite sending it twice).
            try:
                store.save_sent(outgoing)
                if source["kind"] == "draft":
                    store.discard_draft(int(source["uid"]))
            except (MailServiceUnavailable, MessageNotFound) as error:
                log.warning("sent, but the copy in Sent or the draft's removal failed: %s", error)
                flash("Message sent, but its copy could not be kept in Sent (or its draft removed).", "error")
                return redirect(url_for("webmail.inbox"))
    except MessageNotFound:
        # The draft or message it came from is gone (sent from another tab, deleted): the
        # typed text comes back, its attachments to add again.
        error = ValidationError("The draft or message this came from is gone: attach its files again.")
        return _compose_again(draft, identities, source, error, 409)
    except (ValidationError, SubmissionRefused, MailServiceUnavailable) as error:
        # The draft comes back as typed; no folder list, so an IMAP outage cannot lose it too.
        status = {ValidationError: 400, SubmissionRefused: 422}.get(type(error), 503)
        return _compose_again(draft, identities, source, error, status)
    flash("Message sent.", "ok")
    return redirect(url_for("webmail.inbox"))


def _compose_again(draft: dict, identities: list[str], source: dict, error, status: int):
    """The form as it was typed, with what went wrong; no folder list, so an IMAP outage cannot
    lose the draft too."""
    gone = status == 409
    page = render_template(
        "webmail/compose.html", folders=[], current="", draft=draft, message=error.message,
        identities=identities, source={"kind": "", "folder": "", "uid": ""} if gone else source,
        source_attachments=[], known_addresses=[], size_limit=storage.format_bytes(rules.MAX_MESSAGE_BYTES),
        forwarded_whole=source["kind"] == "forward-whole" and not gone,
        kept_indices=[] if gone else request.form.getlist("keep_attachment"),
        files_dropped=any(upload.filename for upload in request.files.getlist("attachments")),
    )  # fmt: skip
    return page, status


def _draft_field(text: str) -> list[str]:
    """An address field of a draft as typed, on one line: it need not be valid until sent."""
    text = " ".join(text.split())
    if len(text) > MAX_DRAFT_FIELD:
        raise ValidationError(f"An address field may hold at most {MAX_DRAFT_FIELD} characters.", field="to")
    return [text] if text else []


def _source_attachments(store: MailStore, source: dict[str, str]) -> list[messages.NewAttachment]:
    """The attachments a resumed draft or a forwarded message brings, as the form kept them
    (`keep_attachment`: their indices), fetched again from the user's own mailbox."""
    if not source["kind"]:
        return []
    if source["kind"] not in SOURCE_KINDS:
        raise _BadRequest("Unknown attachment source.")
    uid = _whole_number(source["uid"], "source_uid")
    folder_name = store.special_folder("\\Drafts") if source["kind"] == "draft" else source["folder"]
    raw = store.fetch(folder_name, uid).raw
    if source["kind"] == "forward-whole":
        return [messages.forwarded_whole(raw)]
    kept = {_whole_number(index, "keep_attachment") for index in request.form.getlist("keep_attachment")}
    return messages.kept_attachments(raw, kept)


def _whole_number(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise _BadRequest(f"{field} must be a positive whole number.")
    return int(text)


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@blueprint.errorhandler(_BadRequest)
def bad_request(error: _BadRequest):
    return render_template("webmail/error.html", title="Bad request", message=error.message), 400


# --- settings -----------------------------------------------------------------------------------


@blueprint.get("/settings/senders")
@allow("mailbox_user")
def senders():
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    lists = sender_lists.lists_of(db(), actor, mailbox)
    with _mailstore() as store:
        folders = store.folders()
    return render_template(
        "webmail/senders.html", folders=folders, current="", lists=lists,
        image_senders=image_senders.senders(db(), actor, mailbox),
    )  # fmt: skip


@blueprint.post("/settings/senders")
@allow("mailbox_user")
def change_senders():
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    sender, verdict = request.form.get("sender", ""), request.form.get("list", "")
    try:
        if request.form.get("stop_images"):
            image_senders.stop_showing(db(), actor, mailbox, request.form["stop_images"])
            done = "Images from this sender wait for you again."
        elif request.form.get("remove"):
            sender_lists.remove_sender(db(), actor, mailbox, request.form["remove"])
            done = "Sender removed from the list."
        else:
            sender_lists.add_sender(db(), actor, mailbox, sender, verdict)
            done = (
                "Mail from this sender is never filed as junk."
                if verdict == "allow"
                else ("Mail from this sender goes to Junk from now on.")
            )
    except LetterheadError as error:
        db().rollback()
        flash(error.message, "error")
    else:
        db().commit()
        flash(done, "ok")
    return redirect(url_for("webmail.senders"))


@blueprint.get("/settings/folders")
@allow("mailbox_user")
def folders_settings():
    with _mailstore() as store:
        folders = store.folders()
    return render_template("webmail/folders.html", folders=folders, current="")


@blueprint.post("/settings/folders")
@allow("mailbox_user")
def change_folders():
    form = request.form
    action = form.get("action", "")
    try:
        with _mailstore() as store:
            if action == "create":
                done = f"Folder {store.create_folder(form.get('name', ''))} created."
            elif action == "rename":
                done = f"Renamed to {store.rename_folder(form.get('name', ''), form.get('new_name', ''))}."
            elif action == "delete":
                moved = store.delete_folder(form.get("name", ""))
                done = "Folder deleted." + (f" Its {moved} message(s) are in Trash." if moved else "")
            else:
                raise _BadRequest("Create, rename or delete a folder.")
    except ValidationError as error:
        flash(error.message, "error")
    except MessageNotFound:
        flash("There is no such folder.", "error")
    else:
        flash(done, "ok")
    return redirect(url_for("webmail.folders_settings"))


@blueprint.get("/settings/account")
@allow("mailbox_user")
def account():
    """The user's storage and their own login history."""
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    used = usage.usage_of_mailboxes(current_settings(), [mailbox]).get(mailbox.address)
    with _mailstore() as store:
        folders = store.folders()
    return render_template(
        "webmail/account.html", folders=folders, current="", mailbox=mailbox, used=used,
        format_bytes=storage.format_bytes, logins=rules.own_login_history(db(), actor, mailbox),
    )  # fmt: skip


@blueprint.post("/settings/password")
@allow("mailbox_user")
def change_password():
    form = request.form
    user = session.current_user()
    actor, mailbox = rules.own_mailbox(db(), user.address)
    try:
        if form.get("new_password", "") != form.get("repeat_password", ""):
            raise ValidationError("The two new passwords differ.", field="repeat_password")
        mailboxes.change_own_password(
            db(), actor, mailbox, current=form.get("current_password", ""), new=form.get("new_password", "")
        )
    except LetterheadError as error:
        db().rollback()
        flash(error.message, "error")
    else:
        db().commit()
        # The session keeps the password for IMAP and submission: it is the new one now.
        session.start(user.address, form["new_password"])
        flash("Password changed. Use the new one in your mail programs too.", "ok")
    return redirect(url_for("webmail.account") + "#password")


# --- vacation, forwarding and filters (the user's own Sieve script, through ManageSieve) ---------


def _sieve():
    """The logged-in user's ManageSieve session; a refused login ends the webmail session."""
    user = session.current_user()
    return _LoggedOutOnRefusal(SieveClient.open(current_settings(), user.address, user.password))


def _current_rules(client: SieveClient) -> tuple[user_rules.UserRules, str | None]:
    """The rules the webmail last wrote, and the name of another script of the user's that runs
    instead (their own Sieve client's), if any."""
    scripts = client.scripts()
    other = next(
        (name for name, active in scripts.items() if active and name != user_rules.SCRIPT_NAME), None
    )
    written = client.read(user_rules.SCRIPT_NAME) if user_rules.SCRIPT_NAME in scripts else None
    return (user_rules.from_sieve(written) if written else None) or user_rules.UserRules(), other


def _save_rules(client: SieveClient, rules_now: user_rules.UserRules, what: str, **details: object) -> None:
    actor, mailbox = rules.own_mailbox(db(), session.current_user().address)
    addresses = rules.sending_identities(db(), actor, mailbox)
    client.store(user_rules.SCRIPT_NAME, user_rules.to_sieve(rules_now, addresses=addresses))
    client.activate(user_rules.SCRIPT_NAME)
    user_rules.record_change(db(), actor, mailbox, what, **details)
    db().commit()


def _rules_page(template: str, **extra: object) -> str:
    """A settings page of the user's own rules, with the folder list beside it."""
    with _sieve() as client:
        current, other = _current_rules(client)
    with _mailstore() as store:
        folders = store.folders()
    return render_template(template, folders=folders, current="", rules=current, other_script=other, **extra)


@blueprint.get("/settings/away")
@allow("mailbox_user")
def away():
    """Vacation reply and forwarding."""
    return _rules_page("webmail/away.html")


@blueprint.post("/settings/vacation")
@allow("mailbox_user")
def change_vacation():
    form = request.form
    try:
        holiday = user_rules.vacation(
            enabled=form.get("enabled") == "1", start=form.get("start", ""), end=form.get("end", ""),
            subject=form.get("subject", ""), text=form.get("text", ""),
        )  # fmt: skip
        with _sieve() as client:
            current, _other = _current_rules(client)
            _save_rules(client, dataclasses.replace(current, vacation=holiday), "vacation",
                        enabled=holiday.enabled, start=str(holiday.start or ""), end=str(holiday.end or ""))  # fmt: skip
    except ValidationError as error:
        flash(error.message, "error")
    else:
        flash("Vacation reply on." if holiday.enabled else "Vacation reply off.", "ok")
    return redirect(url_for("webmail.away"))


@blueprint.post("/settings/forwarding")
@allow("mailbox_user")
def change_forwarding():
    user = session.current_user()
    try:
        forward = user_rules.forwarding(
            address=request.form.get("address", ""),
            keep_copy=request.form.get("keep_copy") == "1",
            own=user.address,
        )
        with _sieve() as client:
            current, _other = _current_rules(client)
            _save_rules(client, dataclasses.replace(current, forwarding=forward), "forwarding",
                        address=forward.address, keep_copy=forward.keep_copy)  # fmt: skip
    except ValidationError as error:
        flash(error.message, "error")
    else:
        flash(
            f"Mail is forwarded to {forward.address}." if forward.address else "Mail is not forwarded.", "ok"
        )
    return redirect(url_for("webmail.away"))


@blueprint.get("/settings/filters")
@allow("mailbox_user")
def filters():
    return _rules_page("webmail/filters.html", fields=user_rules.FIELDS, actions=user_rules.ACTIONS)


@blueprint.post("/settings/filters")
@allow("mailbox_user")
def change_filters():
    user = session.current_user()
    form = request.form
    try:
        with _sieve() as client:
            current, _other = _current_rules(client)
            if form.get("remove"):
                position = _whole_number(form["remove"], "remove")
                changed = user_rules.without_filter(current, position)
                _save_rules(client, changed, "filter_removed", filter=current.filters[position].describe())
                flash("Filter removed.", "ok")
            else:
                added = user_rules.mail_filter(
                    field=form.get("field", ""), match=form.get("match", ""), value=form.get("value", ""),
                    action=form.get("action", ""), argument=form.get("argument", ""),
                    header=form.get("header", ""), own=user.address,
                )  # fmt: skip
                _save_rules(
                    client, user_rules.with_filter(current, added), "filter_added", filter=added.describe()
                )
                flash("Filter added.", "ok")
    except ValidationError as error:
        flash(error.message, "error")
    return redirect(url_for("webmail.filters"))
