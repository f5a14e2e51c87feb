"""The admins' Sieve filters: a named script, checked by Dovecot's own compiler, made the filter
of one mailbox, of a list of addresses, or of every mailbox of a domain.

A mailbox's admin filter lives in its home (mail_root/<storage_key>), outside the user's own
scripts: Dovecot runs it before them (`sieve_before2`), after the junk filing. The user's own
script (the webmail's settings, or any ManageSieve client) is theirs, and neither replaces the
other. daemons/sieve_files.py writes and reads the files; no path is made from user text except
the validated filter name.

The script is compiled once per call, like certbot's `nginx -t` before a swap: a script
the compiler refuses changes nothing. Each mailbox then gets only the script; Dovecot compiles
it at its first delivery (about 15 ms, once) and keeps the binary beside it. A binary left from
an earlier filter is removed, so the new filter is compiled, never the old one run.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.daemons import sieve_files
from controlplane.daemons.process import DaemonError, run_tool
from controlplane.errors import (
    LetterheadError,
    NodeUnavailable,
    NotFound,
    StorageUnavailable,
    ValidationError,
)
from controlplane.models import AuditEntry, Domain, Mailbox
from controlplane.services import audit, domains, mail_homes, scope
from controlplane.services.scope import Actor
from controlplane.settings import Settings
from controlplane.validation import split_address

SIEVEC = "/usr/bin/sievec"
MAX_SCRIPT_BYTES = 64 * 1024
MAX_NAME_LENGTH = 64
MAX_ADDRESSES = 10_000
# The compiler names the script by its file name in its messages.
COMPILED_AS = "script"
WRITER_THREADS = 8
# At most this many addresses are named in the audit entry of one call.
AUDITED_ADDRESSES = 100


class FilterNotWritten(StorageUnavailable):
    """The mailbox's storage could not take the filter (a full disk, a broken folder)."""


@dataclasses.dataclass(frozen=True)
class CompiledFilter:
    """A script the compiler accepted, under its validated name."""

    name: str
    script: bytes


@dataclasses.dataclass(frozen=True)
class FilterResult:
    address: str
    error: LetterheadError | None = None


@dataclasses.dataclass(frozen=True)
class FilterReport:
    name: str
    results: list[FilterResult]

    @property
    def applied(self) -> int:
        return sum(1 for result in self.results if result.error is None)

    @property
    def failed(self) -> int:
        return len(self.results) - self.applied


@dataclasses.dataclass(frozen=True)
class ActiveFilter:
    """The admins' filter Dovecot runs for a mailbox."""

    name: str
    script: str | None


@dataclasses.dataclass(frozen=True)
class _Target:
    address: str
    storage_key: str
    tenant_id: int
    domain_id: int
    # The mail node holding the mailbox's home; None on a single machine.
    node_id: int | None = None


def validate_filter_name(name: str) -> str:
    """A filter name becomes a file name: letters, digits and . _ -, starting with a letter
    or digit, at most 64 characters."""
    if not isinstance(name, str) or not sieve_files.FILTER_NAME.fullmatch(name):
        raise ValidationError(
            f"A filter name has 1 to {MAX_NAME_LENGTH} letters, digits and . _ - "
            "and starts with a letter or digit.",
            field="name",
        )
    return name


def _script_bytes(script: str) -> bytes:
    if not isinstance(script, str):
        raise ValidationError("The script must be text.", field="script")
    if "\0" in script:
        raise ValidationError("The script may not contain NUL characters.", field="script")
    try:
        data = script.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("The script must be valid UTF-8 text.", field="script") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise ValidationError(
            f"A script may be at most {MAX_SCRIPT_BYTES // 1024} KB ({len(data)} bytes given).",
            field="script",
        )
    return data


def _compiler_config(settings: Settings | None, workdir: Path) -> Path:
    """The live Dovecot config, so the compiler knows the same extensions as delivery."""
    if settings is not None:
        live = settings.live_config / "dovecot" / "dovecot.conf"
        if live.exists():
            return live
    empty = workdir / "empty.conf"
    empty.write_text("")
    return empty


def _compiler_messages(output: str, name: str) -> list[str]:
    """The compiler's lines about the script, naming it by its filter name."""
    prefix = f"{COMPILED_AS}: "
    return [
        f"{name}: {line.strip().removeprefix(prefix)}"
        for line in output.splitlines()
        if line.startswith(prefix)
    ]


