"""Admin panel pages with a very large domain, against the same pages with a small one.

Two state directories, each with its own SQLite database migrated by Alembic
(`controlplane.schema.upgrade_database`), hold the same installation except for the size
of one domain: `large` (100,000 mailboxes; 20,000 with `--quick`) and `small` (100). The
tenant, its full admin, the domain, two small neighbour domains and a few aliases are
made through the services. The big domain's mailboxes are not: they are written with
bulk SQL inserts (SQLAlchemy Core `insert(...)`, 10,000 rows a statement) so that filling
100,000 takes seconds, not one ORM flush, limit check and audit write per mailbox. The
rows are what `create_mailbox` writes: one precomputed SHA512-CRYPT hash shared by all
(hashing costs ~25 ms each), a unique random `storage_key` per row, 1 GB quota, and one
`mailbox.create` audit entry per mailbox as the service records; the database's own
triggers update the domain's counts for these rows as for any other. Local parts look
like `anna.kobarin`; the small domain's mailboxes are the first 100 of the large one's.

Requests go through the real app with Flask's test client, logged in as a full admin
through the login form, CSRF on. Each round requests, on both installations (in
alternating order):

- `list`:      the domain's page, first page of mailboxes  (`/admin/domains/<name>`);
- `search`:    the same page searching for a person, e.g. `?q=anna.kob` (the search finds
               addresses by their start; these are first letters of an address present
               in both domains);
- `dashboard`: the tenant's dashboard (`/admin/`).

1,000 rounds after 10 of warm-up; `--quick`: 300 rounds, 20,000 mailboxes (seconds).

`--database postgresql` puts both installations in databases of one private PostgreSQL cluster
(controlplane/daemons/postgres.py) on loopback, filled with COPY (psycopg's executemany would
send a million rows one statement each) and then ANALYZEd, as autovacuum would soon do; the
issue's figure is 1,000,000 mailboxes there: `--database postgresql --size 1000000`.

    .venv/bin/python bench/admin_pages.py [--quick] [--database postgresql] [--size N]

It prints the 95th percentile of each page on each installation and their ratio
(large / small); the last line is the headline: `ratio=<the worst of the three>`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from controlplane import create_app  # noqa: E402
from controlplane.daemons import database_logins  # noqa: E402
from controlplane.daemons.postgres import PrivatePostgres  # noqa: E402
from controlplane.models import GIB, AuditEntry, Mailbox  # noqa: E402
from controlplane.models.base import utcnow  # noqa: E402
from controlplane.runners.scratch import free_ports, run_on_postgres_server  # noqa: E402
from controlplane.runtime import Installation  # noqa: E402
from controlplane.schema import upgrade_database  # noqa: E402
from controlplane.services import admins, aliases, audit, domains, mailboxes, passwords, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import load_settings  # noqa: E402

DOMAIN = "big.test"
SMALL_SIZE = 100
ADMIN_LOGIN = "boss"
ADMIN_PASSWORD = "bench admin password"
INSERT_BATCH = 10_000
GIVEN = (
    "anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas",
    "karin", "lukas", "maria", "nils", "olga", "paul", "quentin", "rosa", "simon", "tara",
    "ulla", "victor", "wanda", "xaver", "yusuf", "zoe", "amir", "bianca", "chen", "dana",
    "eric", "fatima", "georg", "hanna", "ivan", "julia", "kai", "lena", "milan", "nora",
    "oskar", "pia", "rafael", "sofia", "tim", "uwe", "vera", "wim", "yara", "zeno",
)  # fmt: skip
_CONSONANTS, _VOWELS = "bdfghklmnprstvz", "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]
_FAMILIES = len(_SYLLABLES) ** 3
# Given and family names repeat together after this many addresses (gcd(50, 75**3) = 25).
_DISTINCT_NAMES = len(GIVEN) * _FAMILIES // 25


def local_part(index: int) -> str:
    """The index-th address of the bench domain: unique, deterministic, name-like."""
    # 7919 is prime to the number of three-syllable family names: distinct indexes, distinct names.
    family = index * 7919 % _FAMILIES
    syllables = len(_SYLLABLES)
    name = (
        _SYLLABLES[family // syllables**2]
        + _SYLLABLES[family // syllables % syllables]
        + _SYLLABLES[family % syllables]
        + "n"
    )
    if index >= _DISTINCT_NAMES:  # past 843,750: a namesake, told apart by a number
        name += str(index // _DISTINCT_NAMES)
    return f"{GIVEN[index % len(GIVEN)]}.{name}"


def search_term(index: int) -> str:
    """What an admin types looking for that person: the given name and a start of the family name."""
    given, _, family = local_part(index).partition(".")
    return f"{given}.{family[:3]}"


def populate(installation: Installation, size: int) -> None:
    with installation.transaction() as session:
        tenant = tenants.create_tenant(
            session, OPERATOR, name="Bench", storage_pool_bytes=(size + 1000) * GIB
        )
        admins.create_admin(session, OPERATOR, tenant=tenant, login=ADMIN_LOGIN, password=ADMIN_PASSWORD)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name=DOMAIN, max_mailboxes=size + 100, max_aliases=100
        )
        password_hash = passwords.hash_password("bench mailbox password")
        # Neighbours on the dashboard, the same in both installations.
        for neighbour in ("one.test", "two.test"):
            other = domains.create_domain(
                session, OPERATOR, tenant=tenant, name=neighbour, max_mailboxes=10, max_aliases=10
            )
            for name in ("info", "sales", "support"):
                mailboxes.create_mailbox(
                    session, OPERATOR, domain=other, local_part=name, quota_bytes=GIB,
                    password_hash=password_hash,
                )  # fmt: skip
        actor = audit.actor_label(OPERATOR)
        if installation.settings.is_postgresql:
            _copy_rows(session, tenant.id, domain.id, actor, password_hash, size)
        for start in range(0, 0 if installation.settings.is_postgresql else size, INSERT_BATCH):
            indexes = range(start, min(start + INSERT_BATCH, size))
            session.execute(
                insert(Mailbox),
                [
                    {
                        "domain_id": domain.id, "local_part": local_part(index), "password_hash": password_hash,
                        "quota_bytes": GIB, "display_name": "", "active": True, "is_domain_admin": False,
                        "storage_key": uuid.uuid4().hex,
                    }
                    for index in indexes
                ],
            )  # fmt: skip
            now = utcnow()
            session.execute(
                insert(AuditEntry),
                [
                    {
                        "time": now, "tenant_id": tenant.id, "domain_id": domain.id, "actor": actor,
                        "client_ip": "", "action": "mailbox.create", "target": f"{local_part(index)}@{DOMAIN}",
                        "details": {"quota_bytes": GIB},
                    }
                    for index in indexes
                ],
            )  # fmt: skip
        for index, name in enumerate(("team", "office", "postmaster", "abuse", "hello")):
            aliases.create_alias(
                session, OPERATOR, domain=domain, local_part=name,
                destinations=[f"{local_part(index)}@{DOMAIN}", f"{local_part(index + 1)}@{DOMAIN}"],
            )  # fmt: skip


def _copy_rows(session, tenant_id: int, domain_id: int, actor: str, password_hash: str, size: int) -> None:
    """The same rows as the inserts below, through PostgreSQL's COPY in the session's transaction
    (the count triggers run for COPY as for INSERT)."""
    cursor = session.connection().connection.driver_connection.cursor()
    mailbox_columns = "domain_id, local_part, password_hash, quota_bytes, display_name, active, is_domain_admin, storage_key"
    with cursor.copy(f"COPY mailbox ({mailbox_columns}) FROM STDIN") as copy:
        for index in range(size):
            copy.write_row(
                (domain_id, local_part(index), password_hash, GIB, "", True, False, uuid.uuid4().hex)
            )
    now = utcnow()
    details = json.dumps({"quota_bytes": GIB})
    audit_columns = "time, tenant_id, domain_id, actor, client_ip, action, target, details"
    with cursor.copy(f"COPY audit_entry ({audit_columns}) FROM STDIN") as copy:
        for index in range(size):
            copy.write_row(
                (
                    now,
                    tenant_id,
                    domain_id,
                    actor,
                    "",
                    "mailbox.create",
                    f"{local_part(index)}@{DOMAIN}",
                    details,
                )
            )


class Installed:
    """One state directory: migrated, populated, with a client logged in as the full admin."""

    def __init__(self, home: Path, size: int, database_url: str = "") -> None:
        self.size = size
        settings = load_settings(
            environ={}, home=home, **({"database_url": database_url} if database_url else {})
        )
        settings.database_path.parent.mkdir(parents=True)
        upgrade_database(settings.sqlalchemy_url)
        if settings.is_postgresql:  # as `letterhead db upgrade` does: the usage table and the roles
            database_logins.grant_daemon_logins(settings.sqlalchemy_url)
        installation = Installation(settings)
        started = time.perf_counter()
        populate(installation, size)
        if settings.is_postgresql:
            with installation.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        self.fill_seconds = time.perf_counter() - started
        installation.dispose()
        self.app = create_app({"LETTERHEAD_SETTINGS": settings})
        self.client = self.app.test_client()
        login_page = self.client.get("/admin/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
        assert token, "the login page has no CSRF token"
        response = self.client.post(
            "/admin/login",
            data={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "csrf_token": token.group(1)},
        )
        assert response.status_code == 302, f"login failed: {response.status_code}"
        self.times: dict[str, list[float]] = {"list": [], "search": [], "dashboard": []}

    def request(self, page: str, url: str, expect: str) -> None:
        started = time.perf_counter()
        response = self.client.get(url)
        body = response.get_data(as_text=True)
        self.times[page].append(time.perf_counter() - started)
        if response.status_code != 200 or expect not in body:
            raise SystemExit(f"{url} on {self.size} mailboxes: {response.status_code}, {expect!r} not shown")

    def close(self) -> None:
        self.app.extensions["letterhead"].dispose()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="20,000 mailboxes, fewer requests (under a minute)"
    )
    parser.add_argument("--size", type=int, help="mailboxes in the large domain")
    parser.add_argument("--requests", type=int, help="requests per page and installation")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: both installations on a private PostgreSQL cluster",
    )  # fmt: skip
    args = parser.parse_args()
    large_size = args.size or (20_000 if args.quick else 100_000)
    requests = args.requests or (300 if args.quick else 1000)
    warm_up = 10

    root = Path(tempfile.mkdtemp(prefix="letterhead-bench-admin-"))
    installs: list[Installed] = []
    cluster = None
    try:
        if args.database == "postgresql":
            cluster = PrivatePostgres(port=free_ports(1)[0])
            cluster.start()
            for name in ("small", "large"):
                run_on_postgres_server(cluster.url(), f'CREATE DATABASE "bench_{name}"')
        for name, size in (("small", SMALL_SIZE), ("large", large_size)):
            url = cluster.url(f"bench_{name}") if cluster else ""
            installs.append(Installed(root / name, size, url))
            print(
                f"{name}: {size} mailboxes in {DOMAIN} on {args.database}, filled in {installs[-1].fill_seconds:.1f} s"
            )
        small, large = installs
        chooser = random.Random(1)
        matches: dict[int, list[int]] = {small.size: [], large.size: []}
        for round_number in range(warm_up + requests):
            person = chooser.randrange(SMALL_SIZE)
            term = search_term(person)
            order = (small, large) if round_number % 2 else (large, small)
            for installed in order:
                installed.request("list", f"/admin/domains/{DOMAIN}", f"{installed.size} found")
                installed.request("search", f"/admin/domains/{DOMAIN}?q={term}", f"{local_part(person)}@")
                installed.request("dashboard", "/admin/", f"{installed.size} of {installed.size + 100}")
                if round_number < warm_up:
                    for times in installed.times.values():
                        times.clear()
        for installed in installs:
            with installed.app.extensions["letterhead"].sessions() as session:
                domain = domains.find_domain(session, DOMAIN)
                for person in range(0, SMALL_SIZE, 10):
                    _, found = mailboxes.page_of_mailboxes(
                        session, OPERATOR, domain, search=search_term(person), limit=1
                    )
                    matches[installed.size].append(found)

        print()
        print(f"{requests} requests per page and installation, p95 in ms (median in brackets):")
        print(
            f"{'page':10} {'small (' + str(small.size) + ')':>18} {'large (' + str(large.size) + ')':>20} {'ratio':>6}"
        )
        ratios = {}
        for page in ("list", "search", "dashboard"):
            small_p95, large_p95 = p95(small.times[page]), p95(large.times[page])
            ratios[page] = large_p95 / small_p95
            print(
                f"{page:10} {small_p95 * 1000:9.2f} ({statistics.median(small.times[page]) * 1000:5.2f})"
                f" {large_p95 * 1000:11.2f} ({statistics.median(large.times[page]) * 1000:5.2f})"
                f" {ratios[page]:6.2f}"
            )
        print(
            f"search terms like {search_term(0)!r} match on average "
            f"{statistics.mean(matches[small.size]):.1f} (small) and {statistics.mean(matches[large.size]):.1f}"
            " (large) mailboxes"
        )
        worst = max(ratios, key=ratios.get)
        print(f"worst: {worst}; sizes: small={small.size}, large={large.size} mailboxes")
        print(f"ratio={ratios[worst]:.2f}")
        return 0
    finally:
        for installed in installs:
            installed.close()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
