"""rspamd's verdict lines, and what they mean in words.

rspamd logs one line per message in the format Letterhead renders
(templates/rspamd/local.d/logging.inc.j2):

    2026-12-05 07:59:02 #13493(rspamd_proxy) <548d62>; proxy; rspamd_task_write_log: letterhead
    verdict: qid=<4jhLNQ01shzJDX1> action=<reject> score=<16.20/nan> symbols=<RBL_X(6.00){1.2.3.4;},...>

The queue ID ties it to Postfix's transaction; the symbols that added most to the score say why,
in words an admin understands ("listed in Spamhaus", "forged sender").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re

VERDICT_MARK = b"letterhead verdict: "
# Every line rspamd logs: "2026-12-05 07:59:02 #13493(rspamd_proxy) ...".
RSPAMD_LINE = re.compile(rb"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} #\d+\(")
_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) .*?letterhead verdict: qid=<(?P<queue_id>[^>]*)> "
    r"action=<(?P<action>[^>]*)> score=<(?P<score>[^/>]*)/[^>]*>(?: forced=<(?P<forced>.*?)>)? "
    r"symbols=<(?P<symbols>.*)>\s*$"
)
_SYMBOL = re.compile(r"(?P<name>[A-Z0-9_]+)\((?P<score>-?[0-9.]+|nan|inf)\)(?:\{(?P<options>[^}]*)\})?")
_FORCED_BY = re.compile(r"\(set by (?P<name>[A-Za-z0-9_]+)\)")
# How many of the symbols that raised the score the words name.
NAMED_SYMBOLS = 3


@dataclasses.dataclass(frozen=True)
class Symbol:
    name: str
    score: float
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SpamVerdict:
    time: dt.datetime
    queue_id: str
    # rspamd's action: "no action", "reject", "soft reject", ...
    action: str
    score: float | None
    symbols: tuple[Symbol, ...]
    # The rule that decided by itself (GTUBE, Letterhead's policy), if one did.
    forced_by: str = ""

    @property
    def rejected(self) -> bool:
        return self.action == "reject"

    def main_symbols(self) -> tuple[Symbol, ...]:
        """The symbols that raised the score most, highest first (and a deciding rule, or
        Letterhead's own word on the verdict, which score nothing)."""
        raising = sorted((s for s in self.symbols if s.score > 0), key=lambda s: (-s.score, s.name))
        named = [
            s
            for s in self.symbols
            if (s.name == self.forced_by or s.name.startswith("LETTERHEAD_")) and s.score <= 0
        ]
        return tuple(named + raising)[:NAMED_SYMBOLS]

    def stored_symbols(self) -> str:
        """The main symbols as stored with the transaction: NAME(score) joined by commas."""
        return ",".join(f"{s.name}({s.score:.2f})" for s in self.main_symbols())[:1000]


def parse_verdict_line(line: str) -> SpamVerdict | None:
    match = _LINE.match(line)
    if match is None:
        return None
    try:
        time = dt.datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        score: float | None = float(match["score"])
    except ValueError:
        return None
    if score is not None and not math.isfinite(score):
        score = None
    symbols = tuple(
        Symbol(
            found["name"],
            float(found["score"]) if found["score"] not in ("nan", "inf") else 0.0,
            tuple(o for o in (found["options"] or "").split(";") if o),
        )
        for found in _SYMBOL.finditer(match["symbols"])
    )
    forced = _FORCED_BY.search(match["forced"] or "")
    return SpamVerdict(
        time=time,
        queue_id=match["queue_id"],
        action=match["action"],
        score=score,
        symbols=symbols,
        forced_by=forced["name"] if forced else "",
    )


# What rspamd's symbols mean, for the symbols that decide most verdicts. Prefixes end in "_".
SYMBOL_WORDS: tuple[tuple[str, str], ...] = (
    ("GTUBE", "the GTUBE test pattern"),
    ("LETTERHEAD_ALLOWED_SENDER", "not refused: a recipient allows the sender"),
    ("BAYES_SPAM", "looks like mail the users here marked as junk"),
    ("FUZZY_DENIED", "matches known spam"),
    ("FUZZY_", "resembles known spam"),
    ("RBL_SPAMHAUS_", "sender listed in Spamhaus"),
    ("RECEIVED_SPAMHAUS_", "a relay on the way is listed in Spamhaus"),
    ("SPAMHAUS_", "listed in Spamhaus"),
    ("RBL_", "sender listed in a DNS blocklist"),
    ("RECEIVED_", "a relay on the way is listed in a DNS blocklist"),
    ("SURBL_", "links to a blocklisted site"),
    ("URIBL_", "links to a blocklisted site"),
    ("DBL_", "links to a blocklisted domain"),
    ("PHISHING", "a link pretends to go elsewhere (phishing)"),
    ("FORGED_SENDER", "forged sender"),
    ("FORGED_RECIPIENTS", "forged recipients"),
    ("FORGED_", "forged headers"),
    ("R_SPF_FAIL", "SPF says the sending server may not send for this domain"),
    ("R_SPF_SOFTFAIL", "SPF doubts the sending server"),
    ("R_DKIM_REJECT", "a DKIM signature does not verify"),
    ("DMARC_POLICY_REJECT", "fails DMARC, and the sender's domain asks to reject such mail"),
    ("DMARC_POLICY_QUARANTINE", "fails DMARC, and the sender's domain asks to treat it as junk"),
    ("DMARC_POLICY_SOFTFAIL", "fails DMARC"),
    ("ARC_REJECT", "an ARC seal does not verify"),
    ("HFILTER_HOSTNAME_UNKNOWN", "the sending server has no host name"),
    ("HFILTER_", "the sending server's names look suspicious"),
    ("RDNS_NONE", "the sending server's address has no host name"),
    ("MISSING_MID", "no Message-ID header"),
    ("MISSING_DATE", "no Date header"),
    ("MISSING_FROM", "no From header"),
    ("MISSING_SUBJECT", "no subject"),
    ("SUBJ_ALL_CAPS", "a subject in capitals"),
    ("MIME_HTML_ONLY", "HTML without a text part"),
    ("R_SUSPICIOUS_URL", "a suspicious link"),
    ("SUSPICIOUS_RECIPS", "suspicious recipients"),
    ("ONCE_RECEIVED", "sent straight from the client, with no mail server of its own"),
    ("FREEMAIL_", "sent from a free mail service"),
    ("DATE_IN_FUTURE", "dated in the future"),
    ("DATE_IN_PAST", "dated long ago"),
    ("BROKEN_CONTENT_TYPE", "a broken message structure"),
    ("MULTIPLE_FROM", "several From addresses"),
    ("GREYLIST", "greylisted"),
)


def symbol_words(name: str) -> str:
    for prefix, words in SYMBOL_WORDS:
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return words
    return name.replace("_", " ").lower()


def verdict_words(
    action: str, score: float | None, symbols: str, *, junk: bool = False, limit: int = 1000
) -> str:
    """ "rejected as spam (score 16.2: listed in Spamhaus, forged sender)", "filed as junk
    (score 7.1)", "passed the spam filter (score 0.4)": what the filter did, from a transaction's stored
    verdict (`symbols` as SpamVerdict.stored_symbols() wrote them), naming as many reasons as
    fit in `limit` characters."""
    if not action:
        return ""
    names = [found["name"] for found in _SYMBOL.finditer(symbols)]
    reasons: list[str] = []
    for name in names:
        words = symbol_words(name)
        if words not in reasons:
            reasons.append(words)
    scored = f"score {score:.1f}" if score is not None and (score != 0 or not reasons) else ""
    outcome = _outcome_words(action, junk)
    while True:
        detail = ": ".join(p for p in (scored, ", ".join(reasons)) if p)
        words = f"{outcome} ({detail})" if detail else outcome
        if len(words) <= limit or not reasons:
            return words[:limit]
        reasons.pop()


def _outcome_words(action: str, junk: bool) -> str:
    if action == "reject":
        return "rejected as spam"
    if action in ("soft reject", "greylist"):
        return "deferred by the spam filter"
    return "filed as junk" if junk else "passed the spam filter"
