"""Letterhead's spam policy where rspamd reads it: each domain's reject score that differs from
the default, in a Redis hash, and the domains with greylisting on, in a Redis set
(templates/rspamd/rspamd.local.lua.j2 asks both for every message's recipient domains); and each
mailbox's allowed senders, in a set per address. The database is the source; each copy is
replaced whole on each publish, so a missed update is repaired by the next one (and at every
`letterhead up`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import redis

from controlplane.daemons.process import DaemonError
from controlplane.render import ALLOWED_SENDERS_PREFIX, GREYLIST_DOMAINS_KEY, SPAM_REJECT_SCORES_KEY


def publish_policy(port: int, scores: Mapping[str, float], greylisted: Collection[str] = ()) -> None:
    """Make the hash hold exactly `scores` (domain -> reject score) and the set exactly
    `greylisted`, in one transaction."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(SPAM_REJECT_SCORES_KEY)
            if scores:
                pipe.hset(
                    SPAM_REJECT_SCORES_KEY, mapping={domain: f"{score:g}" for domain, score in scores.items()}
                )
            pipe.delete(GREYLIST_DOMAINS_KEY)
            if greylisted:
                pipe.sadd(GREYLIST_DOMAINS_KEY, *sorted(greylisted))
            pipe.execute()
    except redis.RedisError as error:
        raise DaemonError(f"The spam policy could not be published to Redis: {error}") from error
    finally:
        client.close()


def reject_scores(port: int) -> dict[str, float]:
    """What rspamd reads now (for status and tests)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)
    try:
        return {domain: float(score) for domain, score in client.hgetall(SPAM_REJECT_SCORES_KEY).items()}
    except redis.RedisError as error:
        raise DaemonError(f"Redis did not answer: {error}") from error
    finally:
        client.close()


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)


def publish_allowed_senders(port: int, allowed: Mapping[str, Collection[str]]) -> None:
    """Make the sets hold exactly `allowed` (address -> senders), in one transaction: every
    other address's set goes."""
    client = _client(port)
    try:
        stale = {key.decode() for key in client.scan_iter(match=f"{ALLOWED_SENDERS_PREFIX}*", count=1000)}
        with client.pipeline(transaction=True) as pipe:
            for key in stale:
                pipe.delete(key)
            for address, senders in allowed.items():
                if senders:
                    pipe.sadd(ALLOWED_SENDERS_PREFIX + address.lower(), *sorted(senders))
            pipe.execute()
    except redis.RedisError as error:
        raise DaemonError(f"The allowed senders could not be published to Redis: {error}") from error
    finally:
        client.close()
