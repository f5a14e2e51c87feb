"""What an SMTP reply means, in words a tenant's admin reads: "550 5.1.1" is "refused: mailbox
unavailable or policy; the mailbox does not exist". Used by the log viewers, the API and the
dialogue of a transaction."""

from __future__ import annotations

import re

# What a reply code means, in words; the enhanced code's class and subject refine it.
REPLY_CODES = {
    "211": "system status",
    "214": "help message",
    "220": "server ready",
    "221": "closing the connection",
    "235": "authentication succeeded",
    "250": "OK, done",
    "251": "user not local, will forward",
    "252": "cannot verify the user, will try to deliver",
    "334": "go on with authentication",
    "354": "send the message, end with a single dot",
    "421": "service not available, closing the connection (temporary)",
    "432": "a password transition is needed",
    "450": "mailbox unavailable (temporary)",
    "451": "local error while processing (temporary)",
    "452": "insufficient storage (temporary)",
    "454": "TLS or authentication temporarily unavailable",
    "455": "parameters cannot be accommodated now",
    "500": "command not recognised",
    "501": "syntax error in parameters",
    "502": "command not implemented",
    "503": "bad sequence of commands",
    "504": "parameter not implemented",
    "521": "this host accepts no mail",
    "523": "message larger than the server accepts",
    "530": "authentication required",
    "534": "authentication mechanism too weak",
    "535": "authentication failed: wrong login or password",
    "538": "encryption required for this authentication",
    "550": "refused: mailbox unavailable or policy",
    "551": "user not local",
    "552": "refused: storage exceeded",
    "553": "refused: mailbox name not allowed",
    "554": "transaction failed",
    "555": "MAIL or RCPT parameters not recognised",
}
ENHANCED_SUBJECTS = {
    "1.1": "the mailbox does not exist",
    "1.2": "the destination domain does not exist or accepts no mail",
    "1.3": "the address is malformed",
    "1.8": "the sender's domain is not valid",
    "2.1": "the mailbox is disabled",
    "2.2": "the mailbox is full",
    "3.4": "the message is too big",
    "4.1": "no answer from the receiving host",
    "4.2": "the connection was dropped",
    "4.4": "the receiving server could not be reached",
    "4.7": "the message was too long in the queue",
    "5.3": "too many recipients",
    "7.0": "not allowed (security policy)",
    "7.1": "delivery not authorised (relay or sender not allowed)",
    "7.8": "authentication credentials invalid",
}


_CLASS_WORDS = {"2": "success", "3": "go on", "4": "temporary failure, will retry", "5": "permanent failure"}
_BASIC_CODE = re.compile(r"[2-5]\d\d")
_ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def explain_reply(code: str) -> str:
    """Say in words what an SMTP status such as "550 5.1.1" or "4.4.1" means; "" for none."""
    parts = code.split()
    basic = next((part for part in parts if _BASIC_CODE.fullmatch(part)), "")
    enhanced = next((part for part in parts if _ENHANCED_CODE.fullmatch(part)), "")
    words = REPLY_CODES.get(basic) or _CLASS_WORDS.get((basic or enhanced)[:1], "")
    subject = ENHANCED_SUBJECTS.get(enhanced.partition(".")[2], "") if enhanced[:1] in ("4", "5") else ""
    return "; ".join(part for part in (words, subject) if part)
