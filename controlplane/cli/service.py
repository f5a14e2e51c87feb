"""A production install (`install`, `uninstall`) and what its systemd units run (`service`)."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli.common import current_installation, fail, handles_errors
from controlplane.daemons.process import wait_until
from controlplane.runners import install as installer
from controlplane.runners import parts, stack


@click.command("install")
@click.option("--hostname", required=True, help="The platform's own host name, e.g. mail.example.net.")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=installer.DEFAULT_HOME,
    show_default=True,
    help="The state directory: settings, database, mail, certificates.",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("/"),
    help="Install into this tree instead of the machine (for trying it out and for tests).",
)
@click.option("--tenant", "tenant_name", help="Create this first tenant (with --admin).")
@click.option(
    "--admin", "admin_login", help="Create this full admin of the first tenant; its password is shown once."
)
@click.option(
    "--pool-gb",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="The first tenant's storage pool.",
)
@handles_errors
def install_command(hostname: str, home: Path, root: Path, tenant_name: str | None, admin_login: str | None,
                    pool_gb: int) -> None:  # fmt: skip
    """Install Letterhead as systemd services on this Debian 12 machine (safe to run again)."""
    report = installer.install(
        hostname=hostname, home=home, root=root.resolve(), tenant_name=tenant_name, admin_login=admin_login,
        storage_pool_bytes=pool_gb * 1024**3,
    )  # fmt: skip
    for item in report.written:
        click.echo(f"written:   {item}")
    for item in report.unchanged:
        click.echo(f"unchanged: {item}")
    for note in report.notes:
        click.echo(f"note:      {note}")
    if report.admin_password:
        click.echo(f"\nThe full admin's password (shown this once): {report.admin_password}")
    click.echo(f"\nInstalled for {hostname}, state in {home}. The README's production section lists the DNS "
               "records and open ports the host needs.")  # fmt: skip


@click.command("uninstall")
@click.option("--home", type=click.Path(path_type=Path), default=installer.DEFAULT_HOME, show_default=True)
@click.option("--root", type=click.Path(path_type=Path), default=Path("/"))
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the state directory: every mailbox, the database, certificates.",
)
@handles_errors
def uninstall_command(home: Path, root: Path, purge: bool) -> None:
    """Remove the systemd units and the `letterhead` command; the data stays unless --purge."""
    report = installer.uninstall(home=home, root=root.resolve(), purge=purge)
    for item in report.written:
        click.echo(item)
    for note in report.notes:
        click.echo(f"note: {note}")


@click.group()
def service() -> None:
    """What the systemd units run: one part each (see `letterhead install`)."""


@service.command("prepare")
@handles_errors
def prepare_command() -> None:
    """Migrate the schema and apply the checked configuration, as `up` does before starting."""
    installation = current_installation()
    stack.prepare(installation)
    for part in parts.wanted_parts(installation.settings):
        part.prepare(installation.settings)


@service.command("stopped")
@handles_errors
def stopped_command() -> None:
    """After the parts stopped (the prepare unit's stop, which systemd runs after theirs)."""
    stack.stopped(current_installation().settings)


@service.command("run")
@click.argument("part")
@handles_errors
def run_command(part: str) -> None:
    """Become one part's daemon, in the foreground."""
    parts.exec_part(current_installation().settings, parts.part_named(part))


@service.command("ready")
@click.argument("part")
@click.option("--timeout", type=float, default=50.0, show_default=True)
@handles_errors
def ready_command(part: str, timeout: float) -> None:
    """Wait until a part answers (the parts after it start only then)."""
    settings = current_installation().settings
    found = parts.part_named(part)
    if not wait_until(lambda: found.ready(settings), timeout=timeout, interval=0.2):
        fail(f"{part} did not answer within {timeout:.0f} s.")
    if found.on_ready is not None:
        found.on_ready(current_installation())
