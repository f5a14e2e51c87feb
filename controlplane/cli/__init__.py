"""The `letterhead` command: thin wrappers that call the services and print the result, one
module per command group.

Every command prints a readable table, or JSON with --json; errors go to stderr with
exit status 1.
"""

from __future__ import annotations

import click

from controlplane.cli import (
    aliases,
    backup,
    brands,
    certs,
    config,
    db,
    domains,
    logs,
    mailboxes,
    migrations,
    nodes,
    service,
    stack,
    tenants,
    tls_reports,
    tokens,
)
from controlplane.version import __version__


@click.group()
@click.version_option(__version__, prog_name="letterhead")
def main() -> None:
    """Letterhead: white-label mail hosting on Postfix and Dovecot."""


for command in (
    tenants.tenant,
    domains.domain,
    mailboxes.mailbox,
    aliases.alias,
    brands.brand,
    tokens.token,
    config.config,
    logs.logs,
    certs.certs,
    tls_reports.tls_reports_group,
    migrations.migrate,
    db.db,
    nodes.node,
    stack.up,
    stack.down,
    stack.status,
    stack.demo,
    stack.export_command,
    stack.import_command,
    stack.periodic,
    stack.postfix_log_writer_command,
    stack.postfix_reload_when_due_command,
    stack.supervise_command,
    stack.sender_milter_command,
    stack.send_limits_command,
    backup.backup_command,
    backup.restore_command,
    service.install_command,
    service.uninstall_command,
    service.service,
):
    main.add_command(command)

__all__ = ["main"]
