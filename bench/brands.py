"""What one brand change costs with 10, 100, 1,000 and 5,000 brands live.

A private stack (real Postfix, Dovecot, HAProxy and nginx on free loopback ports) holds N brands,
each with a certificate of its own (a distinct EC P-256 key, signed by one test CA)
covering the brand host and its domain's client-setup names (`autoconfig.`,
`autodiscover.`, `mta-sts.`): four TLS names per brand, as services/certificates.py
orders them, each brand used by its customer's domain (setup names are served only for
the domains using the brand). Certificates are written where certbot keeps them
(`certs.acme.certificate_paths`) and recorded on the brand as issued; the ACME flow
itself is measured elsewhere.

At each size one brand is added, then removed, through the brands service with a
commit, and `apply_configuration` runs as it does after every brand change. Each step
is timed by wrapping the very functions `apply_configuration` calls:

    state     brands and their certificate files read from the database
    render    templates -> files          write     the generation on disk
    check     identities (key matches certificate), postfix, dovecot, haproxy, nginx checkers
    diff      which daemons' files changed          switch    the live symlink
    haproxy   certificates: the brand's added or removed through HAProxy's admin socket
              (HAProxy ends TLS for IMAPS and POP3S; its configuration names no brand, so
              neither its check nor its reload runs: both stay 0)
    reload    nginx (Postfix reads brand certificates from SQL: neither Postfix nor Dovecot
              changes, reload dovecot stays 0)
    sni       the Postfix SNI table published; tls files: the key+chain files nginx and
              HAProxy serve
    served    until the new brand's certificate is presented by SNI on SMTP STARTTLS,
              IMAPS and HTTPS (reloads return before the daemons have re-read the config)

Growth is time(10 N) / time(N) per step (the 1,000 -> 5,000 step is scaled to 10x as
(t5000/t1000) ** (1 / log10(5))). Linear growth is 10; fixed costs make it smaller.

    .venv/bin/python bench/brands.py [--quick]

`--quick` stops at 1,000 brands. The last line is the worst total ratio: `ratio=...`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import math
import os
import shutil
import smtplib
import socket
import ssl
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from controlplane.certs.acme import certificate_paths  # noqa: E402
from controlplane.daemons import apply, dovecot, haproxy, nginx, postfix, sni  # noqa: E402
from controlplane.models import GIB, Brand, Domain  # noqa: E402
from controlplane.runners.scratch import ScratchStack  # noqa: E402
from controlplane.services import brands, configuration, domains, tenants  # noqa: E402
from controlplane.services.scope import OPERATOR  # noqa: E402
from controlplane.settings import Settings  # noqa: E402

SIZES = (10, 100, 1000, 5000)
QUICK_SIZES = (10, 100, 1000)
TENANT = "Brand bench"
# Generated once and kept: 5,000 keys and certificates take a while to make.
CERT_CACHE = Path("/tmp/letterhead-bench-brand-certs")
SETUP_PREFIXES = brands.SETUP_PREFIXES
SERVED_TIMEOUT = 120


def brand_hostname(index: int) -> str:
    return f"mail.customer{index}.example"


def brand_names(index: int) -> tuple[str, ...]:
    """The brand host and its domain's setup names: what one brand certificate covers."""
    domain = f"customer{index}.example"
    return (f"mail.{domain}", *(f"{prefix}.{domain}" for prefix in SETUP_PREFIXES))


# --- certificates: one test CA, one EC P-256 key and leaf per brand ---------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@functools.cache
def _test_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    CERT_CACHE.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = CERT_CACHE / "ca.key", CERT_CACHE / "ca.pem"
    if key_file.exists() and cert_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        return key, x509.load_pem_x509_certificate(cert_file.read_bytes())  # type: ignore[return-value]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Letterhead bench CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file.write_bytes(_pem_key(key))
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def cached_certificate(index: int) -> tuple[Path, Path]:
    """(fullchain, privkey) for brand `index`, made once under CERT_CACHE."""
    folder = CERT_CACHE / brand_hostname(index)
    chain_file, key_file = folder / "fullchain.pem", folder / "privkey.pem"
    if chain_file.exists() and key_file.exists():
        return chain_file, key_file
    ca_key, ca_cert = _test_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    names = brand_names(index)
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "privkey.pem.partial"
    partial.write_bytes(_pem_key(key))
    partial.chmod(0o600)
    chain_file.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    partial.rename(key_file)
    return chain_file, key_file


def install_certificate(settings: Settings, brand: Brand, index: int) -> None:
    """Put the brand's certificate where certbot would, and record it as issued."""
    source_chain, source_key = cached_certificate(index)
    chain, key = certificate_paths(settings, brand.hostname)
    chain.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_chain, chain)
    shutil.copyfile(source_key, key)
    key.chmod(0o600)
    brand.cert_names = " ".join(brand_names(index))
    brand.cert_status = "issued"
    brand.cert_not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=3000)


