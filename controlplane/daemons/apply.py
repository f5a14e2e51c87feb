"""Render into a new generation, check it with the daemons' own tools, switch, reload.

A generation that fails a check never becomes live; one whose reload fails is
switched back. Either way the previous generation keeps serving mail and the
refusal is recorded with the daemons' own words.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.certs.selfsigned import ensure_default_certificate
from controlplane.daemons import database_logins, dovecot, haproxy, nginx, postfix, redis, rspamd, sni
from controlplane.daemons.layout import prepare_usage_database, vmail_account
from controlplane.daemons.process import DaemonError
from controlplane.models import ConfigGeneration
from controlplane.render import (
    Paths,
    RenderState,
    SpamFilter,
    TlsIdentity,
    checked_identities,
    digest_files,
    render_all,
    served_certificates,
    served_pem_path,
)
from controlplane.settings import TEMPLATE_ROOT, Settings


def build_render_state(
    settings: Settings,
    sni_identities: tuple[TlsIdentity, ...] = (),
    peer_addresses: tuple[str, ...] = (),
    *,
    default_tls: TlsIdentity | None = None,
) -> RenderState:
    """`default_tls`: the platform host's certificate from the ACME server, once issued; the
    self-signed one (made once) until then."""
    return RenderState(
        hostname=settings.hostname,
        listen_address=settings.listen_address,
        ports=dict(settings.ports),
        paths=Paths.from_settings(settings),
        vmail=vmail_account(settings),
        default_tls=default_tls or ensure_default_certificate(settings.certs_dir, settings.hostname),
        sni_identities=sni_identities,
        relayhost=settings.relayhost,
        testing=settings.testing,
        postmaster_address=settings.postmaster_address,
        auth_penalty=settings.auth_penalty,
        database=database_logins.daemon_database(settings),
        node_name=settings.node_name,
        node_address=settings.reachable_address if settings.node_name else "",
        peer_addresses=peer_addresses,
        spam=SpamFilter(
            expression_cache=settings.spam_expression_cache,
            network_checks=settings.spam_network_checks,
            nameservers=(settings.dns_resolver,) if settings.dns_resolver else (),
            reject_score=settings.spam_reject_score,
            junk_score=settings.spam_junk_score,
            worker_count=settings.spam_workers,
            greylist_delay_seconds=settings.greylist_delay_seconds,
        ),
    )


def live_generation_dir(settings: Settings) -> Path | None:
    link = settings.live_config
    return link.resolve() if link.is_symlink() else None


def live_generation(session: Session, node: str = "") -> ConfigGeneration | None:
    """The generation serving on this node (`node`: its name; "" on a single machine)."""
    return session.scalar(
        select(ConfigGeneration)
        .where(ConfigGeneration.status == "live", ConfigGeneration.node == node)
        .order_by(ConfigGeneration.id.desc())
    )


def _switch_live(settings: Settings, target: Path) -> None:
    temporary = settings.config_root / f".live-{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, settings.live_config)  # rename(2): atomic for every reader


# Files that name a database login (on PostgreSQL, with its password): readable by root and the
# daemon's group only. Postfix's map readers and Dovecot's auth and dict services run as those.
SECRET_FILES = {
    "postfix/sql-": "postfix",
    "dovecot/dovecot-sql.conf.ext": "dovecot",
    "dovecot/dovecot-dict-usage.conf.ext": "dovecot",
}


def _secret_group(relative: str) -> str | None:
    return next((group for prefix, group in SECRET_FILES.items() if relative.startswith(prefix)), None)


def _write_generation(directory: Path, files: dict[str, str]) -> None:
    # Postfix re-reads a file whose mtime is not yet in the past, sleeping until it is
    # (up to two seconds per check): the files are complete, so date them back.
    settled = time.time() - 5
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        group = _secret_group(relative)
        if group is not None:
            # Created closed, then opened to the group: never readable by all, even briefly.
            path.touch(mode=0o600)
            os.chmod(path, 0o600)
            path.write_text(content)
            shutil.chown(path, "root", group)
            os.chmod(path, 0o640)
        else:
            path.write_text(content)
            # Scripts a daemon executes directly (Dovecot's Sieve pipe programs) must be executable.
            os.chmod(path, 0o755 if relative.endswith(".sh") else 0o644)
        os.utime(path, (settled, settled))
    for folder in {p.parent for p in directory.rglob("*")} | {directory}:
        os.chmod(folder, 0o755)


log = logging.getLogger(__name__)

# What checking a generation leaves beside the rendered files (compiled Sieve scripts): not a
# rendered file that went away.
CHECK_OUTPUTS = (".svbin",)
# In the order they start and reload: rspamd keeps its state in Redis.
DAEMONS = ("redis", "rspamd", "postfix", "dovecot", "haproxy", "nginx")
# Checked only when their rendered files changed. Unchanged files are the ones the daemon already
# runs, checked when they went live: checking them again would refuse nothing the daemon does not
# already serve, and Postfix's check alone (postconf three times, postfix check, a probe per map)
# costs 0.2 s of CPU that a brand change, which touches nginx alone, took from the mail.
# rspamd's checker loads all its rules and Redis's is a scratch instance (about a second each);
# HAProxy's loads every brand's certificate (3.7 s at 5,000 brands).
CHECKED_WHEN_CHANGED = ("redis", "rspamd", "postfix", "haproxy")


def check_generation(directory: Path, settings: Settings, daemons: tuple[str, ...] = DAEMONS) -> None:
    """Each daemon's own checker. The certificates were checked before (sni.check_identities)
    and published (sni.publish_served_tls): HAProxy's check loads the default one."""
    if "postfix" in daemons:
        postfix.check_config(directory / "postfix")
    dovecot.check_config(directory / "dovecot" / "dovecot.conf")
    if "haproxy" in daemons:
        haproxy.check_config(directory / "haproxy" / "haproxy.cfg")
    nginx.check_config(directory / "nginx" / "nginx.conf")
    if "redis" in daemons:
        redis.check_config(directory / "redis" / "redis.conf")
    if "rspamd" in daemons:
        rspamd.check_config(settings, directory / "rspamd")


