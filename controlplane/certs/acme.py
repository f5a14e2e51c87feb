"""certbot, run for one brand at a time, its state kept under the state directory."""

from __future__ import annotations

from pathlib import Path

from controlplane.settings import Settings


def certbot_config_dir(settings: Settings) -> Path:
    return settings.acme_dir / "certbot" / "config"


def certificate_paths(settings: Settings, hostname: str) -> tuple[Path, Path]:
    """Where certbot keeps a brand's current certificate chain and key (cert-name = hostname)."""
    live = certbot_config_dir(settings) / "live" / hostname
    return live / "fullchain.pem", live / "privkey.pem"
