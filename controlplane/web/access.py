"""Who may call each route, declared on the route itself so a test can inspect every one.

`allow("full_admin", "domain_admin")` admits those roles; `allow("public")` admits anyone;
`allow("mailbox_user")` admits a user logged in to the webmail (as their mailbox, through IMAP),
which is a separate login from the panel's: webmail/session.py puts it in `g.mailbox_user`.
A route without a declaration is a bug (tests/unit/test_web_routes.py walks the URL map).
The declaration only decides who reaches the view; what the view may touch is decided
again by the services from the actor, so a forged ID or name still meets NotFound.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, g, redirect, request, url_for
from flask_login import current_user

from controlplane.services.scope import Actor

ROLES = frozenset({"public", "full_admin", "domain_admin", "mailbox_user"})
ACTOR_ROLES = {"tenant_admin": "full_admin", "domain_admin": "domain_admin"}


def allow(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    unknown = set(roles) - ROLES
    if not roles or unknown:
        raise ValueError(f"allow() needs roles from {sorted(ROLES)}, got {roles}")
    if "mailbox_user" in roles and len(roles) > 1:
        raise ValueError("allow('mailbox_user') stands alone: the webmail login is not the panel's")

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if "mailbox_user" in roles:
                if g.get("mailbox_user") is None:
                    return redirect(url_for("webmail.login", next=request.full_path.rstrip("?")))
            elif "public" not in roles:
                if not current_user.is_authenticated:
                    return redirect(url_for("admin.login", next=request.full_path))
                if current_user.role not in roles:
                    abort(403)
            return view(*args, **kwargs)

        guarded.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
        return guarded

    return decorate


def current_actor() -> Actor:
    return current_user.actor
