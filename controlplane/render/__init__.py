"""State -> {relative path: file content}: pure functions over the templates.

A renderer never queries the database; it receives a `RenderState`. Same state,
same bytes: nothing here depends on time, order of dict iteration or the output
directory (files name each other through the `live` symlink and Postfix's
`${config_directory}`, never through a generation's own path).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import jinja2

from controlplane.settings import TEMPLATE_ROOT, Settings
from controlplane.validation import normalize_address, normalize_hostname

MESSAGE_SIZE_LIMIT = 50 * 1024 * 1024
# What a web request may carry beyond that: the form around a message's attachments.
UPLOAD_SLACK_BYTES = 10 * 1024 * 1024

# Postfix sqlite maps. Each filters local part and domain separately so the lookups
# use the unique indexes; Postfix quotes %s/%u/%d itself and suppresses a query whose
# local part is empty (hence the catch-all map keyed on the whole "@domain" string).
POSTFIX_SQL_MAPS = {
    "sql-domains.cf": (
        "hosted domains",
        "SELECT domain FROM mail_domains WHERE domain = '%s'",
    ),
    "sql-mailboxes.cf": (
        "addresses that are mailboxes",
        "SELECT 'mailbox' FROM mail_users WHERE local_part = '%u' AND domain = '%d'",
    ),
    "sql-forwardings.cf": (
        "aliases, and mailboxes to themselves",
        "SELECT destination FROM mail_forwardings WHERE local_part = '%u' AND domain = '%d'",
    ),
    "sql-role-addresses.cf": (
        "postmaster@ and abuse@ of every domain: its domain admins, else the tenant's address",
        "SELECT destination FROM mail_role_addresses WHERE local_part = '%u' AND domain = '%d'",
    ),
    "sql-catchall.cf": (
        "catch-all aliases, looked up as @domain",
        "SELECT destination FROM mail_aliases WHERE local_part = '' "
        "AND domain = substr('%s', 2) AND substr('%s', 1, 1) = '@'",
    ),
    "sql-sender-logins.cf": (
        "which logins may send as an address",
        "SELECT login FROM mail_sender_logins WHERE local_part = '%u' AND domain = '%d'",
    ),
}


# The same lookups on PostgreSQL, through functions that keep their query plans (migration 0019):
# planning the views' joins anew for every lookup cost more than the lookup.
POSTFIX_PGSQL_QUERIES = {
    "sql-domains.cf": "SELECT * FROM postfix_domain('%s')",
    "sql-mailboxes.cf": "SELECT * FROM postfix_mailbox('%u', '%d')",
    "sql-forwardings.cf": "SELECT * FROM postfix_forwardings('%u', '%d')",
    "sql-role-addresses.cf": "SELECT * FROM postfix_role_addresses('%u', '%d')",
    "sql-catchall.cf": "SELECT * FROM postfix_catchall('%s')",
    "sql-sender-logins.cf": "SELECT * FROM postfix_sender_logins('%u', '%d')",
}


FULL_MAILBOXES_MAP = (
    "mailboxes already full, refused at RCPT on any node (the shared usage table)",
    "SELECT * FROM postfix_full_mailbox('%u', '%d')",
)


def _srs_maps(state: RenderState) -> dict[str, tuple[str, str]]:
    """Forwarded mail from a sender outside the hosted domains goes out through the internal
    listener, whose cleanup rewrites its sender with SRS (postsrsd). The SRS domain is the
    platform hostname; its own addresses are never sent round again."""
    hostname = normalize_hostname(state.hostname)
    if state.daemon_database.driver == "pgsql":
        hosted_domains = "postfix_domain('%d')"
    else:
        hosted_domains = "mail_domains WHERE domain = '%d'"
    return {
        "sql-srs-forwards.cf": (
            "forwarded mail from senders outside the hosted domains: through the internal listener (SRS)",
            f"SELECT 'smtp:[127.0.0.1]:{state.ports['internal_smtp']}' WHERE '%d' <> '{hostname}' "
            f"AND NOT EXISTS (SELECT 1 FROM {hosted_domains})",
        ),
        "sql-hosted-senders.cf": (
            "senders of the hosted domains, kept as they are (never rewritten with SRS)",
            f"SELECT '%s' FROM {hosted_domains}",
        ),
    }


# Postfix reads each brand's key and chain from its own SQLite file on every handshake
# (see daemons/sni.py), so adding or renewing a brand needs no Postfix reload.
POSTFIX_SNI_MAP = (
    "sql-sni.cf",
    "private key and certificate chain (base64 PEM) per brand hostname",
    "SELECT chain FROM sni_chains WHERE hostname = '%s'",
)


@dataclasses.dataclass(frozen=True)
class TlsIdentity:
    """A hostname and the certificate and key served for it."""

    hostname: str
    cert_path: str
    key_path: str


# Dovecot's dict service writes the usage database (quota_clone), so its folder
# belongs to this account (layout.prepare_usage_database): Dovecot's own unprivileged
# user, which can read no mail and no password hash.
USAGE_DICT_USER = "dovecot"


@dataclasses.dataclass(frozen=True)
class DatabaseLogin:
    role: str
    password: str


@dataclasses.dataclass(frozen=True)
class DaemonDatabase:
    """Where Postfix and Dovecot read the state: an SQLite file (`path`), or a PostgreSQL
    database with one login per daemon (daemons/database_logins.py)."""

    driver: str  # "sqlite" or "pgsql": the daemons' own name for it
    path: str = ""
    host: str = ""
    port: int = 0
    name: str = ""
    logins: Mapping[str, DatabaseLogin] = dataclasses.field(default_factory=dict)

    def login(self, daemon: str) -> DatabaseLogin:
        try:
            return self.logins[daemon]
        except KeyError:
            raise ValueError(f"No database login for {daemon}: run `letterhead db upgrade`.") from None

    def dovecot_connect(self, daemon: str) -> str:
        """Dovecot's `connect` setting: the file, or libpq's key=value string."""
        if self.driver == "sqlite":
            return self.path
        login = self.login(daemon)
        return f"host={self.host} port={self.port} dbname={self.name} user={login.role} password={login.password}"


@dataclasses.dataclass(frozen=True)
class VmailAccount:
    """The account that owns all mail storage; Dovecot's mail processes run as it."""

    name: str
    uid: int
    gid: int


