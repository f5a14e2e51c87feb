"""Letterhead's own services that Postfix asks on a unix socket (the sender milter, the sending
limits service): the socket only Postfix may open, served by threads until told to stop."""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import threading
from pathlib import Path


def serve_to_postfix(path: Path, server: socketserver.UnixStreamServer, stop: threading.Event) -> None:
    """Serve on `path` (bound by `server`) until `stop` is set; the socket is root:postfix 0660."""
    try:
        shutil.chown(path, "root", "postfix")
        os.chmod(path, 0o660)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def accepting(path: Path) -> bool:
    """Whether something accepts connections on the unix socket `path`."""
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
    except OSError:
        return False
    return True
