"""A private PostgreSQL cluster in a folder of its own, on a loopback port.

Production runs Debian's `postgresql` service (or a managed server) and only hands Letterhead
a `database_url`. The test suite, the benchmarks and a development stack on PostgreSQL start
one of these instead: `initdb` into a fresh folder, `pg_ctl` to start and stop it, password
(SCRAM) logins on 127.0.0.1 only, and the unix socket in the folder itself, so two clusters on
one machine never meet. PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import make_url

from controlplane.daemons.process import DaemonError, output_of, run_tool

BIN = Path("/usr/lib/postgresql/15/bin")
SYSTEM_USER = "postgres"
SUPERUSER = "letterhead_superuser"


def _as_cluster_owner(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SYSTEM_USER, "--", *command]
    return command


@dataclass
class PrivatePostgres:
    """A throwaway cluster: `start()`, use `url(database)`, `stop()` removes everything.

    `durable=False` (tests, benchmarks of the code rather than the disk) turns off fsync:
    a crash of the machine would lose the cluster, which is thrown away anyway.
    """

    port: int
    root: Path | None = None
    durable: bool = False
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _owns_root: bool = False

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "run"

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql+psycopg://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if self.root is None:
            # Not under pytest's tmp folders: those are root's alone, and `postgres` must reach it.
            self.root = Path(tempfile.mkdtemp(prefix="lh-pg-"))
            self._owns_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        password_file = self.root / "superuser-password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            for path in (self.root, self.socket_dir, password_file):
                shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
        os.chmod(self.root, 0o755)
        os.chmod(password_file, 0o600)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(password_file)
        password_file.unlink()
        result = run_tool(
            _as_cluster_owner(
                [
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.root / "postgresql.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            starts_daemon=True,
            timeout=90,
        )
        if result.returncode != 0:
            raise DaemonError(f"PostgreSQL did not start: {output_of(result)}\n{self.log_tail()}")

    def _initdb(self, password_file: Path) -> None:
        result = run_tool(
            _as_cluster_owner(
                [
                    str(BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={password_file}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    *([] if self.durable else ["--no-sync"]),
                ]
            ),
            timeout=120,
        )
        if result.returncode != 0:
            raise DaemonError(f"initdb failed: {output_of(result)}")
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 300",
            "shared_buffers = 128MB",
            "log_line_prefix = '%m [%p] %u@%d '",
        ]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Letterhead's private cluster\n" + "\n".join(settings) + "\n")

    def log_tail(self, lines: int = 20) -> str:
        assert self.root is not None
        log = self.root / "postgresql.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, remove: bool = True) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            run_tool(
                _as_cluster_owner(
                    [str(BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]
                ),
                timeout=60,
            )
        if remove and self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait_until_accepting(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise DaemonError(f"PostgreSQL on port {self.port} does not answer.\n{self.log_tail()}")


def _client_tool(name: str) -> str:
    """Debian's wrapper on PATH picks the client matching the server; the cluster's own otherwise."""
    return shutil.which(name) or str(BIN / name)


def _client_environment(url: str) -> dict[str, str]:
    """libpq's variables for `url`: the password never on a command line (the process list)."""
    parsed = make_url(url)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for variable, value in (
        ("PGHOST", parsed.host or parsed.query.get("host")),
        ("PGPORT", parsed.port),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value:
            environment[variable] = str(value)
    return environment


def dump_database(
    url: str, destination: Path, *, snapshot: str = "", exclude_data: tuple[str, ...] = ()
) -> None:
    """pg_dump's custom format of the whole database, as of `snapshot` (pg_export_snapshot()) if
    given; tables in `exclude_data` keep their definition only."""
    command = [
        _client_tool("pg_dump"),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        "--file",
        str(destination),
    ]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    command += [f"--exclude-table-data={table}" for table in exclude_data]
    result = run_tool(command, timeout=3600, env=_client_environment(url))
    if result.returncode != 0:
        raise DaemonError(f"pg_dump failed: {output_of(result) or 'no message'}")


def restore_dump(url: str, source: Path) -> None:
    """Load a dump made by dump_database into the empty database at `url`, in one transaction."""
    command = [
        _client_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
        "--dbname", make_url(url).database or "", str(source),
    ]  # fmt: skip
    result = run_tool(command, timeout=3600, env=_client_environment(url))
    if result.returncode != 0:
        raise DaemonError(f"pg_restore failed: {output_of(result) or 'no message'}")
