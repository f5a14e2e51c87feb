"""Sieve filters: set one mailbox's, or the same filter on many mailboxes in one call."""

from __future__ import annotations

from flask_smorest import Blueprint

from controlplane.models import Mailbox
from controlplane.services import domains, sieve
from controlplane.web.api import current_actor, problem_for, tokens_allowed
from controlplane.web.api.mailboxes import mailbox_at
from controlplane.web.api.schemas import (
    ActiveFilterSchema,
    FilterApplyResponseSchema,
    FilterApplySchema,
    FilterSchema,
)
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("api_filters", __name__, description="Sieve filters run at delivery")


def active_filter_body(mailbox: Mailbox) -> dict:
    active = sieve.get_active_filter(db(), current_actor(), current_settings(), mailbox)
    return {
        "address": mailbox.address, "active": active is not None,
        "name": active.name if active else None, "script": active.script if active else None,
    }  # fmt: skip


@blueprint.route("/filters/apply", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(FilterApplySchema)
@blueprint.response(200, FilterApplyResponseSchema)
def apply_filter(body):
    """Make one filter the active filter of the mailboxes in `addresses`, or of every mailbox
    of `domain`. The script is compiled once, before anything changes: a script the Sieve
    compiler refuses is answered 422 with its message. Each mailbox then succeeds or fails
    on its own; an address this token does not manage fails as 404, like one that does
    not exist."""
    actor, settings = current_actor(), current_settings()
    if "domain" in body:
        report = sieve.set_filter_for_domain(
            db(), actor, settings, domains.get_domain(db(), actor, body["domain"]),
            name=body["name"], script=body["script"],
        )  # fmt: skip
    else:
        report = sieve.set_filter_for_addresses(
            db(), actor, settings, body["addresses"], name=body["name"], script=body["script"]
        )
    db().commit()
    results = []
    for result in report.results:
        if result.error is None:
            results.append({"address": result.address, "status": 200, "error": None})
            continue
        response = problem_for(result.error)
        results.append({"address": result.address, "status": response.status_code, "error": response.json})
    return {"name": report.name, "applied": report.applied, "failed": report.failed, "results": results}


@blueprint.route("/domains/<name>/mailboxes/<local_part>/filter", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, ActiveFilterSchema)
def get_filter(name: str, local_part: str):
    """The filter Dovecot runs for this mailbox at delivery, with its script."""
    return active_filter_body(mailbox_at(name, local_part))


@blueprint.route("/domains/<name>/mailboxes/<local_part>/filter", methods=["PUT"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(FilterSchema)
@blueprint.response(200, ActiveFilterSchema)
def set_filter(body, name: str, local_part: str):
    """Make a filter this mailbox's active one (422 with the compiler's message if refused)."""
    mailbox = mailbox_at(name, local_part)
    report = sieve.set_filter_for_mailbox(
        db(), current_actor(), current_settings(), mailbox, name=body["name"], script=body["script"]
    )
    error = report.results[0].error
    if error is not None:
        db().rollback()
        return problem_for(error)
    db().commit()
    return active_filter_body(mailbox)


@blueprint.route("/domains/<name>/mailboxes/<local_part>/filter", methods=["DELETE"])
@tokens_allowed("tenant", "domain")
@blueprint.response(204)
def deactivate_filter(name: str, local_part: str):
    """Stop filtering this mailbox's mail (its script stays, as ManageSieve clients see it)."""
    sieve.deactivate_filter(db(), current_actor(), current_settings(), mailbox_at(name, local_part))
    db().commit()
