"""The `letterhead` command: thin wrappers that call the services and print the result, one
module per command group.

Every command prints a readable table, or JSON with --json; errors go to stderr with
exit status 1.
"""

from __future__ import annotations

from controlplane.cli import aliases as _aliases  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import brands as _brands  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import certs as _certs  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import config as _config  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import domains as _domains  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import logs as _logs  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import mailboxes as _mailboxes  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import stack as _stack  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import tenants as _tenants  # noqa: E402, F401 - adds its commands to main
from controlplane.cli import tokens as _tokens  # noqa: E402, F401 - adds its commands to main
from controlplane.cli.common import main

__all__ = ["main"]
