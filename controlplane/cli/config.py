"""`letterhead config ...`: the rendered daemon configuration: render, diff, check, apply, history."""

from __future__ import annotations

import difflib
from pathlib import Path

import click
from sqlalchemy import select

from controlplane.cli.common import current_installation, emit, fail, handles_errors, json_option
from controlplane.daemons import apply as config_apply
from controlplane.daemons.process import DaemonError
from controlplane.models import ConfigGeneration
from controlplane.render import render_all
from controlplane.services import configuration


@click.group()
def config() -> None:
    """Render, check and apply the daemons' configuration."""


@config.command("render")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@handles_errors
def config_render(out: Path | None) -> None:
    installation = current_installation()
    with installation.sessions() as session:
        files = render_all(configuration.current_render_state(session, installation.settings))
    for name, content in files.items():
        if out is None:
            click.echo(f"==> {name} <==\n{content}")
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(content)
    if out is not None:
        click.echo(f"Wrote {len(files)} files under {out}.")


@config.command("diff")
@handles_errors
def config_diff() -> None:
    installation = current_installation()
    settings = installation.settings
    with installation.sessions() as session:
        files = render_all(configuration.current_render_state(session, settings))
    live = config_apply.live_generation_dir(settings)
    changed = False
    for name, content in files.items():
        old = (live / name).read_text() if live and (live / name).exists() else ""
        diff = list(
            difflib.unified_diff(old.splitlines(True), content.splitlines(True), f"live/{name}", name)
        )
        if diff:
            changed = True
            click.echo("".join(diff), nl=False)
    if not changed:
        click.echo("The live configuration matches the database and settings.")


@config.command("check")
@handles_errors
def config_check() -> None:
    """Render the current state and check it with every daemon's own tool; nothing goes live."""
    installation = current_installation()
    with installation.transaction() as session:
        try:
            count = configuration.check_current_configuration(session, installation.settings)
        except DaemonError as error:
            refusal = str(error)
        else:
            refusal = ""
    if refusal:
        fail(refusal)
    click.echo(
        f"{count} rendered files passed postconf and postmap, doveconf -x and sievec, haproxy -c, nginx -t, "
        "rspamadm configtest and a scratch Redis; nothing was made live but the served certificate "
        "files (each loaded first), which HAProxy's check reads."
    )


@config.command("apply")
@click.option("--force", is_flag=True, help="Apply even if nothing changed.")
@handles_errors
def config_apply_command(force: bool) -> None:
    installation = current_installation()
    with installation.transaction() as session:
        generation = configuration.apply_current_configuration(session, installation.settings, force=force)
    if generation.status != "live":
        fail(
            f"Generation {generation.id} was {generation.status}; the previous one stays live.\n{generation.error}"
        )
    click.echo(f"Generation {generation.id} is live.")


@config.command("history")
@click.option("--limit", type=int, default=20)
@json_option
@handles_errors
def config_history(limit: int, as_json: bool) -> None:
    with current_installation().transaction() as session:
        rows = session.scalars(select(ConfigGeneration).order_by(ConfigGeneration.id.desc()).limit(limit))
        emit(
            [
                {
                    "id": g.id,
                    "status": g.status,
                    "created_at": g.created_at,
                    "error": g.error.splitlines()[:1],
                }
                for g in rows
            ],
            as_json,
        )
