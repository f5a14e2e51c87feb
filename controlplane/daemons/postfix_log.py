"""Postfix runs in the foreground under Letterhead's log writer, which writes its log without secrets.

Port 25 logs each SMTP command and reply (the log pipeline stores the dialogue), and Postfix logs a
client's line before anything can filter it: a client that sends `AUTH PLAIN <base64>` there (AUTH is
never offered on port 25, but nothing stops a client from trying) would have its password written
to the log. So Postfix logs to its standard output (`maillog_file = /dev/stdout`, which only
`postfix start-fg` allows), and this process, Postfix's parent, reads it line by line and appends
it to `log/postfix.log` with credentials redacted by the same rule the log pipeline applies to
the dialogue it stores (logs/dialogue.py): an AUTH command keeps only its mechanism, an answer to
a 334 challenge and the challenge itself become "[redacted]". Every other line is written as is.

Rotation is by rename (logrotate without copytruncate; `postfix logrotate` cannot rotate standard
output): the first line after the rename goes to a new file at the old path. SIGTERM stops Postfix
(`postfix stop`) and ends once its last line is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO

from controlplane.daemons import postfix
from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError, listening_ports, wait_until
from controlplane.logs.dialogue import REDACTED, parse_dialogue_line, process_of_line, redact
from controlplane.settings import Settings

POSTFIX = "/usr/sbin/postfix"
WRITER = BackgroundProcess(
    "Postfix's log writer",
    "postfix-log-writer.pid",
    "postfix-log-writer.log",
    ("postfix-log-writer", "--daemon"),
)
log = logging.getLogger(__name__)
# Postfix's programs send their log lines here (main.cf's postlog_service_name), in `public`.
LOG_SOCKET = "letterhead-log"
# smtpd processes whose last reply was a 334 challenge: their next client line is an answer.
_TRACKED_PROCESSES = 10_000


class MaillogRedactor:
    """Redacts credentials from Postfix log lines.

    Per smtpd process it remembers whether a 334 challenge is pending (the next client line
    answers it) and what it redacted: the trace also echoes a client's words in its internal
    lines (`match_list_match: <words>: no match`), so those are removed from every later line
    of the same session too, until its `disconnect from`. Lines that can hold nothing secret
    (most of them) pass with two substring tests: the trace logs about 160 lines a message.
    """

    def __init__(self) -> None:
        self._challenged: OrderedDict[str, None] = OrderedDict()
        self._secrets: OrderedDict[str, set[str]] = OrderedDict()

    def line(self, line: str) -> str:
        if ": < " not in line and ": > 334" not in line and not self._secrets:
            return line
        now = dt.datetime.now(dt.UTC)
        dialogue = parse_dialogue_line(line, now)
        if dialogue is not None:
            process, text = dialogue.process, dialogue.text
            if dialogue.direction == ">":
                if text.startswith("334"):
                    self._remember(self._challenged, process, None)
                cleaned = redact(">", text, answers_challenge=False)
            else:
                answers_challenge = process in self._challenged
                self._challenged.pop(process, None)
                cleaned = redact("<", text, answers_challenge=answers_challenge)
                if cleaned != text:
                    secret = _redacted_part(text, cleaned)
                    if len(secret) >= 4:
                        self._remember(self._secrets, process, set()).add(secret)
            if cleaned != text and line.endswith(text):
                # The text is the line's tail: stamp, host and process stay as logged.
                line = line[: len(line) - len(text)] + cleaned
        elif self._secrets:
            try:
                process = process_of_line(line, now)
            except (ValueError, IndexError, OverflowError):
                process = None
        else:
            return line
        if process is None or process not in self._secrets:
            return line
        for secret in self._secrets[process]:
            line = line.replace(secret, REDACTED)
        if ": disconnect from " in line:
            self._secrets.pop(process, None)
        return line

    @staticmethod
    def _remember(table: OrderedDict, process: str, default):
        value = table.setdefault(process, default)
        table.move_to_end(process)
        while len(table) > _TRACKED_PROCESSES:
            table.popitem(last=False)
        return value


def _redacted_part(text: str, cleaned: str) -> str:
    """What redaction took out of a client line: after "AUTH MECH ", or the whole line."""
    kept = cleaned.removesuffix(REDACTED).rstrip()
    return text[len(kept) :].strip() if kept and text.startswith(kept) else text.strip()


class _LogFile:
    """log/postfix.log, opened again when something renamed it away (rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None
        self._failing = False
        self._open()

    def _open(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
        self.handle = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open
        os.chmod(self.path, 0o640)

    def write(self, text: str) -> None:
        """Append `text` (whole lines); checked per batch: the first batch after a rename goes
        to a new file."""
        try:
            renamed = (
                self.handle is None or os.stat(self.path).st_ino != os.fstat(self.handle.fileno()).st_ino
            )
        except FileNotFoundError:
            renamed = True
        try:
            if renamed:
                self._open()
            assert self.handle is not None
            self.handle.write(text)
            self.handle.flush()
            self._failing = False
        except OSError:
            # A full disk, or a log folder gone: these lines are lost, and the mail goes on
            # (Postfix refuses it for storage on a full disk). The file is opened afresh for the
            # next batch, without the unwritten rest. Said once per spell of failures.
            if not self._failing:
                log.exception("Postfix's log lines could not be written to %s", self.path)
            self._failing = True
            if self.handle is not None:
                with contextlib.suppress(OSError):
                    self.handle.close()
            self.handle = None

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()


def config_dir(settings: Settings) -> Path:
    return settings.live_config / "postfix"


def run_log_writer(settings: Settings, *, daemon: bool = False, config: Path | None = None) -> None:
    """Run Postfix (the live config, or `config`) in the foreground and write its log, until it stops."""
    config = config or config_dir(settings)
    with WRITER.running(settings, daemon=daemon) as stop:
        log_socket = bind_log_socket(settings.postfix_queue)
        started = time.time()
        postfix_process = subprocess.Popen(
            [POSTFIX, "-c", str(config), "start-fg"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: a signal meant for the writer does not reach Postfix.
            start_new_session=True,
        )
        threading.Thread(target=_stop_postfix_when, args=(stop, config), daemon=True).start()
        leftovers = threading.Thread(
            target=_stop_what_a_dead_master_left,
            args=(postfix_process, settings.postfix_queue, started),
            daemon=True,
        )
        leftovers.start()
        log_file = _LogFile(settings.log_dir / "postfix.log")
        redactor = MaillogRedactor()
        try:
            assert postfix_process.stdout is not None
            _copy_lines_until_postfix_stops(log_socket, postfix_process.stdout.fileno(), log_file, redactor)
        finally:
            log_socket.close()
            log_socket_path(settings.postfix_queue).unlink(missing_ok=True)
            log_file.close()
            postfix_process.wait()
            # Processes that do not hold Postfix's output (a pipe(8) command's) may still be
            # between their SIGTERM and SIGKILL.
            leftovers.join(timeout=2 * LEFTOVER_GRACE_SECONDS + 1)


# A failure that comes back at once, batch after batch, is not one batch's: the writer waits
# this long before the next try rather than spin (and fill its own log with the same trace).
RETRY_PAUSE_SECONDS = 1.0


def _copy_lines_until_postfix_stops(
    log_socket: socket.socket, pipe: int, log_file: _LogFile, redactor: MaillogRedactor
) -> None:
    """One batch lost, never the writer: without it Postfix's lines would go nowhere while the
    mail goes on (a full disk is handled by the log file itself)."""
    failures_in_a_row = 0
    while True:
        started = time.monotonic()
        try:
            _copy_lines(log_socket, pipe, log_file, redactor)
            return
        except Exception:
            failures_in_a_row = failures_in_a_row + 1 if time.monotonic() - started < 1 else 1
            if failures_in_a_row <= 3:
                log.exception("Postfix's log writer failed on a batch of lines")
            elif failures_in_a_row == 4:
                log.error("Postfix's log writer keeps failing; trying again every second")
            if failures_in_a_row > 1:
                _drop_lines_for(log_socket, RETRY_PAUSE_SECONDS)


def _drop_lines_for(log_socket: socket.socket, seconds: float) -> None:
    """Pause without holding Postfix up: what arrives meanwhile is read and dropped, or every
    Postfix process would wait in send() once the socket's queue is full."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([log_socket], [], [], left)
        if readable:
            _waiting_datagrams(log_socket)


def log_socket_path(queue_directory: Path) -> Path:
    return queue_directory / "public" / LOG_SOCKET


def bind_log_socket(queue_directory: Path) -> socket.socket:
    """The socket every Postfix program sends its log lines to (`postlog_service_name`).

    Postfix's own postlogd would sit between: it goes away at every `postfix reload`, and a
    master that logs before the next one starts blocks for ever on the full socket (the
    kernel queues 10 datagrams by default), with every other Postfix process behind it. This
    socket belongs to the writer, which Postfix's reloads never touch. Bound before Postfix
    starts: a Postfix daemon drops what it cannot send."""
    public = queue_directory / "public"
    if not public.is_dir():
        # As Postfix makes it on its first start (it checks owner and mode then).
        public.mkdir(parents=True)
        shutil.chown(public, "postfix", "postdrop")
        os.chmod(public, 0o2710)
    path = log_socket_path(queue_directory)
    path.unlink(missing_ok=True)
    _lengthen_datagram_queues()
    log_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log_socket.bind(str(path))
    # Postfix programs run as postfix, and sendmail as any user (postdrop's group passes `public`).
    os.chmod(path, 0o666)
    return log_socket


def running_and_logged(settings: Settings) -> bool:
    """Postfix's master and its log writer both run, and Postfix's programs find the writer's
    socket: a Postfix started before it existed (an upgrade's reload) would drop every line."""
    return (
        postfix.master_pid(settings.postfix_queue) is not None
        and WRITER.pid(settings) is not None
        and log_socket_path(settings.postfix_queue).is_socket()
    )


# systemd's value on Debian. The kernel's own default is 10, and Postfix's programs wait in send()
# whenever the writer is that many lines behind.
DATAGRAM_QUEUE = 512


def _lengthen_datagram_queues(setting: Path = Path("/proc/sys/net/unix/max_dgram_qlen")) -> None:
    """Read when a socket is made: raised first, so a pause of the writer (a batch being written)
    does not hold up every Postfix process at once."""
    try:
        if int(setting.read_text()) < DATAGRAM_QUEUE:
            setting.write_text(f"{DATAGRAM_QUEUE}\n")
    except (OSError, ValueError):
        # A container's read-only /proc/sys: Postfix waits on the writer more often, nothing worse.
        log.info("net.unix.max_dgram_qlen stays as it is")


def _copy_lines(log_socket: socket.socket, pipe: int, log_file: _LogFile, redactor: MaillogRedactor) -> None:
    """Until Postfix's output ends: each datagram is one log line; the pipe carries what the
    master and postfix-script write directly (before the socket answers, and their errors).
    Whatever is waiting is read, redacted and written at once: one write a batch under load,
    each line at once when quiet."""
    selector = selectors.DefaultSelector()
    selector.register(log_socket, selectors.EVENT_READ)
    selector.register(pipe, selectors.EVENT_READ)
    pending = b""
    while True:
        lines: list[bytes] = []
        for key, _events in selector.select():
            if key.fileobj is log_socket:
                lines += _waiting_datagrams(log_socket)
                continue
            chunk = os.read(pipe, 1 << 16)
            if not chunk:
                # Postfix stopped: its last lines are already in the socket.
                lines += _waiting_datagrams(log_socket)
                if pending:
                    lines.append(pending)
                _write(lines, log_file, redactor)
                return
            *complete, pending = (pending + chunk).split(b"\n")
            lines += complete
        _write(lines, log_file, redactor)


def _waiting_datagrams(log_socket: socket.socket, most: int = 2000) -> list[bytes]:
    lines = []
    for _ in range(most):
        try:
            lines.append(log_socket.recv(1 << 16, socket.MSG_DONTWAIT).rstrip(b"\n"))
        except BlockingIOError:
            break
    return lines


def _write(lines: list[bytes], log_file: _LogFile, redactor: MaillogRedactor) -> None:
    if lines:
        log_file.write("".join(_redacted(redactor, line.decode("utf-8", "replace")) + "\n" for line in lines))


def _redacted(redactor: MaillogRedactor, line: str) -> str:
    """The line as the redactor leaves it; a line it fails on is withheld (it could hold a
    password), never the writer stopped by what a client sent."""
    try:
        return redactor.line(line)
    except Exception:
        log.exception("A Postfix log line could not be checked for credentials")
        head = line.split(": ", 1)[0]
        return (
            head if len(head) < 80 and ": " in line else ""
        ) + ": [line withheld: it could not be checked]"


def _stop_postfix_when(stop: threading.Event, config: Path) -> None:
    stop.wait()
    subprocess.run([POSTFIX, "-c", str(config), "stop"], capture_output=True, check=False)


# How long a dead master's leftover processes get to end on SIGTERM before SIGKILL.
LEFTOVER_GRACE_SECONDS = 3.0


def _stop_what_a_dead_master_left(
    postfix_process: subprocess.Popen, queue_directory: Path, started: float
) -> None:
    """Once Postfix's master is gone, stop the processes it left, as systemd stops the rest of
    a unit's processes when its main one dies (KillMode=control-group).

    A master killed under load left an smtpd in a client's session. It held the listening
    sockets and Postfix's output (this writer's pipe), so the writer waited on it and Postfix
    was back only when that smtpd gave up 100 s later (reproduced); under systemd too, whose
    unit's main process is this writer. The master runs in a session of its own, so its
    children's process group is its PID: no other process can join that group while one of
    them lives, and none can make a new one with that id while the PID is unused, so the
    signal reaches only what this master left."""
    postfix_process.wait()  # postfix-script ends after its master, which it reaps
    pid_file = queue_directory / "pid" / "master.pid"
    try:
        if pid_file.stat().st_mtime < started - 1:
            return  # an earlier master's file: this start failed before a master ran
        master = int(pid_file.read_text().split()[0])
        os.kill(master, 0)
    except ProcessLookupError:
        pass  # gone and reaped: what it left, if anything, is stopped below
    except (OSError, ValueError, IndexError):
        return
    else:
        return  # that PID lives (or is an unreaped zombie): not a master this writer ran
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(master, signal_number)
        except ProcessLookupError:
            return  # nothing was left
        except PermissionError:
            log.warning("The processes Postfix's master %s left could not be stopped", master)
            return
        if wait_until(lambda: not _group_lives(master), timeout=LEFTOVER_GRACE_SECONDS):
            return


def _group_lives(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # some of it is out of reach, so it is not gone
    return True


# The ports master.cf has Postfix listen on.
POSTFIX_PORT_NAMES = ("smtp", "submission", "submissions", "internal_smtp")


def start(settings: Settings) -> None:
    """Start Postfix under the log writer; returns once its master listens on all its ports.

    The master writes its PID before it binds its listeners, so a port taken by another
    program shows only as the master gone again (and a fatal line in its log)."""
    log = settings.log_dir / "postfix.log"
    # Only this start's words explain its failure, not a fatal line from an earlier run.
    started_at = log.stat().st_size if log.exists() else 0
    WRITER.start(settings)
    own_ports = {settings.ports[name] for name in POSTFIX_PORT_NAMES}

    def serving() -> bool:
        master = postfix.master_pid(settings.postfix_queue)
        return master is not None and own_ports <= listening_ports(master)

    wait_until(lambda: serving() or WRITER.pid(settings) is None, timeout=30)
    if not serving():
        # Still trying after the time-out (a port held elsewhere): stop it rather than leave a
        # master that `up` reported as failed.
        stop(settings)
        raise DaemonError(f"Postfix did not start: {_last_fatal_line(log, started_at) or 'see ' + str(log)}")


def _last_fatal_line(log: Path, since: int = 0) -> str | None:
    """Postfix's own words for why it stopped, from what its log gained since offset `since`."""
    try:
        with log.open("rb") as stream:
            stream.seek(max(since, log.stat().st_size - 65536))
            tail = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    fatal = [line.split("fatal: ", 1)[1] for line in tail if "fatal: " in line]
    return fatal[-1] if fatal else None


def stop(settings: Settings) -> None:
    """Stop Postfix and its log writer (which writes Postfix's last lines first)."""
    pid = WRITER.pid(settings)
    if pid:
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: WRITER.pid(settings) is None, timeout=30):
            raise DaemonError("Postfix's log writer did not stop.")
