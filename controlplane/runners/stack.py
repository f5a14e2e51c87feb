"""The whole stack of one installation: Dovecot, then Postfix, then the web app."""

from __future__ import annotations

import dataclasses
import os
import sys

from controlplane.daemons import (
    database_logins,
    dovecot,
    nginx,
    postfix,
    postfix_log,
    postsrsd,
    redis,
    rspamd,
    send_limits,
    sender_milter,
)
from controlplane.daemons.layout import prepare_state_directory, protect_database
from controlplane.daemons.process import DaemonError, read_pid, run_tool, terminate, wait_until
from controlplane.runners import follower, node_sync, periodic
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.services import certificates, configuration, dkim, nodes, sieve
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: dict[str, int]


def web_pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / "web.pid")


def prepare(installation: Installation) -> None:
    """Folders, schema, permissions and a live config generation, without starting anything."""
    settings = installation.settings
    prepare_state_directory(settings)
    upgrade_database(settings.sqlalchemy_url)
    if settings.is_postgresql:
        database_logins.grant_daemon_logins(settings.sqlalchemy_url)
    # The SQLite file's folder, which holds each node's SNI table (whatever the shared database).
    protect_database(settings)
    if settings.node_name:
        register_node(installation)
    elif settings.is_postgresql:
        with installation.sessions() as session:
            others = [node.name for node, _held in nodes.list_nodes(session, OPERATOR)]
        if others:
            # Its Dovecot would store mail for every mailbox locally, splitting them.
            raise DaemonError(
                f"This database serves the mail nodes {', '.join(others)}: set node_name (and node_address)."
            )
        # Certificates another node obtained, before the first render serves them.
        with installation.sessions() as session:
            certificates.write_shared_certificates(session, settings)
    with installation.transaction() as session:
        # Domains made before DKIM signing existed here get their first key.
        dkim.ensure_keys(session)
        # Admin filters written as a mailbox's active script, before they had a place of their own.
        sieve.move_admin_filters(session, settings)
        generation = configuration.apply_current_configuration(session, settings, reload=False)
    if generation.status != "live":
        raise DaemonError(f"The configuration was refused, nothing started:\n{generation.error}")
    installation.publish_dkim_selectors()


def register_node(installation: Installation) -> None:
    """Enter this node (or its new address and ports) in the shared database, and tell the
    others, whose Dovecot then trusts its address."""
    settings = installation.settings
    if not settings.is_postgresql:
        raise DaemonError("A mail node (node_name) needs the shared PostgreSQL database: set database_url.")
    if not settings.reachable_address:
        raise DaemonError(
            "Set node_address to this node's private IP address: the other nodes hand it logins and mail "
            "there, and its LMTP port must not listen on every address."
        )
    ports = settings.ports
    endpoint = nodes.NodeEndpoint(
        settings.reachable_address, ports["imap"], ports["pop3"], ports["lmtp"], ports["managesieve"]
    )
    with installation.transaction() as session:
        nodes.register_node(session, settings.node_name, endpoint)
        nodes.raise_generation(session)


def web_command(settings: Settings, *, detached: bool) -> list[str]:
    """gunicorn serving the app, detached (under `up`) or in the foreground (under systemd)."""
    return [
        sys.executable, "-m", "gunicorn",
        *(["--daemon"] if detached else []),
        "--pid", str(settings.run_dir / "web.pid"),
        # Loopback only: nginx fronts the app on the public addresses.
        "--bind", f"127.0.0.1:{settings.ports['web']}",
        "--workers", "2",
        "--access-logfile", str(settings.log_dir / "web-access.log"),
        "--error-logfile", str(settings.log_dir / "web.log"),
        "controlplane:create_app()",
    ]  # fmt: skip


def start_web(settings: Settings) -> None:
    if web_pid(settings):
        return
    env = dict(os.environ, LETTERHEAD_HOME=str(settings.home))
    result = run_tool(web_command(settings, detached=True), env=env, starts_daemon=True)
    if result.returncode != 0 or not wait_until(lambda: web_pid(settings) is not None, timeout=15):
        raise DaemonError(f"The web app did not start; see {settings.log_dir / 'web.log'}.")


