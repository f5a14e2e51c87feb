"""`letterhead logs ...`: reading the Postfix and Dovecot logs in, and searching them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.logs.ingest import ingest_files
from controlplane.runners import follower
from controlplane.services import log_retention, mail_logs
from controlplane.services.scope import OPERATOR
from controlplane.settings import load_settings


def transaction_row(view: mail_logs.TransactionView) -> dict[str, Any]:
    transaction = view.transaction
    return {
        "time": transaction.time.isoformat(timespec="seconds"),
        "client": f"{transaction.client_name}[{transaction.client_ip}]" if transaction.client_ip else "",
        "helo": transaction.helo,
        "sasl_user": transaction.sasl_user,
        "sender": transaction.sender or "",
        "message_id": transaction.message_id,
        "size": transaction.size,
        "queue_ids": [entry.queue_id for entry in transaction.queue_entries],
        "spam_verdict": view.spam_verdict,
        "recipients": [
            {
                "recipient": r.recipient,
                "orig_to": r.orig_to,
                "outcome": r.outcome,
                "status": r.status_code,
                "relay": r.relay,
                "server_reply": r.detail,
                "reason": r.reason,
                "attempts": r.attempts,
                "time": r.time.isoformat(timespec="seconds"),
            }
            for r in view.recipients
        ],
        "dialogue": [
            {
                "time": line.time.isoformat(timespec="seconds"),
                "from": "client" if line.direction == "<" else "server",
                "text": line.text,
            }
            for line in transaction.dialogue
        ],
    }


def login_row(event) -> dict[str, Any]:
    return {
        "time": event.time.isoformat(timespec="seconds"),
        "service": event.service,
        "login": event.login,
        "client_ip": event.client_ip,
        "success": event.success,
        "reason": event.reason,
    }


@click.group()
def logs() -> None:
    """Read the Postfix and Dovecot logs into the database, and search them."""


@logs.command("ingest")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@handles_errors
def logs_ingest(files: tuple[Path, ...], as_json: bool) -> None:
    """Read each FILE from where the last run stopped (plain or gzip; rotation is followed).

    Name Dovecot's log before Postfix's: failed SMTP logins then get Dovecot's reason."""
    installation = current_installation()
    with installation.sessions() as session:
        results = ingest_files(session, list(files), daemons_reading=installation.mail_daemons_reading)
    emit(
        [
            {"file": str(path), **dataclasses.asdict(result)}
            for path, result in zip(files, results, strict=True)
        ],
        as_json,
    )


@logs.command("follow")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@click.option(
    "--poll-seconds", type=click.FloatRange(0.05, 60), default=follower.POLL_SECONDS, show_default=True
)
@click.option(
    "--batch-lines", type=click.IntRange(1, 100_000), default=follower.BATCH_LINES, show_default=True
)
@handles_errors
def logs_follow(daemon: bool, poll_seconds: float, batch_lines: int) -> None:
    """Read the Postfix and Dovecot logs as they grow, until stopped (SIGTERM or Ctrl-C)."""
    follower.run_follower(load_settings(), daemon=daemon, poll_seconds=poll_seconds, batch_lines=batch_lines)


@logs.command("search")
@click.argument("query", default="")
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Only this day (UTC), YYYY-MM-DD.")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=50)
@click.option(
    "--dialogue", "with_dialogue", is_flag=True, help="Also print each transaction's SMTP dialogue."
)
@json_option
@handles_errors
def logs_search(query: str, on, offset: int, limit: int, with_dialogue: bool, as_json: bool) -> None:
    """Transactions by address, client IP, message-id or queue ID, newest first (JSON: with the
    SMTP dialogue)."""
    with current_installation().transaction() as session:
        found, total = mail_logs.search_transactions(
            session, OPERATOR, query, on=on.date() if on else None, offset=offset, limit=limit
        )
        rows = [transaction_row(view) for view in found]
    if as_json:
        emit({"total": total, "transactions": rows}, as_json)
        return
    flat = [
        {
            "time": row["time"],
            "client": row["client"],
            "sender": row["sender"],
            "recipient": recipient["recipient"],
            "outcome": recipient["outcome"],
            "status": recipient["status"],
            "reason": recipient["reason"],
        }
        for row in rows
        for recipient in row["recipients"] or [{"recipient": "", "outcome": "", "status": "", "reason": ""}]
    ]
    emit(flat, as_json)
    click.echo(f"{len(rows)} of {total} transactions")
    if with_dialogue:
        for row in rows:
            queued = ", ".join(row["queue_ids"]) or "NOQUEUE"
            click.echo(f"\n{row['time']}  {queued}  from {row['sender'] or '<>'}  {row['client']}")
            for line in row["dialogue"] or [{"time": "", "from": "", "text": "(no dialogue logged)"}]:
                side = {"client": "C:", "server": "S:"}.get(line["from"], "  ")
                click.echo(f"  {line['time'][11:19]:8}  {side} {line['text']}")


@logs.command("auth")
@click.argument("query", default="")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=50)
@json_option
@handles_errors
def logs_auth(query: str, offset: int, limit: int, as_json: bool) -> None:
    """Login attempts (panel, SMTP, IMAP, POP3) by login or client IP, newest first."""
    with current_installation().transaction() as session:
        found, total = mail_logs.search_logins(session, OPERATOR, query, offset=offset, limit=limit)
        rows = [login_row(event) for event in found]
    if as_json:
        emit({"total": total, "logins": rows}, as_json)
        return
    emit(rows, as_json)
    click.echo(f"{len(rows)} of {total} login attempts")


@logs.command("purge")
@click.option(
    "--days", type=int, default=None, help="Keep this many days (default: the log_retention_days setting)."
)
@json_option
@handles_errors
def logs_purge(days: int | None, as_json: bool) -> None:
    """Delete mail transactions, their dialogue, login attempts, unparsed lines and DMARC and TLS
    reports older than the retention."""
    installation = current_installation()
    with installation.transaction() as session:
        result = log_retention.purge_expired_logs(
            session,
            OPERATOR,
            retention_days=installation.settings.log_retention_days if days is None else days,
        )
    emit(
        {
            "before": result.cutoff.isoformat(timespec="seconds"),
            "transactions": result.transactions,
            "dialogue_lines": result.dialogue_lines,
            "logins": result.logins,
            "unparsed_lines": result.unparsed_lines,
            "reports": result.reports,
        },
        as_json,
    )