def changed_daemons(previous: Path | None, files: dict[str, str]) -> tuple[str, ...]:
    """The daemons whose rendered files differ from the previous generation's.

    A Dovecot reload restarts its LMTP and auth processes and defers the deliveries in
    flight, so a change that touches only Postfix must not reload Dovecot (and back).
    """
    if previous is None:
        return DAEMONS
    changed = set()
    for relative, content in files.items():
        old = previous / relative
        if not old.is_file() or old.read_text() != content:
            changed.add(relative.split("/", 1)[0])
    for daemon in DAEMONS:
        old_names = {
            str(p.relative_to(previous))
            for p in (previous / daemon).rglob("*")
            if p.is_file() and p.suffix not in CHECK_OUTPUTS
        }
        if old_names - set(files):
            changed.add(daemon)
    return tuple(daemon for daemon in DAEMONS if daemon in changed)


def reload_running_daemons(settings: Settings, daemons: tuple[str, ...] = DAEMONS) -> None:
    live = settings.live_config
    if "redis" in daemons and redis.pid(settings):
        redis.restart(settings, live / "redis" / "redis.conf")
    if "rspamd" in daemons and rspamd.master_pid(settings):
        rspamd.reload(settings)
    if "postfix" in daemons and postfix.master_pid(settings.postfix_queue):
        postfix.reload(live / "postfix")
    if "dovecot" in daemons and dovecot.master_pid(settings.run_dir / "dovecot"):
        dovecot.reload(live / "dovecot" / "dovecot.conf")
    if "haproxy" in daemons and haproxy.master_pid(settings):
        haproxy.reload(settings)
    if "nginx" in daemons and nginx.master_pid(settings):
        nginx.reload(live / "nginx" / "nginx.conf")


