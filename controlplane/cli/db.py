"""`letterhead db ...`: the database schema."""

from __future__ import annotations

import click

from controlplane import database_copy
from controlplane.cli.common import current_installation, fail, handles_errors
from controlplane.daemons import database_logins
from controlplane.runners import stack


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    installation = current_installation()
    settings = installation.settings
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    stack.upgrade_schema(installation)
    if settings.is_postgresql:
        # Each daemon's own role, allowed only what it reads (or, for the usage writer, writes).
        database_logins.grant_daemon_logins(settings.sqlalchemy_url)
        click.echo("The database schema is up to date, and the daemons' logins are granted.")
        return
    click.echo("The database schema is up to date.")


@db.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    envvar="LETTERHEAD_COPY_TO",
    help="The empty PostgreSQL database: postgresql+psycopg://... (or LETTERHEAD_COPY_TO, which keeps "
    "its password out of the process list and the shell's history).",
)
@handles_errors
def db_copy(target: str) -> None:
    """Copy every row into an empty PostgreSQL database, checked by counts and checksums."""
    installation = current_installation()
    settings = installation.settings
    if installation.mail_daemons_reading():
        # Mail and logins would keep writing here while the copy reads.
        fail("The stack is running: stop it first (letterhead down), then copy.")
    copied = database_copy.copy_database(settings, target, progress=lambda line: click.echo(line, err=True))
    for table in copied:
        click.echo(f"{table.name}: {table.rows} rows, sha256 {table.checksum[:16]} (same on both sides)")
    click.echo(
        f"Copied {sum(table.rows for table in copied)} rows in {len(copied)} tables. To switch, stop the stack "
        "(letterhead down), set database_url in letterhead.toml to the target, then run "
        "`letterhead db upgrade` and `letterhead up`. The mail stays where it is; brand certificates "
        "are published again at `up`."
    )
