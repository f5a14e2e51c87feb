"""`letterhead tls-reports ...`: the TLS reports (RFC 8460) other mail systems sent."""

from __future__ import annotations

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.runners import tls_report_spool
from controlplane.services import domains, tls_reports
from controlplane.services.scope import OPERATOR


@click.group("tls-reports")
def tls_reports_group() -> None:
    """TLS reports mailed to the platform's tls-reports@ address, per domain."""


@tls_reports_group.command("read")
@handles_errors
def read_command() -> None:
    """Read the reports waiting in the spool now (the periodic runner does every 30 s)."""
    for line in tls_report_spool.read_spool(current_installation()):
        click.echo(line)


@tls_reports_group.command("show")
@click.argument("domain_name")
@json_option
@handles_errors
def show_command(domain_name: str, as_json: bool) -> None:
    """The TLS reports about DOMAIN_NAME, newest first, with each failure in words."""
    with current_installation().sessions() as session:
        domain = domains.get_domain(session, OPERATOR, domain_name)
        reports = [tls_reports.report_body(r) for r in tls_reports.domain_reports(session, OPERATOR, domain)]
    if as_json:
        emit(reports, True)
        return
    rows = [
        {
            "period": f"{r['starts_at']:%Y-%m-%d} – {r['ends_at']:%Y-%m-%d}",
            "reported_by": r["organization"],
            "policy": r["policy_type"],
            "ok": r["successful_sessions"],
            "failed": r["failed_sessions"],
            "why": "; ".join(f"{f['failed_sessions']} × {f['explanation']}" for f in r["failures"]),
        }
        for r in reports
    ]
    emit(rows, False)
