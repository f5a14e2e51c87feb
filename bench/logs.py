"""Mail log ingestion against pflogsumm on the same file, and search by address at two sizes.

1. A deterministic generator (seed 1) writes a Postfix 3.7 log of 1,000,000 lines (100,000 with
   `--quick`) spanning 7 days, in the shape Debian's syslog (or Postfix's `maillog_file`) writes:
   smtpd connect and disconnect, `client=` (with `sasl_username` on submission), cleanup
   message-ids, qmgr `from=/size=`, LMTP deliveries to hosted mailboxes (some by alias fan-out
   with `orig_to`), SMTP relays out, NOQUEUE refusals (unknown user, relay denied, mailbox full,
   not logged in), deferrals retried with Postfix's backoff until sent, bounced or expired after
   5 days, bounces with their non-delivery notification, SASL failures, noise (anvil, lost
   connections, warnings) and, as in a syslog `mail.log`, Dovecot's IMAP and POP3 logins. About
   24,000 distinct addresses (4,000 hosted mailboxes, 3,000 remote people, refused guesses)
   across 40 hosted and 400 remote domains. Lines of concurrent
   messages interleave in time order, as a busy server logs them. `--dialogue` adds to each
   inbound port-25 message the SMTP dialogue and smtpd trace Letterhead's port 25 logs
   (debug_peer_level=1), replayed from the real session in tests/fixtures/logs/dialogue.log.
2. On that file, in one run: a plain read of its lines (the limit for any reader in Python),
   `pflogsumm` (Debian package), and `letterhead logs ingest FILE` as an operator runs it (a
   child process on a fresh SQLite database in a temporary state directory whose hosted domains
   are made through the services). Lines per second each; the ingest's peak memory is the
   child's ru_maxrss. The database's totals (received, delivered, deferred with deferrals,
   bounced, rejected) are compared with pflogsumm's grand totals and the logins with what the
   generator wrote; any difference fails the run.
3. Search latency: `services.mail_logs.search_transactions` (what the panel, the API and
   `letterhead logs search` call), by address for a full admin of the tenant, on databases of
   10,000 and 1,000,000 transactions (100,000 with `--quick`) filled with rows as the ingester
   writes them. Addresses are drawn so each matches tens of transactions at both sizes. The
   databases carry no planner statistics, as Letterhead's own; `--analyze` runs ANALYZE first.

    .venv/bin/python bench/logs.py [--quick] [--lines N] [--dialogue] [--no-search] [--analyze] [--keep DIR]

The last line is the headline: `ratio=<ingest lines/s over pflogsumm's lines/s>`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text  # noqa: E402

from bench.loggen import (  # noqa: E402
    GIVEN,
    HOSTED_DOMAINS,
    REMOTE_DOMAINS,
    SEED,
    SPAN,
    START,
    generate_log,
    hosted_address,
    hosted_domain,
    remote_domain,
)
from controlplane.logs.store import MailLogStore  # noqa: E402
from controlplane.models import GIB, Tenant  # noqa: E402
from controlplane.runtime import Installation  # noqa: E402
from controlplane.schema import upgrade_database  # noqa: E402
from controlplane.services import domains, mail_logs, scope, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import load_settings  # noqa: E402

LETTERHEAD = ROOT / ".venv" / "bin" / "letterhead"
PFLOGSUMM = "/usr/sbin/pflogsumm"
MAX_MEMORY_MB = 300


def plain_read(path: Path) -> tuple[int, float]:
    """Lines in the file and the seconds a bare loop takes to read and decode them."""
    started = time.perf_counter()
    count = 0
    with open(path, "rb") as stream:
        for raw in stream:
            raw.decode("utf-8", errors="replace")
            count += 1
    return count, time.perf_counter() - started


PFLOGSUMM_TOTALS = ("received", "delivered", "forwarded", "deferred", "bounced", "rejected")


def run_pflogsumm(path: Path) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    done = subprocess.run([PFLOGSUMM, str(path)], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    section = done.stdout.split("Grand Totals", 1)[1].split("bytes received", 1)[0]
    totals: dict[str, int] = {}
    for line in section.splitlines():
        match = re.match(r"^\s*(\d+)([km ]?)\s+(\w+)(?:\s+\((\d+)([km ]?) deferrals\))?", line)
        if not match:
            continue
        if match[2].strip():
            raise SystemExit(f"pflogsumm rounded {match[3]} to {match[1]}{match[2]}: use fewer lines")
        totals[match[3]] = int(match[1])
        if match[4]:
            totals["deferrals"] = int(match[4])
    missing = set(PFLOGSUMM_TOTALS) - set(totals)
    if missing:
        raise SystemExit(f"pflogsumm printed no {', '.join(sorted(missing))}:\n{done.stdout[:2000]}")
    return totals, seconds


def make_state(home: Path) -> Path:
    """A state directory with a migrated database holding the tenant and its hosted domains."""
    settings = load_settings(environ={}, home=home)
    settings.database_path.parent.mkdir(parents=True)
    upgrade_database(settings.sqlalchemy_url)
    installation = Installation(settings)
    try:
        with installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Bench", storage_pool_bytes=1000 * GIB)
            for index in range(HOSTED_DOMAINS):
                domains.create_domain(
                    session,
                    OPERATOR,
                    tenant=tenant,
                    name=hosted_domain(index),
                    max_mailboxes=1000,
                    max_aliases=100,
                )
    finally:
        installation.dispose()
    return settings.database_path


def run_ingest(home: Path, path: Path) -> tuple[dict, float, float]:
    """`letterhead logs ingest FILE` in a child process: its result, seconds, peak memory in MB."""
    environment = {**os.environ, "LETTERHEAD_HOME": str(home)}
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(LETTERHEAD), "logs", "ingest", "--json", str(path)], env=environment, stdout=subprocess.PIPE
    )
    output = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"letterhead logs ingest failed ({child.returncode})")
    [result] = json.loads(output)
    return result, seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def database_totals(database: Path) -> dict[str, int]:
    """The figures pflogsumm reports, counted from what the ingest stored."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    # A recipient row is updated in place by each attempt: its deferrals are its attempts,
    # less the final one when that ended it (sent or bounced); an expired or still deferred
    # recipient was deferred at every attempt.
    deferrals = """CASE WHEN outcome IN ('deferred', 'expired') THEN attempts ELSE attempts - 1 END"""
    queries = {
        # Messages a client handed over (smtpd's client= line; pflogsumm counts the same);
        # Postfix's own bounce notifications have no client.
        "received": """SELECT count(*) FROM mail_transaction t WHERE t.client_ip != ''
                       AND EXISTS (SELECT 1 FROM mail_queue_entry e WHERE e.transaction_id = t.id)""",
        "delivered": "SELECT count(*) FROM mail_recipient_result WHERE outcome IN ('delivered', 'forwarded', 'relayed')",
        "forwarded": "SELECT 0",  # pflogsumm's "forwarded" is local(8)'s .forward, which we do not run
        "deferred": f"SELECT count(DISTINCT transaction_id) FROM mail_recipient_result WHERE outcome != 'refused' AND {deferrals} > 0",
        "deferrals": f"SELECT coalesce(sum({deferrals}), 0) FROM mail_recipient_result WHERE outcome != 'refused'",
        "bounced": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'bounced'",
        "rejected": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'refused'",
        "expired": "SELECT count(*) FROM mail_recipient_result WHERE outcome = 'expired'",
        "logins": "SELECT count(*) FROM auth_event WHERE success",
        "failed logins": "SELECT count(*) FROM auth_event WHERE NOT success",
        "transactions": "SELECT count(*) FROM mail_transaction",
        "unparsed": "SELECT count(*) FROM unparsed_log_line",
        "dialogue lines": "SELECT count(*) FROM smtp_dialogue_line WHERE transaction_id IS NOT NULL",
    }
    try:
        return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}
    finally:
        db.close()


