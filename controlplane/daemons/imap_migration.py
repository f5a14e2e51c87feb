"""Copying a mailbox from another provider's IMAP server with Dovecot's own dsync (`imapc`).

`doveadm sync -1 -R -u USER imapc:` copies one way, from the old server into the user's mailbox
here: every folder (Unicode names too), flag and received date. It never removes anything here,
so mail delivered since the first copy stays, and a second run copies only what is new (messages
are matched by a hash of their headers, `guid-forced`, since other servers give no GUIDs). The
old password reaches doveadm in a settings file readable by root alone, which includes the live
Dovecot configuration, never on a command line. The old server's certificate is checked against
the host name the admin gave.

dsync does not enforce the quota while it copies (it must be able to sync everything), so the
caller watches the mailbox: `stop_when` is asked every few seconds and a reason it returns stops
the copy there, keeping what was copied.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from controlplane.daemons.dovecot import DOVEADM
from controlplane.daemons.process import DaemonError, output_of, run_tool

SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")
SECURITY_MODES = ("imaps", "starttls")
# rfc822.size: sizes without downloading; fetch-headers: one FETCH per batch; guid-forced: a
# message's identity from its headers, so a re-run recognises what it copied before.
IMAPC_FEATURES = "rfc822.size fetch-headers guid-forced"
COPY_TIMEOUT_SECONDS = 6 * 3600


class CopyFailed(DaemonError):
    """The copy stopped; the message says why in words an admin can act on."""


@dataclass(frozen=True)
class OldServer:
    host: str
    port: int
    security: str  # one of SECURITY_MODES
    login: str


@dataclass(frozen=True)
class Totals:
    messages: int
    bytes: int


def copy_mailbox(
    config_file: Path,
    user: str,
    server: OldServer,
    password: str,
    *,
    work_dir: Path,
    ca_file: Path = SYSTEM_CA_FILE,
    timeout: float = COPY_TIMEOUT_SECONDS,
    stop_when: Callable[[], str | None] | None = None,
    check_seconds: float = 2.0,
) -> None:
    """Copy into `user`'s mailbox what the old server holds and it lacks. Raises CopyFailed, with
    `stop_when`'s reason if it gave one (doveadm is then stopped; what it saved stays)."""
    deadline = time.monotonic() + timeout
    with _settings_file(work_dir, config_file, server, password, ca_file) as settings:
        # A session of its own: stopping the copy stops every process doveadm started.
        process = subprocess.Popen(
            [DOVEADM, "-c", str(settings), "sync", "-1", "-R", "-u", user, "imapc:"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            while True:
                try:
                    output, _ = process.communicate(timeout=check_seconds)
                    break
                except subprocess.TimeoutExpired:
                    reason = stop_when() if stop_when is not None else None
                    if reason is None and time.monotonic() >= deadline:
                        reason = f"The copy from {server.host} took longer than {timeout / 3600:.0f} hours."
                    if reason is not None:
                        raise CopyFailed(reason) from None
        finally:
            if process.poll() is None:
                _stop(process)
    if process.returncode != 0:
        raise CopyFailed(explain(output or "", server))
    reason = stop_when() if stop_when is not None else None
    if reason is not None:
        raise CopyFailed(reason)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM lets dsync finish the message it is saving; a copy stuck past that is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def remove_leftover_settings(work_dir: Path) -> int:
    """Settings files (each holds an old password) a killed copy left behind; how many."""
    removed = 0
    for path in work_dir.glob("imapc-*.conf") if work_dir.is_dir() else []:
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def old_totals(
    config_file: Path,
    user: str,
    server: OldServer,
    password: str,
    *,
    work_dir: Path,
    ca_file: Path = SYSTEM_CA_FILE,
) -> Totals:
    """What the old server holds for this login, in every folder. Raises CopyFailed."""
    with _settings_file(work_dir, config_file, server, password, ca_file) as settings:
        # The user's mail location replaced by the old server's, without the quota plugins
        # (which would count the old mailbox as this one's).
        result = run_tool(
            [DOVEADM, "-c", str(settings), "-o", "mail_location=imapc:", "-o", "mail_plugins=",
             "-f", "tab", "mailbox", "status", "-u", user, "messages vsize", "*"],
            timeout=600,
        )  # fmt: skip
    if result.returncode != 0:
        raise CopyFailed(explain(output_of(result), server))
    return _totals(result.stdout)


def local_totals(config_file: Path, user: str) -> Totals:
    """What `user`'s mailbox here holds, in every folder."""
    result = run_tool(
        [DOVEADM, "-c", str(config_file), "-f", "tab", "mailbox", "status", "-u", user, "messages vsize", "*"]
    )
    if result.returncode != 0:
        raise DaemonError(f"doveadm could not count {user}'s mail: {output_of(result) or 'no message'}")
    return _totals(result.stdout)


def _totals(tab_output: str) -> Totals:
    messages = size = 0
    for line in tab_output.splitlines()[1:]:  # after the header: mailbox, messages, vsize
        fields = line.rsplit("\t", 2)
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            messages += int(fields[1])
            size += int(fields[2])
    return Totals(messages, size)


# What doveadm says, and what it means to an admin (first match wins).
_EXPLANATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"AUTHENTICATIONFAILED|Authentication failed|LOGIN failed", re.I),
     "The old server refused the login or password for {login}."),
    (re.compile(r"dns_lookup\(.*\) failed|Name or service not known|No address associated", re.I),
     "The old server's name {host} was not found in DNS."),
    (re.compile(r"certificate|SSL handshake|ssl_verify|TLS", re.I),
     "The old server {host} did not offer a valid TLS certificate for its name (or spoke no TLS on port {port})."),
    (re.compile(r"Connection refused", re.I),
     "The old server {host} refused the connection on port {port}."),
    (re.compile(r"timed out|Timeout|No route to host|Network is unreachable", re.I),
     "The old server {host} could not be reached on port {port} (no answer)."),
    (re.compile(r"Quota exceeded|Not enough disk quota|over quota|quota", re.I),
     "The mailbox here is full: what fitted was copied. Raise its storage and run the migration again."),
    (re.compile(r"No space left on device", re.I),
     "The server here ran out of disk space: what fitted was copied."),
)  # fmt: skip