def compile_script(script: str, *, name: str = "filter", settings: Settings | None = None) -> CompiledFilter:
    """Check `script` with Dovecot's sievec, under the live config's extensions; refuse it
    (ValidationError with the compiler's message) if the compiler does."""
    name = validate_filter_name(name)
    data = _script_bytes(script)
    if re.search(rb"vnd\.dovecot\.", data, re.IGNORECASE):
        # The global extensions (pipe, environment) are Letterhead's own junk filing and learning:
        # an admin's filter runs where they are allowed, and must not feed mail to them.
        raise ValidationError("Dovecot's own extensions (vnd.dovecot.*) are not for filters.", field="script")
    sievec = SIEVEC if Path(SIEVEC).exists() else "sievec"
    with tempfile.TemporaryDirectory(prefix="lh-sievec-") as temporary:
        workdir = Path(temporary)
        script_path, binary_path = workdir / f"{COMPILED_AS}.sieve", workdir / f"{COMPILED_AS}.svbin"
        script_path.write_bytes(data)
        config = _compiler_config(settings, workdir)
        result = run_tool([sievec, "-c", str(config), str(script_path), str(binary_path)], timeout=30)
        output = f"{result.stdout}\n{result.stderr}"
        if result.returncode != 0:
            messages = _compiler_messages(output, name)
            if not messages:  # the compiler did not run: ours to fix, not the user's
                raise DaemonError(f"sievec failed: {output.strip() or result.returncode}")
            message = "\n".join(messages)[:4000].replace(temporary, "")
            raise ValidationError(f"The Sieve compiler refused the script:\n{message}", field="script")
    return CompiledFilter(name=name, script=data)


# --- where the filter goes -----------------------------------------------------------------------


def _resolve_addresses(
    session: Session, actor: Actor, addresses: Iterable[str]
) -> tuple[list[_Target], list[FilterResult]]:
    """The mailboxes named, within the actor's scope; the rest fail one by one, an address
    outside the scope exactly like one that does not exist."""
    failures: list[FilterResult] = []
    wanted: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for given in addresses:
        try:
            local_part, domain_name = split_address(given.strip() if isinstance(given, str) else given)
        except ValidationError as error:
            failures.append(FilterResult(str(given), error))
            continue
        address = f"{local_part}@{domain_name}"
        if address not in seen:
            seen.add(address)
            wanted.setdefault(domain_name, []).append((local_part, address))
    targets: list[_Target] = []
    for domain_name, items in wanted.items():
        domain = domains.find_domain(session, domain_name)
        found: dict[str, tuple[str, int | None]] = {}
        if domain is not None and _in_scope(actor, domain):
            local_parts = [local_part for local_part, _ in items]
            for start in range(0, len(local_parts), 500):
                rows = session.execute(
                    select(Mailbox.local_part, Mailbox.storage_key, Mailbox.node_id).where(
                        Mailbox.domain_id == domain.id,
                        Mailbox.local_part.in_(local_parts[start : start + 500]),
                    )
                )
                found.update((local_part, (key, node_id)) for local_part, key, node_id in rows)
        for local_part, address in items:
            if local_part in found:
                assert domain is not None
                key, node_id = found[local_part]
                targets.append(_Target(address, key, domain.tenant_id, domain.id, node_id))
            else:
                failures.append(FilterResult(address, NotFound(f"No such mailbox: {address}.")))
    return targets, failures


def _in_scope(actor: Actor, domain: Domain) -> bool:
    try:
        scope.require_domain(actor, domain)
    except NotFound:
        return False
    return True


def _domain_targets(session: Session, actor: Actor, domain: Domain) -> list[_Target]:
    scope.require_domain(actor, domain)
    rows = session.execute(
        select(Mailbox.local_part, Mailbox.storage_key, Mailbox.node_id)
        .where(Mailbox.domain_id == domain.id)
        .order_by(Mailbox.local_part)
    )
    return [
        _Target(f"{local_part}@{domain.name}", key, domain.tenant_id, domain.id, node_id)
        for local_part, key, node_id in rows
    ]


def _mailbox_target(actor: Actor, mailbox: Mailbox) -> _Target:
    scope.require_domain(actor, mailbox.domain)
    return _Target(
        mailbox.address, mailbox.storage_key, mailbox.domain.tenant_id, mailbox.domain_id, mailbox.node_id
    )


# --- applying ------------------------------------------------------------------------------------


def set_filter_for_mailbox(
    session: Session, actor: Actor, settings: Settings, mailbox: Mailbox, *, name: str, script: str
) -> FilterReport:
    """Make the script the mailbox's active filter. Raises NotFound, ValidationError."""
    target = _mailbox_target(actor, mailbox)
    compiled = compile_script(script, name=name, settings=settings)
    return _apply(session, actor, settings, compiled, [target], [], label=target.address)


