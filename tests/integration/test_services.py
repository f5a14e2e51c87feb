"""The whole stack started the way the systemd units start it: `letterhead service prepare`, then
each part with `letterhead service run PART` in the order of runners/parts.PARTS, each waited
for with `letterhead service ready PART` before the next, as systemd's After= and ExecStartPost=
do. Mail then flows end to end; a part that died is seen as not ready (systemd restarts it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from controlplane.runners.parts import wanted_parts
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e
KB = 1024
PASSWORD = "service started password"


# One stack for the module (its start is half a minute of CLI runs): the test that kills a part
# comes last.
@pytest.fixture(scope="module")
def under_services() -> Iterator[tuple[ScratchStack, dict[str, subprocess.Popen]]]:
    stack = ScratchStack()
    running: dict[str, subprocess.Popen] = {}
    try:
        prepared = letterhead(stack.home, "service", "prepare", timeout=180)
        assert prepared.returncode == 0, prepared.stderr
        for part in wanted_parts(stack.settings):
            running[part.name] = subprocess.Popen(
                [sys.executable, "-m", "controlplane.cli", "service", "run", part.name],
                env={**os.environ, "LETTERHEAD_HOME": str(stack.home)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            ready = letterhead(stack.home, "service", "ready", part.name, "--timeout", "30")
            assert ready.returncode == 0, f"{part.name}: {ready.stderr}"
        yield stack, running
    finally:
        for process in reversed(running.values()):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        stack.stop()


def test_the_stack_started_part_by_part_as_systemd_does_delivers_mail(under_services) -> None:
    stack, running = under_services
    # Each unit's main process is the daemon itself, not a wrapper: systemd watches the daemon.
    assert all(process.poll() is None for process in running.values())
    with stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Services", storage_pool_bytes=1000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="services.test", max_mailboxes=2, max_aliases=2,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(session, OPERATOR, domain=domain, local_part="ann", quota_bytes=100 * KB,
                                 password=PASSWORD)  # fmt: skip
    subject = send(stack, "someone@elsewhere.test", ["ann@services.test"])
    assert wait_for_subject(stack, "ann@services.test", PASSWORD, subject, timeout=20)
    status = letterhead(stack.home, "status")
    assert status.returncode == 0 and "running" in status.stdout and "stopped" not in status.stdout, status


def test_a_part_that_died_is_not_ready(under_services) -> None:
    stack, running = under_services
    running["dovecot"].send_signal(signal.SIGKILL)
    running["dovecot"].wait(timeout=10)
    assert letterhead(stack.home, "service", "ready", "dovecot", "--timeout", "2").returncode == 1
