"""Changes the daemons must hear about beyond the rows they read.

Postfix reads mailboxes, aliases, passwords and quotas from SQL on every lookup, but
smtpd/trivial-rewrite cache how they classified a domain for the life of the process:
adding or removing a domain needs a (graceful, ~30 ms) Postfix reload. The session's
owner registers the reload as `session.info["on_domains_changed"]`; it runs after commit.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from controlplane.db import after_commit


def signal_domains_changed(session: Session) -> None:
    action = session.info.get("on_domains_changed")
    if action is not None:
        after_commit(session, "domains_changed", action)
