"""Dovecot's auth penalty falls on the guesser's address, not on every webmail user.

The webmail logs in from the app, so Dovecot used to see every webmail user as 127.0.0.1: a few
wrong guesses by one person slowed everybody's webmail login (15 s, then a 500). The webmail now
asks Dovecot's auth service over a socket of its own, naming the browser's address. This stack
keeps the penalty on (test stacks turn it off, as all their clients share 127.0.0.1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from controlplane import create_app
from controlplane.runners.scratch import ScratchStack
from tests.factories import PASSWORD, make_domain, make_mailbox, make_tenant

KB = 1024
ATTACKER = "198.51.100.20"
HOLDER = "203.0.113.30"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app() -> Iterator:
    stack = ScratchStack(min_mailbox_bytes=KB, extra_settings="auth_penalty = true")
    try:
        stack.start()
        with stack.installation.transaction() as session:
            domain = make_domain(
                session, tenant=make_tenant(session, name="Penalty", pool=100 * KB), name="penalty.test"
            )
            make_mailbox(session, domain=domain, local_part="pia")
        app = create_app({"LETTERHEAD_SETTINGS": stack.settings, "TESTING": True})
        app.stack = stack
        yield app
        app.extensions["letterhead"].dispose()
    finally:
        stack.stop()


def log_in(app, ip: str, password: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)
    ).group(1)
    started = time.monotonic()
    response = client.post(
        "/login", data={"address": "pia@penalty.test", "password": password, "csrf_token": token}
    )
    return response, time.monotonic() - started


def test_a_guessers_failures_slow_the_guesser_not_the_account_holder(app) -> None:
    # One failure is enough: Dovecot doubles the delay with each (2 s, 4 s, 8 s, ...).
    response, _ = log_in(app, ATTACKER, "wrong guess")
    assert response.status_code == 401
    # Dovecot now delays the guesser's address...
    response, delayed = log_in(app, ATTACKER, "wrong guess again")
    assert response.status_code == 401 and delayed >= 1.5
    # ...and only theirs: the holder, from their own address, gets in at once.
    response, elapsed = log_in(app, HOLDER, PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    assert elapsed < 1.5
