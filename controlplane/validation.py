"""Every check on a name that can reach a daemon config file or an SQL lookup.

Values are normalized here once (lower case, IDNA A-labels) so that the database,
the Postfix maps and the Dovecot queries all see the same spelling.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from controlplane.services.errors import ValidationError

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

    Accepts Unicode (IDN) input; refuses spaces, quotes, braces, trailing dots,
    over-long names and labels, and names with a single label.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError("A domain name is required.", field=field)
    _reject_control_characters(name, field, "A domain name")
    if name.strip() != name or " " in name:
        raise ValidationError(f"The domain name {name!r} may not contain spaces.", field=field)
    if name.endswith("."):
        raise ValidationError(
            f"Write the domain name without a trailing dot ({name.rstrip('.')!r}).", field=field
        )
    if len(name) > MAX_DOMAIN_LENGTH:
        raise ValidationError(
            f"A domain name may be at most {MAX_DOMAIN_LENGTH} characters long.", field=field
        )
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError(
            f"{name!r} is not a full domain name: it needs at least one dot (example.com).", field=field
        )
    ascii_labels = []
    for label in labels:
        if not label:
            raise ValidationError(f"The domain name {name!r} has an empty label (two dots).", field=field)
        ascii_labels.append(_label_to_ascii(label, name, field))
    ascii_name = ".".join(ascii_labels)
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise ValidationError(
            f"The domain name {name!r} is longer than {MAX_DOMAIN_LENGTH} characters once encoded.",
            field=field,
        )
    if ascii_labels[-1].isdigit():
        raise ValidationError(f"{name!r} looks like an IP address, not a domain name.", field=field)
    return ascii_name


def _label_to_ascii(label: str, name: str, field: str) -> str:
    if label.isascii():
        candidate = label.lower()
    else:
        try:
            candidate = label.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValidationError(
                f"The domain name {name!r} has a label that is not a valid international name.",
                field=field,
            ) from None
    if not _LDH_LABEL.match(candidate):
        raise ValidationError(
            f"The domain name {name!r} may contain only letters, digits and hyphens in each label "
            f"(at most {MAX_LABEL_LENGTH} characters, not starting or ending with a hyphen).",
            field=field,
        )
    if candidate.startswith("xn--"):
        try:
            candidate.encode("ascii").decode("idna")
        except UnicodeError:
            raise ValidationError(
                f"The domain name {name!r} has an invalid punycode label ({candidate!r}).", field=field
            ) from None
    return candidate


def domain_to_unicode(ascii_name: str) -> str:
    """Show an A-label domain as people write it."""
    try:
        return ascii_name.encode("ascii").decode("idna")
    except UnicodeError:
        return ascii_name


def normalize_hostname(name: str, *, field: str = "hostname") -> str:
    """A server hostname follows the same rules as a domain name."""
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
