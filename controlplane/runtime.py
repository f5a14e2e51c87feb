"""Wiring one installation together: settings -> database sessions -> daemon hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker

from controlplane.daemons import postfix
from controlplane.db import make_engine, make_session_factory
from controlplane.settings import Settings


def reload_postfix_if_running(settings: Settings) -> None:
    """smtpd caches how it classified a domain: a domain change needs a (graceful) reload."""
    if postfix.master_pid(settings.postfix_queue) and settings.live_config.exists():
        postfix.reload(settings.live_config / "postfix")


class Installation:
    """One state directory: its settings and a session factory whose sessions know the
    installation's rules (smallest mailbox) and hooks (reload Postfix after domain changes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.sqlalchemy_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.sessions.configure(
            info={
                "min_mailbox_bytes": settings.min_mailbox_bytes,
                "mail_root": str(settings.mail_root),
                # Keys the fingerprints of failed login guesses (services/auth.py).
                "auth_secret": settings.secret_key,
                "on_domains_changed": lambda: reload_postfix_if_running(settings),
            }
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