def check_configuration(
    settings: Settings, *, state: RenderState, template_root: Path = TEMPLATE_ROOT
) -> int:
    """Render `state` into a scratch folder and check it with every daemon's own tool; nothing
    is recorded, and nothing goes live but the served certificate files (each checked as it is
    written), which HAProxy's check loads. Returns the number of files checked; raises DaemonError."""
    try:
        files = render_all(state, template_root)
    except Exception as error:  # a template error must never reach the daemons
        raise DaemonError(f"Rendering failed: {error}") from error
    directory = settings.config_root / f".check-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    _write_generation(directory, files)
    try:
        _prepare_daemons(settings)
        sni.check_identities(settings, checked_identities(state.sni_identities))
        sni.publish_served_tls(settings, _served(state))
        check_generation(directory, settings)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return len(files)


def apply_configuration(
    session: Session,
    settings: Settings,
    *,
    state: RenderState,
    template_root: Path = TEMPLATE_ROOT,
    reload: bool = True,
    force: bool = False,
) -> ConfigGeneration:
    """Make the rendered state live, or record why not. The caller commits.

    Returns the generation: `live` when it serves (or already served, unchanged),
    `refused` when a check failed, `rolled_back` when a reload failed.
    """
    now = dt.datetime.now(dt.UTC)
    try:
        files = render_all(state, template_root)
    except Exception as error:  # a template error must never reach the daemons
        return _record(
            session,
            digest="",
            path="",
            status="refused",
            error=f"Rendering failed: {error}",
            node=settings.node_name,
        )
    digest = digest_files(files)
    with _one_apply_at_a_time(settings):
        return _apply_files(session, settings, files, digest, state, reload=reload, force=force, now=now)


@contextlib.contextmanager
def _one_apply_at_a_time(settings: Settings) -> Iterator[None]:
    """The web app's after-commit hooks and a node's sync may apply at once: one at a time, so
    the live link never ends on the older of two generations."""
    settings.config_root.mkdir(parents=True, exist_ok=True)
    with open(settings.config_root / ".apply.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _apply_files(
    session: Session,
    settings: Settings,
    files: dict[str, str],
    digest: str,
    state: RenderState,
    *,
    reload: bool,
    force: bool,
    now: dt.datetime,
) -> ConfigGeneration:
    current = live_generation(session, settings.node_name)
    if (
        not force
        and current is not None
        and current.digest == digest
        and live_generation_dir(settings) == Path(current.path)
    ):
        # Same files, but a renewed certificate may sit at the same path.
        sni.publish_sni_chains(settings, checked_identities(state.sni_identities))
        try:
            serving = sni.publish_served_tls(settings, _served(state))
        except DaemonError as error:
            # A renewed file that does not load: the one published before keeps serving.
            log.warning("%s", error)
            serving = None
        try:
            _serve_mail_certificates(settings, state, _crt_list_entries(state))
        except DaemonError as error:
            log.warning("%s", error)
        if serving is not None:
            sni.prune_served_tls(settings, serving | _named_by_generation(settings, Path(current.path)))
        return current

    generation = _record(session, digest=digest, path="", status="pending", error="", node=settings.node_name)
    directory = settings.config_root / "generations" / f"{generation.id:06d}"
    generation.path = str(directory)
    _write_generation(directory, files)
    previous = live_generation_dir(settings)
    # A generation number reused after a rollback names the live folder itself, just rewritten:
    # nothing to compare it with, so everything is checked and reloaded.
    to_reload = DAEMONS if previous == directory else changed_daemons(previous, files)
    try:
        _prepare_daemons(settings)
        checked = tuple(d for d in DAEMONS if d not in CHECKED_WHEN_CHANGED or d in to_reload or force)
        sni.check_identities(settings, checked_identities(state.sni_identities))
        # Before HAProxy's check loads the default one and nginx loads a map that names them; the
        # old map's files stay until the next change.
        serving = sni.publish_served_tls(settings, _served(state))
        crt_list_entries = _crt_list_entries(state)
        check_generation(directory, settings, checked)
    except DaemonError as error:
        generation.status, generation.error = "refused", str(error)
        session.flush()
        return generation

    _switch_live(settings, directory)
    # Before a reload of HAProxy (a port or the default certificate changed), which reads the
    # crt-list this writes. A rollback below leaves these certificates served: each was checked.
    _serve_mail_certificates(settings, state, crt_list_entries)
    if reload:
        try:
            reload_running_daemons(settings, to_reload)
        except DaemonError as error:
            if previous is not None:
                _switch_live(settings, previous)
                try:
                    reload_running_daemons(settings, to_reload)
                except DaemonError as second:
                    error = DaemonError(f"{error}\nRestoring the previous generation also failed: {second}")
            generation.status, generation.error = "rolled_back", str(error)
            session.flush()
            return generation
    sni.publish_sni_chains(settings, checked_identities(state.sni_identities))
    sni.prune_served_tls(settings, serving | _named_by_generation(settings, previous))
    if current is not None:
        current.status = "superseded"
    generation.status, generation.applied_at = "live", now
    session.flush()
    return generation


