"""Settings: profile defaults, then `$LETTERHEAD_HOME/letterhead.toml`, then LETTERHEAD_* variables.

The state directory (LETTERHEAD_HOME, default ./var) holds the database, the rendered
configs, certificates, mail and logs, so one directory is one whole installation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controlplane.errors import ValidationError
from controlplane.models.tenant import GIB
from controlplane.validation import normalize_hostname

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_ROOT = PROJECT_ROOT / "templates"
MIGRATIONS_ROOT = PROJECT_ROOT / "migrations"

PORT_NAMES = (
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "managesieve",
    "quota_status",
    # Loopback only: mail Letterhead itself sends (Sieve redirects and vacation replies).
    "internal_smtp",
    # Loopback only: rspamd's milter (Postfix's spam filter and DKIM signer), its controller
    # (learning, statistics) and the Redis it keeps its state and Letterhead's policies in. Not
    # rspamd's and Redis's usual ports, where the system's own instances may listen.
    "rspamd_milter",
    "rspamd_controller",
    "redis",
    # Loopback only: postsrsd's two lookup tables (SRS for forwarded mail, and back for bounces).
    "srs_forward",
    "srs_reverse",
    # Between mail nodes only: Dovecot's LMTP, for deliveries another node proxies here.
    "lmtp",
    # Loopback only: Dovecot's IMAP and POP3 behind HAProxy's IMAPS and POP3S. HAProxy ends the
    # clients' TLS with each brand's certificate and hands the connection on in plain text, led
    # by the client's address (PROXY protocol).
    "imaps_proxied",
    "pop3s_proxied",
    "web",
    "http",
    "https",
)

PROFILE_PORTS = {
    # Unprivileged ports on loopback, so a development stack runs beside anything.
    "development": {
        "smtp": 2525,
        "submission": 2587,
        "submissions": 2465,
        "imap": 2143,
        "imaps": 2993,
        "pop3": 2110,
        "pop3s": 2995,
        "managesieve": 4190,
        "quota_status": 12340,
        "internal_smtp": 10025,
        "rspamd_milter": 11432,
        "rspamd_controller": 11434,
        "redis": 16379,
        "srs_forward": 11441,
        "srs_reverse": 11442,
        "lmtp": 2424,
        "imaps_proxied": 12993,
        "pop3s_proxied": 12995,
        "web": 8080,
        "http": 8880,
        "https": 8443,
    },
    "production": {
        "smtp": 25,
        "submission": 587,
        "submissions": 465,
        "imap": 143,
        "imaps": 993,
        "pop3": 110,
        "pop3s": 995,
        "managesieve": 4190,
        "quota_status": 12340,
        "internal_smtp": 10025,
        "rspamd_milter": 11432,
        "rspamd_controller": 11434,
        "redis": 16379,
        "srs_forward": 11441,
        "srs_reverse": 11442,
        "lmtp": 24,
        "imaps_proxied": 10993,
        "pop3s_proxied": 10995,
        "web": 8080,
        "http": 80,
        "https": 443,
    },
}

# "all" means every IPv4 and IPv6 address.
PROFILE_LISTEN = {"development": "127.0.0.1", "production": "all"}


@dataclasses.dataclass(frozen=True)
class Settings:
    home: Path
    profile: str = "development"
    hostname: str = "mail.letterhead.test"
    listen_address: str = "127.0.0.1"
    ports: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(PROFILE_PORTS["development"]))
    # Outbound mail goes here instead of to MX hosts when set, e.g. "[127.0.0.1]:2600".
    relayhost: str = ""
    # One of several mail nodes sharing a PostgreSQL database (models/node.py): this node's name,
    # and the address the other nodes reach its Dovecot on (default: the listen address, or the
    # hostname when that is every address). Empty name: a single machine.
    node_name: str = ""
    node_address: str = ""
    # Where mail to the platform's postmaster@ and abuse@ (its hostname) and to a
    # bare <postmaster> goes: an address the operator reads. Empty: such mail is refused.
    postmaster_address: str = ""
    min_mailbox_bytes: int = GIB
    vmail_user: str = "vmail"
    # Test stacks: short service throttling, no background certificate renewal.
    testing: bool = False
    # Under `letterhead up`, start again a part that died (runners/supervisor.py); systemd does
    # it in a production install. Test stacks turn it off, as tests stop daemons on purpose.
    supervise: bool = True
    # Who starts and restarts the parts: "letterhead" (`letterhead up`, its supervisor) or
    # "systemd" (written by `letterhead install`: then `up` and `down` point at systemctl).
    service_manager: str = "letterhead"
    # Dovecot slows logins from an address after failures there. Test stacks turn it off, as
    # all their clients share 127.0.0.1; the test of the penalty itself turns it back on.
    auth_penalty: bool = True
    database_url: str = ""
    # A domain change reloads Postfix at once, or, when one reloaded less than this long ago,
    # once at the end of the spell for every change made in it (daemons/postfix_reloads.py).
    postfix_reload_spacing_seconds: float = 30.0
    # How long a change waits for another writer (SQLite's busy timeout, PostgreSQL's
    # lock_timeout) before it is refused with "the database is busy".
    database_busy_seconds: float = 30.0
    secret_key: str = ""
    # Prometheus scrapes /metrics on the platform host with `Authorization: Bearer <this>`;
    # empty: no metrics are served.
    metrics_token: str = ""
    # How Letterhead's own background processes and certbot's hooks run its command line: this
    # Python with the CLI's module, unless an install names its own command (a list, or a string
    # split as a shell would).
    cli_command: tuple[str, ...] = (sys.executable, "-m", "controlplane.cli")
    # Brand hosts must resolve to these (comma-separated) before a certificate is ordered.
    platform_addresses: str = "127.0.0.1"
    # "address" or "address:port" of the DNS server brand checks ask; empty: the system's.
    dns_resolver: str = ""
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    # The ACME server's certificate authority as CAA records name it: the DNS page suggests a CAA
    # record allowing it for each brand host (empty: no CAA suggestion).
    acme_caa_identity: str = "letsencrypt.org"
    # A CA bundle to trust the ACME server with (a private one such as pebble); empty: the system's.
    acme_ca_bundle: str = ""
    mta_sts_mode: str = "testing"
    # A CA bundle to check old providers' IMAP certificates with during mail migrations; empty:
    # the system's.
    migration_ca_bundle: str = ""
    # Whether mail may be migrated from servers on loopback or private networks (a test's old
    # provider, or a company network); off, a tenant could probe those through the platform.
    migration_private_servers: bool = False
    # Mail transactions (with their SMTP dialogue), login attempts and unparsed log lines older
    # than this are purged daily by the log follower (services/log_retention.py).
    log_retention_days: int = 90
    # rspamd's lookups over the network: DNS blocklists, fuzzy hash servers, ASN. Off, rspamd
    # still checks SPF, DKIM, DMARC and ARC through `dns_resolver` (test stacks turn it off).
    spam_network_checks: bool = True
    # Where rspamd keeps its compiled (hyperscan) expressions, about 10 s of CPU to build: in
    # the state directory unless set; test stacks share one folder so only the first builds.
    spam_expression_cache: str = ""
    # The default thresholds (full admins set their own per domain): a message scoring at least
    # the reject score of every recipient's domain is refused at the end of DATA; one scoring at
    # least a mailbox's junk score is filed into its Junk folder.
    spam_reject_score: float = 15.0
    spam_junk_score: float = 6.0
    # rspamd's milter processes, each scanning messages on one core.
    spam_workers: int = 2
    # Greylisting (on per domain): how long a new sender must wait before its retry is accepted.
    greylist_delay_seconds: int = 300

    @property
    def database_path(self) -> Path:
        # A folder of its own: SQLite's WAL files are created beside the database by
        # whichever reader opens it first (see layout.protect_database).
        return self.home / "db" / "letterhead.db"

    @property
    def sni_database_path(self) -> Path:
        """Brand certificates and keys for Postfix's SNI map: readable by group postfix only."""
        return self.home / "db" / "sni.db"

    @property
    def usage_database_path(self) -> Path:
        """Storage used per mailbox, written by Dovecot's dict process (see layout.prepare_usage_database)."""
        return self.home / "usage" / "usage.db"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.database_path}"

    @property
    def reachable_address(self) -> str:
        """Where the other nodes reach this one: node_address, else a single listen address; ""
        when this node listens on every address and names none (its LMTP must not face the world)."""
        if self.node_address:
            return self.node_address
        return "" if self.listen_address == "all" else self.listen_address

    @property
    def is_postgresql(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def config_root(self) -> Path:
        return self.home / "config"

    @property
    def live_config(self) -> Path:
        """A symlink to the live generation; the daemons are started through it."""
        return self.config_root / "live"

    @property
    def mail_root(self) -> Path:
        return self.home / "mail"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def certs_dir(self) -> Path:
        return self.home / "certs"

    @property
    def acme_dir(self) -> Path:
        """certbot's config, work and logs folders and the HTTP-01 webroot nginx serves."""
        return self.home / "acme"

    @property
    def acme_webroot(self) -> Path:
        return self.acme_dir / "webroot"

    @property
    def platform_address_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.platform_addresses.split(",") if a.strip())

    @property
    def webmail_auth_socket(self) -> Path:
        """Dovecot's auth service for the webmail's logins (daemons/dovecot_auth.py): root's only."""
        return self.run_dir / "auth-webmail"

    @property
    def sender_milter_socket(self) -> Path:
        """The submission ports' From: check (daemons/sender_milter.py): Postfix's only."""
        return self.run_dir / "sender-milter.sock"

    @property
    def rspamd_dir(self) -> Path:
        """rspamd's database (Bayes cache, history), PID file and control socket: rspamd's own."""
        return self.home / "rspamd"

    @property
    def srs_dir(self) -> Path:
        """postsrsd's secret, which signs SRS addresses: losing it breaks bounces in flight."""
        return self.home / "srs"

    @property
    def redis_dir(self) -> Path:
        """Redis's snapshot (learned statistics, greylisting, rate counters): Redis's own."""
        return self.home / "redis"

    @property
    def tls_report_spool(self) -> Path:
        """TLS reports mailed to the platform, as Postfix hands them over (owned by the mail
        account, which Postfix's pipe runs as), until the periodic runner reads them."""
        return self.home / "reports" / "tls"

    @property
    def dkim_dir(self) -> Path:
        """The domains' DKIM private keys: readable by rspamd alone."""
        return self.home / "dkim"

    @property
    def postfix_queue(self) -> Path:
        return self.home / "postfix" / "queue"

    @property
    def postfix_data(self) -> Path:
        return self.home / "postfix" / "data"


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    if field.name == "home":
        return Path(value).resolve()
    if field.type in ("bool", bool) and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    if field.type in ("int", int):
        return int(value)
    if field.type in ("float", float):
        return float(value)
    if field.name == "cli_command":
        return tuple(shlex.split(value) if isinstance(value, str) else value)
    return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    environ = os.environ if environ is None else environ
    home = Path(overrides.pop("home", None) or environ.get("LETTERHEAD_HOME") or "var").resolve()
    values: dict[str, Any] = {}
    settings_file = home / "letterhead.toml"
    if settings_file.exists():
        values.update(tomllib.loads(settings_file.read_text()))
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in fields:
        env_value = environ.get(f"LETTERHEAD_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    values.update(overrides)
    values.pop("home", None)

    profile = values.get("profile", "development")
    if profile not in PROFILE_PORTS:
        raise ValueError(f"Unknown profile {profile!r}: use 'development' or 'production'.")
    ports = dict(PROFILE_PORTS[profile])
    ports.update({k: int(v) for k, v in dict(values.pop("ports", {})).items()})
    for name in PORT_NAMES:
        env_value = environ.get(f"LETTERHEAD_PORT_{name.upper()}")
        if env_value is not None:
            ports[name] = int(env_value)
    unknown = set(ports) - set(PORT_NAMES)
    if unknown:
        raise ValueError(f"Unknown port names in settings: {', '.join(sorted(unknown))}.")
    values.setdefault("listen_address", PROFILE_LISTEN[profile])
    if values.get("service_manager", "letterhead") not in ("letterhead", "systemd"):
        raise ValueError("service_manager is 'letterhead' or 'systemd'.")
    unknown_keys = set(values) - set(fields)
    if unknown_keys:
        raise ValueError(f"Unknown settings: {', '.join(sorted(unknown_keys))}.")
    coerced = {name: _coerce(fields[name], value) for name, value in values.items()}
    if "hostname" in coerced:
        # One spelling everywhere it is compared: Postfix's maps, postsrsd's SRS domain, nginx.
        try:
            coerced["hostname"] = normalize_hostname(coerced["hostname"])
        except ValidationError as error:
            raise ValueError(f"The hostname setting is not a server name: {error.message}") from None
    if coerced.get("node_name"):
        coerced["node_name"] = str(coerced["node_name"]).strip().lower()
        if not re.fullmatch(r"[a-z0-9_-]{1,63}", coerced["node_name"]):
            raise ValueError("node_name is 1 to 63 letters, digits, '-' or '_'.")
    if coerced.get("node_address"):
        # Dovecot trusts the other nodes by address (login_trusted_networks): an IP, not a name.
        try:
            coerced["node_address"] = str(ipaddress.ip_address(str(coerced["node_address"]).strip()))
        except ValueError:
            raise ValueError(
                "node_address is this node's (private) IP address, which the other nodes reach."
            ) from None
    if coerced.get("database_url"):
        coerced["database_url"] = checked_database_url(coerced["database_url"])
    return Settings(home=home, ports=ports, **coerced)


def checked_database_url(url: str) -> str:
    """SQLite (`sqlite:///path`) or PostgreSQL through psycopg 3; `postgresql://` means the latter."""
    url = url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ValueError(
            "database_url must be sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE."
        )
    return url
