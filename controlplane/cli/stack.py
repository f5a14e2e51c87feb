"""The whole stack (`up`, `down`, `status`, `demo`), Letterhead's own background processes,
and moving tenants in and out (`export`, `import`)."""

from __future__ import annotations

import json
import sys

import click
import yaml

from controlplane.cli.common import current_installation, emit, fail, handles_errors, json_option
from controlplane.daemons import apply as config_apply
from controlplane.daemons import postfix_log, postfix_reloads, send_limits, sender_milter
from controlplane.runners import health, stack, supervisor
from controlplane.runners import periodic as periodic_runner
from controlplane.services import admins, aliases, brands, domains, mailboxes, storage, tenants, transfer
from controlplane.services.scope import OPERATOR
from controlplane.settings import load_settings


@click.command()
@click.option("--no-web", is_flag=True, help="Start only Postfix and Dovecot.")
@handles_errors
def up(no_web: bool) -> None:
    """Start Dovecot, Postfix and the web app."""
    installation = current_installation()
    stack.up(installation, web=not no_web)
    _print_status(installation.settings, as_json=False)


@click.command()
@handles_errors
def down() -> None:
    """Stop the web app, Postfix and Dovecot."""
    stack.down(current_installation().settings)
    click.echo("Stopped.")


def _status_rows(settings) -> list[dict]:
    live = config_apply.live_generation_dir(settings)
    return [
        {
            "service": s.name,
            "state": "running" if s.pid else "stopped",
            "pid": s.pid or "",
            "ports": " ".join(f"{k}={v}" for k, v in s.ports.items()),
            "generation": live.name if live else "",
        }
        for s in stack.status(settings)
    ]


def _print_status(settings, as_json: bool) -> None:
    emit(_status_rows(settings), as_json)


@click.command()
@json_option
@handles_errors
def status(as_json: bool) -> None:
    """Each part, Postfix's queues, certificates, DNS, disk and the log follower; exit status 1
    when anything is wrong."""
    installation = current_installation()
    report = health.check(installation)
    if as_json:
        click.echo(json.dumps(_status_document(installation.settings, report), indent=2))
    else:
        _print_status(installation.settings, as_json=False)
        click.echo("")
        queues = report.queues
        click.echo(
            f"Postfix queue: {sum(queues.values())} messages ({queues.get('deferred', 0)} deferred, "
            f"{queues.get('hold', 0)} held)"
        )
        click.echo(
            f"Disk free in {installation.settings.home}: {report.disk_free_bytes // 1024**2} MB of "
            f"{report.disk_total_bytes // 1024**2} MB"
        )
        lag = report.follower
        behind = "never read yet" if lag.seconds is None else f"{lag.seconds:.0f} s behind"
        click.echo(
            f"Log follower: {lag.unread_bytes} bytes unread" + (f", {behind}" if lag.unread_bytes else "")
        )
        for hostname, not_after in report.certificates_expiring:
            click.echo(f"Certificate of {hostname} ends {not_after.isoformat(timespec='minutes')}")
        for note in report.notes:
            click.echo(f"Note: {note}")
        for problem in report.problems:
            click.echo(f"Problem: {problem}")
        click.echo("All is well." if report.all_well else f"{len(report.problems)} problem(s).")
    if not report.all_well:
        sys.exit(1)


def _status_document(settings, report: health.HealthReport) -> dict:
    return {
        "healthy": report.all_well,
        "services": _status_rows(settings),
        "queues": report.queues,
        "certificates_expiring": [
            {"host": hostname, "not_after": not_after.isoformat()}
            for hostname, not_after in report.certificates_expiring
        ],
        "platform_certificate_self_signed": report.platform_certificate.self_signed,
        "disk_free_bytes": report.disk_free_bytes,
        "log_follower": {"unread_bytes": report.follower.unread_bytes, "seconds": report.follower.seconds},
        "problems": report.problems,
        "notes": report.notes,
    }


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@handles_errors
def export_command(fmt: str) -> None:
    """Print tenants, domains, mailboxes (with password hashes) and aliases."""
    with current_installation().transaction() as session:
        data = transfer.export_state(session, OPERATOR)
    click.echo(
        json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False), nl=False
    )


@click.command("import")
@click.argument("file", type=click.File("r"))
@json_option
@handles_errors
def import_command(file, as_json: bool) -> None:
    """Import a YAML or JSON export; running it twice changes nothing the second time."""
    try:
        data = yaml.safe_load(file)  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        fail(f"{file.name} is not valid YAML or JSON: {error}")
    with current_installation().transaction() as session:
        report = transfer.import_state(session, OPERATOR, data)
    emit({"created": report.created, "updated": report.updated, "unchanged": report.unchanged}, as_json)


