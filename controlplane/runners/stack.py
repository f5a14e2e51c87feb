"""The whole stack of one installation: Dovecot, then Postfix, then the web app."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from controlplane.daemons import (
    database_logins,
    dovecot,
    haproxy,
    nginx,
    postfix,
    postfix_log,
    postfix_reloads,
    postsrsd,
    redis,
    rspamd,
    send_limits,
    sender_milter,
)
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.layout import prepare_state_directory, protect_database
from controlplane.daemons.process import DaemonError, read_pid, run_tool, terminate, wait_until
from controlplane.logs import search_indexes
from controlplane.runners import follower, mail_migration, node_sync, parts, periodic
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.services import certificates, configuration, dkim, nodes, sieve
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings

# Restarts a part that died, as systemd does in a production install (runners/supervisor.py).
SUPERVISOR = BackgroundProcess(
    "The supervisor", "supervisor.pid", "supervisor.log", ("supervise", "--daemon")
)


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: dict[str, int]


def web_pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / "web.pid")


def upgrade_schema(installation: Installation) -> bool:
    """Run the pending migrations; whether any ran. On SQLite, a running Dovecot then reloads at
    once: its SQLite driver fails the next query of each connection after any schema change (a
    login refused, mail deferred with 450), and the processes a reload starts open new ones.
    Postfix gets a reload too (at once, or at the end of its reload spell: postfix_reloads.py):
    its smtpd processes keep their connections to Dovecot's auth and quota services, which
    reach the old processes until then. A connection open across the migration may still meet
    one temporary failure."""
    settings = installation.settings
    changed = upgrade_database(settings.sqlalchemy_url)
    if changed and not settings.is_postgresql and dovecot.master_pid(settings.run_dir / "dovecot"):
        dovecot.reload(settings.live_config / "dovecot" / "dovecot.conf")
        postfix_reloads.request_reload(settings)
    return changed


def prepare(installation: Installation) -> None:
    """Folders, schema, permissions and a live config generation, without starting anything."""
    settings = installation.settings
    prepare_state_directory(settings)
    upgrade_schema(installation)
    if settings.is_postgresql:
        database_logins.grant_daemon_logins(settings.sqlalchemy_url)
    # The SQLite file's folder, which holds each node's SNI table (whatever the shared database).
    protect_database(settings)
    with installation.sessions() as session:
        # Left by a log import killed before its end, or one that ended while the daemons ran;
        # before Dovecot starts, which fails a query after any schema change (search_indexes.py),
        # and not if it runs already.
        search_indexes.before_daemons_start(session, daemons_reading=installation.mail_daemons_reading)
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


def start_web(settings: Settings) -> None:
    if web_pid(settings):
        return
    env = dict(os.environ, LETTERHEAD_HOME=str(settings.home))
    result = run_tool(parts.web_command(settings, detached=True), env=env, starts_daemon=True)
    if result.returncode != 0 or not wait_until(lambda: web_pid(settings) is not None, timeout=15):
        raise DaemonError(f"The web app did not start; see {settings.log_dir / 'web.log'}.")


def _start_dovecot(installation: Installation) -> None:
    config = installation.settings.live_config / "dovecot" / "dovecot.conf"
    if not dovecot.master_pid(installation.settings.run_dir / "dovecot"):
        dovecot.start(config)
    dovecot.wait_ready(config)


def _start_haproxy(installation: Installation) -> None:
    settings = installation.settings
    if not haproxy.master_pid(settings):
        haproxy.start(settings)
    if not wait_until(lambda: haproxy.answers(settings), timeout=15):
        raise DaemonError("HAProxy started but its admin socket does not answer.")


def _start_sender_milter(installation: Installation) -> None:
    # Before Postfix: submission tempfails while its milter cannot be reached.
    settings = installation.settings
    sender_milter.SENDER_MILTER.start(settings)
    if not wait_until(lambda: sender_milter.ready(settings), timeout=15):
        raise DaemonError(f"The sender milter did not start; see {settings.log_dir / 'sender-milter.log'}.")


def _start_redis(installation: Installation) -> None:
    # Before rspamd (its statistics and policies) and the sending limits service (its counts).
    redis.start(installation.settings, installation.settings.live_config / "redis" / "redis.conf")
    parts.publish_to_redis(installation)


def _start_send_limits(installation: Installation) -> None:
    settings = installation.settings
    send_limits.SEND_LIMITS.start(settings)
    if not wait_until(lambda: send_limits.ready(settings), timeout=15):
        raise DaemonError(
            f"The sending limits service did not start; see {settings.log_dir / 'send-limits.log'}."
        )


def _start_postfix(installation: Installation) -> None:
    settings = installation.settings
    if postfix.master_pid(settings.postfix_queue) and not postfix_log.running_and_logged(settings):
        # Its log writer died, or Postfix runs from before the writer owned its socket (an
        # upgrade): its lines would go nowhere. Start both anew.
        postfix.stop(settings.live_config / "postfix")
        wait_until(lambda: postfix.master_pid(settings.postfix_queue) is None, timeout=10)
    if not postfix.master_pid(settings.postfix_queue):
        postfix_log.start(settings)


def _start_nginx(installation: Installation) -> None:
    if not nginx.master_pid(installation.settings):
        nginx.start(installation.settings.live_config / "nginx" / "nginx.conf")


# How `up` starts each part of runners/parts.PARTS, detached; the supervisor starts a part
# that died the same way.
STARTERS: dict[str, Callable[[Installation], None]] = {
    "dovecot": _start_dovecot,
    "haproxy": _start_haproxy,
    "sender-milter": _start_sender_milter,
    "redis": _start_redis,
    "send-limits": _start_send_limits,
    # Through the live link: a reload reads the generation it names then.
    "rspamd": lambda installation: rspamd.start(
        installation.settings, installation.settings.live_config / "rspamd"
    ),
    # Before Postfix: forwarded mail and bounces to SRS addresses wait on its tables.
    "postsrsd": lambda installation: postsrsd.start(installation.settings, installation.settings.hostname),
    "postfix": _start_postfix,
    "log-follower": lambda installation: follower.start_follower(installation.settings),
    "node-sync": lambda installation: node_sync.start_node_sync(installation.settings),
    "periodic": lambda installation: periodic.start_periodic(installation.settings),
    "web": lambda installation: start_web(installation.settings),
    "nginx": _start_nginx,
}


def parts_to_run(settings: Settings, *, web: bool = True) -> list[parts.Part]:
    """The parts `up` starts, in order."""
    return [
        part
        for part in parts.wanted_parts(settings)
        if (web or part.name != "web")
        # Test stacks renew explicitly: a background order would race the test's own.
        and not (settings.testing and part.name == "periodic")
    ]


def _not_under_systemd(settings: Settings, verb: str) -> None:
    if settings.service_manager == "systemd":
        raise DaemonError(
            f"systemd runs this installation (letterhead install): use `systemctl {verb} letterhead.target`."
        )


def up(installation: Installation, *, web: bool = True) -> None:
    _not_under_systemd(installation.settings, "start")
    prepare(installation)
    settings = installation.settings
    for part in parts_to_run(settings, web=web):
        STARTERS[part.name](installation)
    if settings.supervise:
        SUPERVISOR.start(settings)


def down(settings: Settings) -> None:
    _not_under_systemd(settings, "stop")
    live = settings.live_config
    # First the supervisor, which would start again what stops; then a renewal (or a node's
    # catching up), which must not run while the daemons it reloads go away.
    SUPERVISOR.stop(settings)
    periodic.stop_periodic(settings)
    mail_migration.stop_runner(settings)
    node_sync.stop_node_sync(settings)
    pid = nginx.master_pid(settings)
    if pid:
        nginx.stop(live / "nginx" / "nginx.conf")
        if not wait_until(lambda: nginx.master_pid(settings) is None, timeout=10):
            terminate(pid)
    pid = web_pid(settings)
    if pid:
        terminate(pid)
    haproxy.stop(settings)
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
    stopped(settings)
    # Last: it reads what the daemons logged while stopping.
    follower.stop_follower(settings)


def stopped(settings: Settings) -> None:
    """Once the mail daemons stopped (`letterhead down`, or systemd stopping the prepare unit
    after the parts): an operator's log import may set its search indexes aside again at once,
    instead of when the start's mark expires."""
    search_indexes.daemons_stopped(settings.sqlalchemy_url)


def status(settings: Settings) -> list[ServiceStatus]:
    ports = settings.ports
    watcher = [ServiceStatus("supervisor", SUPERVISOR.pid(settings), {})] if settings.supervise else []
    return watcher + [
        ServiceStatus(
            "dovecot",
            dovecot.master_pid(settings.run_dir / "dovecot"),
            {
                name: ports[name]
                for name in ("imap", "imaps_proxied", "pop3", "pop3s_proxied", "managesieve", "quota_status")
            },
        ),
        ServiceStatus(
            "haproxy", haproxy.master_pid(settings), {name: ports[name] for name in ("imaps", "pop3s")}
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
        ServiceStatus(
            "nginx",
            nginx.master_pid(settings),
            {name: ports[name] for name in ("http", "https")},
        ),
    ]
