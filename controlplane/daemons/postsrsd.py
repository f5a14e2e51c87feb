"""postsrsd (Debian's package): the Sender Rewriting Scheme for mail Letterhead forwards.

A message from outside forwarded to another outside address keeps an envelope sender whose
domain never allowed this server in its SPF; rewritten as SRS0=hash=time=domain=local@<our
hostname>, it passes the receiver's SPF, and a bounce to that address is turned back into the
original sender (the reverse table). Postfix asks postsrsd over two loopback TCP lookup tables;
which mail is rewritten is Postfix's choice (templates/postfix: only forwarded mail from
senders outside the hosted domains).

postsrsd has no configuration file: its command line is its configuration, and the secret that
signs the addresses lives in the state folder (made once, readable by root only; postsrsd reads
it before it drops to `nobody`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess

from controlplane.daemons.process import DaemonError, read_pid, terminate, wait_until
from controlplane.settings import Settings

POSTSRSD = "/usr/sbin/postsrsd"
LOG_FILE = "postsrsd.log"


def secret_file(settings: Settings):
    return settings.srs_dir / "secret"


def prepare(settings: Settings) -> None:
    settings.srs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.srs_dir, 0o700)
    secret = secret_file(settings)
    if not secret.exists():
        descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as output:
            output.write(secrets.token_urlsafe(32) + "\n")


def pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / "postsrsd.pid")


def _answers(port: int) -> bool:
    """A lookup that must come back 500 (not an SRS address) or 200: the table answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as client:
            client.sendall(b"get letterhead-probe@invalid\n")
            return client.recv(512)[:1] in (b"2", b"5")
    except OSError:
        return False


def ready(settings: Settings) -> bool:
    ports = settings.ports
    return _answers(ports["srs_forward"]) and _answers(ports["srs_reverse"])


def _command(settings: Settings, hostname: str) -> list[str]:
    ports = settings.ports
    return [
        POSTSRSD,
        "-s", str(secret_file(settings)),
        "-d", hostname,
        "-l", "127.0.0.1",
        "-4",
        "-f", str(ports["srs_forward"]),
        "-r", str(ports["srs_reverse"]),
        "-p", str(settings.run_dir / "postsrsd.pid"),
        "-u", "nobody",
    ]  # fmt: skip


def foreground_command(settings: Settings, hostname: str) -> list[str]:
    return _command(settings, hostname)


def _command_file(settings: Settings):
    return settings.run_dir / "postsrsd.command"


def start(settings: Settings, hostname: str) -> None:
    """Start postsrsd, or restart it if it runs with another command line (a new hostname: its
    SRS addresses must name the host Postfix now answers for, or bounces would loop or be lost)."""
    command = _command(settings, hostname)
    if pid(settings):
        if _command_file(settings).exists() and _command_file(settings).read_text() == "\0".join(command):
            return
        stop(settings)
    prepare(settings)
    with open(settings.log_dir / LOG_FILE, "ab") as output:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            raise DaemonError(f"{POSTSRSD} is not installed: run `make install-system`.") from error
    if not wait_until(lambda: ready(settings) or process.poll() is not None, timeout=10) or not ready(
        settings
    ):
        raise DaemonError(f"postsrsd did not start; see {settings.log_dir / LOG_FILE}.")
    _command_file(settings).write_text("\0".join(command))


def stop(settings: Settings) -> None:
    running = pid(settings)
    if running:
        terminate(running)
        # Its ports must be free before a new one binds them.
        wait_until(lambda: pid(settings) is None and not ready(settings), timeout=10)
