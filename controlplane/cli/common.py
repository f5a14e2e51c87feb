"""What every command shares: the installation it acts on, errors, output and the common options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from controlplane.daemons.process import DaemonError
from controlplane.db import database_problem
from controlplane.errors import LetterheadError
from controlplane.runtime import Installation
from controlplane.services import storage
from controlplane.settings import load_settings


def current_installation() -> Installation:
    """The installation the command acts on (LETTERHEAD_HOME), opened once per command."""
    context = click.get_current_context()
    root = context.find_root()
    if "installation" not in root.meta:
        root.meta["installation"] = Installation(load_settings())
    return root.meta["installation"]


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def handles_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LetterheadError as error:
            fail(error.message)
        except DaemonError as error:
            fail(str(error))
        except OperationalError as error:  # a full disk, a long writer's lock, a server gone
            fail(database_problem(error))

    return wrapper


def emit(rows: Sequence[dict[str, Any]] | dict[str, Any], as_json: bool, columns: Iterable[str] = ()) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    items = [rows] if isinstance(rows, dict) else list(rows)
    if not items:
        click.echo("(none)")
        return
    names = list(columns) or list(items[0])
    table = [[str(item.get(name, "")) for name in names] for item in items]
    widths = [max(len(name), *(len(row[i]) for row in table)) for i, name in enumerate(names)]
    click.echo("  ".join(name.upper().ljust(w) for name, w in zip(names, widths, strict=True)).rstrip())
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def size_option(*names: str, **kwargs: Any):
    return click.option(
        *names, callback=lambda _c, _p, v: None if v is None else storage.parse_size(v), **kwargs
    )
