"""Postfix's programs send their log lines to Letterhead's log writer (daemons/postfix_log.py).
A writer that stalls for a while (a busy machine, a slow disk) must slow the mail down, never
stop it, and a reload must never stop it either; every line still reaches log/postfix.log.

Before, the lines went through Postfix's postlogd. It restarted at every `postfix reload`, and a
master that logged in between waited for ever on the full socket, every other Postfix process
behind it; and its 10-second watchdog killed it while the writer was behind, with the same end.
No mail moved again until Postfix was restarted (seen in bench/delivery.py's churn runs).
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from controlplane.daemons import postfix, postfix_log
from controlplane.daemons.process import wait_until
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import imap_subjects, make_message

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
ADDRESS = "patient@stall.test"
MESSAGES = 12
# Longer than postlogd's 10-second watchdog.
STALL_SECONDS = 16
SMTP_SOURCE = "/usr/sbin/smtp-source"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Stall", storage_pool_bytes=10000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="stall.test", max_mailboxes=1, max_aliases=1
        )
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="patient", password=PASSWORD, quota_bytes=5000 * KB
        )
    return mail_stack


def test_mail_sent_while_the_log_writer_stalls_is_delivered_once_it_reads_again(world: ScratchStack) -> None:
    writer = postfix_log.WRITER.pid(world.settings)
    assert writer is not None
    errors: list[str] = []

    def send(number: int) -> None:
        message = make_message("someone@elsewhere.test", [ADDRESS], subject=f"Sent during the stall {number}")
        try:
            with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=STALL_SECONDS + 60) as client:
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            errors.append(f"{number}: {error!r}")

    os.kill(writer, signal.SIGSTOP)
    try:
        senders = [threading.Thread(target=send, args=(n,)) for n in range(MESSAGES)]
        for sender in senders:
            sender.start()
        time.sleep(STALL_SECONDS)
    finally:
        os.kill(writer, signal.SIGCONT)
    for sender in senders:
        sender.join(timeout=90)
    assert errors == []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        subjects = imap_subjects(world, ADDRESS, PASSWORD)
        if len(subjects) >= MESSAGES:
            break
        time.sleep(1)
    assert sorted(subjects) == sorted(f"Sent during the stall {n}" for n in range(MESSAGES))
    # And the log lost nothing while the writer was stopped: each delivery is in it.
    assert wait_until(lambda: _logged_deliveries(world) >= MESSAGES, timeout=30)


# The hang took up to about 30 reloads to appear when it was found (one a second, under load):
# the load goes on, 100 messages at a time, until twice that many reloads came under it.
RELOADS_UNDER_LOAD = 60
BATCH = 100


def test_mail_keeps_flowing_while_postfix_reloads_under_load(world: ScratchStack) -> None:
    """Each `postfix reload` used to restart postlogd; a master that logged before the new one
    started blocked for ever on the full socket. Now reloads every 0.3 s while messages arrive
    in 10 sessions at once, as a domain change reloads Postfix, until 60 reloads were made."""
    maildir = world.settings.mail_root
    before, logged_before = _delivered(maildir), _logged_deliveries(world)
    stop = threading.Event()
    reloads: list[int] = []

    def reload_again_and_again() -> None:
        while not stop.wait(0.3):
            postfix.reload(world.settings.live_config / "postfix")
            reloads.append(1)

    reloader = threading.Thread(target=reload_again_and_again)
    reloader.start()
    sent = 0
    try:
        while len(reloads) < RELOADS_UNDER_LOAD and sent < 20 * BATCH:
            load = subprocess.run(
                [SMTP_SOURCE, "-c", "-s", "10", "-m", str(BATCH), "-l", "1024", "-f", "load@elsewhere.test",
                 "-t", ADDRESS, "-M", "load.elsewhere.test", f"127.0.0.1:{world.ports['smtp']}"],
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            assert load.returncode == 0, load.stderr
            sent += BATCH
    finally:
        stop.set()
        reloader.join(timeout=90)
    assert not reloader.is_alive() and len(reloads) >= RELOADS_UNDER_LOAD
    deadline = time.monotonic() + 90
    while _delivered(maildir) < before + sent and time.monotonic() < deadline:
        time.sleep(1)
    assert _delivered(maildir) == before + sent
    # Every delivery was logged through the reloads.
    assert wait_until(lambda: _logged_deliveries(world) == logged_before + sent, timeout=30)


def _logged_deliveries(world: ScratchStack) -> int:
    log = (world.settings.log_dir / "postfix.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f"to=<{ADDRESS}>" in line and "status=sent" in line)


def _delivered(mail_root) -> int:
    return sum(
        1 for path in mail_root.glob("*/Maildir/*/*") if path.is_file() and path.parent.name in ("new", "cur")
    )