# --- brands through the service ---------------------------------------------------------------


@contextlib.contextmanager
def brand_session(stack: ScratchStack, after_commit: Callable[[], None] | None) -> Iterator[Session]:
    """A transaction whose brand changes run `after_commit` once committed (None: nothing).

    The installation's own hook re-applies the configuration; the bulk set-up skips it and
    applies once at the end, and the measured changes pass a timed wrapper of the hook.
    """
    with stack.installation.transaction() as session:
        session.info["on_brands_changed"] = after_commit
        yield session


def add_brands(stack: ScratchStack, indexes: range, after_commit: Callable[[], None] | None = None) -> None:
    """Each brand with its certificate, used by its customer's domain: a brand's setup names are
    served only for the domains using it (services/brands.served_identities)."""
    with brand_session(stack, after_commit) as session:
        tenant = tenants.get_tenant(session, OPERATOR, TENANT)
        for index in indexes:
            brand = brands.create_brand(
                session, OPERATOR, stack.settings, tenant=tenant, hostname=brand_hostname(index),
                name=f"Customer {index}",
            )  # fmt: skip
            install_certificate(stack.settings, brand, index)
            domain_name = brand_names(index)[0].removeprefix("mail.")
            domain = session.scalar(select(Domain).where(Domain.name == domain_name))
            if domain is None:
                domain = domains.create_domain(
                    session, OPERATOR, tenant=tenant, name=domain_name, max_mailboxes=1, max_aliases=1
                )
            brands.set_domain_brand(session, OPERATOR, domain, brand)


def remove_brand(stack: ScratchStack, index: int, after_commit: Callable[[], None] | None = None) -> None:
    with brand_session(stack, after_commit) as session:
        brand = session.scalar(select(Brand).where(Brand.hostname == brand_hostname(index)))
        brands.delete_brand(session, OPERATOR, brand)


# --- timing the steps of apply_configuration -------------------------------------------------

# (module, function name, step): each call of the function adds its time to the step.
TIMED = (
    (configuration, "current_render_state", "state"),
    (apply, "render_all", "render"),
    (apply, "_write_generation", "write"),
    (sni, "check_identities", "check identities"),
    (postfix, "check_config", "check postfix"),
    (dovecot, "check_config", "check dovecot"),
    (haproxy, "check_config", "check haproxy"),
    (nginx, "check_config", "check nginx"),
    (apply, "changed_daemons", "diff"),
    (apply, "_switch_live", "switch"),
    (postfix, "reload", "reload postfix"),
    (dovecot, "reload", "reload dovecot"),
    (haproxy, "update_certificates", "haproxy certificates"),
    (haproxy, "reload", "reload haproxy"),
    (nginx, "reload", "reload nginx"),
    (sni, "publish_sni_chains", "sni publish"),
    (sni, "publish_served_tls", "tls files publish"),
)
STEPS = [step for _, _, step in TIMED] + ["apply total", "served smtp", "served imaps", "served https"]


@contextlib.contextmanager
def timed_steps() -> Iterator[dict[str, float]]:
    """Wrap the functions apply_configuration calls; yield the seconds spent per step."""
    spent: dict[str, float] = defaultdict(float)
    originals = []
    for module, name, step in TIMED:
        original = getattr(module, name)
        originals.append((module, name, original))

        def timed(*args, _original=original, _step=step, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_step] += time.perf_counter() - started

        setattr(module, name, timed)
    try:
        yield spent
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


# --- is the brand served yet? -------------------------------------------------------------------


