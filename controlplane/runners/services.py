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
from collections.abc import Callable
from pathlib import Path

from controlplane.daemons import (
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
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError, port_open
from controlplane.runners import follower, node_sync, periodic, stack
from controlplane.settings import Settings


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    description: str
    # The daemon's command line in the foreground.
    command: Callable[[Settings], list[str]]
    # Whether it answers yet (what the parts after it wait for).
    ready: Callable[[Settings], bool]
    # Folders and files it needs before it starts (as its `start` under `up` makes them).
    prepare: Callable[[Settings], None] = lambda settings: None
    # The account it runs as, if it does not drop privileges itself.
    user: str | None = None
    # Whether this installation runs it at all.
    wanted: Callable[[Settings], bool] = lambda settings: True
    # Where its PID goes, for a daemon that writes none in the foreground.
    pid_file: Callable[[Settings], Path] | None = None


def _own(process: BackgroundProcess) -> Callable[[Settings], list[str]]:
    """One of Letterhead's own processes, in the foreground (without `--daemon`)."""
    return lambda settings: [*settings.cli_command, *(a for a in process.command if a != "--daemon")]


def _dovecot_config(settings: Settings) -> Path:
    return settings.live_config / "dovecot" / "dovecot.conf"


PARTS: tuple[Part, ...] = (
    Part(
        "dovecot", "Dovecot (IMAP, POP3, LMTP, ManageSieve, quota checks)",
        lambda s: [dovecot.DOVECOT, "-F", "-c", str(_dovecot_config(s))],
        # Its master, not only its auth process (which outlives a killed master for a while).
        lambda s: dovecot.master_pid(s.run_dir / "dovecot") is not None and dovecot.auth_answers(_dovecot_config(s)),
    ),
    Part(
        "sender-milter", "the From: check of mail sent after login",
        _own(sender_milter.SENDER_MILTER), sender_milter.ready,
    ),
    Part(
        "redis", "Redis (spam statistics, policies, sending counts)",
        lambda s: [redis.REDIS_SERVER, str(s.live_config / "redis" / "redis.conf")],
        lambda s: redis.ping(port=s.ports["redis"]), redis.prepare, user=redis.REDIS_USER,
    ),
    Part("send-limits", "the sending limits service", _own(send_limits.SEND_LIMITS), send_limits.ready),
    Part(
        "rspamd", "rspamd (spam filter, DKIM signing)",
        lambda s: rspamd.foreground_command(s, s.live_config / "rspamd"), rspamd.ready, rspamd.prepare,
        pid_file=rspamd.pid_file,
    ),
    Part(
        "postsrsd", "postsrsd (SRS for forwarded mail)",
        lambda s: postsrsd.foreground_command(s, s.hostname), postsrsd.ready, postsrsd.prepare,
    ),
    Part(
        "postfix", "Postfix (SMTP, submission) and its log writer",
        _own(postfix_log.WRITER), lambda s: postfix.master_pid(s.postfix_queue) is not None,
    ),
    Part(
        "log-follower", "the log follower (mail and login logs into the database)",
        _own(follower.FOLLOWER), lambda s: follower.follower_pid(s) is not None,
    ),
    Part(
        "node-sync", "the mail node's sync with the shared database",
        _own(node_sync.NODE_SYNC), lambda s: node_sync.NODE_SYNC.pid(s) is not None,
        wanted=lambda s: bool(s.node_name),
    ),
    Part(
        "periodic", "the periodic runner (certificate renewal, DNS checks)",
        _own(periodic.PERIODIC), lambda s: periodic.periodic_pid(s) is not None,
    ),
    Part(
        "web", "the web app (webmail, admin panel, API)",
        lambda s: stack.web_command(s, detached=False), lambda s: port_open("127.0.0.1", s.ports["web"]),
    ),
    Part(
        "nginx", "nginx (HTTPS for every brand host)",
        lambda s: nginx.foreground_command(s.live_config / "nginx" / "nginx.conf"),
        lambda s: nginx.master_pid(s) is not None, nginx.prepare,
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
    if part.pid_file is not None:
        part.pid_file(settings).write_text(f"{os.getpid()}\n")  # exec keeps the PID
    if part.user:
        account = pwd.getpwnam(part.user)
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    os.execv(command[0], command)