@dataclasses.dataclass(frozen=True)
class Paths:
    home: str
    database: str
    sni_database: str
    usage_database: str
    live_config: str
    mail_root: str
    log_dir: str
    postfix_queue: str
    postfix_data: str
    dovecot_base: str
    dovecot_state: str
    lmtp_socket: str
    auth_socket: str
    webmail_auth_socket: str
    sender_milter_socket: str
    run_dir: str
    acme_webroot: str
    rspamd_dir: str
    redis_dir: str
    dkim_dir: str
    tls_report_spool: str
    # Each served certificate as one file, its key then its chain, for nginx's and HAProxy's TLS
    # by SNI.
    served_tls: str
    # Which served files HAProxy loads at a start, and for which names: one fixed path outside the
    # generations (HAProxy knows it by the path it started with), rewritten by daemons/haproxy.py.
    haproxy_crt_list: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Paths:
        run = settings.run_dir
        return cls(
            home=str(settings.home),
            database=str(settings.database_path),
            sni_database=str(settings.sni_database_path),
            usage_database=str(settings.usage_database_path),
            live_config=str(settings.live_config),
            mail_root=str(settings.mail_root),
            log_dir=str(settings.log_dir),
            postfix_queue=str(settings.postfix_queue),
            postfix_data=str(settings.postfix_data),
            dovecot_base=str(run / "dovecot"),
            dovecot_state=str(settings.home / "dovecot-state"),
            lmtp_socket=str(run / "lmtp"),
            auth_socket=str(run / "auth-postfix"),
            webmail_auth_socket=str(settings.webmail_auth_socket),
            sender_milter_socket=str(settings.sender_milter_socket),
            run_dir=str(run),
            acme_webroot=str(settings.acme_webroot),
            rspamd_dir=str(settings.rspamd_dir),
            redis_dir=str(settings.redis_dir),
            dkim_dir=str(settings.dkim_dir),
            tls_report_spool=str(settings.tls_report_spool),
            served_tls=str(settings.certs_dir / "served"),
            haproxy_crt_list=str(settings.certs_dir / "haproxy.crt-list"),
        )


