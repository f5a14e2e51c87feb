"""Every check on a name that can reach a daemon config file or an SQL lookup.

Values are normalized here once (lower case, IDNA A-labels) so that the database,
the Postfix maps and the Dovecot queries all see the same spelling.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from urllib.parse import urlsplit

import idna

# Python's unicodedata has no Script property; fontTools ships the Unicode Character
# Database's Scripts.txt and ScriptExtensions.txt and keeps them current with Unicode.
from fontTools.unicodedata import script, script_extension, script_name

from controlplane.errors import ValidationError

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_LOCAL_PART_LENGTH = 64
MAX_DISPLAY_NAME_LENGTH = 200
MAX_URL_LENGTH = 2000

_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RFC 5321 dot-atom without quoting: the characters every MTA and client passes through
# unchanged. Quoted local parts are refused on purpose: they cannot be typed reliably.
_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
# Characters that would be read as syntax in Postfix maps, Dovecot queries or config files.
_UNSAFE_IN_LOCAL_PART = set("'`{}|%/=")


def _reject_control_characters(value: str, field: str, what: str) -> None:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise ValidationError(f"{what} may not contain control characters or line breaks.", field=field)


def normalize_domain(name: str, *, field: str = "domain") -> str:
    """Return the domain in lower-case IDNA A-label form, or raise ValidationError.

    Accepts Unicode (IDN) input, mapped as UTS #46 says (upper case, full-width forms);
    every international label must be valid under IDNA 2008 and keep to one script as
    UTS #39 allows. Refuses spaces, quotes, braces, trailing dots, over-long names and
    labels, and names with a single label.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError("A domain name is required.", field=field)
    _reject_control_characters(name, field, "A domain name")
    if name.strip() != name or " " in name:
        raise ValidationError(f"The domain name {name!r} may not contain spaces.", field=field)
    if len(name) > MAX_DOMAIN_LENGTH:
        raise ValidationError(
            f"A domain name may be at most {MAX_DOMAIN_LENGTH} characters long.", field=field
        )
    typed_labels = name.split(".")
    if not name.isascii():
        name = _map_for_idna(name, field)
    if name.endswith("."):
        raise ValidationError(
            f"Write the domain name without a trailing dot ({name.rstrip('.')!r}).", field=field
        )
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError(
            f"{name!r} is not a full domain name: it needs at least one dot (example.com).", field=field
        )
    # Messages quote each label as the person typed it, unless mapping moved the dots.
    if len(typed_labels) != len(labels):
        typed_labels = labels
    ascii_labels = []
    for label, typed in zip(labels, typed_labels, strict=True):
        if not label:
            raise ValidationError(f"The domain name {name!r} has an empty label (two dots).", field=field)
        ascii_labels.append(_label_to_ascii(label, typed, name, field))
    ascii_name = ".".join(ascii_labels)
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise ValidationError(
            f"The domain name {name!r} is longer than {MAX_DOMAIN_LENGTH} characters once encoded.",
            field=field,
        )
    if ascii_labels[-1].isdigit():
        raise ValidationError(f"{name!r} looks like an IP address, not a domain name.", field=field)
    return ascii_name


# --- IDNA 2008 -----------------------------------------------------------------------------------
# Plain-words reasons for the rules of RFC 5891/5892 that the idna package reports by code.
_IDNA_REASONS = {
    "hyphen_3_4": "it has hyphens in the third and fourth places, which are kept for encoded names",
    "hyphen_start_end": "it starts or ends with a hyphen",
    "leading_combiner": "it starts with a combining mark, which needs a letter before it",
    "not_nfc": "its accented letters are not written in the composed form (Unicode NFC) names must use",
    "invalid_alabel": "its xn-- part is damaged and does not decode to a name",
    "non_canonical_alabel": "its xn-- part is not the one standard spelling of the name it decodes to",
    "label_too_long": f"it is longer than {MAX_LABEL_LENGTH} characters once encoded",
    "unknown_codepoint": "it holds a character Unicode has not assigned",
}


def _map_for_idna(name: str, field: str) -> str:
    """Map what people type to the form IDNA 2008 judges (UTS #46), or raise ValidationError.

    Upper case becomes lower case and full-width letters and the ideographic full stop
    become their plain forms. Non-transitional, so ß and ς stay themselves, as IDNA 2008
    intends, instead of turning into ss and σ (another name). STD3 rules are left to the
    letters-digits-hyphens check of each label, whose message is plainer.
    """
    try:
        return idna.uts46_remap(name, std3_rules=False, transitional=False)
    except idna.IDNAError as error:
        culprit = chr(error.codepoint) if error.codepoint is not None else ""
        label = next((label for label in name.split(".") if culprit and culprit in label), name)
        raise _idna_refusal(label, None, error, field) from None


