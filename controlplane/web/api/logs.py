"""Mail transactions and login attempts, as the panel's log viewers show them.

A tenant token sees the tenant's records and may narrow them to one domain; a domain token
its own domain's. The services decide what each sees, exactly as in the panel.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from controlplane.models import AuthEvent, Domain, MailRecipientResult, Tenant
from controlplane.services import mail_logs, mail_story, scope, smtp_replies
from controlplane.web.api import current_actor, tokens_allowed
from controlplane.web.api.schemas import page_schema
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("api_logs", __name__, description="Mail and login logs")


class LogPageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=mail_logs.MAX_PAGE))
    domain = fields.String(
        load_default="",
        validate=validate.Length(max=300),
        metadata={"description": "Only this domain's records (a domain token always sees only its own)"},
    )


class TransactionListArgs(LogPageArgs):
    q = fields.String(
        load_default="",
        validate=validate.Length(max=1000),
        metadata={
            "description": "An address (sender, recipient, SASL user), client IP, message-id or queue ID"
        },
    )
    date = fields.Date(metadata={"description": "Only this day (UTC), YYYY-MM-DD"})
    result = fields.String(validate=validate.OneOf(list(mail_logs.RESULTS)))
    direction = fields.String(
        validate=validate.OneOf(["in", "out"]),
        metadata={"description": "in: mail to your domains; out: mail from them"},
    )


class LoginListArgs(LogPageArgs):
    q = fields.String(
        load_default="", validate=validate.Length(max=1000), metadata={"description": "A login or client IP"}
    )
    service = fields.String(validate=validate.OneOf(list(mail_logs.LOGIN_SERVICES)))
    result = fields.String(validate=validate.OneOf(["success", "failure"]))


class StoryArgs(Schema):
    address = fields.String(required=True, validate=validate.Length(min=3, max=320),
                            metadata={"description": "The address that sent or should have received the mail"})  # fmt: skip
    other = fields.String(load_default="", validate=validate.Length(max=320),
                          metadata={"description": "Only mail between `address` and this one"})  # fmt: skip
    date = fields.Date(metadata={"description": "Only this day (UTC), YYYY-MM-DD"})
    domain = fields.String(load_default="", validate=validate.Length(max=300))


class StoryLineSchema(Schema):
    transaction_id = fields.Integer(
        required=True, metadata={"description": "GET /logs/transactions/{id}: the dialogue"}
    )
    time = fields.DateTime(required=True)
    sender = fields.String(required=True)
    recipient = fields.String(required=True)
    result = fields.String(required=True)
    sentence = fields.String(required=True, metadata={"description": "What became of it, in words"})
    reply = fields.String(required=True, metadata={"description": "The server's own reply, if any"})
    spam_verdict = fields.String(required=True)
    mailbox_note = fields.String(
        required=True, metadata={"description": "The mailbox's storage, when it was full"}
    )
    node = fields.String(required=True)


class StorySchema(Schema):
    address = fields.String(required=True)
    other = fields.String(required=True)
    day = fields.Date(allow_none=True)
    summary = fields.String(required=True)
    messages = fields.Integer(required=True)
    dns_notes = fields.List(fields.String(), required=True,
                            metadata={"description": "What is wrong now with the domain's MX, SPF or DKIM, when it explains the story"})  # fmt: skip
    lines = fields.List(fields.Nested(StoryLineSchema), required=True)


class DayCountArgs(Schema):
    last = fields.Date(metadata={"description": "The last day (UTC) of the range; default today"})
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=366))
    domain = fields.String(load_default="", validate=validate.Length(max=300))


class RecipientSchema(Schema):
    recipient = fields.String(required=True)
    orig_to = fields.String(
        required=True, metadata={"description": "The address written, if an alias rewrote it"}
    )
    outcome = fields.String(
        required=True,
        metadata={"description": "delivered, forwarded, relayed, deferred, bounced, refused or expired"},
    )
    result = fields.String(required=True, metadata={"description": "accepted, refused, deferred or bounced"})
    status_code = fields.String(required=True)
    status_meaning = fields.String(required=True, metadata={"description": "The status code in words"})
    reason = fields.String(required=True, metadata={"description": "Why, in plain words (empty on success)"})
    detail = fields.String(required=True, metadata={"description": "What the server said, as logged"})
    relay = fields.String(required=True)
    attempts = fields.Integer(required=True)
    time = fields.DateTime(required=True)


class TransactionSchema(Schema):
    id = fields.Integer(required=True)
    time = fields.DateTime(required=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    client_name = fields.String(required=True)
    client_ip = fields.String(required=True)
    helo = fields.String(required=True)
    sasl_user = fields.String(required=True)
    sender = fields.String(required=True, allow_none=True)
    message_id = fields.String(required=True)
    size = fields.Integer(required=True, allow_none=True)
    queue_ids = fields.List(fields.String(), required=True)
    spam_verdict = fields.String(
        required=True,
        metadata={
            "description": 'The spam filter\'s verdict in words, e.g. "rejected as spam (score 16.2: ...)"'
        },
    )
    spam_score = fields.Float(required=True, allow_none=True)
    node = fields.String(
        required=True, metadata={"description": 'The mail node that handled it ("": one machine)'}
    )
    recipients = fields.List(fields.Nested(RecipientSchema), required=True)


class DialogueStepSchema(Schema):
    side = fields.String(required=True, metadata={"description": "client or server"})
    text = fields.String(required=True)
    time = fields.DateTime(required=True, allow_none=True)
    elapsed_seconds = fields.Float(
        required=True, allow_none=True, metadata={"description": "Since the step before"}
    )
    code = fields.String(required=True)
    meaning = fields.String(required=True)


class TransactionDetailSchema(TransactionSchema):
    dialogue = fields.List(fields.Nested(DialogueStepSchema), required=True)


class LoginSchema(Schema):
    id = fields.Integer(required=True)
    time = fields.DateTime(required=True)
    service = fields.String(required=True)
    login = fields.String(required=True)
    client_ip = fields.String(required=True)
    success = fields.Boolean(required=True)
    reason = fields.String(required=True)
    node = fields.String(
        required=True, metadata={"description": 'The mail node that saw it ("": one machine)'}
    )


class DayCountsSchema(Schema):
    day = fields.Date(required=True)
    accepted = fields.Integer(required=True)
    refused = fields.Integer(required=True)
    deferred = fields.Integer(required=True)
    bounced = fields.Integer(required=True)
    total = fields.Integer(required=True)


TransactionPageSchema = page_schema(TransactionSchema)
LoginPageSchema = page_schema(LoginSchema)


def _scope(domain_name: str) -> tuple[Tenant, Domain | None]:
    return scope.viewer_target(db(), current_actor(), domain_name)


def recipient_body(recipient: MailRecipientResult) -> dict:
    return {
        "recipient": recipient.recipient, "orig_to": recipient.orig_to, "outcome": recipient.outcome,
        "result": mail_logs.RESULT_OF_OUTCOME[recipient.outcome], "status_code": recipient.status_code,
        "status_meaning": smtp_replies.explain_reply(recipient.status_code), "reason": recipient.reason,
        "detail": recipient.detail, "relay": recipient.relay, "attempts": recipient.attempts, "time": recipient.time,
    }  # fmt: skip


def transaction_body(view: mail_logs.TransactionView) -> dict:
    t = view.transaction
    return {
        "id": t.id, "time": t.time, "finished_at": t.finished_at, "client_name": t.client_name,
        "client_ip": t.client_ip, "helo": t.helo, "sasl_user": t.sasl_user, "sender": t.sender,
        "message_id": t.message_id, "size": t.size, "queue_ids": [entry.queue_id for entry in t.queue_entries],
        "spam_verdict": view.spam_verdict, "spam_score": t.spam_score, "node": t.node,
        "recipients": [recipient_body(r) for r in view.recipients],
    }  # fmt: skip


def login_body(event: AuthEvent) -> dict:
    return {
        "id": event.id, "time": event.time, "service": event.service, "login": event.login,
        "client_ip": event.client_ip, "success": event.success, "reason": event.reason, "node": event.node,
    }  # fmt: skip


@blueprint.route("/logs/transactions", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(TransactionListArgs, location="query")
@blueprint.response(200, TransactionPageSchema)
def list_transactions(args):
    """Mail transactions, newest first: search by `q` across all days or list one `date`, filtered by
    result and direction. A domain sees mail to or from it, and of a message it only received, only
    its own recipients."""
    tenant, domain = _scope(args["domain"])
    views, total = mail_logs.search_transactions(
        db(), current_actor(), args["q"], tenant=tenant, domain=domain, on=args.get("date"),
        result=args.get("result"), direction=args.get("direction"),
        offset=(args["page"] - 1) * args["per_page"], limit=args["per_page"],
    )  # fmt: skip
    return {
        "items": [transaction_body(view) for view in views], "total": total, "page": args["page"],
        "per_page": args["per_page"],
    }  # fmt: skip


@blueprint.route("/logs/story", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(StoryArgs, location="query")
@blueprint.response(200, StorySchema)
def mail_story_of(args):
    """What happened to my mail? Each message to or from `address` (and `other`), newest first, with
    what became of it in words, the mailbox's storage when it was full, and the domain's DNS when it
    explains a refusal or why nothing arrived."""
    tenant, domain = _scope(args["domain"])
    story = mail_story.mail_story(
        db(), current_actor(), current_settings(), args["address"], other=args["other"], on=args.get("date"),
        tenant=tenant, domain=domain,
    )  # fmt: skip
    return dataclasses.asdict(story)


@blueprint.route("/logs/transactions/<int:transaction_id>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, TransactionDetailSchema)
def get_transaction(transaction_id: int):
    """One transaction with each recipient's result and its SMTP dialogue, client and server lines apart."""
    tenant, domain = _scope("")
    view = mail_logs.get_transaction(db(), current_actor(), transaction_id, tenant=tenant, domain=domain)
    steps = mail_logs.dialogue_steps(view)
    return {
        **transaction_body(view),
        "dialogue": [
            {
                "side": step.side, "text": step.text, "time": step.time, "code": step.code, "meaning": step.meaning,
                "elapsed_seconds": step.elapsed.total_seconds() if step.elapsed is not None else None,
            }
            for step in steps
        ],
    }  # fmt: skip


