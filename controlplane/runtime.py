"""Wiring one installation together: settings -> database sessions -> daemon hooks."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session, sessionmaker

from controlplane.db import make_engine, make_session_factory

# Imported with the sessions it serves, not only when it is called: importing it registers the
# flush listener that signals "on_sender_lists_changed" below, and a command whose own modules
# never import it (`letterhead alias create`) must still republish rspamd's copy.
from controlplane.services import sender_lists
from controlplane.settings import Settings


def instance_secret_key(settings: Settings) -> str:
    """The configured secret key, or one made once and kept in the state directory.

    It signs session cookies and keys the fingerprints of failed login guesses: a
    well-known default would let anyone forge a session.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.home / "secret_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class Installation:
    """One state directory: its settings and a session factory whose sessions know the
    installation's rules (smallest mailbox) and hooks (reload Postfix after domain changes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.sqlalchemy_url, busy_seconds=settings.database_busy_seconds)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.sessions.configure(
            info={
                "min_mailbox_bytes": settings.min_mailbox_bytes,
                # The mail node these sessions run on: its log rows and logins are tagged with it.
                "node_name": settings.node_name,
                "mail_root": str(settings.mail_root),
                # Where Dovecot's usage measurements are: the shared database on PostgreSQL.
                "usage_database": (
                    settings.sqlalchemy_url if settings.is_postgresql else str(settings.usage_database_path)
                ),
                # Keys the fingerprints of failed login guesses (services/auth.py).
                "auth_secret": instance_secret_key(settings),
                # Each also tells the other mail nodes (services/nodes.py), then acts here.
                "on_domains_changed": self._announced(self.reload_postfix),
                "on_brands_changed": self._announced(self.apply_configuration),
                "dkim_dir": str(settings.dkim_dir),
                "on_dkim_changed": self._announced(self.publish_dkim_selectors),
                "on_spam_policy_changed": self._announced(self.publish_spam_policy),
                "on_sender_lists_changed": self._announced(self.publish_allowed_senders),
            }
        )

    def _announced(self, action: Callable[..., None]) -> Callable[..., None]:
        """`action`, after raising the state generation the other nodes watch. Runs after the
        change's commit, in a transaction of its own: a node that misses a number (this process
        died in between) still catches up at its periodic full sync."""

        def announce_then_act(*about: object) -> None:
            if self.settings.node_name:
                from controlplane.services import nodes

                with self.transaction() as session:
                    nodes.raise_generation(session)
            action(*about)

        return announce_then_act

    def reload_postfix(self) -> None:
        """Have Postfix reload for a change of domains, as committed."""
        # The daemons' modules are imported when a change needs them: they bring the renderers
        # and the Redis client, a seventh of a second of every command's start (an operator's
        # `letterhead logs ingest` is measured against pflogsumm).
        from controlplane.daemons import postfix_reloads

        postfix_reloads.request_reload(self.settings)

    def mail_daemons_reading(self) -> bool:
        """Whether Dovecot or Postfix runs on this installation's database: then nothing may
        change its schema, or Dovecot's SQLite driver fails the next query of each of its
        connections ("SQL logic error": a login refused, mail deferred with 450 4.7.1; see
        logs/search_indexes.py and docs/mail-stack-notes.md)."""
        from controlplane.daemons import dovecot  # light; Postfix's module brings the renderers
        from controlplane.daemons.process import read_pid

        return (
            dovecot.master_pid(self.settings.run_dir / "dovecot") is not None
            or read_pid(self.settings.postfix_queue / "pid" / "master.pid") is not None
        )

    def publish_spam_policy(self) -> None:
        """Hand rspamd the domains' own reject scores, as committed, if Redis runs (else the
        next `letterhead up` does)."""
        from controlplane.daemons import redis, spam_policy
        from controlplane.services import spam

        if redis.pid(self.settings) is None:
            return
        with self.sessions() as session:
            spam_policy.publish_policy(
                self.settings.ports["redis"],
                spam.own_reject_scores(session),
                spam.greylisted_domains(session),
            )

    def publish_allowed_senders(self) -> None:
        """Hand rspamd every address's allowed senders as committed, replacing whatever Redis
        held, if Redis runs (else `letterhead up` does)."""
        from controlplane.daemons import redis, spam_policy

        if redis.pid(self.settings) is None:
            return
        with self.sessions() as session:
            allowed = sender_lists.allowed_senders(session)
        spam_policy.publish_allowed_senders(self.settings.ports["redis"], allowed)

    def publish_dkim_selectors(self) -> None:
        """Point rspamd's selector map at each domain's active key, as committed."""
        from controlplane.services import dkim

        with self.sessions() as session:
            dkim.publish(session, self.settings.dkim_dir)

    def apply_configuration(self) -> None:
        """Re-render from the committed state, check, and reload what changed.

        A refused generation leaves the last good one serving; its error is recorded
        with the generation and shown by `letterhead config status`.
        """
        from controlplane.services import configuration

        if not self.settings.live_config.exists():
            return  # not prepared yet: `letterhead up` renders the first generation
        with self.transaction() as session:
            configuration.apply_current_configuration(session, self.settings)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
