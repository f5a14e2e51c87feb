"""Running the daemons' own tools and reading their PID files."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


class DaemonError(RuntimeError):
    """A daemon tool failed; the message carries its own output for the operator."""


def run_tool(
    command: Sequence[str],
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    starts_daemon: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output.

    A command that leaves a daemon behind (`postfix start`) must not get pipes: the
    daemon inherits them and we would wait for its exit. Its output goes to a file.
    """
    try:
        if not starts_daemon:
            return subprocess.run(
                list(command), capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        with tempfile.TemporaryFile(mode="w+") as output:
            result = subprocess.run(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
            output.seek(0)
            return subprocess.CompletedProcess(result.args, result.returncode, output.read(), "")
    except FileNotFoundError as error:
        raise DaemonError(
            f"{command[0]} is not installed: run `make install-system` (or apt-get install it)."
        ) from error
    except subprocess.TimeoutExpired as error:
        raise DaemonError(f"{' '.join(command)} did not finish within {timeout:.0f} s.") from error


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())


def read_pid(pid_file: Path) -> int | None:
    """The PID in `pid_file` if that process is alive (a zombie counts as stopped)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if state in ("Z", "X") else pid


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` itself listens on (any address).

    Connecting to a port is not enough to know a daemon is up: another program may be the
    one listening there."""
    inode_ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
            if fields[3] == "0A":
                inode_ports[f"socket:[{fields[9]}]"] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return ports
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target in inode_ports:
            ports.add(inode_ports[target])
    return ports


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def wait_for_exit(pid: int, timeout: float = 10) -> bool:
    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state in ("Z", "X")

    return wait_until(gone, timeout=timeout)


def terminate(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    if not wait_for_exit(pid, timeout):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            return
        wait_for_exit(pid, 5)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
