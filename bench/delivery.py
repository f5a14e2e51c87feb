"""Delivery throughput through Letterhead's SQL lookup tables, against static hash maps.

One private stack (real Postfix and Dovecot on free loopback ports, outbound mail to a
loopback sink) serves the same mailboxes two ways, in alternating runs:

- `sql`:  the live generation Letterhead rendered, reading domains, mailboxes and aliases
          from SQLite views on every lookup;
- `hash`: the same main.cf with those maps replaced by `hash:` files built from the same
          rows (what a classic static Postfix setup does);
- `nofilter`: the live generation without rspamd's milter on port 25, the spam filter's
          cost: `filter_ratio` is sql (filtered) over nofilter.

Each run sends N 1 KB messages with `smtp-source` (10 sessions spread over several
recipients) to port 25 and waits until every one is in a Maildir. Before that, the load
tool is calibrated against `smtp-sink` so its own ceiling is known.

A second figure repeats the SQL run while a configuration change (a brand's TLS name
added or removed, so nginx reloads; or a hosted domain, so Postfix reloads gracefully) is
applied every 2 seconds, one in ten deliberately broken: throughput over the quiet run, with messages lost, 5xx
replies and broken generations that went live all counted (each must be zero).

    .venv/bin/python bench/delivery.py [--quick]
    .venv/bin/python bench/delivery.py --database postgresql [--quick]

With `--database postgresql` it instead compares the engines: two stacks, one on SQLite and one
on a private PostgreSQL cluster (durable: fsync on, as in production), the same mailboxes in
each, alternating delivery rounds; then each engine's lookups as Postfix makes them (`postmap -q -`
over every recipient map, one process, many keys). Headlines: `database_ratio=<PostgreSQL msg/s /
SQLite msg/s>` and `lookup_ratio=<PostgreSQL lookups/s / SQLite lookups/s>`.

The last lines are the headlines: `filter_ratio=<sql msg/s / nofilter msg/s>` and
`ratio=<sql msg/s / hash msg/s>` (both variants filtered alike).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import itertools
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.daemons import apply, postfix, postfix_log  # noqa: E402
from controlplane.daemons.process import wait_until  # noqa: E402
from controlplane.models import GIB, ConfigGeneration  # noqa: E402
from controlplane.render import TlsIdentity  # noqa: E402
from controlplane.runners.scratch import ScratchStack, free_ports  # noqa: E402
from controlplane.services import domains, mailboxes, passwords, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import TEMPLATE_ROOT, Settings  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTMAP = "/usr/sbin/postmap"
POSTCONF = "/usr/sbin/postconf"
DOMAIN = "bench.test"
RECIPIENTS = 10
SESSIONS_PER_RECIPIENT = 1
MAILBOXES = 200
# Each run sends to mailboxes of its own: Maildir delivery slows as a folder fills, which
# would otherwise favour whichever variant ran first.
_recipient_groups = itertools.count()
MESSAGE_BYTES = 1024
# A sender that keeps getting 4xx stops here, as the run would otherwise never end.
SENDER_GIVES_UP_SECONDS = 120
SENDER = "load@sender.example"


@dataclasses.dataclass
class LoadResult:
    messages: int
    seconds: float
    errors: list[str]
    retries: int = 0
    recipients: list[str] = dataclasses.field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _smtp_source(port: int, recipient: str, messages: int, sessions: int) -> subprocess.Popen:
    return subprocess.Popen(
        [SMTP_SOURCE, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(MESSAGE_BYTES),
         "-f", SENDER, "-t", recipient, "-M", "load.sender.example", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _send_like_an_mta(
    port: int, recipient: str, messages: int, errors: list[str], retries: list[int]
) -> None:
    """smtp-source gives up at the first non-2xx reply; a sending MTA retries a 4xx later.

    Its counter (-c) tells how many DATA commands completed, so a new run sends the rest.
    A 5xx is an error of the server under test and is not retried.
    """
    remaining = messages
    give_up_at = time.monotonic() + SENDER_GIVES_UP_SECONDS
    while remaining > 0:
        if time.monotonic() > give_up_at:
            errors.append(
                f"{recipient}: {remaining} messages still refused after {SENDER_GIVES_UP_SECONDS} s"
            )
            return
        process = _smtp_source(port, recipient, remaining, SESSIONS_PER_RECIPIENT)
        stdout, stderr = process.communicate(timeout=300)
        counts = [int(n) for n in stdout.replace("\r", "\n").split() if n.isdigit()]
        remaining -= counts[-1] if counts else 0
        if process.returncode == 0 and not stderr.strip():
            return
        if remaining > 0 and re.search(r"rejected: 4\d\d ", stderr):
            retries.append(1)
            time.sleep(0.2)
            continue
        errors.append(stderr.strip() or f"smtp-source exited {process.returncode}")
        return


def run_load(
    port: int, messages: int, count_delivered, *, timeout: float = 300, stall_seconds: float = 10
) -> LoadResult:
    """Send `messages`, spread over the recipients; wait until they are in their Maildirs.

    Only this run's recipients' Maildirs are counted: a message of an earlier run delivered
    late (a deferred retry) must not count as this run's."""
    per_process = messages // RECIPIENTS
    first = next(_recipient_groups) * RECIPIENTS % MAILBOXES
    addresses = [f"user{index}@{DOMAIN}" for index in range(first, first + RECIPIENTS)]
    before = count_delivered(addresses)
    started = time.perf_counter()
    errors: list[str] = []
    retries: list[int] = []
    senders = [
        threading.Thread(
            target=_send_like_an_mta, args=(port, f"user{index}@{DOMAIN}", per_process, errors, retries)
        )
        for index in range(first, first + RECIPIENTS)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    expected = before + per_process * RECIPIENTS
    deadline = started + timeout
    # Wait for the last delivery; a message deferred for a later retry stops progress.
    last_count, last_progress = count_delivered(addresses), time.perf_counter()
    while last_count < expected and time.perf_counter() < deadline:
        time.sleep(0.02)
        current = count_delivered(addresses)
        if current != last_count:
            last_count, last_progress = current, time.perf_counter()
        elif time.perf_counter() - last_progress > stall_seconds:
            break
    seconds = last_progress - started
    delivered = last_count - before
    if delivered != per_process * RECIPIENTS:
        errors.append(f"{per_process * RECIPIENTS - delivered} of {per_process * RECIPIENTS} not delivered")
    return LoadResult(
        messages=delivered, seconds=seconds, errors=errors, retries=len(retries), recipients=addresses
    )


def calibrate_load_tool(directory: Path, messages: int) -> LoadResult:
    """smtp-source against smtp-sink: the load tool's own ceiling on this machine."""
    (port,) = free_ports(1)
    sink = subprocess.Popen(
        [SMTP_SINK, "-c", f"127.0.0.1:{port}", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        started = time.perf_counter()
        result = subprocess.run(
            [SMTP_SOURCE, "-s", "10", "-m", str(messages), "-l", str(MESSAGE_BYTES), "-f", SENDER,
             "-t", f"user0@{DOMAIN}", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        errors = [result.stderr.strip()] if result.returncode != 0 else []
        return LoadResult(messages=messages, seconds=seconds, errors=errors)
    finally:
        sink.terminate()
        sink.wait()


def populate(stack: ScratchStack) -> None:
    with stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Bench", storage_pool_bytes=1000 * GIB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name=DOMAIN, max_mailboxes=1000, max_aliases=1000
        )
        password_hash = passwords.hash_password("bench password")
        # Mailboxes beyond the ones receiving mail make the lookups search a real table.
        for index in range(MAILBOXES):
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part=f"user{index}", quota_bytes=GIB,
                password_hash=password_hash,
            )  # fmt: skip


def copy_live_postfix(stack: ScratchStack, target: Path) -> None:
    """The live Postfix config copied with its owners: the SQL map files are readable by group
    postfix only, and a copy owned by root alone would fail every lookup (451 at RCPT)."""
    if target.exists():
        shutil.rmtree(target)
    source = stack.settings.live_config.resolve() / "postfix"
    shutil.copytree(source, target)
    for path in source.rglob("*"):
        status = path.lstat()
        os.chown(target / path.relative_to(source), status.st_uid, status.st_gid, follow_symlinks=False)


def build_hash_variant(stack: ScratchStack, target: Path) -> Path:
    """A copy of the live Postfix config whose lookup maps are hash: files of the same rows."""
    copy_live_postfix(stack, target)
    database = sqlite3.connect(f"file:{stack.settings.database_path}?mode=ro", uri=True)
    tables = {
        "domains": "SELECT domain, 'OK' FROM mail_domains",
        "mailboxes": "SELECT local_part || '@' || domain, 'mailbox' FROM mail_users",
        "forwardings": "SELECT local_part || '@' || domain, destination FROM mail_forwardings",
        "catchall": "SELECT '@' || domain, destination FROM mail_aliases WHERE local_part = ''",
        "sender-logins": "SELECT local_part || '@' || domain, login FROM mail_sender_logins",
    }
    for name, query in tables.items():
        grouped: dict[str, list[str]] = {}
        for key, value in database.execute(query):
            grouped.setdefault(key, []).append(value)
        source = target / f"hash-{name}"
        source.write_text("".join(f"{key} {','.join(values)}\n" for key, values in sorted(grouped.items())))
        subprocess.run([POSTMAP, "-c", str(target), f"hash:{source}"], check=True)
    database.close()
    hashed = {
        "virtual_mailbox_domains": "hash:${config_directory}/hash-domains",
        "virtual_mailbox_maps": "hash:${config_directory}/hash-mailboxes",
        "virtual_alias_maps": "hash:${config_directory}/hash-forwardings, hash:${config_directory}/hash-catchall",
        "smtpd_sender_login_maps": "hash:${config_directory}/hash-sender-logins",
    }
    subprocess.run(
        [POSTCONF, "-c", str(target), "-e", *(f"{key}={value}" for key, value in hashed.items())], check=True
    )
    postfix.check_config(target)
    return target


def build_unfiltered_variant(stack: ScratchStack, target: Path) -> Path:
    """A copy of the live Postfix config whose port 25 asks no milter: mail is not scanned."""
    copy_live_postfix(stack, target)
    master = target / "master.cf"
    milter = f"  -o smtpd_milters=inet:127.0.0.1:{stack.ports['rspamd_milter']}\n"
    text = master.read_text()
    if milter not in text:
        raise SystemExit("The live master.cf names no rspamd milter on port 25: nothing to compare.")
    master.write_text(text.replace(milter, "", 1))
    postfix.check_config(target)
    return target


LOG_WRITER = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from pathlib import Path
from controlplane.daemons import postfix_log
from controlplane.settings import load_settings
postfix_log.run_log_writer(load_settings(), config=Path(sys.argv[1]))
"""


def switch_postfix(stack: ScratchStack, config_dir: Path) -> None:
    """Run Postfix on `config_dir`, under the log writer as `letterhead up` runs it (both variants
    alike: the writer's cost is in both figures)."""
    queue = stack.settings.postfix_queue
    pid = postfix.master_pid(queue)
    if pid:
        subprocess.run([postfix.POSTFIX, "-c", str(config_dir), "stop"], capture_output=True)
        wait_until(lambda: postfix.master_pid(queue) is None, timeout=10)
    wait_until(lambda: postfix_log.WRITER.pid(stack.settings) is None, timeout=10)
    # Its own process, as `letterhead up` runs it: a thread here would share this busy process's
    # interpreter lock with the senders and the churn, and fall behind Postfix's log.
    subprocess.Popen(
        [sys.executable, "-c", LOG_WRITER, str(config_dir)],
        env=dict(os.environ, LETTERHEAD_HOME=str(stack.home)),
        stdin=subprocess.DEVNULL,
    )
    if not wait_until(lambda: postfix.master_pid(queue) is not None, timeout=30):
        raise SystemExit(f"Postfix did not start on {config_dir}")


def maildir_counter(stack: ScratchStack):
    """count(addresses): the messages in those mailboxes' Maildirs (every mailbox's if None)."""
    database = sqlite3.connect(f"file:{stack.settings.database_path}?mode=ro", uri=True)
    homes = {
        address: stack.settings.mail_root / key / "Maildir"
        for address, key in database.execute(
            "SELECT m.local_part || '@' || d.name, m.storage_key FROM mailbox m JOIN domain d ON d.id = m.domain_id"
        )
    }
    database.close()

    def count(addresses: list[str] | None = None) -> int:
        total = 0
        for address in homes if addresses is None else addresses:
            for folder in ("new", "cur"):
                path = homes[address] / folder
                if path.is_dir():
                    total += sum(1 for _ in path.iterdir())
        return total

    count.homes = homes  # type: ignore[attr-defined]
    return count


_QUEUE_ID = re.compile(rb"by [^\s]+ \(Postfix\) with E?SMTP id ([0-9A-Za-z]+)")


def stored_twice(count, addresses: list[str]) -> int:
    """Copies beyond the first of a message Postfix queued once (the same queue ID in its
    Received header): the server delivered it again. A sender's resend has a queue ID of its own."""
    seen: collections.Counter[bytes] = collections.Counter()
    for address in addresses:
        for folder in ("new", "cur"):
            path = count.homes[address] / folder
            for message in path.iterdir() if path.is_dir() else ():
                found = _QUEUE_ID.search(message.read_bytes()[:4096])
                if found:
                    seen[found.group(1)] += 1
    return sum(copies - 1 for copies in seen.values() if copies > 1)


def broken_templates(directory: Path) -> Path:
    """Templates whose main.cf names a parameter Postfix does not know: the checker must refuse it."""
    if not directory.exists():
        shutil.copytree(TEMPLATE_ROOT, directory)
        main_cf = directory / "postfix" / "main.cf.j2"
        main_cf.write_text(main_cf.read_text().replace("smtpd_helo_required", "smtpd_helo_requird"))
    return directory


@dataclasses.dataclass
class ChurnReport:
    applied: int = 0
    brand_changes: int = 0
    domain_changes: int = 0
    refused_as_expected: int = 0
    good_not_live: int = 0
    broken_went_live: int = 0
    live_failed_check: int = 0


def churn_configs(stack: ScratchStack, stop: threading.Event, report: ChurnReport, interval: float) -> None:
    """Every `interval` seconds one change, as operators make them:

    - odd steps add or remove a brand's TLS name: nginx re-renders and reloads (it ends TLS for
      IMAPS and POP3S; Postfix reads brand certificates from SQL; Dovecot is untouched);
    - even steps add or remove a hosted domain: rows in SQL plus a graceful Postfix reload;
    - one step in ten (the 5th, 15th, ...) is a rendered config with an error the checker
      must refuse.
    """
    settings = stack.settings
    broken_root = broken_templates(stack.home / "broken-templates")
    base_state = apply.build_render_state(settings)
    brand = TlsIdentity(
        f"mail.brand.{DOMAIN}", base_state.default_tls.cert_path, base_state.default_tls.key_path
    )
    brand_on = False
    step = 0
    checked_postfix: set[str] = set()
    while not stop.wait(interval):
        step += 1
        if step % 10 == 5:
            with stack.installation.transaction() as session:
                status = apply.apply_configuration(
                    session, settings, state=base_state, template_root=broken_root, force=True
                ).status
            report.refused_as_expected += status == "refused"
            report.broken_went_live += status == "live"
        elif step % 2:
            brand_on = not brand_on
            state = dataclasses.replace(base_state, sni_identities=(brand,) if brand_on else ())
            with stack.installation.transaction() as session:
                status = apply.apply_configuration(session, settings, state=state).status
            report.good_not_live += status != "live"
            report.brand_changes += 1
        else:
            with stack.installation.transaction() as session:
                existing = domains.find_domain(session, f"churn.{DOMAIN}")
                if existing is None:
                    tenant = tenants.get_tenant(session, OPERATOR, "Bench")
                    domains.create_domain(
                        session,
                        OPERATOR,
                        tenant=tenant,
                        name=f"churn.{DOMAIN}",
                        max_mailboxes=1,
                        max_aliases=1,
                    )
                else:
                    domains.delete_domain(session, OPERATOR, existing)
            report.domain_changes += 1
        report.applied += 1
        # Whatever just happened, the live generation must pass the checker. Checked once per
        # distinct set of Postfix files: this check is the benchmark's, not a cost of the change,
        # and run after every change it took 0.2 s of CPU from the mail each time.
        live_postfix = settings.live_config.resolve() / "postfix"
        files = digest_folder(live_postfix)
        if files not in checked_postfix:
            try:
                postfix.check_config(live_postfix)
                checked_postfix.add(files)
            except Exception:
                report.live_failed_check += 1


def digest_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def count_log(stack: ScratchStack, *needles: str) -> int:
    log = stack.settings.log_dir / "postfix.log"
    if not log.exists():
        return 0
    text = log.read_text(errors="replace")
    return sum(text.count(needle) for needle in needles)


LOOKUP_MAPS = ("sql-domains.cf", "sql-mailboxes.cf", "sql-forwardings.cf", "sql-sender-logins.cf")


def lookup_rate(stack: ScratchStack, keys: int) -> float:
    """Lookups a second through every recipient map, as Postfix's proxymap makes them (one
    process, one connection, many keys), keys hitting and missing alike."""
    config = stack.settings.live_config.resolve() / "postfix"
    addresses = [f"user{index % MAILBOXES}@{DOMAIN}" for index in range(keys // 2)]
    addresses += [f"nobody{index}@{DOMAIN}" for index in range(keys - len(addresses))]
    started = time.perf_counter()
    for map_name in LOOKUP_MAPS:
        kind = "pgsql" if "\nhosts = " in (config / map_name).read_text() else "sqlite"
        keys_in = [DOMAIN] * len(addresses) if map_name == "sql-domains.cf" else addresses
        subprocess.run(
            [POSTMAP, "-c", str(config), "-q", "-", f"{kind}:{config / map_name}"],
            input="\n".join(keys_in) + "\n", capture_output=True, text=True, check=True,
        )  # fmt: skip
    return keys * len(LOOKUP_MAPS) / (time.perf_counter() - started)


def compare_databases(quick: bool, messages: int, rounds: int) -> int:
    """Delivery and lookups on PostgreSQL over SQLite, on two stacks in the same run."""
    from controlplane.daemons.postgres import PrivatePostgres

    cluster = PrivatePostgres(port=free_ports(1)[0], durable=True)
    cluster.start()
    stacks: dict[str, ScratchStack] = {}
    try:
        stacks["sqlite"] = ScratchStack(
            min_mailbox_bytes=GIB, extra_settings="spam_workers = 1", postgres_server=""
        )
        stacks["postgresql"] = ScratchStack(
            min_mailbox_bytes=GIB, extra_settings="spam_workers = 1", postgres_server=cluster.url()
        )
        counters = {}
        for name, stack in stacks.items():
            stack.prepare()
            populate(stack)
            stack.start()
            counters[name] = maildir_counter(stack)
            run_load(stack.ports["smtp"], RECIPIENTS * 10, counters[name])  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in stacks}
        lookups: dict[str, list[float]] = {name: [] for name in stacks}
        failures = []
        for round_number in range(1, rounds + 1):
            for name, stack in stacks.items():
                result = run_load(stack.ports["smtp"], messages, counters[name])
                rates[name].append(result.rate)
                failures += [f"{name} round {round_number}: {e}" for e in result.errors]
                lookups[name].append(lookup_rate(stack, 2000 if quick else 10000))
                print(
                    f"round {round_number} {name:10}: {result.messages} messages at {result.rate:6.1f} msg/s; "
                    f"{lookups[name][-1]:8.0f} lookups/s"
                )
        delivery = {name: statistics.median(values) for name, values in rates.items()}
        lookup = {name: statistics.median(values) for name, values in lookups.items()}
        print()
        for name in stacks:
            print(
                f"{name:10}: {delivery[name]:6.1f} msg/s, {lookup[name]:8.0f} lookups/s (median of {rounds})"
            )
        for failure in failures:
            print(f"FAILURE: {failure}")
        print(f"database_ratio={delivery['postgresql'] / delivery['sqlite']:.2f}")
        print(f"lookup_ratio={lookup['postgresql'] / lookup['sqlite']:.2f}")
        return 1 if failures else 0
    finally:
        for stack in stacks.values():
            stack.stop(remove="LETTERHEAD_BENCH_KEEP" not in os.environ)
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round (under a minute)")
    parser.add_argument("--messages", type=int, help="messages per run")
    parser.add_argument("--rounds", type=int, help="alternating sql/hash rounds")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: compare delivery and lookups on PostgreSQL with SQLite instead",
    )  # fmt: skip
    args = parser.parse_args()
    messages = args.messages or (500 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 3)
    messages -= messages % RECIPIENTS
    if args.database == "postgresql":
        return compare_databases(args.quick, messages, max(rounds, 2))

    # rspamd scans with as many processes as production runs by default.
    # Domain changes reload Postfix as in production: at once, or once at the end of a spell.
    stack = ScratchStack(
        min_mailbox_bytes=GIB,
        extra_settings=f"spam_workers = 2\npostfix_reload_spacing_seconds = {Settings.postfix_reload_spacing_seconds}",
    )
    try:
        calibration = calibrate_load_tool(stack.home, messages)
        print(
            f"load tool: smtp-source -> smtp-sink {calibration.rate:8.0f} msg/s (at least; its ceiling here)"
        )
        stack.prepare()
        populate(stack)
        stack.start()
        live_postfix = stack.settings.live_config / "postfix"
        hash_dir = build_hash_variant(stack, stack.home / "postfix-hash")
        unfiltered_dir = build_unfiltered_variant(stack, stack.home / "postfix-nofilter")
        count = maildir_counter(stack)
        port = stack.ports["smtp"]
        # Warm-up: the first run pays for Maildir creation and process start-up.
        run_load(port, RECIPIENTS * 10, count)

        rates: dict[str, list[float]] = {"sql": [], "hash": [], "nofilter": []}
        failures = []
        for round_number in range(1, rounds + 1):
            for variant, config_dir in (
                ("sql", live_postfix),
                ("hash", hash_dir),
                ("nofilter", unfiltered_dir),
            ):
                switch_postfix(stack, config_dir)
                result = run_load(port, messages, count)
                rates[variant].append(result.rate)
                failures += [f"{variant} round {round_number}: {e}" for e in result.errors]
                twice = stored_twice(count, result.recipients)
                print(
                    f"round {round_number} {variant:4}: {result.messages} messages in "
                    f"{result.seconds:6.2f} s = {result.rate:6.1f} msg/s"
                    + (f" ({twice} delivered twice by the server)" if twice else "")
                    + (f" ({result.retries} sender retries after a 4xx)" if result.retries else "")
                )
        switch_postfix(stack, live_postfix)
        sql_rate, hash_rate = statistics.median(rates["sql"]), statistics.median(rates["hash"])
        unfiltered_rate = statistics.median(rates["nofilter"])

        # The churn run is long (at least ten changes, one broken); its quiet reference is a
        # run of the same length just before it, so both fill their folders alike.
        churn_messages = 2500 if args.quick else 12000
        churn_messages -= churn_messages % RECIPIENTS
        quiet = run_load(port, churn_messages, count)
        failures += [f"quiet reference: {e}" for e in quiet.errors]
        print(
            f"quiet reference: {quiet.messages} messages at {quiet.rate:6.1f} msg/s"
            f" ({stored_twice(count, quiet.recipients)} delivered twice by the server)"
        )

        permanent = ("reject: RCPT from localhost[127.0.0.1]: 5", "status=bounced")
        refusals_before = count_log(stack, *permanent)
        temporary_before = count_log(stack, ": 450 ", ": 451 ", ": 452 ", "status=deferred")
        reloads_before = count_log(stack, "reload -- version")
        report = ChurnReport()
        stop = threading.Event()
        churner = threading.Thread(target=churn_configs, args=(stack, stop, report, 2.0))
        churner.start()
        try:
            churn = run_load(port, churn_messages, count)
        finally:
            stop.set()
            churner.join()
        reloads = count_log(stack, "reload -- version") - reloads_before
        refusals = count_log(stack, *permanent) - refusals_before
        temporary = count_log(stack, ": 450 ", ": 451 ", ": 452 ", "status=deferred") - temporary_before
        # Deliveries deferred by a Dovecot reload wait in the queue for their retry;
        # retry them now to tell "delayed" from "lost".
        subprocess.run(["/usr/sbin/postqueue", "-c", str(live_postfix), "-f"], check=False)
        wait_until(lambda: count(churn.recipients) >= churn_messages, timeout=60)
        delivered = count(churn.recipients)
        retried = delivered - churn.messages
        server_duplicates = stored_twice(count, churn.recipients)
        # A sender retry after a dropped session can deliver a message twice (as with a
        # real MTA); more deliveries than messages are duplicates, fewer are losses.
        lost, duplicates = max(0, churn_messages - delivered), max(0, delivered - churn_messages)
        with stack.installation.transaction() as session:
            live = apply.live_generation(session)
            live_ok = live is not None and Path(live.path) == stack.settings.live_config.resolve()
            refused = session.query(ConfigGeneration).filter_by(status="refused").count()
        churn_ratio = churn.rate / quiet.rate

        print()
        print(f"sql  (Letterhead's SQLite views): {sql_rate:6.1f} msg/s (median of {rounds})")
        print(f"hash (static hash: maps)        : {hash_rate:6.1f} msg/s (median of {rounds})")
        print(f"nofilter (sql, no rspamd)       : {unfiltered_rate:6.1f} msg/s (median of {rounds})")
        print(
            f"under config churn: {churn.messages} messages at {churn.rate:6.1f} msg/s = {churn_ratio:.2f} "
            f"of quiet; {report.applied} changes ({report.brand_changes} brand, {report.domain_changes} "
            f"domain, {report.refused_as_expected} broken and refused), {reloads} Postfix reloads"
        )
        print(
            f"  sender retries after a 4xx={churn.retries}, 4xx replies and deferrals={temporary}, "
            f"delivered only on queue retry={retried}, lost={lost}, duplicates={duplicates} "
            f"(of which the server delivered a queued message twice: {server_duplicates}), "
            f"5xx/bounces={refusals}"
        )
        print(
            f"  broken configs live={report.broken_went_live}, live config failing its check="
            f"{report.live_failed_check}, good changes refused={report.good_not_live}, "
            f"live generation recorded={live_ok}, refused generations in db={refused}"
        )
        failures += [f"churn: {e}" for e in churn.errors if "not delivered" not in e]
        if lost or refusals or report.broken_went_live or report.live_failed_check or not live_ok:
            failures.append("config churn lost mail, refused mail, or let a broken config go live")
        for failure in failures:
            print(f"FAILURE: {failure}")
        print(f"churn_ratio={churn_ratio:.2f}")
        print(f"filter_ratio={sql_rate / unfiltered_rate:.2f}")
        print(f"ratio={sql_rate / hash_rate:.2f}")
        return 1 if failures else 0
    finally:
        stack.stop(remove="LETTERHEAD_BENCH_KEEP" not in os.environ)


if __name__ == "__main__":
    sys.exit(main())
