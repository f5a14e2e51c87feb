"""The private Redis instance: rspamd's statistics, greylisting and rate counters, and the spam
policies Letterhead publishes for rspamd (daemons/spam_policy.py).

It runs as user `redis` in the foreground of a detached process whose output goes to the log
folder (which only root writes). Redis has no configuration checker: a rendered configuration
is checked by starting a scratch instance with it, on a unix socket in a temporary folder, and
asking it for PING.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool, terminate, wait_until
from controlplane.settings import Settings

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_USER = "redis"
CONFIG_FILE = "redis.conf"
LOG_FILE = "redis.log"


def prepare(settings: Settings) -> None:
    """Its data folder, where it writes its snapshot and PID file: Redis's own."""
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    _give_to_redis(settings.redis_dir)


def _give_to_redis(folder: Path) -> None:
    try:
        shutil.chown(folder, REDIS_USER, REDIS_USER)
    except LookupError as error:
        raise DaemonError(f"The user {REDIS_USER!r} does not exist: install redis-server.") from error
    os.chmod(folder, 0o700)


def _spawn(arguments: list[str], output: int, *, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            [REDIS_SERVER, *arguments],
            stdin=stdin,
            stdout=output,
            stderr=subprocess.STDOUT,
            user=REDIS_USER,
            group=REDIS_USER,
            extra_groups=[],
            start_new_session=True,
        )
    except FileNotFoundError as error:
        raise DaemonError(f"{REDIS_SERVER} is not installed: run `make install-system`.") from error


def ping(*, port: int | None = None, unix_socket: Path | None = None) -> bool:
    try:
        if unix_socket is not None:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(1)
            client.connect(str(unix_socket))
        else:
            client = socket.create_connection(("127.0.0.1", port), timeout=1)
        with client:
            client.sendall(b"PING\r\n")
            return client.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def check_config(config_file: Path) -> None:
    """Start a scratch Redis with this configuration (on a unix socket of its own) and PING it."""
    with tempfile.TemporaryDirectory(prefix="lh-redis-check-") as scratch:
        folder = Path(scratch)
        _give_to_redis(folder)
        sock = folder / "redis.sock"
        with tempfile.TemporaryFile() as output:
            # Read by root and handed over on stdin: user redis may not read the file where it is.
            process = _spawn(
                [
                    "-",
                    # Everything that would touch the real instance's port, files or data.
                    *("--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"),
                    *("--dir", scratch, "--pidfile", str(folder / "redis.pid"), "--save", ""),
                    *("--logfile", ""),
                ],
                output.fileno(),
                stdin=subprocess.PIPE,
            )
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(config_file.read_bytes())
                process.stdin.close()
            try:
                answered = wait_until(
                    lambda: ping(unix_socket=sock) or process.poll() is not None, timeout=10
                )
                if not answered or not ping(unix_socket=sock):
                    output.seek(0)
                    said = output.read().decode(errors="replace").strip()
                    raise DaemonError(f"Redis refused the configuration:\n{said or 'it did not answer PING'}")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=10)


def pid(settings: Settings) -> int | None:
    return read_pid(settings.redis_dir / "redis.pid")


def start(settings: Settings, config_file: Path) -> None:
    if pid(settings):
        return
    prepare(settings)
    with open(settings.log_dir / LOG_FILE, "ab") as output:
        os.chmod(output.fileno(), 0o640)
        process = _spawn([str(config_file)], output.fileno())
    port = settings.ports["redis"]
    if not wait_until(lambda: ping(port=port) or process.poll() is not None, timeout=15) or not ping(
        port=port
    ):
        raise DaemonError(f"Redis did not start; see {settings.log_dir / LOG_FILE}.")


def stop(settings: Settings) -> None:
    """SIGTERM: Redis writes its snapshot, then exits."""
    running = pid(settings)
    if running:
        terminate(running, timeout=30)


def restart(settings: Settings, config_file: Path) -> None:
    """Redis reads its configuration only at start; rspamd reconnects by itself. Under systemd
    its unit restarts it: one started here would sit outside the unit, which would then fail
    on the taken port."""
    if settings.service_manager == "systemd":
        result = run_tool(["/usr/bin/systemctl", "restart", "letterhead-redis.service"], timeout=60)
        if result.returncode != 0:
            raise DaemonError(f"Redis did not restart: {output_of(result) or 'systemctl failed'}")
        return
    stop(settings)
    start(settings, config_file)
