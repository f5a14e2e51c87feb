"""The installation's health as the operator asks it (`letterhead status`) and as Prometheus
scrapes it (`/metrics`): each part, Postfix's queues, certificates, DNS, disk, the log follower,
and mail and logins over the last hour. Whether all is well decides status's exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

from cryptography import x509
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from controlplane.daemons import postfix
from controlplane.db import server_reason
from controlplane.logs import search_indexes
from controlplane.models.base import utcnow
from controlplane.runners import follower, stack
from controlplane.runtime import Installation
from controlplane.services import monitoring, platform_certificates
from controlplane.settings import Settings

# The state directory's disk (the database and the mail share it) is reported when its free
# space falls below the smaller of the two: 5% of a small disk, 1 GB of a large one.
DISK_FREE_SHARE = 0.05
DISK_FREE_BYTES = 1024**3
# The follower reads every log to its end twice a second: a minute without doing so while lines
# wait means it is stuck (or the database refuses its rows).
FOLLOWER_LAG_SECONDS = 60.0
WINDOW = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class PlatformCertificate:
    self_signed: bool
    not_after: dt.datetime | None


@dataclasses.dataclass
class HealthReport:
    parts: dict[str, bool]
    queues: dict[str, int]
    platform_certificate: PlatformCertificate
    certificates_expiring: list[tuple[str, dt.datetime]]
    warnings: list[monitoring.HealthWarning]
    disk_free_bytes: int
    disk_total_bytes: int
    follower: monitoring.FollowerLag
    recipients: dict[str, int]
    logins: dict[tuple[str, bool], int]
    # The mail logs' search indexes a log import left to the stack's next start (search_indexes.py).
    missing_search_indexes: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def all_well(self) -> bool:
        return not self.problems


def _platform_certificate(settings: Settings, served: Path | None = None) -> PlatformCertificate:
    """The certificate the platform host serves: `served` (from the ACME server), else the
    self-signed one."""
    try:
        certificate = x509.load_pem_x509_certificate(
            (served or settings.certs_dir / "default.crt").read_bytes()
        )
    except (OSError, ValueError):
        return PlatformCertificate(self_signed=True, not_after=None)
    return PlatformCertificate(certificate.issuer == certificate.subject, certificate.not_valid_after_utc)


def _log_files(settings: Settings) -> list[monitoring.LogFile]:
    files = []
    for path in follower.followed_logs(settings):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        files.append(monitoring.LogFile(status.st_dev, status.st_ino, status.st_size))
    return files


def check(installation: Installation, *, now: dt.datetime | None = None) -> HealthReport:
    settings = installation.settings
    now = now or utcnow()
    parts = {part.name: part.alive(settings) for part in stack.parts_to_run(settings)}
    disk = shutil.disk_usage(settings.home)
    report = HealthReport(
        parts=parts,
        queues=postfix.queue_counts(settings.postfix_queue) if Path(settings.postfix_queue).is_dir() else {},
        platform_certificate=_platform_certificate(settings),
        certificates_expiring=[],
        warnings=[],
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        follower=monitoring.FollowerLag(0, 0.0),
        recipients={},
        logins={},
    )
    try:
        with installation.sessions() as session:
            identity = platform_certificates.platform_identity(session, settings)
            if identity is not None:
                report.platform_certificate = _platform_certificate(settings, Path(identity.cert_path))
            report.certificates_expiring = monitoring.certificates_expiring(session, now)
            report.warnings = monitoring.platform_warnings(session, now) + monitoring.all_warnings(
                session, now
            )
            report.follower = monitoring.follower_lag(
                session, _log_files(settings), follower.last_complete_read(settings), now
            )
            report.recipients = monitoring.recipient_results_since(session, now - WINDOW)
            report.logins = monitoring.logins_since(session, now - WINDOW)
            report.missing_search_indexes = len(search_indexes.missing_indexes(session))
    except SQLAlchemyError as error:
        report.problems.append(f"The database does not answer: {server_reason(error)}")
    down = sorted(name for name, up in parts.items() if not up)
    if down:
        report.problems.append(f"Not running: {', '.join(down)}.")
    report.problems += [warning.message for warning in report.warnings if warning.kind != "pool"]
    report.notes += [warning.message for warning in report.warnings if warning.kind == "pool"]
    if report.disk_free_bytes < min(DISK_FREE_BYTES, DISK_FREE_SHARE * report.disk_total_bytes):
        report.problems.append(
            f"The disk of {settings.home} has {report.disk_free_bytes // 1024**2} MB free: mail and the database "
            "stop when it is full."
        )
    lag = report.follower
    if lag.unread_bytes and (lag.seconds is None or lag.seconds > FOLLOWER_LAG_SECONDS):
        behind = "has never read the logs" if lag.seconds is None else f"is {lag.seconds:.0f} s behind"
        report.problems.append(
            f"The log follower {behind} ({lag.unread_bytes} bytes unread): the log viewers miss recent mail "
            "and logins."
        )
    if report.missing_search_indexes:
        # Searches still answer, by scanning the tables: slower, not wrong.
        missing = report.missing_search_indexes
        which = (
            "A search index of the mail logs is"
            if missing == 1
            else f"{missing} search indexes of the mail logs are"
        )
        report.notes.append(
            f"{which} missing (a log import was stopped, or ended while the mail daemons ran): log searches"
            f" are slower meanwhile. {search_indexes.BUILT_LATER}"
        )
    platform = report.platform_certificate
    if platform.self_signed:
        report.notes.append(
            f"The platform host {settings.hostname} serves a self-signed certificate: mail clients and "
            "browsers warn until a trusted one is in place."
        )
    elif platform.not_after is not None and platform.not_after <= now + monitoring.EXPIRY_WARNING:
        report.problems.append(
            f"The platform host's certificate expires on {platform.not_after.date().isoformat()}."
        )
    return report


def metrics(report: HealthReport) -> bytes:
    """The report in Prometheus's text format: every figure a gauge (the mail and login figures
    over the last hour, as the database keeps them only for its retention)."""
    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"letterhead_{name}", documentation, labels, registry=registry)

    up = gauge("part_up", "1 when the part's process runs.", ("part",))
    for name, alive in report.parts.items():
        up.labels(name).set(1 if alive else 0)
    queued = gauge("postfix_queue_messages", "Messages in each of Postfix's queues.", ("queue",))
    for queue, count in report.queues.items():
        queued.labels(queue).set(count)
    expiring = gauge(
        "certificate_expiry_timestamp_seconds",
        "When each brand certificate expiring within 14 days ends.",
        ("host",),
    )
    for hostname, not_after in report.certificates_expiring:
        expiring.labels(hostname).set(not_after.timestamp())
    gauge("platform_certificate_self_signed", "1 while the platform host's certificate is self-signed.").set(
        1 if report.platform_certificate.self_signed else 0
    )
    warnings = gauge("warnings", "Tenants' problems by kind (certificate, dns, pool).", ("kind",))
    for kind in ("certificate", "dns", "pool"):
        warnings.labels(kind).set(sum(1 for warning in report.warnings if warning.kind == kind))
    gauge("disk_free_bytes", "Free space on the state directory's disk.").set(report.disk_free_bytes)
    gauge("log_follower_unread_bytes", "Log bytes the follower has not stored yet.").set(
        report.follower.unread_bytes
    )
    gauge(
        "log_follower_lag_seconds", "Since the follower last read every log to its end, while lines wait."
    ).set(report.follower.seconds if report.follower.seconds is not None else float("inf"))
    gauge(
        "log_search_indexes_missing", "Search indexes of the mail logs left to the stack's next start."
    ).set(report.missing_search_indexes)
    recipients = gauge("recipients_last_hour", "Recipients by outcome over the last hour.", ("outcome",))
    for outcome, count in report.recipients.items():
        recipients.labels(outcome).set(count)
    logins = gauge(
        "logins_last_hour", "Login attempts by service and result over the last hour.", ("service", "result")
    )
    for (service, success), count in report.logins.items():
        logins.labels(service, "success" if success else "failure").set(count)
    gauge("healthy", "1 when status finds nothing wrong.").set(1 if report.all_well else 0)
    return generate_latest(registry)
