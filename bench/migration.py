"""Mail migration from an old IMAP provider, against `doveadm backup` run by hand on the same data.

A second private Dovecot on loopback plays the old provider (tests/old_provider.py): one account
with 5,000 messages of about 2 KB in four folders (about 10 MB) plus one message of 10 MB. On one
Letterhead stack, each round copies it twice into fresh mailboxes, in alternating order:

- `letterhead`: a migration job as the panel, the API and the CLI start it, run by the migration
  runner (services/mail_migration.py, runners/mail_migration.py): the old server's totals, the
  quota check, dsync, progress recorded every 2 s, the final count;
- `reference`: what an operator types by hand, `doveadm backup -R -u USER imapc:` with the same
  imapc settings in a file of their own.

Both must end with every message in the mailbox. Headline: `ratio=<reference seconds /
letterhead seconds>` (median of the rounds; target 0.8 or more).

    .venv/bin/python bench/migration.py [--rounds N] [--messages N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import imaplib
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.daemons import imap_migration  # noqa: E402
from controlplane.daemons.dovecot import DOVEADM  # noqa: E402
from controlplane.runners import mail_migration as runner  # noqa: E402
from controlplane.runners.scratch import ScratchStack  # noqa: E402
from controlplane.runtime import instance_secret_key  # noqa: E402
from controlplane.services import domains, mail_migration, mailboxes, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from tests.old_provider import OldProvider  # noqa: E402
from webmail.mailstore import encode_folder_name  # noqa: E402

GB = 1024**3
MB = 1024**2
DOMAIN = "bench-migration.test"
OLD_LOGIN, OLD_PASSWORD = "old-user@old-provider.test", "old password"
FOLDERS = ("INBOX", "Archive", "Sent", "Projekte/Übersicht")


def _message(number: int, size: int) -> bytes:
    head = (
        f"From: sender{number % 97}@elsewhere.test\r\nTo: {OLD_LOGIN}\r\n"
        f"Subject: message {number}\r\nMessage-ID: <{number}.bench@old-provider.test>\r\n"
        f"Date: {dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number):%a, %d %b %Y %H:%M:%S +0000}\r\n\r\n"
    ).encode()
    line = b"lorem ipsum dolor sit amet " * 2 + b"\r\n"
    return head + line * max((size - len(head)) // len(line), 1)


def fill_old_mailbox(old: OldProvider, messages: int) -> None:
    """Over one IMAP connection: APPEND keeps flags and dates as a real account's."""
    client = old.client(OLD_LOGIN)
    try:
        for folder in FOLDERS[1:]:
            client.create(f'"{encode_folder_name(folder)}"')
        for number in range(messages):
            folder = FOLDERS[number % len(FOLDERS)]
            flags = "(\\Seen)" if number % 3 else None
            when = imaplib.Time2Internaldate(time.time() - number * 60)
            client.append(f'"{encode_folder_name(folder)}"', flags, when, _message(number, 2048))
        client.append(
            '"INBOX"', "(\\Seen \\Flagged)", imaplib.Time2Internaldate(time.time()), _message(-1, 10 * MB)
        )
    finally:
        client.logout()


def make_mailbox(stack: ScratchStack, local_part: str) -> str:
    with stack.installation.transaction() as session:
        domain = domains.find_domain(session, DOMAIN)
        mailboxes.create_mailbox(session, OPERATOR, domain=domain, local_part=local_part, quota_bytes=GB,
                                 password="bench password 1")  # fmt: skip
    return f"{local_part}@{DOMAIN}"


def copy_with_letterhead(stack: ScratchStack, old: OldProvider, address: str) -> float:
    started = time.perf_counter()
    with stack.installation.transaction() as session:
        domain = domains.find_domain(session, DOMAIN)
        request = mail_migration.single_request(address, f"127.0.0.1:{old.port}", OLD_LOGIN, OLD_PASSWORD)
        seal = mail_migration.PasswordSeal(instance_secret_key(stack.settings))
        job_id = mail_migration.start_job(session, OPERATOR, domain, [request], seal).id
    runner.run_pending(stack.installation, parallel=1, ca_file=old.ca_file)
    elapsed = time.perf_counter() - started
    with stack.installation.sessions() as session:
        (row,) = mail_migration.get_job(session, OPERATOR, job_id).mailboxes
        if row.state != "done":
            raise SystemExit(f"the migration of {address} failed: {row.error}")
    return elapsed


def copy_by_hand(stack: ScratchStack, old: OldProvider, address: str, scratch: Path) -> float:
    """As an operator following Dovecot's migration documentation would."""
    settings = scratch / "by-hand.conf"
    settings.touch(mode=0o600)
    settings.write_text(
        f"!include {stack.settings.live_config.resolve() / 'dovecot' / 'dovecot.conf'}\n"
        f"imapc_host = 127.0.0.1\nimapc_port = {old.port}\nimapc_ssl = imaps\n"
        f'imapc_user = {OLD_LOGIN}\nimapc_password = "{OLD_PASSWORD}"\n'
        f"imapc_features = {imap_migration.IMAPC_FEATURES}\nssl_client_ca_file = {old.ca_file}\n"
        "mail_prefetch_count = 20\n"
    )
    started = time.perf_counter()
    subprocess.run([DOVEADM, "-c", str(settings), "backup", "-R", "-u", address, "imapc:"],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    arguments = parser.parse_args()

    old = OldProvider()
    stack = ScratchStack(
        extra_settings="migration_private_servers = true\n"
    )  # the old provider is on loopback
    try:
        old.start()
        old.add_user(OLD_LOGIN, OLD_PASSWORD)
        started = time.perf_counter()
        fill_old_mailbox(old, arguments.messages)
        print(
            f"old provider: {arguments.messages + 1} messages filled in {time.perf_counter() - started:.1f} s"
        )
        stack.start()
        with stack.installation.transaction() as session:
            tenant = tenants.create_tenant(
                session, OPERATOR, name="Bench", storage_pool_bytes=(2 * arguments.rounds + 1) * GB
            )
            domains.create_domain(session, OPERATOR, tenant=tenant, name=DOMAIN, max_mailboxes=2 * arguments.rounds + 1,
                                  max_aliases=1, max_mailbox_bytes=GB)  # fmt: skip
        expected = arguments.messages + 1
        times: dict[str, list[float]] = {"letterhead": [], "reference": []}
        for round_number in range(arguments.rounds):
            order = ("letterhead", "reference") if round_number % 2 == 0 else ("reference", "letterhead")
            for variant in order:
                address = make_mailbox(stack, f"{variant}{round_number}")
                if variant == "letterhead":
                    seconds = copy_with_letterhead(stack, old, address)
                else:
                    seconds = copy_by_hand(stack, old, address, stack.home)
                counted = imap_migration.local_totals(
                    stack.settings.live_config.resolve() / "dovecot" / "dovecot.conf", address
                )
                if counted.messages != expected:
                    raise SystemExit(f"{variant}: {counted.messages} messages copied, {expected} expected")
                times[variant].append(seconds)
                print(f"round {round_number + 1} {variant:10}: {expected} messages, {counted.bytes / MB:.1f} MB "
                      f"in {seconds:6.2f} s = {expected / seconds:7.0f} msg/s")  # fmt: skip
    finally:
        stack.stop()
        old.stop()
    median = {variant: statistics.median(values) for variant, values in times.items()}
    for variant, seconds in median.items():
        print(f"{variant:10}: {seconds:6.2f} s (median of {arguments.rounds})")
    print(f"ratio={median['reference'] / median['letterhead']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
