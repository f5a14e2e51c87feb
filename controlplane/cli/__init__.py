"""The `letterhead` command: thin wrappers that call the services and print the result, one
module per command group.

Every command prints a readable table, or JSON with --json; errors go to stderr with
exit status 1. A command's module is imported when that command runs: importing all of them
took a second before any command began (`letterhead logs ingest`, the supervisor's helpers
and every operator's command paid it).
"""

from __future__ import annotations

import importlib

import click

from controlplane.version import __version__

# Command name -> (module in controlplane.cli, attribute).
_COMMANDS = {
    "tenant": ("tenants", "tenant"),
    "domain": ("domains", "domain"),
    "mailbox": ("mailboxes", "mailbox"),
    "alias": ("aliases", "alias"),
    "brand": ("brands", "brand"),
    "token": ("tokens", "token"),
    "config": ("config", "config"),
    "logs": ("logs", "logs"),
    "certs": ("certs", "certs"),
    "tls-reports": ("tls_reports", "tls_reports_group"),
    "migrate": ("migrations", "migrate"),
    "db": ("db", "db"),
    "node": ("nodes", "node"),
    "up": ("stack", "up"),
    "down": ("stack", "down"),
    "status": ("stack", "status"),
    "demo": ("stack", "demo"),
    "export": ("stack", "export_command"),
    "import": ("stack", "import_command"),
    "periodic": ("stack", "periodic"),
    "postfix-log-writer": ("stack", "postfix_log_writer_command"),
    "postfix-reload-when-due": ("stack", "postfix_reload_when_due_command"),
    "supervise": ("stack", "supervise_command"),
    "sender-milter": ("stack", "sender_milter_command"),
    "send-limits": ("stack", "send_limits_command"),
    "backup": ("backup", "backup_command"),
    "restore": ("backup", "restore_command"),
    "install": ("service", "install_command"),
    "uninstall": ("service", "uninstall_command"),
    "service": ("service", "service"),
}


class _CommandsOnDemand(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[cmd_name]
        return getattr(importlib.import_module(f"controlplane.cli.{module}"), attribute)


@click.group(cls=_CommandsOnDemand)
@click.version_option(__version__, prog_name="letterhead")
def main() -> None:
    """Letterhead: white-label mail hosting on Postfix and Dovecot."""


__all__ = ["main"]
