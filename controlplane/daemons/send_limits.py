"""The sending limits service: Postfix's policy service on the submission ports.

At each RCPT of a logged-in user it refuses, with a temporary error the client retries later:
- a recipient beyond the tenant's limit per message: `452 4.5.3` (RFC 5321 4.5.3.1.10: the
  client sends to those accepted and the rest in another message);
- the first recipient of a message once the mailbox, or its whole tenant, has sent its limit in
  the last hour: `450 4.7.1`, saying which limit and when to retry, before any data is sent.
At the end of each accepted message it counts that message for the mailbox and its tenant.

Limits come from the `mail_send_limits` view (per tenant, a mailbox may have its own), read on
each message, so a change applies to the next one. Counts live in Redis, in one-minute buckets
kept for an hour: the hour is a sliding window. If Redis cannot be asked, messages are not
counted and not refused for their rate (the recipient limit still holds): mail keeps flowing,
and the service's log says so.

It speaks Postfix's policy delegation protocol (name=value lines, an empty line, one
`action=` answer) on a unix socket only Postfix may open; one thread per smtpd connection.
"""

from __future__ import annotations

import collections
import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import Engine, create_engine, text

from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.postfix_socket import accepting, serve_to_postfix
from controlplane.settings import Settings

log = logging.getLogger(__name__)

SEND_LIMITS = BackgroundProcess(
    "The sending limits service", "send-limits.pid", "send-limits.log", ("send-limits", "--daemon")
)
WINDOW_MINUTES = 60
BUCKET_KEEP_SECONDS = WINDOW_MINUTES * 60 + 120
MAX_REQUEST_BYTES = 64 * 1024
# Messages in progress (their recipients so far), per smtpd transaction; bounded.
MAX_OPEN_MESSAGES = 10_000
LIMITS = text(
    "SELECT tenant_id, mailbox_hourly_messages, tenant_hourly_messages, max_recipients_per_message "
    "FROM mail_send_limits WHERE login = :login"
)


@dataclass(frozen=True)
class Limits:
    tenant_id: int
    mailbox_hourly: int
    tenant_hourly: int
    recipients: int


