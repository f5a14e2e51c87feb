"""The periodic runner: certificate renewal twice a day, brand DNS checks every hour, DKIM keys
past their overlap retired every hour, TLS and DMARC reports read as they arrive, the mail
migration runner started when copies are queued, domain admins' alerts sent every 5 minutes, a
Postfix reload a domain change is owed made if the process due to make it is gone.

`letterhead up` starts it as a daemon (`letterhead periodic --daemon`, PID file in the run
directory) and `letterhead down` stops it. A job that fails is reported in its log
(log/periodic.log) and tried again at its next time; it never ends the runner.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
import traceback
from collections.abc import Callable

from controlplane.daemons import notice_mail, postfix_reloads
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError
from controlplane.runners import mail_migration, tls_report_spool
from controlplane.runtime import Installation
from controlplane.services import brand_dns, certificates, dkim, domain_alerts, nodes
from controlplane.settings import Settings

PID_FILE = "periodic.pid"
LOG_FILE = "periodic.log"
CERTIFICATE_INTERVAL = 12 * 3600.0
DNS_INTERVAL = 3600.0
DKIM_INTERVAL = 3600.0
TLS_REPORT_INTERVAL = 30.0
MIGRATION_INTERVAL = 10.0
ALERT_INTERVAL = 300.0
OWED_RELOAD_INTERVAL = 60.0
# How often the loop looks at the clock; a stop request is seen at once.
TICK_SECONDS = 10.0


PERIODIC = BackgroundProcess("The periodic runner", PID_FILE, LOG_FILE, ("periodic", "--daemon"))


def periodic_pid(settings: Settings) -> int | None:
    return PERIODIC.pid(settings)


def _say(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {message}", flush=True)


def renew_certificates_job(installation: Installation) -> None:
    for outcome in certificates.renew_certificates(installation):
        if outcome.result != "current":
            _say(f"certificate {outcome.hostname}: {outcome.result}: {outcome.message}")


def check_brand_dns_job(installation: Installation) -> None:
    with installation.transaction() as session:
        count = brand_dns.check_all_brand_dns(session, installation.settings)
    _say(f"checked the DNS records of {count} branded domains")


def retire_dkim_keys_job(installation: Installation) -> None:
    with installation.transaction() as session:
        retired = dkim.retire_expired_keys(session)
    for key in retired:
        _say(f"DKIM key retired after its overlap: {key}")


def read_tls_reports_job(installation: Installation) -> None:
    for line in tls_report_spool.read_spool(installation):
        _say(line)


def start_migrations_job(installation: Installation) -> None:
    if mail_migration.start_if_queued(installation):
        _say("mail migrations queued: the migration runner started (log/migrations.log)")


def send_alerts_job(installation: Installation) -> None:
    """The domain admins' alerts that are due, mailed from the platform's postmaster, each
    recorded once handed over: one that cannot be sent is tried at the next run and holds up no
    other. With several mail nodes only the oldest node sends them."""
    settings = installation.settings
    with installation.transaction() as session:
        if settings.node_name and nodes.certificate_node(session) not in (None, settings.node_name):
            return
        notices = domain_alerts.due_alerts(session, settings)
    for notice in notices:
        try:
            notice_mail.send_notice(
                settings.ports["internal_smtp"], f"postmaster@{settings.hostname}", notice.recipient,
                notice.subject, notice.body,
            )  # fmt: skip
        except DaemonError as error:
            _say(f"alert to {notice.recipient} not sent, tried again next run: {error}")
            continue
        with installation.transaction() as session:
            domain_alerts.mark_sent(session, notice)
        _say(f"alert to {notice.recipient}: {notice.subject}")


def owed_postfix_reload_job(installation: Installation) -> None:
    postfix_reloads.reload_if_owed(installation.settings)


def default_jobs() -> list[tuple[str, float, Callable[[Installation], None]]]:
    return [
        ("certificates", CERTIFICATE_INTERVAL, renew_certificates_job),
        ("dns", DNS_INTERVAL, check_brand_dns_job),
        ("dkim", DKIM_INTERVAL, retire_dkim_keys_job),
        ("tls-reports", TLS_REPORT_INTERVAL, read_tls_reports_job),
        ("migrations", MIGRATION_INTERVAL, start_migrations_job),
        ("alerts", ALERT_INTERVAL, send_alerts_job),
        ("postfix-reloads", OWED_RELOAD_INTERVAL, owed_postfix_reload_job),
    ]


def run_periodic(
    settings: Settings,
    *,
    daemon: bool = False,
    jobs: list[tuple[str, float, Callable[[Installation], None]]] | None = None,
    tick_seconds: float = TICK_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    """Run each job now and then every `interval` seconds until SIGTERM/SIGINT (or `stop`)."""
    with PERIODIC.running(settings, daemon=daemon, stop=stop) as stop:
        installation = Installation(settings)
        schedule = [(name, interval, job, [0.0]) for name, interval, job in (jobs or default_jobs())]
        try:
            while not stop.is_set():
                for name, interval, job, next_run in schedule:
                    if stop.is_set() or time.monotonic() < next_run[0]:
                        continue
                    next_run[0] = time.monotonic() + interval
                    try:
                        job(installation)
                    except Exception:  # a failing job is retried at its next time
                        _say(f"{name}: failed, retrying in {interval:.0f} s:")
                        traceback.print_exc(file=sys.stdout)
                        sys.stdout.flush()
                stop.wait(tick_seconds)
        finally:
            installation.dispose()


def start_periodic(settings: Settings) -> None:
    PERIODIC.start(settings)


def stop_periodic(settings: Settings) -> None:
    PERIODIC.stop(settings)
