"""The private rspamd instance: Postfix's milter, which scores mail and signs it with DKIM.

Debian's /etc/rspamd/rspamd.conf is read with Letterhead's rendered files as its local
configuration (`LOCAL_CONFDIR`, the live generation's `rspamd/`), and with its database, run
folder and compiled expressions in the state directory. The main process runs as root in the
foreground of a detached process whose output goes to the log folder; its workers run as
`_rspamd`. A reload (SIGHUP) starts new workers on the new configuration while the old ones
finish their messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from controlplane.daemons.process import (
    DaemonError,
    listening_ports,
    output_of,
    read_pid,
    run_tool,
    terminate,
    wait_until,
)
from controlplane.settings import Settings

RSPAMD = "/usr/bin/rspamd"
RSPAMADM = "/usr/bin/rspamadm"
RSPAMC = "/usr/bin/rspamc"
MAIN_CONFIG = "/etc/rspamd/rspamd.conf"
RSPAMD_USER = "_rspamd"
LOG_FILE = "rspamd.log"


def expression_cache(settings: Settings) -> Path:
    return (
        Path(settings.spam_expression_cache) if settings.spam_expression_cache else settings.rspamd_dir / "db"
    )


def _variables(settings: Settings, local_config: Path) -> list[str]:
    return [
        f"--var=LOCAL_CONFDIR={local_config}",
        f"--var=DBDIR={settings.rspamd_dir / 'db'}",
        f"--var=RUNDIR={settings.rspamd_dir / 'run'}",
        f"--var=LOGDIR={settings.log_dir}",
    ]


def prepare(settings: Settings) -> None:
    """Its folders: database, run folder and expression cache its own; the DKIM keys' folder
    traversable by it only."""
    try:
        for folder in (settings.rspamd_dir / "db", settings.rspamd_dir / "run", expression_cache(settings)):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, RSPAMD_USER, RSPAMD_USER)
            os.chmod(folder, 0o750)
        os.chmod(settings.rspamd_dir, 0o755)
        settings.dkim_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(settings.dkim_dir, "root", RSPAMD_USER)
        os.chmod(settings.dkim_dir, 0o750)
    except LookupError as error:
        raise DaemonError(f"The user {RSPAMD_USER!r} does not exist: install rspamd.") from error


def check_config(settings: Settings, local_config: Path) -> None:
    """`rspamadm configtest` loads the whole configuration, Lua rules included."""
    result = run_tool([RSPAMADM, *_variables(settings, local_config), "configtest", "-c", MAIN_CONFIG])
    if result.returncode != 0 or "syntax OK" not in result.stdout:
        raise DaemonError(f"rspamd refused the configuration:\n{output_of(result) or 'configtest failed'}")


def pid_file(settings: Settings) -> Path:
    # Ours: rspamd writes no PID file in the foreground.
    return settings.rspamd_dir / "rspamd.pid"


def master_pid(settings: Settings) -> int | None:
    return read_pid(pid_file(settings))


def ready(settings: Settings) -> bool:
    """Its main process holds the milter and controller ports (its workers accept on them)."""
    pid = master_pid(settings)
    wanted = {settings.ports["rspamd_milter"], settings.ports["rspamd_controller"]}
    return pid is not None and wanted <= listening_ports(pid)


def foreground_command(settings: Settings, local_config: Path) -> list[str]:
    return [
        RSPAMD,
        "-f",
        "-c",
        MAIN_CONFIG,
        *_variables(settings, local_config),
        *("-u", RSPAMD_USER, "-g", RSPAMD_USER),
    ]


def start(settings: Settings, local_config: Path) -> None:
    if master_pid(settings):
        return
    prepare(settings)
    command = foreground_command(settings, local_config)
    with open(settings.log_dir / LOG_FILE, "ab") as output:
        os.chmod(output.fileno(), 0o640)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            raise DaemonError(f"{RSPAMD} is not installed: run `make install-system`.") from error
    pid_file(settings).write_text(f"{process.pid}\n")
    if not wait_until(lambda: ready(settings) or process.poll() is not None, timeout=60) or not ready(
        settings
    ):
        raise DaemonError(f"rspamd did not start; see {settings.log_dir / LOG_FILE}.")


def reload(settings: Settings) -> None:
    pid = master_pid(settings)
    if pid is None:
        raise DaemonError("rspamd did not reload: it is not running.")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise DaemonError(f"rspamd did not reload: its main process (pid {pid}) is gone.") from None


def stop(settings: Settings) -> None:
    pid = master_pid(settings)
    if pid:
        terminate(pid, timeout=15)
