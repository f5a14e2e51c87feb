"""`letterhead install` and `uninstall` into a throwaway tree (--root), as an operator runs them:
units systemd's own checker accepts, started in the order `up` uses and restarted when they die,
Debian's daemons not wanted, the first admin's password shown once, a second run that changes
nothing, and an uninstall that keeps the mail unless told otherwise."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from controlplane.runners.parts import PARTS
from controlplane.version import __version__

HOME = "/var/lib/letterhead"
UNITS = "etc/systemd/system"


def _letterhead(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *arguments],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _letterhead("install", "--root", str(root), "--hostname", "mail.example.net", *extra)


def _unit(root: Path, name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(root / UNITS / name)
    return parser


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "root"
    result = _install(root, "--tenant", "Acme", "--admin", "boss")
    assert result.returncode == 0, result.stderr
    return root, result.stdout


def test_the_units_pass_systemds_own_checker(installed) -> None:
    root, _ = installed
    # systemd-analyze needs the machine's own units (sysinit.target...) inside the tree.
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = sorted(str(path) for path in (root / UNITS).glob("letterhead*"))
    assert len(units) == 2 + len([part for part in PARTS if part.name != "node-sync"])
    result = subprocess.run(
        ["systemd-analyze", f"--root={root}", "verify", *units], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_every_part_restarts_and_starts_after_the_one_before(installed) -> None:
    root, _ = installed
    names = [part.name for part in PARTS if part.name != "node-sync"]  # a single machine: no node
    wanted = _unit(root, "letterhead.target")["Unit"]["Wants"].split()
    assert wanted == [
        "network-online.target",
        "letterhead-prepare.service",
        *(f"letterhead-{name}.service" for name in names),
    ]
    previous = None
    for name in names:
        unit = _unit(root, f"letterhead-{name}.service")
        assert unit["Service"]["Restart"] == "always"
        assert unit["Service"]["ExecStart"] == f"/usr/local/bin/letterhead service run {name}"
        assert unit["Service"]["ExecStartPost"] == f"/usr/local/bin/letterhead service ready {name}"
        assert unit["Service"]["Environment"] == f"LETTERHEAD_HOME={HOME}"
        after = unit["Unit"]["After"].split()
        assert (
            "letterhead-prepare.service" in after and unit["Unit"]["Requires"] == "letterhead-prepare.service"
        )
        if previous:
            assert f"letterhead-{previous}.service" in after
        previous = name
    # Stopped after every part (which start after it): it clears the start's mark.
    prepare = _unit(root, "letterhead-prepare.service")["Service"]
    assert prepare["ExecStop"] == "/usr/local/bin/letterhead service stopped"
    # Started at boot.
    assert (root / UNITS / "multi-user.target.wants/letterhead.target").is_symlink()


def test_the_state_directory_is_production_and_the_password_is_shown_once(installed) -> None:
    root, output = installed
    settings_file = root / HOME.lstrip("/") / "letterhead.toml"
    assert settings_file.stat().st_mode & 0o777 == 0o600
    values = tomllib.loads(settings_file.read_text())
    assert values["profile"] == "production" and values["hostname"] == "mail.example.net"
    assert values["service_manager"] == "systemd"  # `up`, `down` defer to systemctl
    assert len(values["metrics_token"]) >= 32  # Prometheus's, made once and kept
    metrics_token = values["metrics_token"]
    [line] = [line for line in output.splitlines() if "shown this once" in line]
    password = line.rsplit(" ", 1)[1]
    assert len(password) >= 16
    # The command on PATH runs Letterhead for this installation (here pointed into the tree).
    command = root / "usr/local/bin/letterhead"
    assert os.access(command, os.X_OK)
    listed = subprocess.run(
        [str(command), "tenant", "list"], capture_output=True, text=True, check=False,
        env={**os.environ, "LETTERHEAD_HOME": str(root / HOME.lstrip("/"))},
    )  # fmt: skip
    assert listed.returncode == 0 and "Acme" in listed.stdout, listed.stderr
    # A second run changes nothing, shows no password, and leaves the operator's own settings.
    with settings_file.open("a") as handle:
        handle.write('# our relay\nrelayhost = "[smtp.example.net]:587"\n')
    edited = settings_file.read_text()
    again = _install(root, "--tenant", "Acme", "--admin", "boss")
    assert again.returncode == 0, again.stderr
    assert "shown this once" not in again.stdout and password not in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith("written:")]
    assert settings_file.read_text() == edited
    # A new hostname rewrites the settings, keeping the operator's keys.
    renamed = _letterhead("install", "--root", str(root), "--hostname", "mx.example.net")
    assert [line for line in renamed.stdout.splitlines() if line.startswith("written:")][0] == (
        "written:   letterhead.toml"
    )
    values = tomllib.loads(settings_file.read_text())
    assert values["relayhost"] == "[smtp.example.net]:587" and values["hostname"] == "mx.example.net"
    assert values["metrics_token"] == metrics_token


def test_a_half_named_first_tenant_is_refused_and_nothing_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _install(root, "--tenant", "Acme")
    assert result.returncode == 1 and "Name both the first tenant and its full admin" in result.stderr
    assert not root.exists()


def test_debians_own_daemons_are_masked_and_uninstall_unmasks_them(installed) -> None:
    root, _ = installed
    # Dovecot's socket unit too: systemd would hold 143 and 993 at boot for Debian's Dovecot.
    for unit in ("dovecot.socket", "dovecot.service", "postfix.service", "nginx.service"):
        assert (root / UNITS / unit).resolve() == Path("/dev/null"), unit
    assert _letterhead("uninstall", "--root", str(root)).returncode == 0
    assert not (root / UNITS / "dovecot.socket").exists()


def test_a_new_release_over_an_installation_is_recorded_and_the_same_one_changes_nothing(installed) -> None:
    root, _ = installed
    state = root / HOME.lstrip("/")
    assert (state / "installed-version").read_text().strip() == __version__
    (state / "installed-version").write_text("0.1.0\n")
    upgraded = _install(root)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (state / "installed-version").read_text().strip() == __version__
    again = _install(root)
    assert not [line for line in again.stdout.splitlines() if line.startswith("written:")]


def test_uninstall_keeps_the_data_unless_purged(installed) -> None:
    root, _ = installed
    state = root / HOME.lstrip("/")
    result = _letterhead("uninstall", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert not list((root / UNITS).glob("letterhead*")) and not (root / "usr/local/bin/letterhead").exists()
    assert not (root / UNITS / "multi-user.target.wants/letterhead.target").exists()
    assert (state / "letterhead.toml").is_file() and "--purge" in result.stdout
    assert _letterhead("uninstall", "--root", str(root), "--purge").returncode == 0
    assert not state.exists()


def test_up_starts_every_part_the_units_run() -> None:
    from controlplane.runners import stack

    assert list(stack.STARTERS) == [part.name for part in PARTS]
