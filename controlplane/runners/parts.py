"""The parts of a running installation, one process each, in the order they start.

`letterhead up` starts them detached (runners/stack.py). A production install runs each as a
systemd service instead (runners/install.py): `letterhead service run PART` prepares what the
part needs and replaces itself with the daemon in the foreground, so systemd watches the daemon
itself and restarts it when it dies; `letterhead service ready PART` waits until it answers, so
the parts after it start only then, in the same order as under `up`.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path

from controlplane.daemons import (
    dovecot,
    haproxy,
    nginx,
    postfix,
    postfix_log,
    postsrsd,
    redis,
    rspamd,
    send_limits,
    sender_milter,
)
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError, port_open, read_pid
from controlplane.runners import follower, node_sync, periodic
from controlplane.runtime import Installation
from controlplane.settings import Settings


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    description: str
    # The daemon's command line in the foreground.
    command: Callable[[Settings], list[str]]
    # Whether it answers yet (what the parts after it wait for).
    ready: Callable[[Settings], bool]
    # Whether its process lives (what the supervisor watches under `up`).
    alive: Callable[[Settings], bool]
    # Folders and files it needs before it starts (as its `start` under `up` makes them).
    prepare: Callable[[Settings], None] = lambda settings: None
    # The account it runs as, if it does not drop privileges itself.
    user: str | None = None
    # Whether this installation runs it at all.
    wanted: Callable[[Settings], bool] = lambda settings: True
    # Where its PID goes, for a daemon that writes none in the foreground.
    pid_file: Callable[[Settings], Path] | None = None
    # The file its output goes to, as under `up` (the log follower reads rspamd's verdicts there).
    log_file: Callable[[Settings], Path] | None = None
    # What follows once it answers (Redis: the spam policies and allow lists it serves).
    on_ready: Callable[[Installation], None] | None = None


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


def _web_pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / "web.pid")


def _log(name: str) -> Callable[[Settings], Path]:
    return lambda settings: settings.log_dir / name


def publish_to_redis(installation: Installation) -> None:
    installation.publish_spam_policy()
    installation.publish_allowed_senders()


def _own(process: BackgroundProcess) -> Callable[[Settings], list[str]]:
    """One of Letterhead's own processes, in the foreground (without `--daemon`)."""
    return lambda settings: [*settings.cli_command, *(a for a in process.command if a != "--daemon")]


def _dovecot_config(settings: Settings) -> Path:
    return settings.live_config / "dovecot" / "dovecot.conf"


def _pid_alive(pid: Callable[[Settings], int | None]) -> Callable[[Settings], bool]:
    return lambda settings: pid(settings) is not None


def _dovecot_pid(settings: Settings) -> int | None:
    return dovecot.master_pid(settings.run_dir / "dovecot")


