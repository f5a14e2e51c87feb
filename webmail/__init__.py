"""Webmail: the user's own mailbox in the browser, served at `/` on every brand host by the same app."""

from webmail.views import blueprint

__all__ = ["blueprint"]
