"""Mail and login logs in the admin panel: days with their counts, a day's transactions, search,
one transaction in full, and login attempts.

Full admins see their tenant's records and may narrow them to one domain; domain admins see
their own domain's and nothing else. The services decide what each sees: a view only names
the tenant and domain the actor stands for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import redirect, render_template, request, url_for

from controlplane.errors import ValidationError
from controlplane.models import Domain, Tenant
from controlplane.services import domains, mail_logs, mail_story, scope, smtp_replies
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import PAGE_SIZE, blueprint
from controlplane.web.requests import current_settings, db

CHART_DAYS = 30
# Mail logs hold no records from before computers sent mail; the bounds keep date arithmetic sane.
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9999, 1, 1)
CHART_HEIGHT = 120
BAR_WIDTH = 16
BAR_GAP = 4
# Bottom to top in each bar: the common case first, so a bad day shows as colour on top.
CHART_ORDER = ("accepted", "deferred", "bounced", "refused")
RESULT_WORDS = {
    "accepted": "accepted (delivered or passed on)",
    "refused": "refused before queueing",
    "deferred": "deferred, still being retried",
    "bounced": "bounced or expired",
}
SERVICE_WORDS = {
    "admin": "admin panel",
    "webmail": "webmail",
    "smtp": "SMTP submission",
    "imap": "IMAP",
    "pop3": "POP3",
    "sieve": "ManageSieve",
}


@dataclass(frozen=True)
class BarSegment:
    result: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class ChartBar:
    day: dt.date
    x: int
    total: int
    segments: list[BarSegment]


def chart_bars(counts: list[mail_logs.DayCounts]) -> list[ChartBar]:
    """Stacked bars, one per day, scaled so the busiest day fills the chart's height."""
    busiest = max((day.total for day in counts), default=0) or 1
    bars = []
    for index, day in enumerate(counts):
        top = float(CHART_HEIGHT)
        segments = []
        for result in CHART_ORDER:
            count = getattr(day, result)
            height = CHART_HEIGHT * count / busiest
            top -= height
            if count:
                segments.append(BarSegment(result, round(top, 2), round(height, 2), count))
        bars.append(ChartBar(day.day, index * (BAR_WIDTH + BAR_GAP), day.total, segments))
    return bars


def _viewer_scope(domain_name: str = "") -> tuple[Tenant, Domain | None]:
    return scope.viewer_target(db(), current_actor(), domain_name)


def _date(text: str, field: str = "date") -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{text!r} is not a date: write it as YYYY-MM-DD.", field=field) from None


def _page() -> int:
    text = request.args.get("page", "1")
    return max(int(text), 1) if text.isdigit() and len(text) < 8 else 1


def _domain_choices(tenant: Tenant) -> list[Domain]:
    actor = current_actor()
    return [] if actor.kind == "domain_admin" else domains.list_domains(db(), actor, tenant)


def _kept_filters(*, domain: Domain | None, **given: str) -> dict[str, str]:
    """The filters a page link carries on; a domain admin's domain is implied, never a filter."""
    if domain is not None and current_actor().kind != "domain_admin":
        given["domain"] = domain.name
    return {name: value for name, value in given.items() if value}


@blueprint.get("/logs")
@allow("full_admin", "domain_admin")
def logs_home():
    return redirect(url_for("admin.mail_log"))


@blueprint.get("/logs/mail")
@allow("full_admin", "domain_admin")
def mail_log():
    """The last 30 days (up to `last`), each with its counts, as a chart and a list."""
    args = request.args
    tenant, domain = _viewer_scope(args.get("domain", ""))
    error = None
    today = dt.datetime.now(dt.UTC).date()
    try:
        last = _date(args.get("last", ""), "last") or today
        if not FIRST_DAY <= last <= LAST_DAY:
            raise ValidationError(f"Choose a day from {FIRST_DAY} to {LAST_DAY}.", field="last")
    except ValidationError as refused:
        error, last = refused.message, today
    counts = mail_logs.day_counts(
        db(), current_actor(), tenant=tenant, domain=domain, last=last, days=CHART_DAYS
    )
    bars = chart_bars(counts)
    return render_template(
        "admin/logs_mail.html", counts=list(reversed(counts)), bars=bars, error=error, last=last,
        domain=domain, domain_choices=_domain_choices(tenant), chart_height=CHART_HEIGHT, bar_width=BAR_WIDTH,
        chart_width=len(bars) * (BAR_WIDTH + BAR_GAP), chart_order=CHART_ORDER, result_words=RESULT_WORDS,
        earlier=last - dt.timedelta(days=CHART_DAYS), later=last + dt.timedelta(days=CHART_DAYS),
        today=today, busiest=max((day.total for day in counts), default=0),
    ), 400 if error else 200  # fmt: skip