DEMO_BRAND, DEMO_BRAND_NAME = "mail.demo.test", "Demo Mail"


@click.command()
@handles_errors
def demo() -> None:
    """Seed a demo tenant, domain, mailbox, alias and brand (each once)."""
    installation = current_installation()
    messages = []
    with installation.transaction() as session:
        demo_tenant = tenants.find_tenant(session, "Demo Reseller")
        if demo_tenant is not None:
            messages.append("The demo tenant exists already.")
        else:
            demo_tenant = tenants.create_tenant(
                session, OPERATOR, name="Demo Reseller", storage_pool_bytes=storage.parse_size("50GB")
            )
            demo_domain = domains.create_domain(
                session, OPERATOR, tenant=demo_tenant, name="demo.test", max_mailboxes=25, max_aliases=50
            )
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=demo_domain,
                local_part="alice",
                password="demo-password",
                quota_bytes=storage.parse_size("2GB"),
                display_name="Alice Demo",
                is_domain_admin=True,
            )
            admins.create_admin(
                session, OPERATOR, tenant=demo_tenant, login="demo-admin", password="demo-password"
            )
            aliases.create_alias(
                session, OPERATOR, domain=demo_domain, local_part="info", destinations=["alice@demo.test"]
            )
            messages.append(
                "Demo: tenant 'Demo Reseller', domain demo.test, mailbox alice@demo.test (password demo-password,\n"
                "also the domain's admin); full admin 'demo-admin' (password demo-password) at /admin."
            )
        # Seeded on its own, so a demo made before brands existed gets one on the next run too.
        demo_domain = domains.find_domain(session, "demo.test")
        if (
            brands.find_brand_for_host(session, DEMO_BRAND) is None
            and demo_domain is not None
            and demo_domain.tenant_id == demo_tenant.id
            and demo_domain.brand is None
        ):
            demo_brand = brands.create_brand(
                session, OPERATOR, installation.settings, tenant=demo_tenant, hostname=DEMO_BRAND,
                name=DEMO_BRAND_NAME,
            )  # fmt: skip
            brands.set_domain_brand(session, OPERATOR, demo_domain, demo_brand)
            https = installation.settings.ports["https"]
            messages.append(
                f"Demo brand: {DEMO_BRAND} ('{DEMO_BRAND_NAME}'), used by demo.test. Its webmail and admin panel\n"
                f"wear the brand when reached by that name, e.g.\n"
                f"  curl --resolve {DEMO_BRAND}:{https}:127.0.0.1 -k https://{DEMO_BRAND}:{https}/"
            )
    click.echo("\n".join(messages))


@click.command()
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def periodic(daemon: bool) -> None:
    """Run certificate renewal twice a day and brand DNS checks hourly, until stopped."""
    periodic_runner.run_periodic(load_settings(), daemon=daemon)


@click.command("supervise")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def supervise_command(daemon: bool) -> None:
    """Start again any part of the stack that died, until stopped (systemd does it in production)."""
    supervisor.run_supervisor(load_settings(), daemon=daemon)


@click.command("postfix-log-writer")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def postfix_log_writer_command(daemon: bool) -> None:
    """Run Postfix in the foreground and write log/postfix.log without credentials, until it stops."""
    postfix_log.run_log_writer(load_settings(), daemon=daemon)


@click.command("postfix-reload-when-due")
@click.argument("due_lock", type=int)
@click.argument("spacing", type=float)
@handles_errors
def postfix_reload_when_due_command(due_lock: int, spacing: float) -> None:
    """Reload Postfix once at the end of the current spell, for the domain changes made in it
    (started by a domain change, holding the inherited lock DUE_LOCK)."""
    postfix_reloads.run_due_reload(load_settings(), due_lock, spacing)


@click.command("sender-milter")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def sender_milter_command(daemon: bool) -> None:
    """Check the From: header of mail sent after login against the login, for Postfix, until stopped."""
    sender_milter.run_sender_milter(load_settings(), daemon=daemon)


@click.command("send-limits")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def send_limits_command(daemon: bool) -> None:
    """Enforce logged-in users' sending limits for Postfix (recipients per message, messages per hour)."""
    send_limits.run_send_limits(load_settings(), daemon=daemon)
