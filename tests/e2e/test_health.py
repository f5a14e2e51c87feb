"""`GET /health` as a monitor asks it: over HTTPS through nginx on the platform host, no login.
Every part up gives 200; a part that died gives 503 naming it down; the answer carries nothing
but names and up or down."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator

import pytest

from controlplane.runners import stack
from controlplane.runners.scratch import ScratchStack
from tests.e2e.mailclient import tls_context

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running() -> Iterator[ScratchStack]:
    scratch = ScratchStack()
    try:
        yield scratch.start(web=True)
    finally:
        scratch.stop()


def _health(scratch: ScratchStack) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", scratch.ports["https"], timeout=20, context=tls_context(scratch)
    )
    connection.request("GET", "/health", headers={"Host": scratch.settings.hostname})
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    return status, body


def test_health_says_up_or_down_per_part_and_nothing_more(running) -> None:
    status, body = _health(running)
    assert status == 200, body
    assert set(body) == {"status", "parts"} and body["status"] == "up"
    assert {"database", "dovecot", "postfix", "rspamd", "redis", "web", "nginx", "log-follower"} <= set(
        body["parts"]
    )
    assert set(body["parts"].values()) == {"up"}

    postsrsd_pid = {s.name: s.pid for s in stack.status(running.settings)}["postsrsd"]
    os.kill(postsrsd_pid, 9)
    status, body = _health(running)
    assert status == 503 and body["status"] == "down"
    assert body["parts"]["postsrsd"] == "down" and body["parts"]["dovecot"] == "up"
    assert set(body["parts"].values()) <= {"up", "down"}  # no PID, port or path
