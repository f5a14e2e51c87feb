"""certbot, run for one brand at a time, its state kept under the state directory.

One lineage per brand, named after the brand's hostname (`--cert-name`), in
`$LETTERHEAD_HOME/acme/certbot/config/live/<hostname>/`. HTTP-01 challenges are answered
from the webroot nginx serves on every host name. The rules (which names, when to order,
backoff) are services/certificates.py's; this module only runs certbot and reads what it wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509

from controlplane.daemons.process import DaemonError, run_tool
from controlplane.settings import Settings

# certbot can wait on a slow ACME server and on several validations in a row.
CERTBOT_TIMEOUT = 300
# Let's Encrypt refuses a certificate with more names than this.
MAX_NAMES_PER_CERTIFICATE = 100
# Longest error text kept for the operator (the whole story is in certbot's log).
MAX_ERROR_CHARS = 900

# Lines certbot prints around every error that say nothing about this one.
_BOILERPLATE = (
    "Saving debug log",
    "Ask for help",
    "Hint:",
    "If you like Certbot",
    "Donating to",
    "- - - -",
    "See the logfile",
    "Some challenges have failed",
    "Requesting a certificate",
    "Account registered",
)


class CertbotError(DaemonError):
    """certbot did not deliver a certificate; the message says why in a few lines."""


@dataclasses.dataclass(frozen=True)
class CertificateInfo:
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str

    def covers(self, names: tuple[str, ...] | list[str]) -> bool:
        return set(names) <= set(self.names)


def certbot_config_dir(settings: Settings) -> Path:
    return settings.acme_dir / "certbot" / "config"


def certbot_log_file(settings: Settings) -> Path:
    return settings.acme_dir / "certbot" / "logs" / "letsencrypt.log"


def certificate_paths(settings: Settings, hostname: str) -> tuple[Path, Path]:
    """Where certbot keeps a brand's current certificate chain and key (cert-name = hostname)."""
    live = certbot_config_dir(settings) / "live" / hostname
    return live / "fullchain.pem", live / "privkey.pem"


def certificate_pems(settings: Settings, hostname: str) -> tuple[str, str]:
    """The brand's current chain and key as certbot wrote them (PEM)."""
    cert, key = certificate_paths(settings, hostname)
    return cert.read_text(), key.read_text()


def certbot_binary() -> str:
    """The certbot installed beside this Python (the venv's, from PyPI), else one on PATH."""
    beside = Path(sys.executable).parent / "certbot"
    if beside.exists():
        return str(beside)
    return shutil.which("certbot") or "certbot"


def read_certificate(path: Path) -> CertificateInfo:
    """The names (DNS SANs) and validity of the first certificate in a PEM file."""
    return read_certificate_pem(path.read_text())


