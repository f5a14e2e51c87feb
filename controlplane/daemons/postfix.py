"""The private Postfix instance, always addressed by its config directory (`-c`)."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool
from controlplane.render import POSTFIX_SNI_MAP, POSTFIX_SQL_MAPS

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTMAP = "/usr/sbin/postmap"
PROBE_KEY = "letterhead-config-probe@probe.invalid"


def check_config(config_dir: Path) -> None:
    """Refuse a config Postfix would run badly with.

    `postfix check` exits 0 with unknown parameters and bogus map types, so postconf
    must print nothing on stderr, and every SQL map must answer a probe query.
    """
    problems = []
    for flags in (["-n"], ["-M"], ["-P"]):
        result = run_tool([POSTCONF, "-c", str(config_dir), *flags])
        if result.returncode != 0 or result.stderr.strip():
            problems.append(f"postconf {' '.join(flags)}: {output_of(result) or 'failed'}")
    if not problems:
        result = run_tool([POSTFIX, "-c", str(config_dir), "check"])
        if result.returncode != 0:
            problems.append(f"postfix check: {output_of(result) or 'failed with no message'}")
    if not problems:
        for map_name in [*POSTFIX_SQL_MAPS, POSTFIX_SNI_MAP[0]]:
            # A map that names database hosts is PostgreSQL's: the probe logs in as Postfix does.
            map_type = "pgsql" if "\nhosts = " in (config_dir / map_name).read_text() else "sqlite"
            result = run_tool(
                [POSTMAP, "-c", str(config_dir), "-q", PROBE_KEY, f"{map_type}:{config_dir / map_name}"]
            )
            if result.returncode not in (0, 1) or result.stderr.strip():
                problems.append(f"postmap {map_name}: {output_of(result) or 'failed'}")
    if problems:
        raise DaemonError("Postfix refused the configuration:\n" + "\n".join(problems))


def master_pid(queue_directory: Path) -> int | None:
    return read_pid(queue_directory / "pid" / "master.pid")


def start(config_dir: Path) -> None:
    result = run_tool([POSTFIX, "-c", str(config_dir), "start"], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"Postfix did not start: {output_of(result) or 'no message'}")


def stop(config_dir: Path) -> None:
    result = run_tool([POSTFIX, "-c", str(config_dir), "stop"])
    if result.returncode != 0 and "not running" not in output_of(result):
        raise DaemonError(f"Postfix did not stop: {output_of(result)}")


def reload(config_dir: Path) -> None:
    result = run_tool([POSTFIX, "-c", str(config_dir), "reload"], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"Postfix did not reload: {output_of(result) or 'no message'}")


QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def queue_counts(queue_directory: Path) -> dict[str, int]:
    """Messages in each of Postfix's queues, counted as files (root reads them; postqueue would
    print every message to count them)."""
    counts = {}
    for queue in QUEUES:
        count = 0
        for _folder, _folders, files in os.walk(queue_directory / queue):
            count += len(files)
        counts[queue] = count
    return counts
