"""Key/certificate pairs are checked before a generation goes live, each once while unchanged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from controlplane.certs.selfsigned import ensure_default_certificate
from controlplane.daemons import sni
from controlplane.daemons.process import DaemonError
from controlplane.render import TlsIdentity
from controlplane.settings import load_settings


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(environ={}, home=tmp_path / "home")


def _pair(folder: Path, hostname: str) -> TlsIdentity:
    made = ensure_default_certificate(folder, hostname)
    return TlsIdentity(hostname, made.cert_path, made.key_path)


def _loads(monkeypatch) -> list[str]:
    loaded: list[str] = []
    real = sni.check_identity

    def counting(identity: TlsIdentity) -> None:
        loaded.append(identity.hostname)
        real(identity)

    monkeypatch.setattr(sni, "check_identity", counting)
    return loaded


def test_each_pair_is_loaded_once_and_not_again_while_its_files_are_unchanged(
    settings, tmp_path: Path, monkeypatch
) -> None:
    brand = _pair(tmp_path / "a", "mail.a.example")
    other = _pair(tmp_path / "b", "mail.b.example")
    # A brand's certificate serves several names: one pair.
    identities = (brand, TlsIdentity("autoconfig.a.example", brand.cert_path, brand.key_path), other)
    loaded = _loads(monkeypatch)
    sni.check_identities(settings, identities)
    assert loaded == ["mail.a.example", "mail.b.example"]
    sni.check_identities(settings, identities)
    assert loaded == ["mail.a.example", "mail.b.example"]
    added = _pair(tmp_path / "c", "mail.c.example")
    sni.check_identities(settings, (*identities, added))
    assert loaded == ["mail.a.example", "mail.b.example", "mail.c.example"]


def test_a_key_replaced_by_one_that_does_not_match_is_refused_the_next_time(settings, tmp_path: Path) -> None:
    brand = _pair(tmp_path / "a", "mail.a.example")
    stranger = _pair(tmp_path / "b", "mail.b.example")
    sni.check_identities(settings, (brand,))
    # Same size, and the modification time put back: only what no program can fake is left.
    stamp = os.stat(brand.key_path)
    Path(brand.key_path).write_bytes(Path(stranger.key_path).read_bytes())
    os.utime(brand.key_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(DaemonError, match="mail.a.example cannot be served"):
        sni.check_identities(settings, (brand,))


def test_a_pair_that_failed_is_checked_again_and_not_remembered(settings, tmp_path: Path) -> None:
    brand = _pair(tmp_path / "a", "mail.a.example")
    stranger = _pair(tmp_path / "b", "mail.b.example")
    mismatched = TlsIdentity("mail.a.example", brand.cert_path, stranger.key_path)
    for _ in range(2):
        with pytest.raises(DaemonError):
            sni.check_identities(settings, (mismatched,))


def test_a_file_the_replaced_configuration_names_stays_until_the_next_change(
    settings, tmp_path: Path
) -> None:
    first, second = _pair(tmp_path / "a", "mail.a.example"), _pair(tmp_path / "b", "mail.b.example")
    both = sni.publish_served_tls(settings, (first, second))
    only_first = sni.publish_served_tls(settings, (first,))
    (second_file,) = both - only_first
    old_config = tmp_path / "old-nginx.conf"
    old_config.write_text("".join(f"    name {path};\n" for path in sorted(both)))
    leftover = second_file.with_name(f".{second_file.name}.12345")
    leftover.write_bytes(b"half a key")
    # nginx's old workers may still load what the replaced configuration names.
    sni.prune_served_tls(settings, only_first | sni.named_by(settings, old_config))
    assert second_file.exists() and not leftover.exists()
    new_config = tmp_path / "new-nginx.conf"
    new_config.write_text("".join(f"    name {path};\n" for path in sorted(only_first)))
    sni.prune_served_tls(settings, only_first | sni.named_by(settings, new_config))
    assert not second_file.exists() and all(path.exists() for path in only_first)


def test_published_files_hold_chain_and_key_for_nginx_workers_only(settings, tmp_path: Path) -> None:
    brand = _pair(tmp_path / "a", "mail.a.example")
    (published,) = sni.publish_served_tls(settings, (brand,))
    assert published.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in published.read_bytes()
    assert stat.S_IMODE(published.stat().st_mode) == 0o640
    assert stat.S_IMODE(published.parent.stat().st_mode) == 0o750
