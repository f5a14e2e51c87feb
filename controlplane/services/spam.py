"""Spam thresholds per domain, set by full admins: the score at which a message is refused (for
every recipient in the domain) and the one at which it is filed as junk. None: the
installation's default (settings). Dovecot reads the junk score from SQL at each delivery;
rspamd reads reject scores from Redis, published after each commit (daemons/spam_policy.py).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.db import after_commit
from controlplane.errors import ValidationError
from controlplane.models import Domain
from controlplane.services import audit, scope
from controlplane.services.scope import Actor

# rspamd's scores: a plain message scores around 0, GTUBE and blocklisted senders 15 and more.
LOWEST_SCORE = 1.0
HIGHEST_SCORE = 100.0


@dataclasses.dataclass(frozen=True)
class SpamThresholds:
    reject_score: float
    junk_score: float
    # Whether each is the domain's own (False: the installation's default).
    reject_is_own: bool
    junk_is_own: bool
    greylisting: bool = False


def thresholds(domain: Domain, *, default_reject: float, default_junk: float) -> SpamThresholds:
    return SpamThresholds(
        reject_score=domain.spam_reject_score if domain.spam_reject_score is not None else default_reject,
        junk_score=domain.spam_junk_score if domain.spam_junk_score is not None else default_junk,
        reject_is_own=domain.spam_reject_score is not None,
        junk_is_own=domain.spam_junk_score is not None,
        greylisting=domain.greylisting,
    )


def _require_score(value: float | None, field: str, title: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValidationError(f"{title} must be a number.", field=field)
    if not LOWEST_SCORE <= value <= HIGHEST_SCORE:
        raise ValidationError(
            f"{title} must be between {LOWEST_SCORE:g} and {HIGHEST_SCORE:g}, not {value:g}.", field=field
        )


def set_thresholds(
    session: Session,
    actor: Actor,
    domain: Domain,
    *,
    reject_score: float | None,
    junk_score: float | None,
    default_reject: float,
    default_junk: float,
) -> SpamThresholds:
    """Full admins only. Junk must stay below reject (either may be the default)."""
    scope.require_domain(actor, domain)
    scope.require_full_admin(actor, domain.tenant)
    _require_score(reject_score, "reject_score", "The reject score")
    _require_score(junk_score, "junk_score", "The junk score")
    reject = reject_score if reject_score is not None else default_reject
    junk = junk_score if junk_score is not None else default_junk
    if junk >= reject:
        raise ValidationError(
            f"The junk score ({junk:g}) must be below the reject score ({reject:g}): mail between them "
            "is filed as junk, mail above the reject score is refused.",
            field="junk_score",
        )
    domain.spam_reject_score, domain.spam_junk_score = reject_score, junk_score
    session.flush()
    audit.record_change(
        session, actor, "domain.spam_thresholds", domain.name, tenant_id=domain.tenant_id,
        domain_id=domain.id, reject_score=reject_score, junk_score=junk_score,
    )  # fmt: skip
    _signal_policy_changed(session)
    return thresholds(domain, default_reject=default_reject, default_junk=default_junk)


def set_greylisting(session: Session, actor: Actor, domain: Domain, enabled: bool) -> Domain:
    """Full admins only: mail from senders not seen lately is deferred once, for a few minutes."""
    scope.require_domain(actor, domain)
    scope.require_full_admin(actor, domain.tenant)
    domain.greylisting = bool(enabled)
    session.flush()
    audit.record_change(
        session, actor, "domain.greylisting", domain.name, tenant_id=domain.tenant_id, domain_id=domain.id,
        enabled=domain.greylisting,
    )  # fmt: skip
    _signal_policy_changed(session)
    return domain


def greylisted_domains(session: Session) -> list[str]:
    return list(
        session.scalars(select(Domain.name).where(Domain.greylisting.is_(True)).order_by(Domain.name))
    )


def _signal_policy_changed(session: Session) -> None:
    action = session.info.get("on_spam_policy_changed")
    if action is not None:
        after_commit(session, "spam_policy_changed", action)


def own_reject_scores(session: Session) -> dict[str, float]:
    """Each domain's reject score that is its own (the rest use the default rspamd knows)."""
    rows = session.execute(
        select(Domain.name, Domain.spam_reject_score).where(Domain.spam_reject_score.is_not(None))
    )
    return {name: score for name, score in rows}