# rspamd modules that ask servers on the network (DNS blocklists, fuzzy hashes, ASN): turned off
# with the `spam_network_checks` setting. SPF, DKIM, DMARC and ARC still ask the DNS resolver.
SPAM_NETWORK_MODULES = ("rbl", "fuzzy_check", "asn")
# Redis hash of each domain's reject score that differs from the default (daemons/spam_policy.py).
SPAM_REJECT_SCORES_KEY = "letterhead:reject-score"
# Redis set of the domains with greylisting on; greylisting's own keys start with the prefix.
GREYLIST_DOMAINS_KEY = "letterhead:greylist-domains"
GREYLIST_PREFIX = "letterhead:grey:"
# Redis sets of each mailbox's allowed senders, keyed by its address: a message one of its
# recipients allows is never refused as spam (it may still be filed as junk for the others).
ALLOWED_SENDERS_PREFIX = "letterhead:allow:"
# The header rspamd adds to mail from outside: its score in hundredths, which the Sieve rule
# that files junk compares with the mailbox's junk score.
SPAM_SCORE_HEADER = "X-Letterhead-Spam-Score"
# The senders rspamd found a message proves (the envelope sender by SPF, the From address by
# DMARC), which alone the mailbox's allow list may name at delivery.
# The name Postfix's internal listener gives itself to rspamd (the milter's {daemon_name}), which
# scans nothing it sends on and signs only what Dovecot wrote.
INTERNAL_MTA_TAG = "letterhead-internal"
# The admins' Sieve filter of a mailbox, in its home (daemons/sieve_files.py writes it).
ADMIN_SIEVE_SCRIPT = ".letterhead-admin.sieve"
VERIFIED_ENVELOPE_HEADER = "X-Letterhead-Verified-Envelope"
VERIFIED_FROM_HEADER = "X-Letterhead-Verified-From"


@dataclasses.dataclass(frozen=True)
class SpamFilter:
    """rspamd's settings: where it asks DNS, what it may look up, the default scores."""

    # Empty: rspamd's database folder.
    expression_cache: str = ""
    network_checks: bool = True
    # "address" or "address:port"; none: the system's resolver.
    nameservers: tuple[str, ...] = ()
    reject_score: float = 15.0
    junk_score: float = 6.0
    worker_count: int = 2
    greylist_delay_seconds: int = 300


@dataclasses.dataclass(frozen=True)
class RenderState:
    hostname: str
    listen_address: str
    ports: Mapping[str, int]
    paths: Paths
    vmail: VmailAccount
    default_tls: TlsIdentity
    sni_identities: tuple[TlsIdentity, ...] = ()
    relayhost: str = ""
    testing: bool = False
    postmaster_address: str = ""
    # Dovecot's delay after failed logins, per client address; test stacks turn it off.
    auth_penalty: bool = True
    spam: SpamFilter = SpamFilter()
    # None: the SQLite file at paths.database.
    database: DaemonDatabase | None = None
    # One of several mail nodes (models/node.py): its name, the address the others reach it on,
    # and theirs. Empty name: a single machine.
    node_name: str = ""
    node_address: str = ""
    peer_addresses: tuple[str, ...] = ()

    @property
    def daemon_database(self) -> DaemonDatabase:
        return self.database or DaemonDatabase(driver="sqlite", path=self.paths.database)

    @property
    def inet_protocols(self) -> str:
        return "ipv4" if self.listen_address.count(".") == 3 else "all"

    @property
    def dovecot_listen(self) -> str:
        return "*, ::" if self.listen_address == "all" else self.listen_address

    @property
    def instance_name(self) -> str:
        # doveadm finds a running instance by name: one per state directory.
        return "letterhead-" + hashlib.sha256(self.paths.home.encode()).hexdigest()[:10]


def _checked_node_name(name: str) -> str:
    # It is written into an SQL query: letters, digits, '-' and '_' only (services/nodes.py).
    if name and not re.fullmatch(r"[a-z0-9_-]{1,63}", name):
        raise ValueError(f"Unsafe node name: {name!r}")
    return name


def _checked_address(address: str) -> str:
    # A host name or an IP address, written into Dovecot's configuration.
    if address and not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", address):
        raise ValueError(f"Unsafe node address: {address!r}")
    return address


