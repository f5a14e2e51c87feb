"""The private nginx instance, addressed by its config file (`-c`)."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool
from controlplane.render import NGINX_USER
from controlplane.settings import Settings

NGINX = "/usr/sbin/nginx"
TEMP_FOLDERS = ("client-body", "proxy", "fastcgi", "uwsgi", "scgi")


def prepare(settings: Settings) -> None:
    """The temp folders its workers write and the webroot they serve ACME challenges from."""
    temp = settings.run_dir / "nginx"
    for folder in (temp, *(temp / name for name in TEMP_FOLDERS)):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, NGINX_USER)
    challenges = settings.acme_webroot / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True, exist_ok=True)
    for folder in (settings.acme_dir, settings.acme_webroot, challenges.parent, challenges):
        folder.chmod(0o755)


def _options(config_file: Path) -> list[str]:
    # Before it reads the config nginx logs to its compiled-in /var/log path: use stderr.
    return ["-c", str(config_file), "-p", str(config_file.parent), "-e", "stderr"]


def foreground_command(config_file: Path) -> list[str]:
    """nginx in the foreground, as a service manager runs it."""
    return [NGINX, "-g", "daemon off;", *_options(config_file)]


def check_config(config_file: Path) -> None:
    """`nginx -t` fails on what is wrong. It never loads the certificates, which the map names
    in a variable: daemons/sni.publish_served_tls loads each published file instead."""
    result = run_tool([NGINX, "-t", "-q", *_options(config_file)])
    if result.returncode != 0:
        raise DaemonError(f"nginx refused the configuration:\n{output_of(result) or 'nginx -t failed'}")


def master_pid(settings: Settings) -> int | None:
    return read_pid(settings.run_dir / "nginx.pid")


def start(config_file: Path) -> None:
    result = run_tool([NGINX, *_options(config_file)], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"nginx did not start: {output_of(result) or 'no message'}")


def stop(config_file: Path) -> None:
    result = run_tool([NGINX, "-s", "quit", *_options(config_file)])
    if result.returncode != 0 and "No such process" not in output_of(result):
        raise DaemonError(f"nginx did not stop: {output_of(result)}")


def reload(config_file: Path) -> None:
    """SIGHUP to the master, which is all `nginx -s reload` sends; but it first parses the whole
    configuration again (it loaded every brand's certificate when each had a server block: 6.6 s
    at 5,000 brands, bench/brands.py), and the caller has just checked it with `nginx -t`."""
    match = re.search(r"^pid (\S+);$", config_file.read_text(), re.MULTILINE)
    pid = read_pid(Path(match.group(1))) if match else None
    if pid is None:
        result = run_tool([NGINX, "-s", "reload", *_options(config_file)], starts_daemon=True)
        if result.returncode != 0:
            raise DaemonError(f"nginx did not reload: {output_of(result) or 'no message'}")
        return
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise DaemonError(f"nginx did not reload: its master (pid {pid}) is gone.") from None
