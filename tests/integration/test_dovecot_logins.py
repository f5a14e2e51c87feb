"""A login's user comes from its password lookup (Dovecot's prefetch userdb): one SQL query a
login instead of two, describing the same user as the SQL userdb that deliveries ask."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from controlplane.runners.scratch import ScratchStack
from controlplane.services import mailboxes
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_mailbox, make_tenant

pytestmark = pytest.mark.integration
MB = 1024 * 1024
PASSWORD = "prefetched password 1"
SESSION_FIELDS = ("home", "uid", "gid", "quota_rule")


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    scratch = ScratchStack()
    try:
        scratch.start()
        with scratch.installation.transaction() as session:
            tenant = make_tenant(session, pool=100 * MB)
            domain = make_domain(session, tenant=tenant, name="prefetch.test", max_mailbox_bytes=10 * MB)
            make_mailbox(session, domain=domain, local_part="ann", quota=5 * MB, password=PASSWORD)
        yield scratch
    finally:
        scratch.stop()


def _doveadm(stack: ScratchStack, *args: str) -> subprocess.CompletedProcess[str]:
    config = stack.settings.live_config / "dovecot" / "dovecot.conf"
    return subprocess.run(["doveadm", "-c", str(config), *args], capture_output=True, text=True, timeout=30)


def _login_user(stack: ScratchStack, password: str) -> dict[str, str]:
    """The userdb fields a login (IMAP, POP3, ManageSieve) gets, as `doveadm auth login` shows them."""
    result = _doveadm(stack, "auth", "login", "ann@prefetch.test", password)
    assert result.returncode == 0, result.stdout + result.stderr
    userdb = result.stdout.split("userdb extra fields:", 1)[1]
    return dict(line.strip().split("=", 1) for line in userdb.splitlines() if "=" in line)


def _sql_user(stack: ScratchStack) -> dict[str, str]:
    """The SQL userdb's answer, which deliveries (LMTP) and `doveadm user` ask."""
    result = _doveadm(stack, "user", "ann@prefetch.test")
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(line.split("\t", 1) for line in result.stdout.splitlines()[1:] if "\t" in line)


def test_a_logins_user_is_the_sql_userdbs_without_a_second_query(stack: ScratchStack) -> None:
    login, sql = _login_user(stack, PASSWORD), _sql_user(stack)
    assert {field: login[field] for field in SESSION_FIELDS} == {
        field: sql[field] for field in SESSION_FIELDS
    }
    assert login["quota_rule"] == f"*:bytes={5 * MB}"
    # The Sieve environment is the SQL userdb's alone: a login without it was answered by prefetch.
    assert "sieve_env_junk_score" in sql
    assert not any(field.startswith("sieve_env_") for field in login)


def test_a_changed_quota_reaches_the_next_login_at_once(stack: ScratchStack) -> None:
    with stack.installation.transaction() as session:
        mailbox = mailboxes.get_mailbox(session, OPERATOR, "ann@prefetch.test")
        mailboxes.set_mailbox_quota(session, OPERATOR, mailbox, 7 * MB)
    assert _login_user(stack, PASSWORD)["quota_rule"] == f"*:bytes={7 * MB}"


def test_a_wrong_password_gets_no_user(stack: ScratchStack) -> None:
    result = _doveadm(stack, "auth", "login", "ann@prefetch.test", "not the password")
    assert result.returncode != 0
    assert "userdb extra fields" not in result.stdout