def up(installation: Installation, *, web: bool = True) -> None:
    prepare(installation)
    settings = installation.settings
    live = settings.live_config
    if not dovecot.master_pid(settings.run_dir / "dovecot"):
        dovecot.start(live / "dovecot" / "dovecot.conf")
    dovecot.wait_ready(live / "dovecot" / "dovecot.conf")
    # Before Postfix: submission tempfails while its milter cannot be reached.
    sender_milter.SENDER_MILTER.start(settings)
    if not wait_until(lambda: sender_milter.ready(settings), timeout=15):
        raise DaemonError(f"The sender milter did not start; see {settings.log_dir / 'sender-milter.log'}.")
    # rspamd before Postfix too (its milter), Redis before rspamd (its statistics and policies)
    # and before the sending limits service (its counts), which Postfix asks on submission.
    redis.start(settings, live / "redis" / "redis.conf")
    installation.publish_spam_policy()
    installation.publish_allowed_senders()
    send_limits.SEND_LIMITS.start(settings)
    if not wait_until(lambda: send_limits.ready(settings), timeout=15):
        raise DaemonError(
            f"The sending limits service did not start; see {settings.log_dir / 'send-limits.log'}."
        )
    # Through the live link: a reload reads the generation it names then.
    rspamd.start(settings, live / "rspamd")
    # Before Postfix: forwarded mail and bounces to SRS addresses wait on its tables.
    postsrsd.start(settings, settings.hostname)
    if not postfix.master_pid(settings.postfix_queue):
        postfix_log.start(settings)
    follower.start_follower(settings)
    if settings.node_name:
        node_sync.start_node_sync(settings)
    if not settings.testing:
        # Test stacks renew explicitly: a background order would race the test's own.
        periodic.start_periodic(settings)
    if web:
        start_web(settings)
    if not nginx.master_pid(settings):
        nginx.start(live / "nginx" / "nginx.conf")


def down(settings: Settings) -> None:
    live = settings.live_config
    # First: a renewal (or a node's catching up) must not run while the daemons it reloads go away.
    periodic.stop_periodic(settings)
    node_sync.stop_node_sync(settings)
    pid = nginx.master_pid(settings)
    if pid:
        nginx.stop(live / "nginx" / "nginx.conf")
        if not wait_until(lambda: nginx.master_pid(settings) is None, timeout=10):
            terminate(pid)
    pid = web_pid(settings)
    if pid:
        terminate(pid)
    postfix_log.stop(settings)
    pid = postfix.master_pid(settings.postfix_queue)
    if pid:
        postfix.stop(live / "postfix")
        if not wait_until(lambda: postfix.master_pid(settings.postfix_queue) is None, timeout=10):
            terminate(pid)
    sender_milter.SENDER_MILTER.stop(settings)
    send_limits.SEND_LIMITS.stop(settings)
    postsrsd.stop(settings)
    rspamd.stop(settings)
    redis.stop(settings)
    pid = dovecot.master_pid(settings.run_dir / "dovecot")
    if pid:
        dovecot.stop(live / "dovecot" / "dovecot.conf")
        if not wait_until(lambda: dovecot.master_pid(settings.run_dir / "dovecot") is None, timeout=10):
            terminate(pid)
    # Last: it reads what the daemons logged while stopping.
    follower.stop_follower(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    ports = settings.ports
    return [
        ServiceStatus(
            "dovecot",
            dovecot.master_pid(settings.run_dir / "dovecot"),
            {name: ports[name] for name in ("imap", "imaps", "pop3", "pop3s", "managesieve", "quota_status")},
        ),
        ServiceStatus(
            "postfix",
            postfix.master_pid(settings.postfix_queue),
            {name: ports[name] for name in ("smtp", "submission", "submissions")},
        ),
        ServiceStatus("sender-milter", sender_milter.SENDER_MILTER.pid(settings), {}),
        ServiceStatus("send-limits", send_limits.SEND_LIMITS.pid(settings), {}),
        ServiceStatus(
            "postsrsd", postsrsd.pid(settings), {name: ports[name] for name in ("srs_forward", "srs_reverse")}
        ),
        ServiceStatus(
            "rspamd",
            rspamd.master_pid(settings),
            {name: ports[name] for name in ("rspamd_milter", "rspamd_controller")},
        ),
        ServiceStatus("redis", redis.pid(settings), {"redis": ports["redis"]}),
        ServiceStatus("postfix-log-writer", postfix_log.WRITER.pid(settings), {}),
        ServiceStatus("web", web_pid(settings), {"web": ports["web"]}),
        ServiceStatus("log-follower", follower.follower_pid(settings), {}),
        ServiceStatus("periodic", periodic.periodic_pid(settings), {}),
        ServiceStatus("nginx", nginx.master_pid(settings), {name: ports[name] for name in ("http", "https")}),
    ]
