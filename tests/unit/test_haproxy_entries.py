"""What daemons/haproxy.py lets reach HAProxy's admin socket and crt-list, and what it shows of
HAProxy's replies."""

from __future__ import annotations

import pytest

from controlplane.daemons.haproxy import CrtListEntry, shown_reply, update_certificates


def test_a_reply_quoting_a_certificate_is_not_shown() -> None:
    reply = "Can't load\n-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n"
    assert "MIGHAgEAMBMG" not in shown_reply(reply)
    assert shown_reply("No ongoing transaction! !\nCan't commit /x/a.pem!\n") == (
        "No ongoing transaction! ! Can't commit /x/a.pem!"
    )


@pytest.mark.parametrize(
    "pem",
    [
        "relative.pem",
        "/x/a b.pem",
        "/x/a.pem;show info",
        "/x/a.pem:3",
        "/x/[a].pem",
        "/x/a.key",
        "/x/a.pem\n/y.pem",
    ],
)
def test_a_file_the_socket_or_the_list_would_read_otherwise_is_refused(pem: str) -> None:
    with pytest.raises(ValueError):
        CrtListEntry(pem, ("mail.a.test",))


@pytest.mark.parametrize(
    "name", ["Mail.a.test", "mail.a.test !x", "!mail.a.test", "a..test", "mail.a.test\n"]
)
def test_a_name_a_crt_list_would_read_otherwise_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        CrtListEntry("/x/a.pem", (name,))


def test_a_wildcard_name_is_taken() -> None:
    assert CrtListEntry("/x/a.pem", ("*.a.test", "a.test")).line() == "/x/a.pem *.a.test a.test"


def test_one_file_twice_is_refused_before_anything_changes(tmp_path) -> None:
    crt_list = tmp_path / "crt-list"
    twice = [CrtListEntry("/x/a.pem", ("a.test",)), CrtListEntry("/x/a.pem", ("b.test",))]
    with pytest.raises(ValueError):
        update_certificates(None, crt_list, twice)
    assert not crt_list.exists()


def test_a_default_file_the_socket_would_read_otherwise_is_refused(tmp_path) -> None:
    crt_list = tmp_path / "crt-list"
    with pytest.raises(ValueError):
        update_certificates(None, crt_list, [], default_pems={"/x/default.pem;show info"})
    assert not crt_list.exists()
