"""Spam thresholds per domain, set by full admins: the score at which a message is refused (for
every recipient in the domain) and the one at which it is filed as junk. None: the
installation's default (settings). Dovecot reads the junk score from SQL at each delivery;
rspamd reads reject scores from Redis, published after each commit (daemons/spam_policy.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.models import Domain
from controlplane.services import audit, changes, scope
from controlplane.services.scope import Actor
from controlplane.settings import Settings

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


def thresholds(settings: Settings, domain: Domain) -> SpamThresholds:
    return SpamThresholds(
        reject_score=domain.spam_reject_score
        if domain.spam_reject_score is not None
        else settings.spam_reject_score,
        junk_score=domain.spam_junk_score if domain.spam_junk_score is not None else settings.spam_junk_score,
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


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


# A field left as it is (None means "back to the installation's default").
UNCHANGED: Any = _Unchanged()


def update(
    session: Session,
    actor: Actor,
    settings: Settings,
    domain: Domain,
    *,
    reject_score: float | None = UNCHANGED,
    junk_score: float | None = UNCHANGED,
    greylisting: bool | None = None,
) -> SpamThresholds:
    """Full admins only. Junk must stay below reject (either may be the default); greylisting
    defers mail from senders not seen lately once, for a few minutes. Nothing changes unless
    everything asked for is valid."""
    scope.require_domain(actor, domain)
    scope.require_full_admin(actor, domain.tenant)
    if reject_score is UNCHANGED:
        reject_score = domain.spam_reject_score
    if junk_score is UNCHANGED:
        junk_score = domain.spam_junk_score
    _require_score(reject_score, "reject_score", "The reject score")
    _require_score(junk_score, "junk_score", "The junk score")
    reject = reject_score if reject_score is not None else settings.spam_reject_score
    junk = junk_score if junk_score is not None else settings.spam_junk_score
    if junk >= reject:
        raise ValidationError(
            f"The junk score ({junk:g}) must be below the reject score ({reject:g}): mail between them "
            "is filed as junk, mail above the reject score is refused.",
            field="junk_score",
        )
    changed = False
    if (reject_score, junk_score) != (domain.spam_reject_score, domain.spam_junk_score):
        changed = True
        domain.spam_reject_score, domain.spam_junk_score = reject_score, junk_score
        audit.record_change(
            session, actor, "domain.spam_thresholds", domain.name, tenant_id=domain.tenant_id,
            domain_id=domain.id, reject_score=reject_score, junk_score=junk_score,
        )  # fmt: skip
    if greylisting is not None and bool(greylisting) != domain.greylisting:
        changed = True
        domain.greylisting = bool(greylisting)
        audit.record_change(
            session, actor, "domain.greylisting", domain.name, tenant_id=domain.tenant_id,
            domain_id=domain.id, enabled=domain.greylisting,
        )  # fmt: skip
    if changed:
        # Only the reject scores and greylisting are published (junk filing reads SQL).
        session.flush()
        changes.signal(session, "spam_policy_changed")
    return thresholds(settings, domain)


def greylisted_domains(session: Session) -> list[str]:
    return list(
        session.scalars(select(Domain.name).where(Domain.greylisting.is_(True)).order_by(Domain.name))
    )


def own_reject_scores(session: Session) -> dict[str, float]:
    """Each domain's reject score that is its own (the rest use the default rspamd knows)."""
    rows = session.execute(
        select(Domain.name, Domain.spam_reject_score).where(Domain.spam_reject_score.is_not(None))
    )
    return {name: score for name, score in rows}
