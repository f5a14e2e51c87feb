"""`letterhead backup DIR` and `letterhead restore DIR`: the whole installation, while it runs."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane import backup as backups
from controlplane.cli.common import current_installation, handles_errors
from controlplane.settings import load_settings


def _progress(line: str) -> None:
    click.echo(line, err=True)


@click.command("backup")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@handles_errors
def backup_command(folder: Path) -> None:
    """Back up the database, the mail this node holds, certificates, DKIM keys and settings into
    FOLDER (new or empty), without stopping mail."""
    summary = backups.back_up(current_installation().settings, folder, progress=_progress)
    click.echo(
        f"Backed up {summary.rows} rows in {summary.tables} tables and {summary.messages} messages in "
        f"{summary.mailboxes} mailboxes into {folder}."
    )
    if summary.mailboxes_elsewhere:
        click.echo(
            f"{summary.mailboxes_elsewhere} mailboxes are held by other nodes: back up their mail there "
            "(`letterhead backup` on each node)."
        )


@click.command("restore")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@handles_errors
def restore_command(folder: Path) -> None:
    """Restore a backup made by `letterhead backup` into this new installation (stopped, with an
    empty database), then check every table and mailbox against the backup."""
    backups.read_manifest(folder)  # not a backup: said before anything is written
    settings_note = backups.settings_to_restore(load_settings().home, folder)
    settings = load_settings()  # the restored settings, if this machine had none
    summary = backups.restore(settings, folder, progress=_progress)
    click.echo(
        f"Restored {summary.rows} rows in {summary.tables} tables and {summary.messages} messages in "
        f"{summary.mailboxes} mailboxes ({settings_note}); the schema was migrated from "
        f"{summary.revision_from}. Start it with `letterhead up`."
    )
