"""`letterhead migrate ...`: bring mailboxes' mail in from a customer's old IMAP provider."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.errors import ValidationError
from controlplane.runners import mail_migration as runner
from controlplane.runtime import instance_secret_key
from controlplane.services import domains, mail_migration
from controlplane.services.scope import OPERATOR
from controlplane.settings import load_settings


@click.group("migrate")
def migrate() -> None:
    """Copy mail from old IMAP servers into mailboxes here (folders, flags and dates)."""


def _seal() -> mail_migration.PasswordSeal:
    return mail_migration.PasswordSeal(instance_secret_key(current_installation().settings))


@migrate.command("start")
@click.argument("domain_name")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rows of: address, old server (host, host:port or starttls://host), old login, old password.",
)
@click.option("--address", help="One mailbox of DOMAIN_NAME instead of a CSV.")
@click.option("--server", help="With --address: the old IMAP server (host, host:port, starttls://host).")
@click.option("--login", help="With --address: the login at the old server (default: the address).")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --address: a file holding the old password (else you are asked for it).",
)
@handles_errors
def start_command(
    domain_name: str,
    csv_file: Path | None,
    address: str | None,
    server: str | None,
    login: str | None,
    password_file: Path | None,
) -> None:
    """Queue copies into DOMAIN_NAME's mailboxes; `letterhead migrate run` (or the stack) copies them.
    Old passwords never go on the command line: they come from the CSV, a file or a prompt."""
    if csv_file is not None and address is not None:
        raise ValidationError("Give either --csv or --address, not both.")
    if csv_file is not None:
        requests = mail_migration.parse_csv(csv_file.read_text(encoding="utf-8-sig"))
    elif address is not None and server is not None:
        if password_file is not None:
            password = password_file.read_text().rstrip("\r\n")
        else:
            password = click.prompt(f"Old password for {login or address}", hide_input=True)
        requests = [mail_migration.single_request(address, server, login or address, password)]
    else:
        raise ValidationError("Give --csv FILE, or --address and --server.")
    with current_installation().transaction() as session:
        domain = domains.get_domain(session, OPERATOR, domain_name)
        job = mail_migration.start_job(session, OPERATOR, domain, requests, _seal())
        job_id, count = job.id, len(job.mailboxes)
    click.echo(f"Migration job {job_id}: {count} mailbox(es) queued.")


@migrate.command("run")
@click.option(
    "--parallel",
    type=click.IntRange(1, 32),
    default=runner.DEFAULT_PARALLEL,
    show_default=True,
    help="Mailboxes copied at once.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Authorities trusted for the old servers' certificates (default: migration_ca_bundle, else the system's).",
)
@click.option("--daemon", is_flag=True, help="Detach (as the running stack starts it).")
@handles_errors
def run_command(parallel: int, ca_file: Path | None, daemon: bool) -> None:
    """Copy every queued mailbox this node holds now, then stop (the running stack does this by
    itself within seconds of a job being started)."""
    ended = runner.run_queue(load_settings(), daemon=daemon, parallel=parallel, ca_file=ca_file)
    click.echo(f"{ended} copy(ies) ended; see `letterhead migrate show JOB`.")


@migrate.command("list")
@click.argument("domain_name")
@json_option
@handles_errors
def list_command(domain_name: str, as_json: bool) -> None:
    """DOMAIN_NAME's migration jobs, newest first."""
    with current_installation().sessions() as session:
        domain = domains.get_domain(session, OPERATOR, domain_name)
        rows = [
            {
                "job": job.id,
                "started": f"{job.created_at:%Y-%m-%d %H:%M}",
                **mail_migration.mailbox_counts(job),
                "closed": f"{job.closed_at:%Y-%m-%d %H:%M}" if job.closed_at else "",
            }
            for job in mail_migration.list_jobs(session, OPERATOR, domain)
        ]
    emit(rows, as_json)


@migrate.command("show")
@click.argument("job_id", type=int)
@json_option
@handles_errors
def show_command(job_id: int, as_json: bool) -> None:
    """One job's report: each mailbox's state, progress and, if it stopped, why."""
    with current_installation().sessions() as session:
        job = mail_migration.get_job(session, OPERATOR, job_id)
        if as_json:
            emit([mail_migration.progress_body(row) for row in job.mailboxes], True)
            return
        for line in mail_migration.report_lines(job):
            click.echo(line)


@migrate.command("again")
@click.argument("job_id", type=int)
@handles_errors
def again_command(job_id: int) -> None:
    """The cut-over pass: copy only what is new on the old servers (nothing here is removed)."""
    with current_installation().transaction() as session:
        job = mail_migration.run_again(session, OPERATOR, mail_migration.get_job(session, OPERATOR, job_id))
        count = len(job.mailboxes)
    click.echo(f"Migration job {job_id}: {count} mailbox(es) queued for what is new.")


@migrate.command("close")
@click.argument("job_id", type=int)
@handles_errors
def close_command(job_id: int) -> None:
    """Done with the job: its old passwords are deleted (the report stays)."""
    with current_installation().transaction() as session:
        mail_migration.close_job(session, OPERATOR, mail_migration.get_job(session, OPERATOR, job_id))
    click.echo(f"Migration job {job_id} closed; its old passwords are deleted.")
