"""Mail migrations: copy mailboxes' mail in from a customer's old IMAP provider."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from controlplane.models import MigrationJob
from controlplane.services import domains, mail_migration
from controlplane.web.api import current_actor, tokens_allowed
from controlplane.web.api.schemas import MigrationCreateSchema, MigrationJobSchema
from controlplane.web.requests import db

blueprint = Blueprint("api_migrations", __name__, description="Mail migrations from old IMAP providers")


def job_body(job: MigrationJob, domain_name: str) -> dict:
    return {
        "id": job.id,
        "domain": domain_name,
        "created_at": job.created_at,
        "closed_at": job.closed_at,
        "mailboxes": [mail_migration.progress_body(row) for row in job.mailboxes],
    }


def _seal() -> mail_migration.PasswordSeal:
    return mail_migration.PasswordSeal(current_app.config["SECRET_KEY"])


def _job(job_id: int) -> tuple[MigrationJob, str]:
    job = mail_migration.get_job(db(), current_actor(), job_id)
    return job, mail_migration.domain_name(db(), job)


@blueprint.route("/domains/<name>/migrations", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.arguments(MigrationCreateSchema)
@blueprint.response(201, MigrationJobSchema)
def start_migration(body, name: str):
    """Queue copies from old IMAP servers into the domain's mailboxes (every folder, flag and
    date); they start within seconds, several at a time. Nothing is queued unless every row is
    good. Old passwords are kept encrypted until the job is closed."""
    domain = domains.get_domain(db(), current_actor(), name)
    if "csv" in body:
        requests = mail_migration.parse_csv(body["csv"])
    else:
        requests = [
            mail_migration.single_request(
                row["address"], row["old_server"], row["old_login"], row["old_password"]
            )
            for row in body["mailboxes"]
        ]
    job = mail_migration.start_job(db(), current_actor(), domain, requests, _seal())
    db().commit()
    return job_body(job, domain.name)


@blueprint.route("/domains/<name>/migrations", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, MigrationJobSchema(many=True))
def list_migrations(name: str):
    """The domain's migration jobs, newest first, with each mailbox's progress."""
    domain = domains.get_domain(db(), current_actor(), name)
    return [job_body(job, domain.name) for job in mail_migration.list_jobs(db(), current_actor(), domain)]


@blueprint.route("/migrations/<int:job_id>", methods=["GET"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, MigrationJobSchema)
def get_migration(job_id: int):
    """One job's report: each mailbox's state, messages and bytes copied, and why it stopped."""
    return job_body(*_job(job_id))


@blueprint.route("/migrations/<int:job_id>/again", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, MigrationJobSchema)
def run_migration_again(job_id: int):
    """The cut-over pass: copy only what is new on the old servers; nothing here is removed."""
    job, domain_name = _job(job_id)
    mail_migration.run_again(db(), current_actor(), job)
    db().commit()
    return job_body(job, domain_name)


@blueprint.route("/migrations/<int:job_id>/close", methods=["POST"])
@tokens_allowed("tenant", "domain")
@blueprint.response(200, MigrationJobSchema)
def close_migration(job_id: int):
    """Done with the job: its old passwords are deleted; the report stays."""
    job, domain_name = _job(job_id)
    mail_migration.close_job(db(), current_actor(), job)
    db().commit()
    return job_body(job, domain_name)
