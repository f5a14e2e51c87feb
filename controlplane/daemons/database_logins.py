"""Each daemon's own login to a PostgreSQL database, allowed only what that daemon needs.

One SQLite file cannot tell its readers apart: whoever may open it reads every password hash and
token in it. On PostgreSQL the app's role owns the schema, and each daemon connects as a role of
its own that reads only the views it queries:

- Postfix: the hosted domains, aliases, forwardings and who may send as whom, and of the users
  view only the address columns: never a password hash;
- Dovecot (logins and user lookups): the users view with its hashes, the junk scores and the
  sender lists, and nothing else, writing nothing;
- Dovecot's dict service: the storage usage table it keeps (daemons/usage.py), and nothing else.

Views run with their owner's rights, so no daemon role is granted a table beneath them. Roles
belong to the whole cluster, so their names carry the database's. The passwords are kept in
`daemon_login` (readable by the app's role only), so every node renders the same logins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import Connection, create_engine, make_url, pool, text
from sqlalchemy.exc import SQLAlchemyError

from controlplane.daemons import usage
from controlplane.daemons.process import DaemonError
from controlplane.db import server_reason
from controlplane.render import DaemonDatabase, DatabaseLogin
from controlplane.settings import Settings

# daemon -> {relation: columns it may read (None: all)}
READABLE = {
    "postfix": {
        "mail_domains": None,
        "mail_users": ("local_part", "domain"),
        "mail_forwardings": None,
        "mail_role_addresses": None,
        "mail_aliases": None,
        "mail_sender_logins": None,
    },
    "dovecot": {
        "mail_users": None,
        "mail_domain_spam_scores": None,
        "mail_sender_lists": None,
        # Which node holds a mailbox, to proxy a login or a delivery there.
        "mail_user_nodes": None,
    },
    "dovecot_usage": {"mailbox_usage": None},
}
# What the usage writer may do beyond reading: Dovecot's dict upserts one row per user.
WRITABLE = {"dovecot_usage": {"mailbox_usage": ("INSERT", "UPDATE")}}
# Functions a daemon may call (migration 0019): Postfix's lookups, with their plans kept.
CALLABLE = {
    "postfix": (
        "postfix_domain(text)",
        "postfix_mailbox(text, text)",
        "postfix_forwardings(text, text)",
        "postfix_role_addresses(text, text)",
        "postfix_catchall(text)",
        "postfix_sender_logins(text, text)",
        # Whether a mailbox is full (migration 0022): its owner's rights, one reply or none.
        "postfix_full_mailbox(text, text)",
    )
}
# Two nodes preparing the same database at once must not both create the roles.
_ADVISORY_LOCK = 0x6C6F67696E  # "login"


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def role_name(database: str, daemon: str) -> str:
    # PostgreSQL cuts identifiers at 63 bytes: keep the daemon's part whole.
    suffix = f"_{daemon}"
    return database[: 63 - len(suffix)] + suffix


def grant_daemon_logins(url: str) -> None:
    """Create or refresh the daemons' roles and their rights (idempotent); PostgreSQL only.

    The app's role needs CREATEROLE (a superuser also does). The passwords are made once and
    kept; each run grants again what the daemons need, so a newer release's needs are met.
    """
    engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    database = make_url(url).database or ""
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            usage.create_usage_table(connection)
            # Before PostgreSQL 15 every role may create objects in `public`: the daemons may not.
            connection.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for daemon, relations in READABLE.items():
                _grant(connection, database, daemon, relations)
    except SQLAlchemyError as error:
        # The server's words only: never the statement, which names a role's verifier.
        reason = server_reason(error)
        raise DaemonError(
            f"Could not grant the daemons' database logins ({reason}). The database_url role must own "
            "the database and have CREATEROLE."
        ) from None
    finally:
        engine.dispose()


def _grant(
    connection: Connection, database: str, daemon: str, relations: dict[str, tuple[str, ...] | None]
) -> None:
    role = role_name(database, daemon)
    password, made = _stored_password(connection, daemon, role)
    exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if not exists:
        connection.exec_driver_sql(f"CREATE ROLE {_quoted(role)} LOGIN NOINHERIT")
    if made or not exists:
        # Its SCRAM verifier, never the password: statements can reach the server's log.
        connection.exec_driver_sql(f"ALTER ROLE {_quoted(role)} PASSWORD '{scram_verifier(password)}'")
    connection.exec_driver_sql(f"GRANT CONNECT ON DATABASE {_quoted(database)} TO {_quoted(role)}")
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {_quoted(role)}")
    for relation, columns in relations.items():
        # Start from nothing, so a column taken off the list is no longer readable.
        connection.exec_driver_sql(f"REVOKE ALL ON {relation} FROM {_quoted(role)}")
        readable = f"SELECT ({', '.join(columns)})" if columns else "SELECT"
        connection.exec_driver_sql(f"GRANT {readable} ON {relation} TO {_quoted(role)}")
    for function in CALLABLE.get(daemon, ()):
        # A database downgraded below the migration that made it has none to grant.
        if connection.execute(text("SELECT to_regprocedure(:f)"), {"f": function}).scalar() is not None:
            connection.exec_driver_sql(f"GRANT EXECUTE ON FUNCTION {function} TO {_quoted(role)}")
    for relation, rights in WRITABLE.get(daemon, {}).items():
        connection.exec_driver_sql(f"GRANT {', '.join(rights)} ON {relation} TO {_quoted(role)}")
    if daemon in WRITABLE:
        # A usage measurement is rewritten at the mailbox's next change: one lost in a crash costs
        # nothing, so its commit does not wait for the disk (one fsync per delivery otherwise).
        connection.exec_driver_sql(f"ALTER ROLE {_quoted(role)} SET synchronous_commit = off")


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier for `password` (RFC 5802, RFC 7677), made here."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def _stored_password(connection: Connection, daemon: str, role: str) -> tuple[str, bool]:
    """The daemon's password, and whether it was made just now."""
    stored = connection.execute(
        text("SELECT password FROM daemon_login WHERE daemon = :daemon"), {"daemon": daemon}
    ).scalar()
    if stored:
        return stored, False
    password = secrets.token_hex(24)
    connection.execute(
        text("INSERT INTO daemon_login (daemon, role, password) VALUES (:daemon, :role, :password)"),
        {"daemon": daemon, "role": role, "password": password},
    )
    return password, True


def daemon_database(settings: Settings) -> DaemonDatabase:
    """Where and as whom the daemons read the state: the SQLite file, or PostgreSQL's logins."""
    if not settings.is_postgresql:
        return DaemonDatabase(driver="sqlite", path=str(settings.database_path))
    url = make_url(settings.sqlalchemy_url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT daemon, role, password FROM daemon_login")).all()
    finally:
        engine.dispose()
    return DaemonDatabase(
        driver="pgsql",
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        name=url.database or "",
        logins={daemon: DatabaseLogin(role=role, password=password) for daemon, role, password in rows},
    )


def login_url(settings: Settings, daemon: str) -> str:
    """A URL that connects as `daemon`'s role (for tests that a role is refused what it must not read)."""
    database = daemon_database(settings)
    login = database.logins[daemon]
    url = make_url(settings.sqlalchemy_url).set(username=login.role, password=login.password)
    return url.render_as_string(hide_password=False)
