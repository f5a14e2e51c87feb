from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import random

import pytest
from sqlalchemy import select

from controlplane.errors import (
    AuthenticationFailed,
    LoginThrottled,
    NotInScope,
    SecondFactorRequired,
    ValidationError,
)
from controlplane.models import AuthEvent
from controlplane.networks import client_network
from controlplane.services import auth, mailboxes, scope
from tests.factories import PASSWORD, make_admin, make_domain, make_mailbox

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
IP = "192.0.2.10"
AGENT = "Mozilla/5.0 (pytest)"


def attempt(db, login: str, password: str, *, ip: str = IP, now: dt.datetime = NOW, **kwargs):
    return auth.authenticate_admin(
        db, login=login, password=password, client_ip=ip, user_agent=AGENT, now=now, **kwargs
    )


def fail(db, login: str, password: str, **kwargs) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        attempt(db, login, password, **kwargs)
    return caught.value


def events(db) -> list[AuthEvent]:
    return list(db.scalars(select(AuthEvent).order_by(AuthEvent.id)))


def test_full_admin_logs_in_as_an_admin_of_their_tenant(db) -> None:
    admin = make_admin(db, login="boss")
    actor = attempt(db, " Boss ", PASSWORD)
    assert actor == scope.tenant_admin(admin.tenant_id, name="admin:boss")


def test_domain_admin_mailbox_logs_in_scoped_to_its_domain(db) -> None:
    domain = make_domain(db, name="a.test")
    make_mailbox(db, domain=domain, local_part="ann", is_domain_admin=True)
    actor = attempt(db, "Ann@A.test", PASSWORD)
    assert actor == scope.domain_admin(domain.tenant_id, domain.id, name="ann@a.test")


def test_mailbox_without_the_domain_admin_role_is_refused(db) -> None:
    domain = make_domain(db, name="a.test")
    make_mailbox(db, domain=domain, local_part="bob")
    assert fail(db, "bob@a.test", PASSWORD).message == "Wrong login or password."
    assert events(db)[-1].reason == "not an admin"


def test_wrong_password_and_unknown_login_get_the_same_message(db) -> None:
    make_admin(db, login="boss")
    wrong_password = fail(db, "boss", "not the password")
    unknown_login = fail(db, "nobody", PASSWORD)
    assert wrong_password.message == unknown_login.message == "Wrong login or password."
    assert [event.reason for event in events(db)] == ["wrong password", "unknown user"]


@pytest.mark.parametrize("what", ["admin", "admin's tenant"])
def test_inactive_admin_is_refused_with_the_right_password(db, what: str) -> None:
    admin = make_admin(db, login="boss")
    target = admin if what == "admin" else admin.tenant
    target.active = False
    db.flush()
    assert fail(db, "boss", PASSWORD).message == "Wrong login or password."
    assert events(db)[-1].reason == "inactive"


@pytest.mark.parametrize("what", ["mailbox", "domain", "tenant"])
def test_inactive_domain_admin_is_refused_with_the_right_password(db, what: str) -> None:
    domain = make_domain(db, name="a.test")
    mailbox = make_mailbox(db, domain=domain, local_part="ann", is_domain_admin=True)
    if what == "mailbox":
        mailboxes.update_mailbox(db, scope.OPERATOR, mailbox, active=False)
    else:
        (domain if what == "domain" else domain.tenant).active = False
        db.flush()
    fail(db, "ann@a.test", PASSWORD)
    assert events(db)[-1].reason == "inactive"


def test_account_is_throttled_after_five_different_wrong_passwords_even_with_the_right_one(db) -> None:
    make_admin(db, login="boss")
    for guess in range(5):
        fail(db, "boss", f"guess number {guess}")
    with pytest.raises(LoginThrottled) as caught:
        attempt(db, "boss", PASSWORD)
    assert caught.value.minutes == 15
    assert "Wait 15 minutes" in caught.value.message
    assert events(db)[-1].reason == "throttled"


def test_four_wrong_passwords_do_not_throttle(db) -> None:
    make_admin(db, login="boss")
    for guess in range(4):
        fail(db, "boss", f"guess number {guess}")
    attempt(db, "boss", PASSWORD)


def test_unknown_logins_are_throttled_like_real_ones(db) -> None:
    for guess in range(5):
        fail(db, "nobody", f"guess number {guess}")
    with pytest.raises(LoginThrottled):
        attempt(db, "NOBODY", "guess number 9")


def test_repeating_the_same_wrong_password_counts_once(db) -> None:
    make_admin(db, login="boss")
    for _ in range(10):
        fail(db, "boss", "the same typo")
    attempt(db, "boss", PASSWORD)


def test_a_successful_login_clears_its_own_accounts_count(db) -> None:
    make_admin(db, login="boss")
    for guess in range(4):
        fail(db, "boss", f"early guess {guess}")
    attempt(db, "boss", PASSWORD, now=NOW + dt.timedelta(seconds=1))
    for guess in range(4):
        fail(db, "boss", f"late guess {guess}", now=NOW + dt.timedelta(seconds=2))
    attempt(db, "boss", PASSWORD, now=NOW + dt.timedelta(seconds=3))


