"""Under `letterhead up`, a part that dies is started again, as systemd's Restart=always does in
a production install: a part killed with SIGKILL comes back on its own (the four that carry mail
and logs, under load: tests/e2e/test_faults.py), and `down` stops the supervisor first."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from controlplane.runners import parts, stack
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e
KB = 1024
PASSWORD = "supervised password"


@pytest.fixture(scope="module")
def supervised() -> Iterator[ScratchStack]:
    scratch = ScratchStack(extra_settings="supervise = true")
    try:
        scratch.start(web=True)
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Supervised", storage_pool_bytes=1000 * KB)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="supervised.test", max_mailboxes=2, max_aliases=2,
                max_mailbox_bytes=500 * KB,
            )  # fmt: skip
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part="ann", quota_bytes=200 * KB, password=PASSWORD
            )
        yield scratch
    finally:
        scratch.stop()


def _pid_of(scratch: ScratchStack, name: str) -> int | None:
    return {status.name: status.pid for status in stack.status(scratch.settings)}[name]


def _back(scratch: ScratchStack, name: str, old_pid: int, timeout: float = 30) -> int | None:
    part = parts.part_named(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _pid_of(scratch, name)
        if pid is not None and pid != old_pid and part.ready(scratch.settings):
            return pid
        time.sleep(0.2)
    return None


def test_a_killed_part_comes_back(supervised) -> None:
    """Each part killed under mail load, and the mail it carried: tests/e2e/test_faults.py."""
    old_pid = _pid_of(supervised, "sender-milter")
    assert _pid_of(supervised, "supervisor") is not None and old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert _back(supervised, "sender-milter", old_pid) is not None, "the sender milter did not come back"
    subject = send(supervised, "someone@elsewhere.test", ["ann@supervised.test"])
    assert wait_for_subject(supervised, "ann@supervised.test", PASSWORD, subject, timeout=30)


def test_down_stops_the_supervisor_first_so_nothing_comes_back(supervised) -> None:
    stack.down(supervised.settings)
    time.sleep(3)  # longer than the supervisor's checks and its wait between two starts
    assert all(status.pid is None for status in stack.status(supervised.settings)), stack.status(
        supervised.settings
    )