def explain(output: str, server: OldServer) -> str:
    """doveadm's output in words; never the password (doveadm does not print it, and the
    settings file holding it is not quoted)."""
    for pattern, words in _EXPLANATIONS:
        if pattern.search(output):
            return words.format(host=server.host, port=server.port, login=server.login)
    last_error = next(
        (line for line in reversed(output.splitlines()) if "Error:" in line and "backtrace" not in line), ""
    )
    detail = last_error.split("Error:", 1)[-1].strip()[:200]
    return f"The copy from {server.host} stopped: {detail or 'doveadm gave no reason'}."


def _quoted(value: str) -> str:
    """A Dovecot settings value taken literally (no `<file`, no `$variable`)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise CopyFailed("A login or password cannot contain a line break.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def _settings_file(
    work_dir: Path, config_file: Path, server: OldServer, password: str, ca_file: Path
) -> Iterator[Path]:
    if server.security not in SECURITY_MODES:
        raise CopyFailed(f"Unknown connection security {server.security!r}: use imaps or starttls.")
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work_dir.chmod(0o700)
    path = work_dir / f"imapc-{secrets.token_hex(8)}.conf"
    text = (
        f"!include {config_file}\n"
        f"imapc_host = {_quoted(server.host)}\n"
        f"imapc_port = {int(server.port)}\n"
        f"imapc_ssl = {server.security}\n"
        "imapc_ssl_verify = yes\n"
        # imapc_user expands %variables (imapc_password does not): a literal % is written %%.
        f"imapc_user = {_quoted(server.login.replace('%', '%%'))}\n"
        f"imapc_password = {_quoted(password)}\n"
        f"imapc_features = {IMAPC_FEATURES}\n"
        # A dead server fails in about a minute, not after Dovecot's default retries.
        "imapc_connection_retry_count = 1\n"
        "imapc_cmd_timeout = 5 mins\n"
        f"ssl_client_ca_file = {_quoted(str(ca_file))}\n"
        "mail_prefetch_count = 20\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as settings:
            settings.write(text)
        yield path
    finally:
        path.unlink(missing_ok=True)
