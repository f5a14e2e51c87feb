"""Mail migrations of a domain: start one from a CSV (pasted or uploaded), follow it, run the
cut-over pass, close it."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for

from controlplane.errors import ValidationError
from controlplane.services import domains, mail_migration
from controlplane.services.storage import format_bytes
from controlplane.web.access import allow, current_actor
from controlplane.web.admin import attempt, blueprint
from controlplane.web.requests import db

MAX_CSV_BYTES = 5_000_000


def _seal() -> mail_migration.PasswordSeal:
    return mail_migration.PasswordSeal(current_app.config["SECRET_KEY"])


@blueprint.get("/domains/<name>/migrations")
@allow("full_admin", "domain_admin")
def domain_migrations(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    jobs = mail_migration.list_jobs(db(), current_actor(), found)
    return render_template("admin/migrations.html", domain=found, jobs=jobs, format_bytes=format_bytes)


def _submitted_csv() -> str:
    upload = request.files.get("csv_file")
    if upload is not None and upload.filename:
        data = upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise ValidationError("The CSV file is larger than 5 MB: split it into several jobs.")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("The CSV file is not UTF-8 text.") from None
    return request.form.get("csv", "")


@blueprint.post("/domains/<name>/migrations")
@allow("full_admin", "domain_admin")
def start_migration(name: str):
    found = domains.get_domain(db(), current_actor(), name)
    attempt(
        lambda: mail_migration.start_job(
            db(), current_actor(), found, mail_migration.parse_csv(_submitted_csv()), _seal()
        ),
        lambda job: f"Migration job {job.id} started: {len(job.mailboxes)} mailbox(es) queued.",
    )
    return redirect(url_for("admin.domain_migrations", name=found.name))


def _on_job(job_id: int, change, success: str):
    job = mail_migration.get_job(db(), current_actor(), job_id)
    domain_name = mail_migration.domain_name(db(), job)
    attempt(lambda: change(job), success)
    return redirect(url_for("admin.domain_migrations", name=domain_name))


@blueprint.post("/migrations/<int:job_id>/again")
@allow("full_admin", "domain_admin")
def migration_again(job_id: int):
    return _on_job(
        job_id, lambda job: mail_migration.run_again(db(), current_actor(), job),
        "Queued again: only what is new on the old servers is copied.",
    )  # fmt: skip


@blueprint.post("/migrations/<int:job_id>/close")
@allow("full_admin", "domain_admin")
def migration_close(job_id: int):
    return _on_job(
        job_id, lambda job: mail_migration.close_job(db(), current_actor(), job),
        "Job closed: its old passwords are deleted.",
    )  # fmt: skip
