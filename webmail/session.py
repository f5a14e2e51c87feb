"""Who is logged in to the webmail, and the password the webmail logs in to IMAP and SMTP with.

Every page speaks IMAP (and sending speaks SMTP) as the user, so the server needs the user's
password on every request. We keep it in Flask's session cookie, ENCRYPTED with Fernet
(AES-128-CBC and HMAC-SHA256) under a key derived from the app's secret key, rather than in a
server-side session store. Why:

- Flask's cookie is only signed, so anyone holding it could read a clear password; the sealed
  token is unreadable and unforgeable without the server's key.
- A server-side store would be a table of every logged-in user's password that the server can
  decrypt: a single leak gives them all. Here each browser holds only its own, and the key alone
  is worth nothing without the cookies.
- It needs no shared store between gunicorn workers and survives restarts.

The price: logging out deletes the cookie in that browser, but a copy of the cookie stolen
before then keeps working until the token expires, so tokens live at most SESSION_HOURS from
the login and the cookie is HttpOnly, SameSite=Lax and (in production) Secure. A password
change also ends such a session: the next IMAP login fails and the user is sent to log in.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, g, session

SESSION_KEY = "webmail"
SESSION_HOURS = 12
_KEY_LABEL = b"letterhead webmail credentials v1\0"


@dataclasses.dataclass(frozen=True)
class MailboxUser:
    """The logged-in webmail user: their mailbox address and its password, in memory only."""

    address: str
    password: str = dataclasses.field(repr=False)


def _fernet() -> Fernet:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(_KEY_LABEL + secret).digest()))


def start(address: str, password: str) -> None:
    """Remember the login in the session cookie, the password sealed."""
    sealed = _fernet().encrypt(password.encode("utf-8", "surrogatepass")).decode()
    session[SESSION_KEY] = {"address": address, "sealed": sealed}
    g.mailbox_user = MailboxUser(address, password)


def end() -> None:
    """Forget the webmail login; a panel login in the same browser stays."""
    session.pop(SESSION_KEY, None)
    g.pop("mailbox_user", None)


def load() -> None:
    """Put the logged-in user in `g.mailbox_user` (None when nobody is, or the login expired)."""
    g.mailbox_user = None
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return
    try:
        password = _fernet().decrypt(str(stored.get("sealed", "")).encode(), ttl=SESSION_HOURS * 3600)
    except (InvalidToken, ValueError):
        session.pop(SESSION_KEY, None)
        return
    g.mailbox_user = MailboxUser(str(stored.get("address", "")), password.decode("utf-8", "surrogatepass"))


def current_user() -> MailboxUser:
    user = g.get("mailbox_user")
    if user is None:
        raise RuntimeError("no webmail user: the view must be declared allow('mailbox_user')")
    return user
