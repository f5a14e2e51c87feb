"""The dashboard and a tenant's domains: create, limits, on and off, delete."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from controlplane.daemons import usage
from controlplane.errors import ValidationError
from controlplane.models import Domain
from controlplane.services import (
    aliases,
    audit,
    dkim,
    dmarc_reports,
    domain_alerts,
    domains,
    mailboxes,
    monitoring,
    spam,
    storage,
    tls_reports,
)
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import PAGE_SIZE, attempt, blueprint, current_tenant, size_or_none, whole_number
from controlplane.web.requests import current_settings, db


@blueprint.get("/")
@allow("full_admin", "domain_admin")
def dashboard():
    actor = current_actor()
    if actor.kind == "domain_admin":
        return redirect(url_for("admin.domain", name=db().get(Domain, actor.domain_id).name))
    tenant = current_tenant()
    pool = storage.pool_usage(db(), tenant)
    summaries = domains.list_domain_summaries(db(), actor, tenant)
    settings = current_settings()
    used = usage.used_by_domains(settings, [summary.domain.name for summary in summaries])
    entries = audit.recent_entries(db(), actor, tenant=tenant, limit=10)
    warnings = monitoring.tenant_warnings(db(), actor, tenant)
    return render_template(
        "admin/dashboard.html", tenant=tenant, usage=pool, used=used, summaries=summaries, entries=entries,
        warnings=warnings, format_bytes=storage.format_bytes,
    )  # fmt: skip


@blueprint.post("/domains")
@allow("full_admin")
def create_domain():
    form = request.form
    attempt(
        lambda: domains.create_domain(
            db(), current_actor(), tenant=current_tenant(), name=form.get("name", "").strip(),
            max_mailboxes=whole_number(form.get("max_mailboxes"), "max_mailboxes"),
            max_aliases=whole_number(form.get("max_aliases"), "max_aliases"),
            max_mailbox_bytes=size_or_none(form.get("max_mailbox_size"), "max_mailbox_bytes"),
        ),
        "Domain created.",
    )  # fmt: skip
    return redirect(url_for("admin.dashboard"))


@blueprint.get("/domains/<name>")
@allow("full_admin", "domain_admin")
def domain(name: str):
    actor = current_actor()
    found = domains.get_domain(db(), actor, name)
    search = request.args.get("q", "").strip()
    page_text = request.args.get("page", "1")
    page = max(int(page_text), 1) if page_text.isdigit() else 1
    rows, total = mailboxes.page_of_mailboxes(
        db(), actor, found, search=search, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    used = usage.usage_of_mailboxes(current_settings(), rows)
    return render_template(
        "admin/domain.html", domain=found, counts=domains.domain_counts(db(), found), mailboxes=rows,
        total=total, page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), search=search,
        aliases=aliases.list_aliases(db(), actor, found), can_edit_limits=actor.kind != "domain_admin",
        largest=storage.largest_mailbox_bytes(found), format_bytes=storage.format_bytes, used=used,
        spam=spam.thresholds(current_settings(), found), dkim_keys=dkim.published_keys(db(), found),
        dkim_value=dkim.record_value, alerts=domain_alerts.get_alerts(db(), actor, found),
        # A domain admin's own address, the likely place for alerts.
        suggested_recipient=actor.name if actor.name.lower().endswith("@" + found.name) else "",
    )  # fmt: skip


@blueprint.post("/domains/<name>/alerts")
@allow("full_admin", "domain_admin")
def set_domain_alerts(name: str):
    form = request.form
    found = domains.get_domain(db(), current_actor(), name)
    threshold_text = form.get("bounce_threshold", "").strip()

    def save() -> None:
        domain_alerts.set_alerts(
            db(), current_actor(), found, recipient=form.get("recipient", ""),
            bounce_threshold=whole_number(threshold_text, "bounce_threshold") if threshold_text else None,
            storage_warning=form.get("storage_warning") == "on",
        )  # fmt: skip

    attempt(save, "Alerts saved.")
    return redirect(url_for("admin.domain", name=found.name))


@blueprint.get("/domains/<name>/tls-reports")
@allow("full_admin", "domain_admin")
def domain_tls_reports(name: str):
    actor = current_actor()
    found = domains.get_domain(db(), actor, name)
    reports = tls_reports.domain_reports(db(), actor, found)
    return render_template("admin/tls_reports.html", domain=found, reports=reports)


DMARC_CHART_HEIGHT, DMARC_BAR_WIDTH, DMARC_BAR_GAP = 120, 16, 4


@blueprint.get("/domains/<name>/dmarc")
@allow("full_admin", "domain_admin")
def domain_dmarc(name: str):
    """Who sends as the domain, and whether its mail passes DMARC, from receivers' daily reports."""
    actor = current_actor()
    found = domains.get_domain(db(), actor, name)
    summary = dmarc_reports.domain_dmarc(db(), actor, found)
    busiest = max((day.total for day in summary.days), default=0) or 1
    bars = []
    for index, day in enumerate(summary.days):
        failing = DMARC_CHART_HEIGHT * day.failing / busiest
        passing = DMARC_CHART_HEIGHT * day.passing / busiest
        bars.append({
            "day": day.day, "x": index * (DMARC_BAR_WIDTH + DMARC_BAR_GAP), "passing": day.passing,
            "failing": day.failing, "passing_y": round(DMARC_CHART_HEIGHT - passing, 2),
            "passing_height": round(passing, 2), "failing_y": round(DMARC_CHART_HEIGHT - passing - failing, 2),
            "failing_height": round(failing, 2),
        })  # fmt: skip
    return render_template(
        "admin/dmarc.html", domain=found, summary=summary, bars=bars, chart_height=DMARC_CHART_HEIGHT,
        bar_width=DMARC_BAR_WIDTH, chart_width=len(bars) * (DMARC_BAR_WIDTH + DMARC_BAR_GAP),
    )  # fmt: skip


