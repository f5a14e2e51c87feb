"""The certificate rules that need no ACME server: names served, backoff, certbot's errors in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path

from sqlalchemy.orm import Session

from controlplane.certs import acme
from controlplane.services import brands, certificates
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings
from tests.factories import make_domain, make_tenant

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _info(*names: str, days: int = 90) -> acme.CertificateInfo:
    return acme.CertificateInfo(
        names=tuple(sorted(names)), not_before=NOW, not_after=NOW + dt.timedelta(days=days), issuer="CN=test"
    )


def _brand(db: Session, settings: Settings, hostname: str, *domain_names: str):
    tenant = make_tenant(db)
    brand = brands.create_brand(db, OPERATOR, settings, tenant=tenant, hostname=hostname, name="B")
    for name in domain_names:
        brands.set_domain_brand(db, OPERATOR, make_domain(db, tenant=tenant, name=name), brand)
    db.refresh(brand)
    return brand


def test_a_brand_may_cover_its_host_then_the_setup_names_of_its_domains(
    db: Session, settings: Settings
) -> None:
    brand = _brand(db, settings, "mail.one.test", "one.test", "two.test")
    assert certificates.brand_names(brand) == (
        "mail.one.test",
        "autoconfig.one.test", "autoconfig.two.test",
        "autodiscover.one.test", "autodiscover.two.test",
        "mta-sts.one.test", "mta-sts.two.test",
    )  # fmt: skip


def test_a_certificate_never_asks_for_more_names_than_the_ca_allows_and_keeps_domains_whole() -> None:
    setup = [
        f"{prefix}.d{i:03d}.test" for i in range(60) for prefix in ("autoconfig", "autodiscover", "mta-sts")
    ]
    names = certificates.capped_names("mail.reseller.test", setup)
    assert len(names) == 100 and names[0] == "mail.reseller.test"
    assert names[1:4] == ("autoconfig.d000.test", "autodiscover.d000.test", "mta-sts.d000.test")
    assert names[-1] == "mta-sts.d032.test"  # 33 whole domains: 1 + 99 names
    assert certificates.capped_names("mail.one.test", setup[:6]) == ("mail.one.test", *setup[:6])


def test_recording_a_certificate_serves_only_the_brands_own_names_and_clears_the_failure(
    db: Session, settings: Settings
) -> None:
    brand = _brand(db, settings, "mail.one.test", "one.test")
    brand.cert_status, brand.cert_error, brand.cert_failures = "failed", "boom", 3
    brand.cert_next_attempt_at = NOW
    info = _info("mail.one.test", "autoconfig.one.test", "autoconfig.gone.test")

    assert certificates.record_certificate(brand, info) is True

    assert brand.cert_names == "mail.one.test autoconfig.one.test"
    assert (brand.cert_status, brand.cert_error, brand.cert_failures, brand.cert_next_attempt_at) == (
        "issued", "", 0, None
    )  # fmt: skip
    assert brand.cert_not_after == info.not_after
    # The same certificate again changes nothing the daemons serve.
    assert certificates.record_certificate(brand, info) is False


def test_a_failure_backs_off_one_hour_doubling_to_a_day_and_keeps_a_serving_certificate(
    db: Session, settings: Settings
) -> None:
    brand = _brand(db, settings, "mail.one.test")
    certificates.record_certificate(brand, _info("mail.one.test"))
    waits = []
    for _ in range(7):
        certificates.record_failure(brand, "The CA said no.", NOW)
        waits.append((brand.cert_next_attempt_at - NOW) / dt.timedelta(hours=1))
    assert waits == [1, 2, 4, 8, 16, 24, 24]
    assert (brand.cert_status, brand.cert_error, brand.cert_failures) == ("failed", "The CA said no.", 7)
    assert brand.cert_names == "mail.one.test"  # still served until it expires


def test_a_certificate_is_due_within_thirty_days_of_expiry() -> None:
    assert not certificates.is_due(_info("a.test", days=31), NOW)
    assert certificates.is_due(_info("a.test", days=30), NOW)
    assert _info("a.test", "b.test").covers(["b.test"]) and not _info("a.test").covers(["a.test", "b.test"])


def test_certbot_failures_keep_its_own_words_without_the_boilerplate(tmp_path: Path) -> None:
    output = (
        "Saving debug log to /x/letsencrypt.log\nRequesting a certificate for mail.one.test\n\n"
        "Certbot failed to authenticate some domains (authenticator: webroot).\n"
        "  Identifier: mail.one.test\n  Detail: connection refused\n\n"
        "Hint: The Certificate Authority failed to download the temporary challenge files.\n"
        "Some challenges have failed.\nAsk for help or search for solutions at https://community.letsencrypt.org.\n"
    )
    summary = acme.failure_summary(output, tmp_path / "missing.log")
    assert summary == (
        "Certbot failed to authenticate some domains (authenticator: webroot).\n"
        "Identifier: mail.one.test\nDetail: connection refused"
    )


def test_an_unexplained_certbot_failure_is_explained_from_its_log_of_this_run(tmp_path: Path) -> None:
    log = tmp_path / "letsencrypt.log"
    log.write_text("old run: urn:ietf:params:acme:error:rateLimited\n")
    start = log.stat().st_size
    with open(log, "a") as file:
        file.write("... acme.messages.Error: urn:ietf:params:acme:error:accountDoesNotExist :: no account\n")
    summary = acme.failure_summary(
        "An unexpected error occurred:\nAttributeError: can't set attribute", log, start
    )
    assert "urn:ietf:params:acme:error:accountDoesNotExist" in summary
    assert "rateLimited" not in summary
    assert "remove" in summary and "accounts" in summary  # what to do next


def test_a_long_certbot_error_is_cut_to_a_readable_length(tmp_path: Path) -> None:
    summary = acme.failure_summary("Detail: " + "x" * 5000, tmp_path / "none.log")
    assert len(summary) == acme.MAX_ERROR_CHARS and summary.endswith("…")


def test_the_names_and_expiry_are_read_from_the_certificate_file(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj", "/CN=mail.one.test",
         "-addext", "subjectAltName=DNS:mail.one.test,DNS:Autoconfig.one.test,IP:127.0.0.1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    info = acme.read_certificate(cert)
    assert info.names == ("autoconfig.one.test", "mail.one.test")
    assert dt.timedelta(days=9) < info.not_after - dt.datetime.now(dt.UTC) <= dt.timedelta(days=10)


def test_the_deploy_hook_names_this_installation(settings: Settings) -> None:
    command = acme.deploy_hook_command(settings)
    assert f"LETTERHEAD_HOME={settings.home}" in command
    assert command.endswith("-m controlplane.cli certs deployed")
    # An install that names its own command (on PATH, say) gets it in the hook too.
    installed = dataclasses.replace(settings, cli_command=("/usr/local/bin/letterhead",))
    assert acme.deploy_hook_command(installed).endswith(" /usr/local/bin/letterhead certs deployed")


def _self_signed(folder: Path, hostname: str) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName=DNS:{hostname}", "-keyout", str(folder / "key.pem"),
         "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (folder / "cert.pem").read_text(), (folder / "key.pem").read_text()


def test_another_nodes_certificate_is_written_here_served_and_forgotten_with_its_brand(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    brand = _brand(db, settings, "mail.one.test")
    pems = _self_signed(tmp_path / "made-elsewhere", "mail.one.test")
    info = acme.read_certificate(tmp_path / "made-elsewhere" / "cert.pem")
    certificates.record_certificate(brand, info, pems)
    db.flush()
    assert brands.served_identities(db, settings) == ()  # no file here yet

    assert certificates.write_shared_certificates(db, settings) is True
    [identity] = brands.served_identities(db, settings)
    assert Path(identity.cert_path).read_text() == pems[0]
    assert Path(identity.key_path).read_text() == pems[1]
    assert Path(identity.key_path).stat().st_mode & 0o777 == 0o600
    assert certificates.write_shared_certificates(db, settings) is False  # unchanged: no reload

    renewed = _self_signed(tmp_path / "renewed", "mail.one.test")
    certificates.record_certificate(brand, info, renewed)
    db.flush()
    assert certificates.write_shared_certificates(db, settings) is True
    assert Path(identity.cert_path).read_text() == renewed[0]

    brands.delete_brand(db, OPERATOR, brand)
    db.flush()
    assert certificates.write_shared_certificates(db, settings) is True
    assert not Path(identity.cert_path).exists()