def read_certificate_pem(pem: str) -> CertificateInfo:
    """The names (DNS SANs) and validity of the first certificate in PEM text."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(sorted(name.lower() for name in san.get_values_for_type(x509.DNSName)))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issuer=certificate.issuer.rfc4514_string(),
    )


def current_certificate(settings: Settings, hostname: str) -> CertificateInfo | None:
    """The certificate certbot holds for this brand now, or None (never issued, or unreadable)."""
    fullchain, key = certificate_paths(settings, hostname)
    if not (fullchain.is_file() and key.is_file()):
        return None
    try:
        return read_certificate(fullchain)
    except (OSError, ValueError):
        return None


def deploy_hook_command(settings: Settings) -> str:
    """`letterhead certs deployed` for this installation, also when an operator runs
    `certbot renew` by hand (certbot stores the hook in the lineage's renewal file)."""
    return shlex.join(["env", f"LETTERHEAD_HOME={settings.home}", *settings.cli_command, "certs", "deployed"])


def _common_options(settings: Settings) -> list[str]:
    base = settings.acme_dir / "certbot"
    return [
        "--non-interactive",
        "--config-dir",
        str(base / "config"),
        "--work-dir",
        str(base / "work"),
        "--logs-dir",
        str(base / "logs"),
    ]


@contextlib.contextmanager
def one_certbot_at_a_time(settings: Settings) -> Iterator[None]:
    """certbot refuses to run beside another one on the same config dir ("Another instance of
    Certbot is already running"): an operator's `certs issue` waits for the periodic run rather
    than fail and be backed off as if the ACME server had refused."""
    settings.acme_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.acme_dir / "certbot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ, LETTERHEAD_HOME=str(settings.home))
    if settings.acme_ca_bundle:
        # certbot talks to the ACME server through requests, which trusts this bundle only.
        env["REQUESTS_CA_BUNDLE"] = settings.acme_ca_bundle
    return env


def _authenticator(settings: Settings) -> list[str]:
    """How certbot answers HTTP-01: from the webroot nginx serves on a single machine; on mail
    nodes through hooks that keep the answer in the shared database, which every node's web app
    gives (the ACME server may reach any node)."""
    if not settings.node_name:
        return ["--webroot", "-w", str(settings.acme_webroot)]
    hook = shlex.join(["env", f"LETTERHEAD_HOME={settings.home}", *settings.cli_command, "certs"])
    return [
        "--manual",
        "--preferred-challenges",
        "http",
        "--manual-auth-hook",
        f"{hook} challenge-put",
        "--manual-cleanup-hook",
        f"{hook} challenge-clean",
    ]


def obtain_certificate(
    settings: Settings, hostname: str, names: list[str] | tuple[str, ...], *, force_renewal: bool = False
) -> CertificateInfo:
    """One certificate for `names` in the lineage named `hostname` (a brand's host, then its
    first name; or a platform certificate's lineage).

    Without `force_renewal` certbot keeps a certificate that already covers the names and is
    not due; with it (the caller decided it is due) it orders a new one. Raises CertbotError.
    """
    if not names:
        raise ValueError("A certificate needs at least one name.")
    (settings.acme_webroot / ".well-known" / "acme-challenge").mkdir(parents=True, exist_ok=True)
    command = [
        certbot_binary(),
        "certonly",
        *_common_options(settings),
        "--agree-tos",
        *_authenticator(settings),
    ]
    command += [
        "--cert-name",
        hostname,
        "--server",
        settings.acme_directory,
        "--deploy-hook",
        deploy_hook_command(settings),
        "--force-renewal" if force_renewal else "--keep-until-expiring",
    ]
    if settings.acme_email:
        command += ["--email", settings.acme_email, "--no-eff-email"]
    else:
        command.append("--register-unsafely-without-email")
    for name in names:
        command += ["-d", name]
    settings.acme_dir.mkdir(parents=True, exist_ok=True)
    log_file = certbot_log_file(settings)
    log_start = log_file.stat().st_size if log_file.exists() else 0
    try:
        with one_certbot_at_a_time(settings):
            result = run_tool(command, timeout=CERTBOT_TIMEOUT, env=_environment(settings))
    except DaemonError as error:
        raise CertbotError(str(error)) from error
    if result.returncode != 0:
        raise CertbotError(
            failure_summary(
                result.stdout + "\n" + result.stderr, log_file, log_start, server=settings.acme_directory
            )
        )
    info = current_certificate(settings, hostname)
    if info is None:
        raise CertbotError(f"certbot reported success but left no certificate for {hostname}.")
    return info


def delete_certificate(settings: Settings, hostname: str, *, revoke: bool = True) -> None:
    """Forget a brand's lineage; revoke it first when the ACME server can be reached.

    Revocation is a courtesy (the key never leaves this machine): when it fails the
    lineage is deleted all the same.
    """
    if not (certbot_config_dir(settings) / "renewal" / f"{hostname}.conf").exists():
        return
    with one_certbot_at_a_time(settings):
        _revoke_or_delete(settings, hostname, revoke=revoke)


def _revoke_or_delete(settings: Settings, hostname: str, *, revoke: bool) -> None:
    env = _environment(settings)
    if revoke:
        result = run_tool(
            [certbot_binary(), "revoke", *_common_options(settings), "--cert-name", hostname,
             "--server", settings.acme_directory, "--reason", "cessationofoperation",
             "--delete-after-revoke"],
            timeout=CERTBOT_TIMEOUT, env=env,
        )  # fmt: skip
        if result.returncode == 0:
            return
    result = run_tool(
        [certbot_binary(), "delete", *_common_options(settings), "--cert-name", hostname],
        timeout=CERTBOT_TIMEOUT,
        env=env,
    )
    if result.returncode != 0:
        raise CertbotError(
            failure_summary(result.stdout + "\n" + result.stderr, certbot_log_file(settings), 0)
        )


def lineage_names(settings: Settings) -> list[str]:
    """The cert-names certbot keeps here (one per brand hostname ever issued)."""
    renewal = certbot_config_dir(settings) / "renewal"
    return (
        sorted(path.name.removesuffix(".conf") for path in renewal.glob("*.conf")) if renewal.is_dir() else []
    )


# How requests words an ACME server that cannot be reached, and what that means.
_UNREACHABLE = (
    ("Connection refused", "refused the connection"),
    ("Name or service not known", "has a name that does not resolve"),
    ("Temporary failure in name resolution", "could not be looked up in DNS"),
    ("timed out", "did not answer in time"),
    ("CERTIFICATE_VERIFY_FAILED", "presented a TLS certificate this machine does not trust"),
)


def failure_summary(output: str, log_file: Path, log_start: int = 0, *, server: str = "") -> str:
    """certbot's own words about this failure, without its boilerplate, in a few lines; first,
    in plain words, when the ACME server (`server`) could not be reached at all.

    When its output says little (`An unexpected error occurred`), the cause is in the log
    (e.g. `accountDoesNotExist` behind an AttributeError): the ACME errors logged in this run.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not any(noise in line for noise in _BOILERPLATE)]
    text = "\n".join(lines)
    if not lines or "unexpected error" in text.lower():
        logged = _logged_errors(log_file, log_start)
        if logged:
            text = (text + "\n" if text else "") + logged
    text = text or "certbot failed without a message; see " + str(log_file)
    if "ConnectionError" in text or "Max retries exceeded" in text:
        meaning = next((words for pattern, words in _UNREACHABLE if pattern in text), "could not be reached")
        text = (
            f"The ACME server {server or '(acme_directory)'} {meaning}: no certificate could be ordered; "
            f"the current one (if any) keeps serving.\n" + text
        )
    if "accountDoesNotExist" in text or re.search(r"Account \S+ not found", text):
        text += (
            f"\nThe ACME server no longer knows this installation's account (was it reset?): remove "
            f"{log_file.parent.parent / 'config' / 'accounts'} so that certbot registers a new one."
        )
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1].rstrip() + "…"
    return text


_ACME_ERROR = re.compile(r"urn:ietf:params:acme:error:\w+|acme\.messages\.Error.*|Error: .*|\w+Error: .*")


def _logged_errors(log_file: Path, start: int) -> str:
    try:
        with open(log_file, errors="replace") as log:
            log.seek(start)
            tail = log.read()
    except OSError:
        return ""
    found: list[str] = []
    for match in _ACME_ERROR.finditer(tail):
        text = match.group(0).strip()
        if text not in found:
            found.append(text)
    return "\n".join(found[-4:])