def set_filter_for_addresses(
    session: Session, actor: Actor, settings: Settings, addresses: list[str], *, name: str, script: str
) -> FilterReport:
    """Make the script the active filter of each mailbox named; an address that is not a
    mailbox the actor manages fails alone, reported as missing. Raises ValidationError."""
    if not addresses or len(addresses) > MAX_ADDRESSES:
        raise ValidationError(f"Name 1 to {MAX_ADDRESSES} addresses.", field="addresses")
    compiled = compile_script(script, name=name, settings=settings)
    targets, failures = _resolve_addresses(session, actor, addresses)
    label = targets[0].address if len(targets) == 1 else f"{len(targets)} mailboxes"
    return _apply(session, actor, settings, compiled, targets, failures, label=label)


def set_filter_for_domain(
    session: Session, actor: Actor, settings: Settings, domain: Domain, *, name: str, script: str
) -> FilterReport:
    """Make the script the active filter of every mailbox of the domain.
    Raises NotFound, ValidationError."""
    targets = _domain_targets(session, actor, domain)
    compiled = compile_script(script, name=name, settings=settings)
    return _apply(session, actor, settings, compiled, targets, [], label=f"every mailbox of {domain.name}")


def _apply(
    session: Session,
    actor: Actor,
    settings: Settings,
    compiled: CompiledFilter,
    targets: list[_Target],
    failures: list[FilterResult],
    *,
    label: str,
) -> FilterReport:
    elsewhere: dict[int, list[_Target]] = {}
    here = mail_homes.find_node_id(session, settings.node_name)  # once, not per mailbox
    for target in targets:
        if target.node_id is not None and mail_homes.elsewhere(target.node_id, here):
            elsewhere.setdefault(target.node_id, []).append(target)
    local = [target for target in targets if target.node_id not in elsewhere]
    mail_root = settings.mail_root
    if local and not mail_root.is_dir():
        raise DaemonError(f"The mail storage folder {mail_root} is missing: prepare the installation first.")
    owner = _vmail_ids(settings) if local else (0, 0)

    def install(target: _Target) -> FilterResult:
        try:
            sieve_files.install_admin_script(
                mail_root, target.storage_key, compiled.name, compiled.script, owner
            )
        except OSError as error:
            return FilterResult(target.address, _not_written(error))
        return FilterResult(target.address)

    # Each mailbox is a few file creations and renames, waiting on the disk, not the CPU:
    # a few threads overlap those waits (the work is independent per mailbox).
    with ThreadPoolExecutor(max_workers=min(WRITER_THREADS, max(len(local), 1))) as pool:
        results = list(pool.map(install, local))
    for node_id, held in elsewhere.items():
        results += _install_elsewhere(session, node_id, compiled, held)
    by_address = {result.address: result for result in results}
    results = [by_address[target.address] for target in targets]  # in the order asked
    applied = [target for target, result in zip(targets, results, strict=True) if result.error is None]
    if applied:
        _record(session, actor, "sieve.apply", applied, label, filter=compiled.name, mailboxes=len(applied))
    return FilterReport(name=compiled.name, results=results + failures)


def _install_elsewhere(
    session: Session, node_id: int, compiled: CompiledFilter, targets: list[_Target]
) -> list[FilterResult]:
    """The same filter into mailboxes another node holds, written by that node."""
    payload = {
        "name": compiled.name,
        "script": compiled.script.decode(),
        "storage_keys": [target.storage_key for target in targets],
    }
    try:
        answer = mail_homes.ask(session, node_id, mail_homes.INSTALL_ADMIN_FILTER, payload)
    except NodeUnavailable as error:
        return [FilterResult(target.address, error) for target in targets]
    if "error" in answer:  # the node could not take it at all
        return [FilterResult(target.address, _not_written_because(answer["error"])) for target in targets]
    failed = answer.get("failed", {})
    return [
        FilterResult(target.address, _not_written_because(failed[target.storage_key]))
        if target.storage_key in failed
        else FilterResult(target.address)
        for target in targets
    ]


def _not_written(error: OSError) -> FilterNotWritten:
    return _not_written_because(error.strerror or error.__class__.__name__)


def _not_written_because(reason: str) -> FilterNotWritten:
    return FilterNotWritten(f"The filter could not be written into the mailbox's storage: {reason}.")


def _vmail_ids(settings: Settings) -> tuple[int, int]:
    from controlplane.daemons.layout import vmail_account

    account = vmail_account(settings)
    return account.uid, account.gid


