"""Starting the stack says so when a daemon could not take its ports, instead of returning as
if it ran (Postfix's master writes its PID before it binds, then dies)."""

from __future__ import annotations

import socket

import pytest

from controlplane.daemons import postfix, postfix_log, postsrsd
from controlplane.daemons.process import DaemonError, listening_ports
from controlplane.runners.scratch import ScratchStack

pytestmark = pytest.mark.integration


def test_a_postfix_port_taken_by_another_program_fails_the_start_with_postfix_words() -> None:
    scratch = ScratchStack()
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", scratch.ports["submissions"]))
        squatter.listen()
        with pytest.raises(DaemonError) as failure:
            scratch.start()
        assert "Postfix did not start" in str(failure.value)
        assert "Address already in use" in str(failure.value)
        # Nothing left running that `up` said had failed.
        assert postfix.master_pid(scratch.settings.postfix_queue) is None
        assert postfix_log.WRITER.pid(scratch.settings) is None
    finally:
        squatter.close()
        scratch.stop()


def test_a_started_postfix_master_holds_every_postfix_port() -> None:
    scratch = ScratchStack()
    try:
        scratch.start()
        master = int((scratch.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0])
        held = listening_ports(master)
        assert {scratch.ports[name] for name in postfix_log.POSTFIX_PORT_NAMES} <= held
        # Dovecot's ports are Dovecot's, not Postfix's.
        assert scratch.ports["imap"] not in held
    finally:
        scratch.stop()


def _srs_forward(port: int, address: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(f"get {address}\n".encode())
        return client.recv(512).decode()


def test_postsrsd_follows_a_new_hostname_and_stays_when_nothing_changed() -> None:
    """Its SRS addresses must name the host Postfix answers for: a running postsrsd started with
    another hostname would make addresses whose bounces nobody takes."""
    scratch = ScratchStack()
    settings = scratch.settings
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        postsrsd.start(settings, "old.letterhead.test")
        first = postsrsd.pid(settings)
        assert "@old.letterhead.test" in _srs_forward(settings.ports["srs_forward"], "ann@elsewhere.test")
        postsrsd.start(settings, "old.letterhead.test")
        assert postsrsd.pid(settings) == first
        postsrsd.start(settings, "new.letterhead.test")
        assert postsrsd.pid(settings) not in (None, first)
        assert "@new.letterhead.test" in _srs_forward(settings.ports["srs_forward"], "ann@elsewhere.test")
    finally:
        postsrsd.stop(settings)
        scratch.stop()