PARTS: tuple[Part, ...] = (
    Part(
        "dovecot", "Dovecot (IMAP, POP3, LMTP, ManageSieve, quota checks)",
        command=lambda s: [dovecot.DOVECOT, "-F", "-c", str(_dovecot_config(s))],
        # Its master, not only its auth process (which outlives a killed master for a while).
        ready=lambda s: _dovecot_pid(s) is not None and dovecot.auth_answers(_dovecot_config(s)),
        alive=_pid_alive(_dovecot_pid),
    ),
    Part(
        "haproxy", "HAProxy (IMAPS and POP3S for every brand host)",
        command=lambda s: haproxy.foreground_command(haproxy.config_file(s)),
        ready=haproxy.answers, alive=_pid_alive(haproxy.master_pid), prepare=haproxy.prepare_start,
        log_file=_log(haproxy.LOG_FILE),
    ),
    Part(
        "sender-milter", "the From: check of mail sent after login",
        command=_own(sender_milter.SENDER_MILTER), ready=sender_milter.ready,
        alive=_pid_alive(sender_milter.SENDER_MILTER.pid), log_file=_log(sender_milter.SENDER_MILTER.log_file),
    ),
    Part(
        "redis", "Redis (spam statistics, policies, sending counts)",
        command=lambda s: [redis.REDIS_SERVER, str(s.live_config / "redis" / "redis.conf")],
        ready=lambda s: redis.ping(port=s.ports["redis"]), alive=_pid_alive(redis.pid),
        prepare=redis.prepare, user=redis.REDIS_USER, log_file=_log(redis.LOG_FILE), on_ready=publish_to_redis,
    ),
    Part(
        "send-limits", "the sending limits service",
        command=_own(send_limits.SEND_LIMITS), ready=send_limits.ready,
        alive=_pid_alive(send_limits.SEND_LIMITS.pid), log_file=_log(send_limits.SEND_LIMITS.log_file),
    ),
    Part(
        "rspamd", "rspamd (spam filter, DKIM signing)",
        command=lambda s: rspamd.foreground_command(s, s.live_config / "rspamd"), ready=rspamd.ready,
        alive=_pid_alive(rspamd.master_pid), prepare=rspamd.prepare, pid_file=rspamd.pid_file,
        log_file=_log(rspamd.LOG_FILE),
    ),
    Part(
        "postsrsd", "postsrsd (SRS for forwarded mail)",
        command=lambda s: postsrsd.foreground_command(s, s.hostname), ready=postsrsd.ready,
        alive=_pid_alive(postsrsd.pid), prepare=postsrsd.prepare, log_file=_log(postsrsd.LOG_FILE),
    ),
    Part(
        "postfix", "Postfix (SMTP, submission) and its log writer",
        command=_own(postfix_log.WRITER),
        ready=lambda s: postfix.master_pid(s.postfix_queue) is not None,
        # Both: the writer runs Postfix in the foreground and ends when its master does.
        alive=postfix_log.running_and_logged,
        log_file=_log(postfix_log.WRITER.log_file),
    ),
    Part(
        "log-follower", "the log follower (mail and login logs into the database)",
        command=_own(follower.FOLLOWER), ready=_pid_alive(follower.follower_pid),
        alive=_pid_alive(follower.follower_pid), log_file=_log(follower.FOLLOWER.log_file),
    ),
    Part(
        "node-sync", "the mail node's sync with the shared database",
        command=_own(node_sync.NODE_SYNC), ready=_pid_alive(node_sync.NODE_SYNC.pid),
        alive=_pid_alive(node_sync.NODE_SYNC.pid), wanted=lambda s: bool(s.node_name),
        log_file=_log(node_sync.NODE_SYNC.log_file),
    ),
    Part(
        "periodic", "the periodic runner (certificate renewal, DNS checks)",
        command=_own(periodic.PERIODIC), ready=_pid_alive(periodic.periodic_pid),
        alive=_pid_alive(periodic.periodic_pid), log_file=_log(periodic.PERIODIC.log_file),
    ),
    Part(
        "web", "the web app (webmail, admin panel, API)",
        command=lambda s: web_command(s, detached=False),
        ready=lambda s: port_open("127.0.0.1", s.ports["web"]), alive=_pid_alive(_web_pid),
    ),
    Part(
        "nginx", "nginx (HTTPS for every brand host)",
        command=lambda s: nginx.foreground_command(s.live_config / "nginx" / "nginx.conf"),
        ready=_pid_alive(nginx.master_pid), alive=_pid_alive(nginx.master_pid), prepare=nginx.prepare,
    ),
)  # fmt: skip


def wanted_parts(settings: Settings) -> list[Part]:
    return [part for part in PARTS if part.wanted(settings)]


def part_named(name: str) -> Part:
    for part in PARTS:
        if part.name == name:
            return part
    raise DaemonError(f"No such part: {name}. The parts are {', '.join(part.name for part in PARTS)}.")


def exec_part(settings: Settings, part: Part) -> None:
    """Become the part's daemon, in the foreground (never returns)."""
    part.prepare(settings)
    command = part.command(settings)
    os.environ["LETTERHEAD_HOME"] = str(settings.home)
    if part.log_file is not None:
        log = part.log_file(settings)
        log.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
    if part.pid_file is not None:
        part.pid_file(settings).write_text(f"{os.getpid()}\n")  # exec keeps the PID
    if part.user:
        account = pwd.getpwnam(part.user)
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    os.execv(command[0], command)