def _idna_refusal(shown: str, ulabel: str | None, error: idna.IDNAError, field: str) -> ValidationError:
    """A ValidationError saying in plain words why IDNA 2008 refuses the label `shown`.

    `ulabel` is the decoded form of an xn-- label, quoted so the person sees what it says.
    """
    reason = _IDNA_REASONS.get(error.code or "")
    if reason is None and isinstance(error, idna.IDNABidiError):
        reason = "it mixes right-to-left and left-to-right writing in a way that reads two ways"
    if reason is None and error.codepoint is not None:
        reason = _codepoint_reason(
            chr(error.codepoint), contextual=isinstance(error, idna.InvalidCodepointContext)
        )
    if reason is None:
        reason = "it holds characters that are not allowed in names"
    message = f"{shown} is not a valid international domain name (IDNA 2008): {reason}."
    if ulabel is not None and ulabel != shown:
        message += f" ({shown} reads {ulabel}.)"
    return ValidationError(message, field=field)


def _codepoint_reason(char: str, *, contextual: bool) -> str:
    described = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"
    if contextual:
        return f"it uses {described} where the rules do not allow it (only next to certain letters)"
    category = unicodedata.category(char)
    if category.startswith("S"):
        return "it holds symbols that are not allowed in names"
    if category.startswith("P"):
        return "it holds punctuation that is not allowed in names"
    if category in ("Lu", "Lt"):
        return "it holds upper-case letters, which an encoded name may not"
    return f"it holds a character that is not allowed in names ({described})"


# --- UTS #39 mixed scripts -----------------------------------------------------------------------
# UTS #39 "Highly Restrictive": a label is in one script, or in Latin together with the scripts
# Chinese, Japanese or Korean are written in. Chosen over "Moderately Restrictive", which also lets
# Latin mix with any other recommended script but Cyrillic and Greek: Armenian օ and ս look just
# like Latin o and u, and people decide from an address alone whether to trust a message.
_WITH_ANY_SCRIPT = frozenset({"Zyyy", "Zinh"})  # Common and Inherited: digits, hyphen, many marks
# Han, kana, Hangul and Bopomofo are written together; UTS #39 §5.1 adds each its writing systems
# (Hanb: Chinese with Bopomofo, Jpan: Japanese, Kore: Korean) so they count as one script.
_WRITING_SYSTEMS = {
    "Hani": frozenset({"Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Jpan"}),
    "Kana": frozenset({"Jpan"}),
    "Hang": frozenset({"Kore"}),
    "Bopo": frozenset({"Hanb"}),
}
_LATIN_WITH_CJK = (
    frozenset({"Latn", "Hani", "Hira", "Kana"}),
    frozenset({"Latn", "Hani", "Bopo"}),
    frozenset({"Latn", "Hani", "Hang"}),
)


def _require_one_script(ulabel: str, shown: str, field: str) -> None:
    """Refuse a label whose letters mix scripts beyond UTS #39's Highly Restrictive level."""
    # Script_Extensions rather than Script, as UTS #39 asks: a mark or sign shared by a few
    # scripts (the kana length mark ー) goes with each of them and no other.
    char_scripts = [
        scripts
        for scripts in (frozenset(script_extension(char)) for char in ulabel)
        if not scripts & _WITH_ANY_SCRIPT
    ]
    if any("Zzzz" in scripts for scripts in char_scripts):
        raise ValidationError(
            f"The name holds a character in one label ({shown}) whose script this server does not "
            "know yet, so it cannot check the name for imitation; it is refused.",
            field=field,
        )
    resolved: frozenset[str] | None = None
    for scripts in char_scripts:
        augmented = scripts.union(*(_WRITING_SYSTEMS.get(code, ()) for code in scripts))
        resolved = augmented if resolved is None else resolved & augmented
    if resolved is None or resolved:
        return
    if any(all(scripts & allowed for scripts in char_scripts) for allowed in _LATIN_WITH_CJK):
        return
    raise ValidationError(
        f"The name mixes {_joined(_script_names(ulabel))} letters in one label ({shown}): "
        "such names imitate others and are refused.",
        field=field,
    )


def _script_names(ulabel: str) -> list[str]:
    """The scripts of a label's characters by name, in the order they first appear."""
    names: list[str] = []
    for char in ulabel:
        code = script(char)
        if code in _WITH_ANY_SCRIPT:
            shared = sorted(frozenset(script_extension(char)) - _WITH_ANY_SCRIPT)
            if not shared:
                continue
            code = shared[0]
        name = script_name(code).replace("_", " ")
        if name not in names:
            names.append(name)
    return names


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _label_to_ascii(label: str, typed: str, name: str, field: str) -> str:
    """Return one label as a lower-case A-label after the IDNA 2008 and UTS #39 checks.

    `label` is already mapped (UTS #46); `typed` is how the person wrote it, for messages.
    """
    if label.isascii():
        candidate = label.lower()
    else:
        try:
            candidate = idna.alabel(label).decode("ascii")
        except idna.IDNAError as error:
            raise _idna_refusal(typed, None, error, field) from None
    if not _LDH_LABEL.match(candidate):
        raise ValidationError(
            f"The domain name {name!r} may contain only letters, digits and hyphens in each label "
            f"(at most {MAX_LABEL_LENGTH} characters, not starting or ending with a hyphen).",
            field=field,
        )
    if not label.isascii():
        _require_one_script(label, typed, field)
    elif candidate.startswith("xn--"):
        # RFC 5891 §5.4: an A-label counts only if it decodes to a valid U-label that encodes
        # back to the same A-label (idna checks the round trip), so symbols cannot hide in xn--.
        try:
            ulabel = idna.ulabel(candidate)
        except idna.IDNAError as error:
            raise _idna_refusal(candidate, _punycode_text(candidate), error, field) from None
        _require_one_script(ulabel, f"{ulabel}, written {candidate}", field)
    return candidate