def _environment(template_root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def checked_identities(identities: tuple[TlsIdentity, ...]) -> tuple[TlsIdentity, ...]:
    checked = {}
    for identity in identities:
        hostname = normalize_hostname(identity.hostname)
        for path in (identity.cert_path, identity.key_path):
            if not Path(path).is_absolute() or any(ch.isspace() or ch in "{}\"'<>$" for ch in path):
                raise ValueError(f"Unsafe certificate path for {hostname}: {path!r}")
        checked[hostname] = dataclasses.replace(identity, hostname=hostname)
    return tuple(checked[name] for name in sorted(checked))


@dataclasses.dataclass(frozen=True)
class ServedCertificate:
    """One certificate and every name it is served for (a brand host and its setup names)."""

    cert_path: str
    key_path: str
    hostnames: tuple[str, ...]


# Every daemon's renderer asks for the same identities: with thousands of brands, checking
# their names once per render_all instead of once per daemon saves most of its time.
@functools.lru_cache(maxsize=4)
def served_certificates(identities: tuple[TlsIdentity, ...]) -> tuple[ServedCertificate, ...]:
    """The identities grouped by certificate: one published file each for nginx's map."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for identity in checked_identities(identities):
        by_pair.setdefault((identity.cert_path, identity.key_path), []).append(identity.hostname)
    return tuple(
        ServedCertificate(cert, key, tuple(sorted(names))) for (cert, key), names in sorted(by_pair.items())
    )


def served_pem_path(paths: Paths, cert_path: str, key_path: str) -> str:
    """Where a certificate's key and chain are published as one file for nginx (daemons/sni.py):
    named by the pair, so a renewed certificate keeps its name and the map its entries."""
    digest = hashlib.sha256(f"{cert_path}\0{key_path}".encode()).hexdigest()[:24]
    return f"{paths.served_tls}/{digest}.pem"


# The platform host's own addresses for the operator: RFC 5321 requires postmaster, RFC 2142 abuse.
PLATFORM_MAILBOX_NAMES = ("postmaster", "abuse")
# Mail to the platform's tls-reports@ is routed to this domain (RFC 2606: never a real one), which
# Postfix's transport map sends to the TLS-report spool (master.cf's `tls-reports` service).
TLS_REPORT_DOMAIN = "tls-reports.invalid"


def _context(state: RenderState) -> dict[str, object]:
    return {
        "hostname": normalize_hostname(state.hostname),
        "internal_mta_tag": INTERNAL_MTA_TAG,
        "admin_sieve_script": ADMIN_SIEVE_SCRIPT,
        "listen_address": state.listen_address,
        "dovecot_listen": state.dovecot_listen,
        "inet_protocols": state.inet_protocols,
        "instance_name": state.instance_name,
        "ports": dict(state.ports),
        "paths": state.paths,
        "vmail": state.vmail,
        "usage_dict_user": USAGE_DICT_USER,
        "default_tls": state.default_tls,
        "relayhost": state.relayhost,
        "testing": state.testing,
        "postmaster_address": normalize_address(state.postmaster_address) if state.postmaster_address else "",
        "platform_mailbox_names": PLATFORM_MAILBOX_NAMES,
        "tls_report_domain": TLS_REPORT_DOMAIN,
        "auth_penalty": state.auth_penalty,
        "message_size_limit": MESSAGE_SIZE_LIMIT,
        "database": state.daemon_database,
        "node_name": _checked_node_name(state.node_name),
        "node_address": _checked_address(state.node_address),
        "node_trusted_networks": sorted({_checked_address(address) for address in state.peer_addresses}),
        "upload_limit": MESSAGE_SIZE_LIMIT + UPLOAD_SLACK_BYTES,
    }


def render_postfix(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    env = _environment(template_root)
    context = _context(state)
    files = {
        "postfix/main.cf": env.get_template("postfix/main.cf.j2").render(context),
        "postfix/master.cf": env.get_template("postfix/master.cf.j2").render(context),
    }
    map_template = env.get_template("postfix/sql-map.cf.j2")
    database = state.daemon_database
    login = database.login("postfix") if database.driver == "pgsql" else None
    for name, (purpose, query) in {**POSTFIX_SQL_MAPS, **_srs_maps(state)}.items():
        if database.driver == "pgsql":
            query = POSTFIX_PGSQL_QUERIES.get(name, query)
        files[f"postfix/{name}"] = map_template.render(
            context, purpose=purpose, query=query, dbpath=database.path, login=login
        )
    if database.driver == "pgsql":
        # Any node refuses a full mailbox at RCPT, whichever node holds it (migration 0022).
        files["postfix/sql-full-mailboxes.cf"] = map_template.render(
            context, purpose=FULL_MAILBOXES_MAP[0], query=FULL_MAILBOXES_MAP[1], dbpath=None, login=login
        )
    for name in ("srs-addresses", "srs-recipients"):
        files[f"postfix/{name}"] = env.get_template(f"postfix/{name}.j2").render(
            context, hostname_pattern=re.escape(context["hostname"])
        )
    files["postfix/platform-aliases"] = env.get_template("postfix/platform-aliases.j2").render(context)
    files["postfix/platform-transport"] = env.get_template("postfix/platform-transport.j2").render(context)
    files["postfix/openssl-no-tickets.cnf"] = env.get_template("postfix/openssl-no-tickets.cnf.j2").render(
        context
    )
    name, purpose, query = POSTFIX_SNI_MAP
    # Each node's own SQLite file, whatever the shared database: it names this node's files.
    files[f"postfix/{name}"] = map_template.render(
        context, purpose=purpose, query=query, dbpath=state.paths.sni_database, login=None
    )
    return files


RSPAMC = "/usr/bin/rspamc"


def render_dovecot(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    env = _environment(template_root)
    context = _context(state)
    context["spam"] = {
        "junk_hundredths": round(state.spam.junk_score * 100),
        "score_header": SPAM_SCORE_HEADER,
        "verified_envelope_header": VERIFIED_ENVELOPE_HEADER,
        "verified_from_header": VERIFIED_FROM_HEADER,
        "rspamc": RSPAMC,
    }
    names = (
        "dovecot.conf",
        "dovecot-sql.conf.ext",
        "dovecot-dict-usage.conf.ext",
        "quota-warning.sh",
        # Junk filing before each mailbox's filters, and learning from users' moves (IMAPSieve).
        "sieve/junk.sieve",
        "sieve/learn-spam.sieve",
        "sieve/learn-ham.sieve",
        "sieve-pipe/learn-spam.sh",
        "sieve-pipe/learn-ham.sh",
    )
    return {f"dovecot/{name}": env.get_template(f"dovecot/{name}.j2").render(context) for name in names}


# nginx's workers: they read the ACME webroot, talk to the app, and read the published chains
# and keys (served_tls, group www-data) at each HTTPS handshake, as they choose the certificate
# by SNI.
NGINX_USER = "www-data"


def _listen_addresses(listen_address: str, port: int) -> list[str]:
    if listen_address == "all":
        return [str(port), f"[::]:{port}"]
    return [f"{listen_address}:{port}"]


def render_nginx(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    env = _environment(template_root)
    certificates = served_certificates(state.sni_identities)
    name_count = sum(len(c.hostnames) for c in certificates)
    https_port = state.ports["https"]
    tls_by_name = [
        (hostname, served_pem_path(state.paths, certificate.cert_path, certificate.key_path))
        for certificate in certificates
        for hostname in certificate.hostnames
    ]
    nginx = {
        "user": NGINX_USER,
        "pid_file": f"{state.paths.run_dir}/nginx.pid",
        "temp_dir": f"{state.paths.run_dir}/nginx",
        "acme_webroot": state.paths.acme_webroot,
        "listen_http": _listen_addresses(state.listen_address, state.ports["http"]),
        "listen_https": _listen_addresses(state.listen_address, https_port),
        "https_port_suffix": "" if https_port == 443 else f":{https_port}",
        # nginx refuses to start when a map's hash cannot be built within this size.
        "names_hash_max_size": max(1024, 1 << (4 * name_count).bit_length()),
        "tls_by_name": tls_by_name,
        "default_pem": served_pem_path(state.paths, state.default_tls.cert_path, state.default_tls.key_path),
    }
    return {"nginx/nginx.conf": env.get_template("nginx/nginx.conf.j2").render(_context(state), nginx=nginx)}


# HAProxy's workers, which face the IMAPS and POP3S clients: Debian's haproxy package makes the
# account. They read no file after the start (the master, root, loads the certificates).
HAPROXY_USER = "haproxy"
MAIL_PROXIES = (("imaps", "IMAPS"), ("pop3s", "POP3S"))


def _haproxy_binds(listen_address: str, port: int) -> list[str]:
    if listen_address == "all":
        # Two sockets, as nginx listened: one dual-stack socket would hand Dovecot an IPv4
        # client as ::ffff:a.b.c.d, in its logs and its login throttling.
        return [f"0.0.0.0:{port}", f":::{port} v6only"]
    if ":" in listen_address:
        return [f"[{listen_address}]:{port}"]
    return [f"{listen_address}:{port}"]


def render_haproxy(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    """The mail ports' TLS front. It names no brand (the crt-list, outside the generation, does):
    a brand added or renewed leaves this file, and so HAProxy's check and reload, alone."""
    env = _environment(template_root)
    haproxy = {
        "pid_file": f"{state.paths.run_dir}/haproxy.pid",
        "admin_socket": f"{state.paths.run_dir}/haproxy-admin.sock",
        "chroot": f"{state.paths.run_dir}/haproxy",
        "user": HAPROXY_USER,
        "crt_list": state.paths.haproxy_crt_list,
        "default_pem": served_pem_path(state.paths, state.default_tls.cert_path, state.default_tls.key_path),
        "mail_proxies": [
            {
                "name": name,
                "description": description,
                "listen": _haproxy_binds(state.listen_address, state.ports[name]),
                "backend": f"127.0.0.1:{state.ports[name + '_proxied']}",
            }
            for name, description in MAIL_PROXIES
        ],
    }
    template = env.get_template("haproxy/haproxy.cfg.j2")
    return {"haproxy/haproxy.cfg": template.render(_context(state), haproxy=haproxy)}


def _spam_filter(state: RenderState) -> SpamFilter:
    for server in state.spam.nameservers:
        if not re.fullmatch(r"[0-9A-Za-z.:\[\]-]{1,100}", server):
            raise ValueError(f"Unsafe DNS server for rspamd: {server!r}")
    return state.spam


def render_rspamd(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    env = _environment(template_root)
    spam = _spam_filter(state)
    context = _context(state)
    context["spam"] = {
        "expression_cache": spam.expression_cache or f"{state.paths.rspamd_dir}/db",
        "nameservers": spam.nameservers,
        "worker_count": spam.worker_count,
        "reject_score": f"{spam.reject_score:g}",
        "reject_scores_key": SPAM_REJECT_SCORES_KEY,
        "greylist_domains_key": GREYLIST_DOMAINS_KEY,
        "greylist_prefix": GREYLIST_PREFIX,
        "allowed_senders_prefix": ALLOWED_SENDERS_PREFIX,
        "greylist_delay": int(spam.greylist_delay_seconds),
        "score_header": SPAM_SCORE_HEADER,
        "verified_envelope_header": VERIFIED_ENVELOPE_HEADER,
        "verified_from_header": VERIFIED_FROM_HEADER,
        "internal_mta_tag": INTERNAL_MTA_TAG,
        "bayes_min_learns": 1 if state.testing else 200,
    }
    local = template_root / "rspamd" / "local.d"
    files = {
        f"rspamd/local.d/{path.name.removesuffix('.j2')}": env.get_template(
            f"rspamd/local.d/{path.name}"
        ).render(context)
        for path in sorted(local.glob("*.j2"))
    }
    if not spam.network_checks:
        for module in SPAM_NETWORK_MODULES:
            files[f"rspamd/local.d/{module}.conf"] = (
                "# Rendered by Letterhead: network checks are off (the spam_network_checks setting).\n"
                "enabled = false;\n"
            )
    files["rspamd/rspamd.local.lua"] = env.get_template("rspamd/rspamd.local.lua.j2").render(context)
    return files


def render_redis(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    env = _environment(template_root)
    return {"redis/redis.conf": env.get_template("redis/redis.conf.j2").render(_context(state))}


def render_all(state: RenderState, template_root: Path = TEMPLATE_ROOT) -> dict[str, str]:
    files = {
        **render_postfix(state, template_root),
        **render_dovecot(state, template_root),
        **render_nginx(state, template_root),
        **render_haproxy(state, template_root),
        **render_rspamd(state, template_root),
        **render_redis(state, template_root),
    }
    return dict(sorted(files.items()))


def digest_files(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()
