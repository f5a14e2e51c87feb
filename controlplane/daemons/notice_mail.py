"""Mail Letterhead itself sends to admins (alerts), handed to the stack's own Postfix on its
loopback-only internal listener: queued, logged and delivered like any other mail."""

from __future__ import annotations

import email.utils
import smtplib
from email.message import EmailMessage

from controlplane.daemons.process import DaemonError


def send_notice(
    port: int, sender: str, recipient: str, subject: str, body: str, *, timeout: float = 30
) -> None:
    message = EmailMessage()
    message["From"] = f"Mail alerts <{sender}>"
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation reply to an alert
    message.set_content(body)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as smtp:
            smtp.send_message(message, from_addr=sender, to_addrs=[recipient])
    except (OSError, smtplib.SMTPException) as error:
        raise DaemonError(f"The alert to {recipient} could not be handed to Postfix: {error}") from None