def _punycode_text(alabel: str) -> str | None:
    """What an xn-- label says, decoded without judging it, or None if it does not decode."""
    try:
        return alabel[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return None


def domain_to_unicode(ascii_name: str) -> str:
    """Show an A-label domain as people write it; a label that does not decode stays as it is."""
    labels = []
    for label in ascii_name.split("."):
        if label.lower().startswith("xn--"):
            with contextlib.suppress(idna.IDNAError):
                label = idna.ulabel(label)
        labels.append(label)
    return ".".join(labels)


def normalize_hostname(name: str, *, field: str = "hostname") -> str:
    """A server hostname follows a domain name's rules, and names one host: no wildcard, and
    no underscore (which a certificate authority refuses in a host name)."""
    if isinstance(name, str) and ("*" in name or "_" in name):
        raise ValidationError(f"{name!r} is not a server name: no wildcards or underscores.", field=field)
    return normalize_domain(name, field=field)


def normalize_local_part(local_part: str, *, field: str = "local_part") -> str:
    """Return the local part in lower case, or raise ValidationError.

    Only unquoted dot-atoms of ASCII characters that are not syntax in our map or
    query languages are accepted.
    """
    if not isinstance(local_part, str) or not local_part:
        raise ValidationError("The part before @ is required.", field=field)
    _reject_control_characters(local_part, field, "The part before @")
    if len(local_part) > MAX_LOCAL_PART_LENGTH:
        raise ValidationError(
            f"The part before @ may be at most {MAX_LOCAL_PART_LENGTH} characters long.", field=field
        )
    candidate = local_part.lower()
    if not local_part.isascii() or not _LOCAL_PART.match(candidate) or set(candidate) & _UNSAFE_IN_LOCAL_PART:
        raise ValidationError(
            f"{local_part!r} is not allowed before @: use letters, digits and . _ - + "
            "(no spaces, quotes or leading, trailing or double dots).",
            field=field,
        )
    return candidate


def split_address(address: str, *, field: str = "address") -> tuple[str, str]:
    """Split and normalize `local@domain`; return (local_part, ascii_domain)."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise ValidationError(f"{address!r} is not an email address (local@domain).", field=field)
    local_part, domain = address.split("@")
    return normalize_local_part(local_part, field=field), normalize_domain(domain, field=field)


def normalize_address(address: str, *, field: str = "address") -> str:
    local_part, domain = split_address(address, field=field)
    return f"{local_part}@{domain}"


def normalize_display_name(name: str | None, *, field: str = "display_name") -> str:
    if name is None:
        return ""
    _reject_control_characters(name, field, "A display name")
    name = name.strip()
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise ValidationError(
            f"A display name may be at most {MAX_DISPLAY_NAME_LENGTH} characters long.", field=field
        )
    return name


def normalize_tenant_name(name: str, *, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A tenant name is required.", field=field)
    _reject_control_characters(name, field, "A tenant name")
    name = name.strip()
    if len(name) > 100:
        raise ValidationError("A tenant name may be at most 100 characters long.", field=field)
    return name


def normalize_login(login: str, *, field: str = "login") -> str:
    """Admin logins: lower-case letters, digits and . _ - @ (an email address works)."""
    if not isinstance(login, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._@-]{0,99}", login.lower()):
        raise ValidationError(
            "A login may contain letters, digits and . _ - @ and be at most 100 characters long.",
            field=field,
        )
    return login.lower()


def validate_url(url: str, *, field: str = "url") -> str:
    """Accept absolute http(s) URLs with a valid host; refuse anything else."""
    if not isinstance(url, str) or not url:
        raise ValidationError("A URL is required.", field=field)
    _reject_control_characters(url, field, "A URL")
    if len(url) > MAX_URL_LENGTH or any(ch in url for ch in " \"'<>\\`{}"):
        raise ValidationError(f"{url!r} is not a valid web address.", field=field)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise ValidationError(f"{url!r} is not a valid web address.", field=field) from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValidationError("A URL must start with https:// or http:// and name a host.", field=field)
    normalize_hostname(hostname, field=field)
    return url