class Counter:
    """Messages sent per mailbox and per tenant in the last hour, in Redis minute buckets."""

    def __init__(self, port: int) -> None:
        self.redis = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    @staticmethod
    def _keys(kind: str, name: str, now: float) -> list[str]:
        minute = int(now // 60)
        return [f"letterhead:sent:{kind}:{name}:{m}" for m in range(minute - WINDOW_MINUTES + 1, minute + 1)]

    def sent(self, login: str, tenant_id: int, now: float) -> tuple[int, int]:
        """(messages of the mailbox, messages of its tenant) in the last hour."""
        mailbox_keys = self._keys("mailbox", login, now)
        tenant_keys = self._keys("tenant", str(tenant_id), now)
        values = self.redis.mget(mailbox_keys + tenant_keys)
        counts = [int(v) if v else 0 for v in values]
        return sum(counts[:WINDOW_MINUTES]), sum(counts[WINDOW_MINUTES:])

    def add(self, login: str, tenant_id: int, now: float) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for key in (self._keys("mailbox", login, now)[-1], self._keys("tenant", str(tenant_id), now)[-1]):
                pipe.incr(key)
                pipe.expire(key, BUCKET_KEEP_SECONDS)
            pipe.execute()


def _minutes_until_room(counter: Counter, kind: str, name: str, limit: int, now: float) -> int:
    """How long until the oldest minutes of the window drop out and the count is below `limit`."""
    keys = counter._keys(kind, name, now)
    counts = [int(v) if v else 0 for v in counter.redis.mget(keys)]
    total = sum(counts)
    for minutes, count in enumerate(counts, start=1):
        total -= count
        if total < limit:
            return minutes
    return WINDOW_MINUTES


class Policy:
    """The decisions, apart from the protocol: one per request's attributes."""

    def __init__(self, engine: Engine, counter: Counter, clock=time.time) -> None:
        self.engine = engine
        self.counter = counter
        self.clock = clock
        self._recipients: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _limits(self, login: str) -> Limits | None:
        with self.engine.connect() as connection:
            row = connection.execute(LIMITS, {"login": login.lower()}).first()
        return Limits(*row) if row else None

    def decide(self, request: dict[str, str]) -> str:
        login = request.get("sasl_username", "")
        if not login:
            return "DUNNO"  # not a logged-in client: the submission ports refuse it anyway
        state = request.get("protocol_state", "")
        limits = self._limits(login)
        if limits is None:
            return "DUNNO"
        instance = request.get("instance", "")
        if state == "RCPT":
            return self._at_recipient(login, limits, instance)
        if state == "END-OF-MESSAGE":
            with self._lock:
                self._recipients.pop(instance, None)
            try:
                self.counter.add(login, limits.tenant_id, self.clock())
            except redis.RedisError as error:
                log.warning("message of %s not counted: Redis did not answer: %s", login, error)
        return "DUNNO"

    def _at_recipient(self, login: str, limits: Limits, instance: str) -> str:
        with self._lock:
            accepted = self._recipients.get(instance, 0)
        if accepted >= limits.recipients:
            return (
                f"452 4.5.3 Too many recipients: at most {limits.recipients} per message; "
                "send to the others in another message"
            )
        if accepted == 0:
            refusal = self._hourly_refusal(login, limits)
            if refusal:
                return refusal
        with self._lock:
            self._recipients[instance] = accepted + 1
            self._recipients.move_to_end(instance)
            while len(self._recipients) > MAX_OPEN_MESSAGES:
                self._recipients.popitem(last=False)
        return "DUNNO"

    def _hourly_refusal(self, login: str, limits: Limits) -> str | None:
        now = self.clock()
        try:
            mailbox_sent, tenant_sent = self.counter.sent(login, limits.tenant_id, now)
            if mailbox_sent >= limits.mailbox_hourly:
                wait = _minutes_until_room(self.counter, "mailbox", login, limits.mailbox_hourly, now)
                return (
                    f"450 4.7.1 Hourly sending limit reached: this mailbox may send {limits.mailbox_hourly} "
                    f"messages an hour; try again in {wait} minutes"
                )
            if tenant_sent >= limits.tenant_hourly:
                wait = _minutes_until_room(
                    self.counter, "tenant", str(limits.tenant_id), limits.tenant_hourly, now
                )
                return (
                    f"450 4.7.1 Hourly sending limit reached for all mailboxes of this provider "
                    f"({limits.tenant_hourly} messages an hour); try again in {wait} minutes"
                )
        except redis.RedisError as error:
            log.warning("rate of %s not checked: Redis did not answer: %s", login, error)
        return None


class _PolicySession(socketserver.StreamRequestHandler):
    server: _PolicyServer

    def handle(self) -> None:
        while True:
            request: dict[str, str] = {}
            size = 0
            while True:
                line = self.rfile.readline(MAX_REQUEST_BYTES)
                size += len(line)
                if not line or size > MAX_REQUEST_BYTES:
                    return
                line = line.rstrip(b"\r\n")
                if not line:
                    break
                name, _, value = line.decode("utf-8", "replace").partition("=")
                request[name] = value
            try:
                action = self.server.policy.decide(request)
            except Exception:  # noqa: BLE001 - a broken lookup must not refuse mail for good
                log.exception("policy request failed")
                action = "451 4.3.0 Sending limits unavailable, try again later"
            if action != "DUNNO":
                log.info("%s: %s", request.get("sasl_username", ""), action)
            self.wfile.write(f"action={action}\n\n".encode())
            self.wfile.flush()


class _PolicyServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    # A burst of sessions asks at once: socketserver's default backlog of 5 refused the rest.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: Path, policy: Policy) -> None:
        self.policy = policy
        super().__init__(str(path), _PolicySession)


def socket_path(settings: Settings) -> Path:
    return settings.run_dir / "send-limits.sock"


def serve(settings: Settings, stop: threading.Event) -> None:
    """Serve until `stop` is set, to Postfix alone (daemons/postfix_socket.py)."""
    path = socket_path(settings)
    path.unlink(missing_ok=True)
    engine = create_engine(settings.sqlalchemy_url, pool_pre_ping=True)
    server = _PolicyServer(path, Policy(engine, Counter(settings.ports["redis"])))
    try:
        serve_to_postfix(path, server, stop)
    finally:
        engine.dispose()


def run_send_limits(settings: Settings, *, daemon: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with SEND_LIMITS.running(settings, daemon=daemon) as stop:
        serve(settings, stop)


def ready(settings: Settings) -> bool:
    return accepting(socket_path(settings))
