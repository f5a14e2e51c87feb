"""A production install on Debian 12: `letterhead install` and `letterhead uninstall`.

It writes the state directory's settings (the production profile: standard ports on every
address), the schema, systemd units that run every part under `letterhead.target`
(render/systemd.py), and the `letterhead` command on PATH; it turns Debian's own Postfix,
Dovecot, nginx, HAProxy, Redis, rspamd and postsrsd services off (Letterhead runs its own instances
of them) and, if asked, creates the first tenant and its full admin. Running it again changes
only what differs and never makes a second tenant or a new password.

`root` other than "/" installs into a throwaway tree: files go under it and systemctl works on
the tree's links only (`systemctl --root`), so the tests never touch the machine's /etc, its
services or its ports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from controlplane.daemons.layout import prepare_state_directory, protect_database
from controlplane.daemons.process import DaemonError
from controlplane.render.systemd import COMMAND_FILE, UNIT_DIR, UnitPart, checked_path, render_units
from controlplane.runners import stack
from controlplane.runners.parts import wanted_parts
from controlplane.runtime import Installation
from controlplane.services import admins, tenants
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings, load_settings
from controlplane.validation import normalize_hostname
from controlplane.version import __version__

DEFAULT_HOME = Path("/var/lib/letterhead")
SYSTEMCTL = "/usr/bin/systemctl"
# Debian's services for the daemons Letterhead runs itself: they would hold the same ports (Dovecot's
# socket unit too: systemd itself would listen on 143 and 993 at boot). Masked, so that no package
# upgrade starts them again; `letterhead uninstall` unmasks them.
SYSTEM_DAEMONS = ("postfix.service", "dovecot.service", "dovecot.socket", "nginx.service", "haproxy.service",
                  "redis-server.service", "rspamd.service", "postsrsd.service")  # fmt: skip
# The release that last installed the units: another one restarts the running parts.
INSTALLED_VERSION_FILE = "installed-version"
_RENDERED_MARK = "Rendered by Letterhead"


@dataclasses.dataclass
class InstallReport:
    home: Path
    written: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    # Shown once: only when this run created the admin.
    admin_password: str | None = None


def inside(root: Path, path: Path) -> Path:
    """`path` as seen from the machine, placed under `root`."""
    return root / path.relative_to("/") if root != Path("/") else path


def install(
    *,
    hostname: str,
    home: Path = DEFAULT_HOME,
    root: Path = Path("/"),
    tenant_name: str | None = None,
    admin_login: str | None = None,
    storage_pool_bytes: int = 100 * 1024**3,
) -> InstallReport:
    hostname = normalize_hostname(hostname)
    if not home.is_absolute():
        raise DaemonError(f"The state directory must be an absolute path, not {home}.")
    if (tenant_name is None) != (admin_login is None):
        raise DaemonError("Name both the first tenant and its full admin's login, or neither.")
    state = inside(root, home)
    report = InstallReport(home=home)
    # Checked before anything is written: these paths go into unit files and a shell script.
    try:
        checked_path(home)
        checked_path(sys.executable)
    except ValueError as error:
        raise DaemonError(
            f"{error}: choose a state directory (and a Python) without spaces or quotes."
        ) from None
    state.mkdir(parents=True, exist_ok=True)
    _write_if_changed(
        state / "letterhead.toml", _settings_text(state, hostname), 0o600, report, "letterhead.toml"
    )
    settings = load_settings(environ={}, home=state)
    parts = [UnitPart(part.name, part.description) for part in wanted_parts(settings)]
    files = render_units(
        hostname=hostname,
        home=home,
        python=sys.executable,
        parts=parts,
        database_service="postgresql.service" if settings.is_postgresql else "",
    )
    _remove_stale_units(root, set(files), report)
    for relative, text in files.items():
        mode = 0o755 if relative == COMMAND_FILE else 0o644
        _write_if_changed(root / relative, text, mode, report, "/" + relative)
    if root == Path("/"):
        _ensure_vmail_user(settings, report)
    # The folders, the schema (its file closed to all but root and the daemons' readers) and the
    # first tenant, all before systemd starts anything that would race for them.
    prepare_state_directory(settings)
    installation = Installation(settings)
    try:
        # A running Dovecot reloads at once after a migration; the units restart below too.
        migrated = stack.upgrade_schema(installation)
    finally:
        installation.dispose()
    if not settings.is_postgresql:
        protect_database(settings)
    if tenant_name and admin_login:
        _first_tenant(settings, tenant_name, admin_login, storage_pool_bytes, report)
    # Units rewritten or a new release: what runs must be restarted to run it (an upgrade).
    units_changed = any(label.startswith(("/etc/", "removed /etc/")) for label in report.written)
    version_file = state / INSTALLED_VERSION_FILE
    release_changed = not version_file.is_file() or version_file.read_text().strip() != __version__
    # A migration too: Dovecot's SQLite driver fails a query after a schema change (stack.upgrade_schema).
    _enable(root, report, restart=units_changed or release_changed or migrated)
    _write_if_changed(version_file, __version__ + "\n", 0o644, report, INSTALLED_VERSION_FILE)
    return report


def uninstall(*, home: Path = DEFAULT_HOME, root: Path = Path("/"), purge: bool = False) -> InstallReport:
    """Remove the units and the command; the state directory (mail, database, certificates) stays
    unless `purge`."""
    report = InstallReport(home=home)
    if root == Path("/") and _systemd_runs():
        _systemctl(root, ["disable", "--now", "letterhead.target"], report)
    elif (root / UNIT_DIR / "letterhead.target").exists():
        _systemctl(root, ["disable", "letterhead.target"], report)
    for path in _rendered_units(root):
        path.unlink()
        report.written.append(f"removed /{path.relative_to(root)}")
    for unit in SYSTEM_DAEMONS:
        # Debian's services may be used again; whether they start is the operator's choice.
        _systemctl(root, ["unmask", unit], report, quiet=True)
    command = root / COMMAND_FILE
    if command.is_file() and _RENDERED_MARK in command.read_text(errors="replace"):
        command.unlink()
        report.written.append(f"removed /{COMMAND_FILE}")
    if root == Path("/") and _systemd_runs():
        _systemctl(root, ["daemon-reload"], report)
    state = inside(root, home)
    if purge and state.is_dir():
        # Only a state directory (its settings file says so), never /, /var or a home folder.
        if len(home.parts) < 3 or not (state / "letterhead.toml").is_file():
            raise DaemonError(f"{home} is not a Letterhead state directory: nothing was deleted.")
        settings = load_settings(environ={}, home=state)
        if root == Path("/") and settings.service_manager != "systemd":
            stack.down(settings)  # it was started by `letterhead up`
        shutil.rmtree(state)
        report.written.append(f"removed {home}")
    elif state.is_dir():
        report.notes.append(f"The data stays in {home} (mail, database, certificates): --purge removes it.")
    return report


# --- settings ------------------------------------------------------------------------------------


def _settings_text(state: Path, hostname: str) -> str:
    """The settings file with the production profile and this hostname; whatever else the
    operator set in it stays."""
    path = state / "letterhead.toml"
    existing = path.read_text() if path.exists() else ""
    values: dict[str, Any] = tomllib.loads(existing)
    wanted = {"profile": "production", "hostname": hostname, "service_manager": "systemd"}
    if all(values.get(key) == value for key, value in wanted.items()) and values.get("metrics_token"):
        return existing  # as the operator left it, comments and all
    # systemd starts and restarts the parts: `up`, `down` and Redis's restart defer to it.
    values.update(wanted)
    # What Prometheus sends to read /metrics: made once, read by the operator from this root-only file.
    values.setdefault("metrics_token", secrets.token_urlsafe(32))
    return _toml(values)


def _toml(values: dict[str, Any]) -> str:
    lines, tables = (
        ["# Letterhead settings (letterhead install; edit freely, re-running keeps your keys)"],
        [],
    )
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]", *(f"{name} = {_toml_value(value)}" for name, value in table.items())]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


# --- files and services --------------------------------------------------------------------------


def _write_if_changed(path: Path, text: str, mode: int, report: InstallReport, label: str) -> None:
    if path.is_file() and path.read_text() == text:
        os.chmod(path, mode)
        report.unchanged.append(label)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    # Created with its final mode: the settings file names the database password.
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    temporary.replace(path)
    report.written.append(label)


def _rendered_units(root: Path) -> list[Path]:
    unit_dir = root / UNIT_DIR
    if not unit_dir.is_dir():
        return []
    return sorted(
        path
        for path in unit_dir.glob("letterhead*")
        if path.is_file() and _RENDERED_MARK in path.read_text(errors="replace")
    )


def _remove_stale_units(root: Path, wanted: set[str], report: InstallReport) -> None:
    """A part this installation no longer runs (a node made a single machine again) loses its unit."""
    for path in _rendered_units(root):
        relative = str(path.relative_to(root))
        if relative not in wanted:
            path.unlink()
            report.written.append(f"removed /{relative}")


def _ensure_vmail_user(settings: Settings, report: InstallReport) -> None:
    """The account that owns every mailbox (no Debian package makes one)."""
    try:
        pwd.getpwnam(settings.vmail_user)
        return
    except KeyError:
        pass
    account = ["-r", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", settings.vmail_user]
    # uid 5000 as `make install-system` gives it, or any if another account holds that one.
    if subprocess.run(["useradd", "-u", "5000", *account], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", *account], capture_output=True, check=True)
    report.written.append(f"user {settings.vmail_user}")


def _systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()


def _systemctl(root: Path, arguments: list[str], report: InstallReport, *, quiet: bool = False) -> bool:
    command = [SYSTEMCTL, *([f"--root={root}"] if root != Path("/") else []), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0 and not quiet:
        said = (result.stderr or result.stdout).strip().splitlines()
        report.notes.append(f"`systemctl {' '.join(arguments)}`: {said[-1] if said else 'failed'}")
    return result.returncode == 0


def _enable(root: Path, report: InstallReport, *, restart: bool = False) -> None:
    live = root == Path("/") and _systemd_runs()
    if live:
        _systemctl(root, ["daemon-reload"], report)
    # Debian's own instances would hold ports 25, 143, 443...: off, and not at the next boot.
    for unit in SYSTEM_DAEMONS:
        if _systemctl(root, ["is-enabled", unit], report, quiet=True) or live:
            _systemctl(root, ["disable", *(["--now"] if live else []), unit], report, quiet=True)
        _systemctl(root, ["mask", unit], report, quiet=True)
    if live:
        if restart:
            # Parts already running restart on the new units or code (PartOf= carries the
            # target's restart to each); when nothing runs yet this does nothing.
            _systemctl(root, ["try-restart", "letterhead.target"], report)
            report.notes.append("Running parts restarted on the new units or release.")
        _systemctl(root, ["enable", "--now", "letterhead.target"], report)
        return
    _systemctl(root, ["enable", "letterhead.target"], report)
    if root == Path("/"):
        report.notes.append("systemd is not running here: start the installation with `letterhead up`.")


# --- the first tenant ----------------------------------------------------------------------------


def _first_tenant(
    settings: Settings, tenant_name: str, admin_login: str, storage_pool_bytes: int, report: InstallReport
) -> None:
    installation = Installation(settings)
    try:
        with installation.transaction() as session:
            tenant = tenants.find_tenant(session, tenant_name)
            if tenant is None:
                tenant = tenants.create_tenant(
                    session, OPERATOR, name=tenant_name, storage_pool_bytes=storage_pool_bytes
                )
                report.written.append(f"tenant {tenant.name}")
            existing = admins.find_admin(session, admin_login)
            if existing is not None:
                if existing.tenant_id != tenant.id:
                    raise DaemonError(f"The login {admin_login!r} belongs to another tenant.")
                report.unchanged.append(f"full admin {existing.login}")
                return
            password = secrets.token_urlsafe(15)
            admin = admins.create_admin(
                session, OPERATOR, tenant=tenant, login=admin_login, password=password
            )
            report.written.append(f"full admin {admin.login}")
            report.admin_password = password
    finally:
        installation.dispose()