def _no_verify() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def served_certificate(stack: ScratchStack, port: str, server_name: str) -> bytes:
    """The DER certificate the daemon presents for this SNI name."""
    if port == "smtp":
        with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=10) as client:
            client.ehlo("bench.example")
            client._host = server_name  # smtplib sends SNI for this name
            client.starttls(context=_no_verify())
            return client.sock.getpeercert(binary_form=True)
    with (
        socket.create_connection(("127.0.0.1", stack.ports[port]), timeout=10) as raw,
        _no_verify().wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def leaf_der(index: int) -> bytes:
    chain, _ = cached_certificate(index)
    return x509.load_pem_x509_certificate(chain.read_bytes()).public_bytes(serialization.Encoding.DER)


def wait_served(stack: ScratchStack, port: str, index: int, *, present: bool, since: float) -> float:
    """Seconds from `since` until brand `index` is (or, removed, no longer is) served on `port`."""
    expected, name = leaf_der(index), brand_names(index)[-1]  # the last setup name: any would do
    deadline = time.perf_counter() + SERVED_TIMEOUT
    while time.perf_counter() < deadline:
        with contextlib.suppress(OSError, smtplib.SMTPException, ssl.SSLError):
            if (served_certificate(stack, port, name) == expected) == present:
                return time.perf_counter() - since
        time.sleep(0.01)
    raise RuntimeError(f"brand {index} still {'not ' if present else ''}served on {port}")


def measure_change(stack: ScratchStack, index: int, *, add: bool) -> dict[str, float]:
    """Add (or remove) brand `index` with a commit; time the re-apply and until it is served."""
    applied: list[float] = []

    def timed_apply() -> None:
        started = time.perf_counter()
        stack.installation.apply_configuration()  # what the installation runs after commit
        applied.append(time.perf_counter() - started)

    with timed_steps() as spent:
        started = time.perf_counter()
        if add:
            add_brands(stack, range(index, index + 1), after_commit=timed_apply)
        else:
            remove_brand(stack, index, after_commit=timed_apply)
    if not applied:
        raise RuntimeError("the brand change did not re-apply the configuration after commit")
    spent["apply total"] = applied[0]
    for port in ("smtp", "imaps", "https"):
        spent[f"served {port}"] = wait_served(stack, port, index, present=add, since=started)
    with stack.installation.transaction() as session:
        live = apply.live_generation(session)
        if live is None or Path(live.path) != stack.settings.live_config.resolve():
            raise RuntimeError("the brand change did not produce a live generation")
    return dict(spent)


# --- report -------------------------------------------------------------------------------------


def per_tenfold(small: int, large: int, t_small: float, t_large: float) -> float:
    """Growth of a time per 10x brands, from two sizes that need not be 10x apart."""
    if t_small <= 0:
        return float("nan")
    return (t_large / t_small) ** (1 / math.log10(large / small))


def print_table(results: dict[int, dict[str, float]]) -> float:
    sizes = sorted(results)
    header = f"{'step':<18}" + "".join(f"{n:>10,} " for n in sizes)
    header += "".join(f"  x{a:,}->{b:,}" for a, b in zip(sizes, sizes[1:], strict=False))
    print(header)
    worst_total = 0.0
    for step in STEPS:
        times = [results[n].get(step, 0.0) for n in sizes]
        ratios = [
            per_tenfold(a, b, results[a].get(step, 0.0), results[b].get(step, 0.0))
            for a, b in zip(sizes, sizes[1:], strict=False)
        ]
        line = f"{step:<18}" + "".join(f"{t * 1000:>9.1f}ms" for t in times)
        line += "".join(
            f"  {r:>{len(f'x{a:,}->{b:,}')}.2f}"
            for r, (a, b) in zip(ratios, zip(sizes, sizes[1:], strict=False), strict=True)
        )
        print(line)
        if step == "apply total":
            worst_total = max(ratios) if ratios else 0.0
    return worst_total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10, 100 and 1,000 brands only")
    parser.add_argument("--repeat", type=int, default=3, help="add+remove changes measured per size")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES

    started = time.perf_counter()
    for index in range(max(sizes) + args.repeat):
        cached_certificate(index)
    print(
        f"certificates: {max(sizes) + args.repeat} EC P-256 keys ready ({time.perf_counter() - started:.1f} s)"
    )

    stack = ScratchStack(min_mailbox_bytes=GIB)
    try:
        stack.prepare()
        with stack.installation.transaction() as session:
            tenants.create_tenant(session, OPERATOR, name=TENANT, storage_pool_bytes=GIB)
        stack.start()
        results: dict[int, dict[str, float]] = {}
        have = 0
        for size in sizes:
            setup_started = time.perf_counter()
            add_brands(stack, range(have, size - 1))
            have = size - 1
            with stack.installation.transaction() as session:
                generation = configuration.apply_current_configuration(session, stack.settings)
            if generation.status != "live":
                raise RuntimeError(f"{size - 1} brands refused: {generation.error}")
            setup = time.perf_counter() - setup_started
            samples: dict[str, list[float]] = defaultdict(list)
            for round_number in range(args.repeat):
                index = max(sizes) + round_number  # a fresh brand each time: the Nth
                for add in (True, False):
                    for step, seconds in measure_change(stack, index, add=add).items():
                        samples[step].append(seconds)
            results[size] = {step: statistics.median(values) for step, values in samples.items()}
            print(
                f"{size:>5,} brands ({size * len(SETUP_PREFIXES) + size:,} TLS names): set-up {setup:.1f} s, "
                f"one change applied in {results[size]['apply total'] * 1000:.0f} ms, served on all three "
                f"ports after {max(results[size][f'served {p}'] for p in ('smtp', 'imaps', 'https')) * 1000:.0f} ms "
                f"(median of {args.repeat * 2})",
                flush=True,
            )
        print()
        print("median time of each step for one brand added or removed, and its growth per 10x brands:")
        worst = print_table(results)
        print(f"ratio={worst:.2f}")
        return 0 if worst <= 10 else 1
    finally:
        stack.stop(remove="LETTERHEAD_BENCH_KEEP" not in os.environ)


if __name__ == "__main__":
    sys.exit(main())