def test_a_network_is_throttled_after_twenty_failures_across_accounts(db) -> None:
    make_admin(db, login="boss")
    for number in range(19):
        fail(db, f"victim{number}", "some guess", ip=f"198.51.100.{number + 1}")
    # A success on the network does not erase the other accounts' failures.
    attempt(db, "boss", PASSWORD, ip="198.51.100.200")
    fail(db, "victim19", "some guess", ip="198.51.100.20")
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD, ip="198.51.100.201")
    assert attempt(db, "boss", PASSWORD, ip="198.51.101.1").kind == "tenant_admin"


def test_guesses_from_another_network_never_lock_the_account_holder_out(db) -> None:
    make_admin(db, login="boss")
    for guess in range(5):
        fail(db, "boss", f"attacker guess {guess}", ip="198.51.100.66")
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD, ip="198.51.100.66")
    # The holder, from their own network, is not the one being throttled.
    assert attempt(db, "boss", PASSWORD, ip="203.0.113.5").kind == "tenant_admin"


def test_guesses_spread_over_many_networks_stop_new_networks_but_not_the_holders(db) -> None:
    make_admin(db, login="boss")
    attempt(db, "boss", PASSWORD, ip="203.0.113.5", now=NOW - dt.timedelta(days=3))
    for number in range(auth.ACCOUNT_WIDE_FAILURE_LIMIT):
        fail(db, "boss", f"botnet guess {number}", ip=f"10.{number}.0.1")
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD, ip="198.18.0.1")
    assert events(db)[-1].reason == "throttled"
    assert attempt(db, "boss", PASSWORD, ip="203.0.113.77").kind == "tenant_admin"


def test_a_network_known_only_from_long_ago_is_a_new_network_again(db) -> None:
    make_admin(db, login="boss")
    attempt(
        db, "boss", PASSWORD, ip="203.0.113.5", now=NOW - auth.KNOWN_NETWORK_MEMORY - dt.timedelta(days=1)
    )
    for number in range(auth.ACCOUNT_WIDE_FAILURE_LIMIT):
        fail(db, "boss", f"botnet guess {number}", ip=f"10.{number}.0.1")
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD, ip="203.0.113.5")


def test_throttling_lifts_when_the_window_passes(db) -> None:
    make_admin(db, login="boss")
    for guess in range(5):
        fail(db, "boss", f"guess number {guess}")
    with pytest.raises(LoginThrottled) as caught:
        attempt(db, "boss", PASSWORD, now=NOW + dt.timedelta(minutes=14, seconds=30))
    assert caught.value.message == "Too many failed logins. Wait 1 minute, then try again."
    attempt(db, "boss", PASSWORD, now=NOW + auth.WINDOW)


@pytest.mark.parametrize(
    ("client_ip", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", "192.0.2.0/24"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
    ],
)
def test_client_network_is_the_slash_24_or_slash_64(client_ip: str, network: str) -> None:
    assert client_network(client_ip) == network


def test_the_fast_ipv4_path_agrees_with_ipaddress() -> None:
    rng = random.Random(7)
    candidates = [".".join(str(rng.randrange(0, 300)) for _ in range(4)) for _ in range(5000)]
    candidates += ["01.2.3.4", "1.2.3.04", "255.255.255.255", "0.0.0.0", "1.2.3", "1.2.3.4.5", " 1.2.3.4"]
    for candidate in candidates:
        try:
            expected = str(ipaddress.ip_network((ipaddress.ip_address(candidate.strip()), 24), strict=False))
        except ValueError:
            expected = candidate[:64]
        assert client_network(candidate) == expected, candidate


def test_every_attempt_is_recorded_with_address_agent_and_tenant(db) -> None:
    admin = make_admin(db, login="boss")
    attempt(db, "boss", PASSWORD)
    for guess in range(5):
        fail(db, "boss", f"guess number {guess}")
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD)
    recorded = events(db)
    assert [(event.success, event.reason) for event in recorded] == [(True, "")] + [
        (False, "wrong password")
    ] * 5 + [(False, "throttled")]
    for event in recorded:
        assert (event.service, event.login, event.client_ip, event.user_agent) == ("admin", "boss", IP, AGENT)
        assert event.tenant_id == admin.tenant_id and event.domain_id is None
        assert event.time == NOW and event.time.tzinfo is not None


def test_wrong_passwords_are_stored_only_as_keyed_fingerprints(db) -> None:
    make_admin(db, login="boss")
    fail(db, "boss", "secret typo")
    fingerprint = events(db)[-1].password_fingerprint
    assert fingerprint and "secret typo" not in fingerprint
    assert fingerprint not in hashlib.sha256(b"secret typo").hexdigest()


def test_a_failed_attempt_survives_when_the_caller_commits_after_the_error(db) -> None:
    make_admin(db, login="boss")
    fail(db, "boss", "wrong guess")
    db.commit()
    db.rollback()
    assert [event.reason for event in events(db)] == ["wrong password"]


