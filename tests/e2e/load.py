"""SMTP load for fault tests: a sender that retries each message until accepted, and what the
mailboxes hold afterwards."""

from __future__ import annotations

import email
import email.utils
import smtplib
import threading
import time
from collections import Counter
from email.message import EmailMessage

from controlplane.runners.scratch import ScratchStack


class PersistentSender:
    """One message after another; each retried until accepted, as a sending MTA does."""

    def __init__(self, scratch: ScratchStack, recipients: list[str]) -> None:
        self.scratch = scratch
        self.recipients = recipients
        self.accepted: dict[str, str] = {}  # Message-ID -> recipient
        self.attempts: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="persistent-sender", daemon=True)

    def _message(self, number: int) -> EmailMessage:
        message = EmailMessage()
        recipient = self.recipients[number % len(self.recipients)]
        message["From"], message["To"] = "sender@elsewhere.test", recipient
        message["Subject"] = f"fault load {number}"
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid(idstring=f"fault{number}", domain="elsewhere.test")
        message.set_content("Sent while parts of the stack die.\n" + "x" * 2000 + "\n")
        return message

    def _send_until_accepted(self, message: EmailMessage, give_up_at: float) -> bool:
        message_id = str(message["Message-ID"])
        while time.monotonic() < give_up_at:
            self.attempts[message_id] += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.scratch.ports["smtp"], timeout=20) as client:
                    client.ehlo("client.test")
                    client.send_message(message)
                self.accepted[message_id] = str(message["To"])
                return True
            except (smtplib.SMTPException, OSError) as error:
                self.failures.append(f"{message_id}: {error}")
                time.sleep(0.5)
        return False

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            # A message being sent when the load stops is still sent to the end (its 250 may come late).
            self._send_until_accepted(self._message(number), time.monotonic() + 120)
            number += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=150)
        assert not self._thread.is_alive()


def stored_message_ids(scratch: ScratchStack) -> Counter[str]:
    """Message-IDs of every message in the mailboxes' Maildirs, as many times as stored."""
    found: Counter[str] = Counter()
    for maildir in scratch.settings.mail_root.glob("*/Maildir"):
        for folder in ("new", "cur"):
            for path in (maildir / folder).glob("*"):
                with path.open("rb") as handle:
                    header = email.message_from_binary_file(handle, _class=email.message.Message)
                found[str(header["Message-ID"])] += 1
    return found
