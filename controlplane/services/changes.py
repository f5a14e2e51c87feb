"""Changes the daemons must hear about beyond the rows they read.

Postfix reads mailboxes, aliases, passwords and quotas from SQL on every lookup, but
smtpd/trivial-rewrite cache how they classified a domain for the life of the process:
adding or removing a domain needs a (graceful, ~30 ms) Postfix reload. The session's
owner registers the reload as `session.info["on_domains_changed"]`; it runs after commit.
The same goes for DKIM keys (rspamd's selector map) and spam policy (published to Redis).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from controlplane.db import after_commit


def signal(session: Session, change: str, *about: object) -> None:
    """Run the session owner's `session.info["on_<change>"](*about)`, if any, once after commit
    (once per `about`: one mailbox's change, say)."""
    action = session.info.get(f"on_{change}")
    if action is not None:
        key = ":".join([change, *map(str, about)])
        after_commit(session, key, lambda: action(*about))


def signal_domains_changed(session: Session) -> None:
    signal(session, "domains_changed")