def _record(
    session: Session, actor: Actor, action: str, targets: list[_Target], label: str, **details: object
) -> None:
    """One entry per call, whatever the number of mailboxes."""
    tenant_ids = {target.tenant_id for target in targets}
    domain_ids = {target.domain_id for target in targets}
    tenant_id = actor.tenant_id
    if tenant_id is None and len(tenant_ids) == 1:  # the operator, acting in one tenant
        tenant_id = next(iter(tenant_ids))
    audit.record_change(
        session, actor, action, label, tenant_id=tenant_id,
        domain_id=next(iter(domain_ids)) if len(domain_ids) == 1 else actor.domain_id,
        addresses=[target.address for target in targets[:AUDITED_ADDRESSES]], **details,
    )  # fmt: skip


# --- reading and deactivating --------------------------------------------------------------------


def get_active_filter(
    session: Session, actor: Actor, settings: Settings, mailbox: Mailbox
) -> ActiveFilter | None:
    """The mailbox's admin filter and its script, or None. Raises NotFound, StorageUnavailable."""
    target = _mailbox_target(actor, mailbox)
    if target.node_id is not None and mail_homes.held_elsewhere(session, settings.node_name, target.node_id):
        answer = mail_homes.ask(
            session, target.node_id, mail_homes.READ_ADMIN_FILTER,
            {"storage_key": target.storage_key, "limit": MAX_SCRIPT_BYTES * 4},
        )  # fmt: skip
        if "error" in answer:
            raise StorageUnavailable(f"The mailbox's filter could not be read: {answer['error']}.")
        return ActiveFilter(name=answer["name"], script=answer["script"]) if answer.get("found") else None
    home = sieve_files.mailbox_home(settings.mail_root, target.storage_key)
    found = sieve_files.admin_script(home, MAX_SCRIPT_BYTES * 4)
    if found is None:
        return None
    name, data = found
    return ActiveFilter(name=name, script=data.decode("utf-8", errors="replace"))


def deactivate_filter(session: Session, actor: Actor, settings: Settings, mailbox: Mailbox) -> bool:
    """Stop running the mailbox's admin filter (the user's own scripts are theirs). Returns
    whether one ran. Raises NotFound."""
    target = _mailbox_target(actor, mailbox)
    if target.node_id is not None and mail_homes.held_elsewhere(session, settings.node_name, target.node_id):
        answer = mail_homes.ask(
            session, target.node_id, mail_homes.REMOVE_ADMIN_FILTER, {"storage_key": target.storage_key}
        )
        if "error" in answer:
            raise _not_written_because(answer["error"])
        removed, name = bool(answer.get("removed")), answer.get("name", "")
    else:
        home = sieve_files.mailbox_home(settings.mail_root, target.storage_key)
        found = sieve_files.admin_script(home, 256)
        try:
            removed = sieve_files.remove_admin_script(home)
        except OSError as error:
            raise _not_written(error) from error
        name = found[0] if found else ""
    if not removed:
        return False
    _record(session, actor, "sieve.deactivate", [target], target.address, filter=name)
    return True


# --- from the layout before admin filters had a place of their own -------------------------------

LAYOUT_MARKER = ".letterhead-sieve-layout"
LAYOUT_VERSION = "2"


def move_admin_filters(session: Session, settings: Settings) -> int:
    """Once per installation: admin filters set before they had a place of their own were each
    mailbox's active script; each mailbox whose active script bears the name of a filter its
    tenant's admins (or the operator) set moves it to the admin place, leaving the user's own
    scripts. Returns how many moved."""
    marker = settings.mail_root / LAYOUT_MARKER
    if not settings.mail_root.is_dir() or (marker.exists() and marker.read_text().strip() == LAYOUT_VERSION):
        return 0
    names_by_tenant: dict[int | None, set[str]] = {}
    for tenant_id, details in session.execute(
        select(AuditEntry.tenant_id, AuditEntry.details).where(AuditEntry.action == "sieve.apply")
    ):
        name = (details or {}).get("filter")
        if isinstance(name, str):
            names_by_tenant.setdefault(tenant_id, set()).add(name)
    moved, failed = 0, False
    if names_by_tenant:
        owner = _vmail_ids(settings)
        every_tenant = names_by_tenant.get(None, set())
        for storage_key, tenant_id in session.execute(
            select(Mailbox.storage_key, Domain.tenant_id).join(Domain, Domain.id == Mailbox.domain_id)
        ):
            names = names_by_tenant.get(tenant_id, set()) | every_tenant
            try:
                home = sieve_files.mailbox_home(settings.mail_root, storage_key)
                if names and home.is_dir() and sieve_files.move_active_to_admin(home, names, owner):
                    moved += 1
            except OSError:
                failed = True  # left as it was, running as the user's script; tried again next `up`
                continue
    if not failed:
        marker.write_text(LAYOUT_VERSION + "\n")
    return moved