@blueprint.route("/logs/days", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(DayCountArgs, location="query")
@blueprint.response(200, DayCountsSchema(many=True))
def day_counts(args):
    """Per day, oldest first, how many recipients were accepted, refused, deferred or bounced."""
    tenant, domain = _scope(args["domain"])
    last = args.get("last") or dt.datetime.now(dt.UTC).date()
    counts = mail_logs.day_counts(
        db(), current_actor(), tenant=tenant, domain=domain, last=last, days=args["days"]
    )
    return [
        {"day": c.day, "accepted": c.accepted, "refused": c.refused, "deferred": c.deferred, "bounced": c.bounced,
         "total": c.total}
        for c in counts
    ]  # fmt: skip


@blueprint.route("/logs/auth", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(LoginListArgs, location="query")
@blueprint.response(200, LoginPageSchema)
def list_logins(args):
    """Login attempts (admin panel, webmail, SMTP submission, IMAP, POP3, ManageSieve), newest first."""
    tenant, domain = _scope(args["domain"])
    result = args.get("result")
    events, total = mail_logs.search_logins(
        db(), current_actor(), args["q"], tenant=tenant, domain=domain, service=args.get("service"),
        success=None if result is None else result == "success", offset=(args["page"] - 1) * args["per_page"],
        limit=args["per_page"],
    )  # fmt: skip
    return {
        "items": [login_body(event) for event in events], "total": total, "page": args["page"],
        "per_page": args["per_page"],
    }  # fmt: skip