@blueprint.get("/logs/mail/days/<day>")
@allow("full_admin", "domain_admin")
def mail_log_day(day: str):
    """One day's transactions, filtered by result, direction and domain."""
    return _transaction_list(day=day)


@blueprint.get("/logs/mail/search")
@allow("full_admin", "domain_admin")
def mail_log_search():
    """Transactions by address, client IP, message-id or queue ID, across all days."""
    return _transaction_list(day=request.args.get("date", ""))


def _transaction_list(day: str):
    args = request.args
    tenant, domain = _viewer_scope(args.get("domain", ""))
    query, result, direction = args.get("q", "").strip(), args.get("result", ""), args.get("direction", "")
    page = _page()
    views: list[mail_logs.TransactionView] = []
    total, error = 0, None
    on = None
    # An empty search form asks for something to look for rather than counting every message ever logged.
    asked = bool(query or day.strip() or result or direction)
    try:
        on = _date(day)
        if asked:
            views, total = mail_logs.search_transactions(
                db(), current_actor(), query, tenant=tenant, domain=domain, on=on, result=result or None,
                direction=direction or None, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
            )  # fmt: skip
    except ValidationError as refused:
        error = refused.message
    # On a day's own page the day is in the path; a search carries it as a filter.
    in_path = bool(request.view_args)
    filters = _kept_filters(
        q=query, result=result, direction=direction, date="" if in_path else day, domain=domain
    )
    return render_template(
        "admin/logs_transactions.html", views=views, total=total, page=page, error=error, on=on, day=day, asked=asked,
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), query=query, result=result, direction=direction, domain=domain, domain_choices=_domain_choices(tenant),
        results=mail_logs.RESULTS, result_of=mail_logs.RESULT_OF_OUTCOME, result_words=RESULT_WORDS,
        endpoint=request.endpoint, page_args={**(request.view_args or {}), **filters},
    ), 400 if error else 200  # fmt: skip


@blueprint.get("/logs/mail/<int:transaction_id>")
@allow("full_admin", "domain_admin")
def mail_log_transaction(transaction_id: int):
    """One transaction: its envelope, each recipient's result and the SMTP dialogue."""
    tenant, domain = _viewer_scope()
    view = mail_logs.get_transaction(db(), current_actor(), transaction_id, tenant=tenant, domain=domain)
    return render_template(
        "admin/logs_transaction.html", view=view, transaction=view.transaction,
        dialogue=mail_logs.dialogue_steps(view), explain=smtp_replies.explain_reply,
        result_of=mail_logs.RESULT_OF_OUTCOME,
    )  # fmt: skip


@blueprint.get("/logs/logins")
@allow("full_admin", "domain_admin")
def login_log():
    """Login attempts to the panel, webmail, submission, IMAP and POP3; by login or client IP."""
    args = request.args
    tenant, domain = _viewer_scope(args.get("domain", ""))
    query, service, result = args.get("q", "").strip(), args.get("service", ""), args.get("result", "")
    page = _page()
    events, total, error = [], 0, None
    try:
        if result not in ("", "success", "failure"):
            raise ValidationError(f"Unknown result {result!r}: choose success or failure.", field="result")
        events, total = mail_logs.search_logins(
            db(), current_actor(), query, tenant=tenant, domain=domain, service=service or None,
            success={"success": True, "failure": False}.get(result), offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )  # fmt: skip
    except ValidationError as refused:
        error = refused.message
    filters = _kept_filters(q=query, service=service, result=result, domain=domain)
    return render_template(
        "admin/logs_logins.html", events=events, total=total, page=page, error=error, query=query,
        service=service, result=result, domain=domain, domain_choices=_domain_choices(tenant),
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), filters=filters, services=SERVICE_WORDS,
    ), 400 if error else 200  # fmt: skip


@blueprint.get("/logs/story")
@allow("full_admin", "domain_admin")
def mail_story_page():
    """ "What happened to my mail?": an address (and optionally a second one and a day) in, the
    story of the mail to or from it out, newest first, in words."""
    args = request.args
    tenant, domain = _viewer_scope(args.get("domain", ""))
    address, other, day = args.get("address", "").strip(), args.get("other", "").strip(), args.get("date", "")
    story, error = None, None
    if address:
        try:
            story = mail_story.mail_story(
                db(), current_actor(), current_settings(), address, other=other, on=_date(day),
                tenant=tenant, domain=domain,
            )  # fmt: skip
        except ValidationError as refused:
            error = refused.message
    return render_template(
        "admin/logs_story.html", story=story, error=error, address=address, other=other, day=day,
        domain=domain, domain_choices=_domain_choices(tenant), result_words=RESULT_WORDS,
    ), 400 if error else 200  # fmt: skip
