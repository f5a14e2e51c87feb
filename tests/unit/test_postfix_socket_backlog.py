"""The Unix-socket servers Postfix calls at the start of each session accept a burst of them.

socketserver listens with a backlog of 5: before these servers asked for more, the sixth
connection of a burst found the queue full and Postfix answered the client's AUTH with 454
"try again later" (measured with bench/logins.py: 8 clients at once).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from controlplane.daemons import send_limits, sender_milter

BURST = 64


def _connect_without_accepting(path: Path, count: int) -> int:
    """How many of `count` non-blocking connections the listening socket queues unaccepted."""
    clients = []
    try:
        for _ in range(count):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            clients.append(client)
            try:
                client.connect(str(path))
            except BlockingIOError:
                return len(clients) - 1
        return count
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize(
    "make_server",
    [
        lambda path: sender_milter._MilterServer(path, engine=None),
        lambda path: send_limits._PolicyServer(path, policy=None),
    ],
    ids=["sender-milter", "send-limits"],
)
def test_a_burst_of_sessions_is_queued_not_refused(tmp_path: Path, make_server) -> None:
    server = make_server(tmp_path / "server.sock")
    try:
        # Nothing accepts: every connection of the burst must wait in the listen queue.
        assert _connect_without_accepting(tmp_path / "server.sock", BURST) == BURST
    finally:
        server.server_close()