# --- search latency ---------------------------------------------------------------------------


def fill_transactions(
    home: Path, count: int, seed: int, analyze: bool = False
) -> tuple[Installation, list[str]]:
    """A state directory whose database holds `count` transactions written by the ingestion's own
    store (controlplane/logs/store.py), as a log of that many messages would leave them; and the
    addresses its recipients were drawn from (about 20 transactions each, at any size)."""
    make_state(home)
    installation = Installation(load_settings(environ={}, home=home))
    chooser = random.Random(seed)
    people = max(count // 20, 50)
    addresses = [hosted_address(i % HOSTED_DOMAINS, i // HOSTED_DOMAINS) for i in range(people)]
    remote = [f"{GIVEN[p % len(GIVEN)]}{p}@{remote_domain(p % REMOTE_DOMAINS)}" for p in range(people)]
    moment = START
    step = SPAN / count
    with installation.sessions() as session:
        store = MailLogStore(session)
        for number in range(count):
            moment += step
            queue_id = f"4{number:011X}"
            sender = chooser.choice(remote)
            if chooser.random() < 0.1:  # NOQUEUE refusal
                transaction = store.new_transaction(
                    moment,
                    finished_at=moment,
                    client_ip="192.0.2.7",
                    client_name="unknown",
                    sender=sender,
                    helo="x",
                )
                store.new_recipient(
                    transaction,
                    time=moment,
                    recipient=chooser.choice(addresses),
                    domain_id=store.domain_id(addresses[0]),
                    outcome="refused",
                    status_code="550 5.1.1",
                    detail="550 5.1.1 User unknown",
                    reason="recipient not found",
                    attempts=1,
                )
                continue
            # Some of it sent by hosted users through submission (a SASL user, a hosted sender).
            sasl_user = chooser.choice(addresses) if chooser.random() < 0.2 else ""
            transaction = store.new_transaction(
                moment,
                client_ip=f"198.51.{number % 250}.{number % 199}",
                client_name="mx.example.org",
                sender=sasl_user or sender,
                sender_domain_id=store.domain_id(sasl_user),
                sasl_user=sasl_user,
                message_id=f"{number}.{seed}@bench.example",
                size=2000 + number % 9000,
                finished_at=moment,
            )
            entry = store.new_entry(transaction, queue_id, moment)
            entry.removed = True
            store.forget(entry)
            # As in the log: some mail reaches several people through an alias (orig_to).
            orig_to = f"team{number % (people // 10)}@{hosted_domain(number % HOSTED_DOMAINS)}"
            orig_to = orig_to if chooser.random() < 0.12 else ""
            for recipient in {chooser.choice(addresses) for _ in range(1 if chooser.random() < 0.85 else 3)}:
                store.new_recipient(
                    transaction,
                    time=moment,
                    recipient=recipient,
                    orig_to=orig_to,
                    domain_id=store.domain_id(recipient),
                    queue_id=queue_id,
                    outcome="delivered",
                    relay="mail[private/dovecot-lmtp]",
                    status_code="250 2.0.0",
                    detail="250 2.0.0 Saved",
                    attempts=1,
                )
            if number % 10_000 == 9_999:
                store.flush()
                session.commit()
        store.flush()
        session.commit()
        if analyze:
            session.execute(text("ANALYZE"))
            session.commit()
    return installation, addresses


def search_latency(
    sizes: tuple[int, int], rounds: int, root: Path, analyze: bool = False
) -> dict[int, tuple[list[float], float]]:
    """Seconds per search (a full admin's, by recipient address) on each size; and the mean total."""
    installed = {}
    for size in sizes:
        started = time.perf_counter()
        installed[size] = fill_transactions(root / f"search-{size}", size, seed=size, analyze=analyze)
        print(f"search database of {size:>9,} transactions filled in {time.perf_counter() - started:5.1f} s")
    times: dict[int, list[float]] = {size: [] for size in sizes}
    found: dict[int, list[int]] = {size: [] for size in sizes}
    chooser = random.Random(2)
    sessions = {size: installed[size][0].sessions() for size in sizes}
    try:
        tenant_of = {size: sessions[size].scalars(select(Tenant)).one() for size in sizes}
        for round_number in range(rounds + 20):
            for size in sizes if round_number % 2 else reversed(sizes):
                session, addresses = sessions[size], installed[size][1]
                address = addresses[chooser.randrange(len(addresses))]
                tenant = tenant_of[size]
                actor = scope.tenant_admin(tenant.id)
                started = time.perf_counter()
                views, total = mail_logs.search_transactions(session, actor, address, tenant=tenant, limit=50)
                elapsed = time.perf_counter() - started
                session.expunge_all()
                if round_number >= 20:  # the first rounds warm the caches
                    times[size].append(elapsed)
                    found[size].append(total)
                if total == 0 or not views:
                    raise SystemExit(f"searching {address} on {size} transactions found nothing")
    finally:
        for size in sizes:
            sessions[size].close()
            installed[size][0].dispose()
    return {size: (times[size], statistics.mean(found[size])) for size in sizes}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 lines; search on 10,000 vs 100,000")
    parser.add_argument("--lines", type=int, help="lines of log to generate")
    parser.add_argument("--search-size", type=int, help="transactions in the large search database")
    parser.add_argument("--rounds", type=int, help="searches per database")
    parser.add_argument("--no-search", action="store_true", help="measure the ingest only")
    parser.add_argument(
        "--analyze", action="store_true", help="ANALYZE the search databases (Letterhead itself never does)"
    )
    parser.add_argument(
        "--dialogue",
        action="store_true",
        help="port 25 logs each SMTP dialogue with its trace, as Letterhead configures it",
    )
    parser.add_argument("--keep", type=Path, help="keep the log and databases in this new directory")
    args = parser.parse_args()
    lines = args.lines or (100_000 if args.quick else 1_000_000)
    search_size = args.search_size or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (300 if args.quick else 1000)
    if args.keep:
        args.keep.mkdir(parents=True)
        root = args.keep
    else:
        root = Path(tempfile.mkdtemp(prefix="letterhead-bench-logs-"))
    failures: list[str] = []
    try:
        log = root / "mail.log"
        started = time.perf_counter()
        written = generate_log(log, lines, dialogue=args.dialogue)
        print(
            f"log: {lines:,} lines{' with SMTP dialogues' if args.dialogue else ''},"
            f" {log.stat().st_size / 1e6:.1f} MB, {written['seconds'] / 86400:.1f} days,"
            f" generated in {time.perf_counter() - started:.1f} s (seed {SEED})"
        )
        database = make_state(root / "state")

        counted, read_seconds = plain_read(log)
        totals, pflogsumm_seconds = run_pflogsumm(log)
        result, ingest_seconds, peak_mb = run_ingest(root / "state", log)
        stored = database_totals(database)
        if counted != lines or result["lines"] != lines:
            failures.append(f"lines: file {counted}, ingest read {result['lines']}, expected {lines}")

        read_rate, pflogsumm_rate, ingest_rate = (
            lines / s for s in (read_seconds, pflogsumm_seconds, ingest_seconds)
        )
        print()
        print(
            f"plain read (Python, decode)  : {read_seconds:7.2f} s = {read_rate:>10,.0f} lines/s (the limit)"
        )
        print(f"pflogsumm                    : {pflogsumm_seconds:7.2f} s = {pflogsumm_rate:>10,.0f} lines/s")
        print(
            f"letterhead logs ingest       : {ingest_seconds:7.2f} s = {ingest_rate:>10,.0f} lines/s"
            f" = {ingest_rate / read_rate:.3f} of the plain read; peak memory {peak_mb:.0f} MB"
        )
        print()
        print(f"{'total':14} {'pflogsumm':>10} {'database':>10}  {'generator':>10}")
        expected_by_generator = {
            "received": written.get("received", 0),
            "delivered": written.get("sent", 0),
            "deferrals": written.get("deferred", 0),
            "bounced": written.get("bounced", 0),
            "rejected": written.get("rejected", 0),
            "expired": written.get("expired", 0),
            "logins": written.get("login-ok", 0),
            "failed logins": written.get("login-fail", 0),
        }
        for name in (*PFLOGSUMM_TOTALS, "deferrals"):
            theirs, ours = totals[name], stored[name]
            mark = "" if theirs == ours else "  <- DIFFERENT"
            print(f"{name:14} {theirs:>10,} {ours:>10,}  {expected_by_generator.get(name, ''):>10}{mark}")
            if theirs != ours:
                failures.append(f"{name}: pflogsumm {theirs}, database {ours}")
        for name in ("expired", "logins", "failed logins"):
            ours, wrote = stored[name], expected_by_generator[name]
            mark = "" if ours == wrote else "  <- DIFFERENT"
            print(f"{name:14} {'':>10} {ours:>10,}  {wrote:>10,}{mark}")
            if ours != wrote:
                failures.append(f"{name}: database {ours}, generator wrote {wrote}")
        print(
            f"transactions stored: {stored['transactions']:,}; SMTP dialogue lines attached to them:"
            f" {stored['dialogue lines']:,}; lines kept as not understood: {stored['unparsed']}"
        )
        if stored["unparsed"]:
            failures.append(f"{stored['unparsed']} lines were not understood")
        if peak_mb >= MAX_MEMORY_MB:
            failures.append(f"peak memory {peak_mb:.0f} MB (limit {MAX_MEMORY_MB})")

        print()
        small, large = 10_000, search_size
        if args.no_search:
            ratio = ingest_rate / pflogsumm_rate
            print(f"ingest over pflogsumm: {ratio:.2f} (target 1.0 or more); peak_mb={peak_mb:.0f}")
            if failures:
                print("FAILED:\n  " + "\n  ".join(failures))
            print(f"ratio={ratio:.2f}")
            return 1 if failures else 0
        latency = search_latency((small, large), rounds, root, analyze=args.analyze)
        print(f"{rounds} searches by address per database, a full admin's, ms:")
        print(f"{'transactions':>14} {'p50':>8} {'p95':>8}  matches (mean)")
        for size in (small, large):
            values, matches = latency[size]
            print(
                f"{size:>14,} {percentile(values, 0.5) * 1000:8.2f} {percentile(values, 0.95) * 1000:8.2f}  {matches:.1f}"
            )
        search_ratio = percentile(latency[large][0], 0.95) / percentile(latency[small][0], 0.95)
        print(f"search p95 ratio {large:,} / {small:,}: {search_ratio:.2f} (target 2 or less)")
        print()
        ratio = ingest_rate / pflogsumm_rate
        print(
            f"ingest over pflogsumm: {ratio:.2f} (target 1.0 or more); search_ratio={search_ratio:.2f};"
            f" peak_mb={peak_mb:.0f}"
        )
        if failures:
            print("FAILED:\n  " + "\n  ".join(failures))
        print(f"ratio={ratio:.2f}")
        return 1 if failures else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
