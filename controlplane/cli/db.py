"""`letterhead db ...`: the database schema."""

from __future__ import annotations

import click

from controlplane.cli.common import current_installation, handles_errors
from controlplane.schema import upgrade_database


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    settings = current_installation().settings
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.sqlalchemy_url)
    click.echo("The database schema is up to date.")