def _prepare_daemons(settings: Settings) -> None:
    sni.ensure_sni_database(settings)
    nginx.prepare(settings)
    haproxy.prepare(settings)
    rspamd.prepare(settings)
    redis.prepare(settings)
    # Dovecot's dict service writes storage usage there (quota_clone) from the first delivery.
    prepare_usage_database(settings)


def _served(state: RenderState) -> tuple[TlsIdentity, ...]:
    """Every certificate nginx and HAProxy serve: the brands' and the default one."""
    return (*checked_identities(state.sni_identities), state.default_tls)


def _crt_list_entries(state: RenderState) -> list[haproxy.CrtListEntry]:
    """Each brand certificate's published file and its names, as HAProxy's crt-list holds them."""
    try:
        return [
            haproxy.CrtListEntry(
                served_pem_path(state.paths, certificate.cert_path, certificate.key_path),
                certificate.hostnames,
            )
            for certificate in served_certificates(state.sni_identities)
        ]
    except ValueError as error:  # a state directory whose path HAProxy's commands cannot carry
        raise DaemonError(f"HAProxy cannot be given the certificates: {error}") from error


def _serve_mail_certificates(
    settings: Settings, state: RenderState, entries: list[haproxy.CrtListEntry]
) -> None:
    """HAProxy's certificates for IMAPS and POP3S: through its admin socket, served at the next
    handshake, when it runs (renewals found by the files' identity, whatever published them); in
    the crt-list it starts from, always. A brand HAProxy refuses is logged and left out (its
    names get the default certificate) without holding up the others or the rest of the change:
    its files passed the same checks nginx's did, and the next change tries it again."""
    default_pem = served_pem_path(state.paths, state.default_tls.cert_path, state.default_tls.key_path)
    try:
        haproxy.update_certificates(
            haproxy.admin_socket(settings), Path(state.paths.haproxy_crt_list), entries, (default_pem,)
        )
    except DaemonError as error:
        log.warning("HAProxy did not take every certificate: %s", error)


def _named_by_generation(settings: Settings, generation: Path | None) -> set[Path]:
    """The served files a generation's configurations name (nginx's workers may still load its
    map's until their reload ends), and those HAProxy's crt-list names."""
    configs = (
        (generation / "nginx" / "nginx.conf", generation / "haproxy" / "haproxy.cfg") if generation else ()
    )
    return sni.named_by(settings, *configs, haproxy.crt_list_path(settings))


def _record(session: Session, **values: str) -> ConfigGeneration:
    generation = ConfigGeneration(**values)
    session.add(generation)
    session.flush()
    return generation