def test_long_login_and_user_agent_are_truncated(db) -> None:
    with pytest.raises(AuthenticationFailed):
        auth.authenticate_admin(
            db, login="x" * 400, password="p", client_ip=IP, user_agent="u" * 900, now=NOW
        )
    event = events(db)[-1]
    assert (len(event.login), len(event.user_agent)) == (255, 500)


# Second factor


RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # "12345678901234567890", RFC 6238 appendix B


@pytest.mark.parametrize(
    ("unix_time", "code"), [(59, "287082"), (1111111109, "081804"), (2000000000, "279037")]
)
def test_totp_codes_match_the_rfc_6238_test_vectors(unix_time: int, code: str) -> None:
    assert auth.totp_code(RFC_SECRET, dt.datetime.fromtimestamp(unix_time, dt.UTC)) == code


def _wrong_codes(secret: str, count: int) -> list[str]:
    """Codes that no accepted step (previous, current, next) shows at NOW."""
    accepted = {auth.totp_code(secret, NOW + dt.timedelta(seconds=drift)) for drift in (-30, 0, 30)}
    return [code for code in (f"{number:06d}" for number in range(count + 3)) if code not in accepted][:count]


def _admin_with_totp(db):
    admin = make_admin(db, login="boss")
    secret = auth.new_totp_secret()
    auth.enable_totp(db, scope.OPERATOR, admin, secret, auth.totp_code(secret, NOW), now=NOW)
    return admin, secret


def test_right_password_without_a_code_asks_for_the_second_factor(db) -> None:
    _admin_with_totp(db)
    with pytest.raises(SecondFactorRequired):
        attempt(db, "boss", PASSWORD, totp_code="")
    assert events(db)[-1].reason == "second factor required"


def test_a_current_or_adjacent_code_is_accepted(db) -> None:
    admin, secret = _admin_with_totp(db)
    for drift in (-30, 0, 30):
        code = auth.totp_code(secret, NOW + dt.timedelta(seconds=drift))
        assert attempt(db, "boss", PASSWORD, totp_code=code).tenant_id == admin.tenant_id


def test_a_stale_code_is_refused(db) -> None:
    _, secret = _admin_with_totp(db)
    code = auth.totp_code(secret, NOW - dt.timedelta(seconds=90))
    error = fail(db, "boss", PASSWORD, totp_code=code)
    assert error.field == "totp_code"
    assert events(db)[-1].reason == "second factor wrong"


def test_wrong_password_with_a_right_code_gets_the_generic_message(db) -> None:
    _, secret = _admin_with_totp(db)
    error = fail(db, "boss", "not the password", totp_code=auth.totp_code(secret, NOW))
    assert error.message == "Wrong login or password."


def test_wrong_codes_count_towards_throttling(db) -> None:
    _, secret = _admin_with_totp(db)
    for code in _wrong_codes(secret, 5):
        fail(db, "boss", PASSWORD, totp_code=code)
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD, totp_code=auth.totp_code(secret, NOW))


def test_enable_totp_refuses_a_wrong_code_and_saves_nothing(db) -> None:
    admin = make_admin(db, login="boss")
    secret = auth.new_totp_secret()
    with pytest.raises(ValidationError) as caught:
        auth.enable_totp(db, scope.OPERATOR, admin, secret, _wrong_codes(secret, 1)[0], now=NOW)
    assert caught.value.field == "totp_code"
    assert admin.totp_secret is None
    attempt(db, "boss", PASSWORD)


@pytest.mark.parametrize("secret", ["", "not base32!", "ABCDEFGH", "A" * 80])
def test_enable_totp_refuses_a_malformed_secret(db, secret: str) -> None:
    admin = make_admin(db, login="boss")
    with pytest.raises(ValidationError):
        auth.enable_totp(db, scope.OPERATOR, admin, secret, "123456", now=NOW)
    assert admin.totp_secret is None


def test_a_domain_admin_cannot_change_an_admins_second_factor(db) -> None:
    admin, _ = _admin_with_totp(db)
    domain = make_domain(db, tenant=admin.tenant)
    domain_admin = scope.domain_admin(domain.tenant_id, domain.id, name="ann@x.test")
    with pytest.raises(NotInScope):
        auth.disable_totp(db, domain_admin, admin)
    assert admin.totp_secret is not None


def test_disable_totp_lets_the_password_alone_log_in_again(db) -> None:
    admin, _ = _admin_with_totp(db)
    auth.disable_totp(db, scope.tenant_admin(admin.tenant_id, name="admin:boss"), admin)
    attempt(db, "boss", PASSWORD)


def test_an_imap_login_read_from_the_mail_logs_does_not_lift_panel_throttling(db) -> None:
    make_admin(db, login="boss")
    for guess in range(5):
        fail(db, "boss", f"guess number {guess}")
    db.add(
        AuthEvent(
            time=NOW, service="imap", login="boss", account="boss", client_ip=IP, network="192.0.2.0/24",
            success=True,
        )
    )  # fmt: skip
    with pytest.raises(LoginThrottled):
        attempt(db, "boss", PASSWORD)