def _score_or_default(text: str | None, field: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"{field.replace('_', ' ').capitalize()} must be a number.", field=field
        ) from None


@blueprint.post("/domains/<name>/spam")
@allow("full_admin")
def set_spam_thresholds(name: str):
    form = request.form
    found = domains.get_domain(db(), current_actor(), name)

    def save() -> None:
        spam.update(
            db(), current_actor(), current_settings(), found,
            reject_score=_score_or_default(form.get("reject_score"), "reject_score"),
            junk_score=_score_or_default(form.get("junk_score"), "junk_score"),
            greylisting=form.get("greylisting") == "1",
        )  # fmt: skip

    attempt(save, "Spam filter settings saved.")
    return redirect(url_for("admin.domain", name=found.name) + "#mail-hygiene")


@blueprint.post("/domains/<name>/dkim/rotate")
@allow("full_admin", "domain_admin")
def rotate_dkim_key(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    attempt(
        lambda: dkim.rotate_key(db(), current_actor(), found),
        lambda key: f"The new DKIM key {key.selector} signs from now on: publish its record.",
    )
    return redirect(url_for("admin.domain", name=found.name) + "#mail-hygiene")


@blueprint.post("/domains/<name>/limits")
@allow("full_admin")
def update_limits(name: str):
    form = request.form
    found = domains.get_domain(db(), current_actor(), name)
    attempt(
        lambda: domains.update_domain(
            db(), current_actor(), found,
            max_mailboxes=whole_number(form.get("max_mailboxes"), "max_mailboxes"),
            max_aliases=whole_number(form.get("max_aliases"), "max_aliases"),
            max_mailbox_bytes=storage.parse_size(form.get("max_mailbox_size", ""), field="max_mailbox_bytes"),
        ),
        "Limits saved.",
    )  # fmt: skip
    return redirect(url_for("admin.domain", name=found.name))


@blueprint.post("/domains/<name>/active")
@allow("full_admin")
def set_domain_active(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    active = request.form.get("active") == "1"
    attempt(
        lambda: domains.update_domain(db(), current_actor(), found, active=active),
        f"{found.display_name} "
        + ("accepts mail again." if active else "is deactivated: it refuses mail and logins."),
    )
    return redirect(url_for("admin.dashboard"))


@blueprint.post("/domains/<name>/delete")
@allow("full_admin")
def delete_domain(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    domain_name = found.name
    if request.form.get("confirm", "") != domain_name:
        flash(
            f"Type {domain_name} to confirm: its mailboxes, their mail and its aliases go with it.", "error"
        )
        return redirect(url_for("admin.domain", name=domain_name))
    attempt(lambda: domains.delete_domain(db(), current_actor(), found), f"{domain_name} deleted.")
    return redirect(url_for("admin.dashboard"))
