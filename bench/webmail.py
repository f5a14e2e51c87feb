"""The webmail against a plain IMAP client doing the same fetches, in the same run.

A scratch stack (real Dovecot) holds one mailbox with 10,000 messages in its inbox (2,000 with
`--quick`), appended over IMAP, one word of their text in every 100th, and one 5 MB message with
three attachments. Each round times, through the real app (Flask's test client, logged in through
the login form; each page opens its own IMAPS session, as the webmail does):

- `folder`:  the inbox's first page            (`/folder?name=INBOX`);
- `search`:  a body search for the word          (`/folder?name=INBOX&q=...&in=body`);
- `message`: the 5 MB message, attachments listed (`/message/<uid>`);

and the same IMAP work done by imaplib directly, each over a fresh IMAPS session too: for
`folder`, LIST and STATUS of each folder, SELECT, UID SEARCH ALL and the headers of 25 messages;
for `search`, the same with UID SEARCH BODY; for `message`, UID FETCH BODY.PEEK[] of the big one.

    .venv/bin/python bench/webmail.py [--quick]

It prints the median of each, webmail and IMAP, and their ratio; the last line is the
headline: `ratio=<the worst of the three>` (target 1.3 or less).
"""

from __future__ import annotations

import argparse
import email.message
import imaplib
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane import create_app  # noqa: E402
from controlplane.runners.scratch import ScratchStack  # noqa: E402
from controlplane.services import domains, mailboxes, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from webmail.mailstore import tls_context  # noqa: E402

ADDRESS = "reader@bench.test"
PASSWORD = "bench reader password"
WORD = "quasar"
GB = 1024**3


def fill(stack: ScratchStack, count: int) -> int:
    """`count` small messages and one of 5 MB with attachments; the big one's UID."""
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"])
    client.login(ADDRESS, PASSWORD)
    when = imaplib.Time2Internaldate(time.time())
    for number in range(count):
        text = f"Message {number} of the bench." + (f" It mentions a {WORD}." if number % 100 == 0 else "")
        raw = (
            f"From: sender{number % 97}@elsewhere.test\r\nTo: {ADDRESS}\r\nSubject: Bench message {number}\r\n"
            f"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench-{number}@elsewhere.test>\r\n\r\n"
            f"{text}\r\n"
        ).encode()
        client.append("INBOX", "", when, raw)
    big = email.message.EmailMessage()
    big["From"], big["To"], big["Subject"] = "sender@elsewhere.test", ADDRESS, "The big one"
    big.set_content("Three attachments follow.")
    for index in range(3):
        big.add_attachment(os.urandom(1_250_000), maintype="application", subtype="octet-stream",
                           filename=f"part-{index}.bin")  # fmt: skip
    status, data = client.append("INBOX", "", when, big.as_bytes())
    client.logout()
    return int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))


def imap_session(stack: ScratchStack) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", stack.ports["imaps"], ssl_context=tls_context(stack.settings))
    credentials = f"\0{ADDRESS}\0{PASSWORD}".encode()
    client.authenticate("PLAIN", lambda _challenge: credentials)
    return client


def imap_folder(stack: ScratchStack, criteria: tuple[str, ...]) -> None:
    client = imap_session(stack)
    try:
        _, folders = client.list()
        for line in folders:
            name = line.decode().rsplit(" ", 1)[-1]
            client.status(name, "(MESSAGES UNSEEN)")
        client.select("INBOX", readonly=True)
        _, found = client.uid("SEARCH", *criteria)
        newest = sorted((int(uid) for uid in found[0].split()), reverse=True)[:25]
        client.uid(
            "FETCH", ",".join(map(str, newest)),
            "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])",
        )  # fmt: skip
    finally:
        client.logout()


def imap_message(stack: ScratchStack, uid: int) -> None:
    client = imap_session(stack)
    try:
        client.select("INBOX", readonly=True)
        client.uid("FETCH", str(uid), "(UID FLAGS BODY.PEEK[])")
    finally:
        client.logout()


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages and 15 rounds (a minute)")
    options = parser.parse_args()
    count, rounds = (2_000, 15) if options.quick else (10_000, 40)
    stack = ScratchStack(min_mailbox_bytes=1024, extra_settings="auth_penalty = false")
    try:
        stack.start()
        with stack.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Bench", storage_pool_bytes=2 * GB)
            domain = domains.create_domain(session, OPERATOR, tenant=tenant, name="bench.test", max_mailboxes=5,
                                           max_aliases=5, max_mailbox_bytes=2 * GB)  # fmt: skip
            mailboxes.create_mailbox(session, OPERATOR, domain=domain, local_part="reader", password=PASSWORD,
                                     quota_bytes=2 * GB)  # fmt: skip
        started = time.perf_counter()
        big_uid = fill(stack, count)
        print(f"filled {count} messages and one of 5 MB in {time.perf_counter() - started:.1f} s", flush=True)

        app = create_app({"LETTERHEAD_SETTINGS": stack.settings, "TESTING": True})
        web = app.test_client()
        page = web.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert (
            web.post(
                "/login", data={"address": ADDRESS, "password": PASSWORD, "csrf_token": token}
            ).status_code
            == 302
        )

        def web_get(path: str, must_contain: str):
            def action() -> None:
                response = web.get(path)
                assert response.status_code == 200 and must_contain in response.get_data(as_text=True), path

            return action

        work = {
            "folder": (
                web_get("/folder?name=INBOX", f"Bench message {count - 1}"),
                lambda: imap_folder(stack, ("ALL",)),
            ),
            "search": (
                web_get(f"/folder?name=INBOX&q={WORD}&in=body", f"{count // 100} found"),
                lambda: imap_folder(stack, ("BODY", WORD)),
            ),
            "message": (
                web_get(f"/message/{big_uid}?folder=INBOX", "part-2.bin"),
                lambda: imap_message(stack, big_uid),
            ),
        }
        for webmail_action, imap_action in work.values():  # warm-up: caches, the index of the search
            webmail_action(), imap_action()
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in work}
        for _ in range(rounds):
            for name, (webmail_action, imap_action) in work.items():
                times[name][0].append(timed(webmail_action))
                times[name][1].append(timed(imap_action))
        app.extensions["letterhead"].dispose()
        ratios = []
        for name, (webmail_times, imap_times) in times.items():
            webmail_median, imap_median = statistics.median(webmail_times), statistics.median(imap_times)
            ratios.append(webmail_median / imap_median)
            print(f"{name:8} webmail {webmail_median * 1000:8.1f} ms   imap {imap_median * 1000:8.1f} ms   "
                  f"ratio {ratios[-1]:.2f}")  # fmt: skip
        print(f"ratio={max(ratios):.2f}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
