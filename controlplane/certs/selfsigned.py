"""The default certificate, served when no brand certificate matches the SNI name."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, run_tool
from controlplane.render import TlsIdentity

OPENSSL = "/usr/bin/openssl"


def ensure_default_certificate(certs_dir: Path, hostname: str) -> TlsIdentity:
    """Create a self-signed certificate for the platform hostname once; keep it afterwards."""
    certs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(certs_dir, 0o755)
    cert_path, key_path = certs_dir / "default.crt", certs_dir / "default.key"
    if not (cert_path.exists() and key_path.exists()):
        result = run_tool(
            [
                OPENSSL,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                f"/CN={hostname}",
                "-addext",
                f"subjectAltName=DNS:{hostname}",
                "-keyout",
                str(key_path),
                "-out",
                str(cert_path),
            ]
        )
        if result.returncode != 0:
            raise DaemonError(f"openssl could not create the default certificate: {output_of(result)}")
        os.chmod(key_path, 0o600)
        os.chmod(cert_path, 0o644)
    return TlsIdentity(hostname=hostname, cert_path=str(cert_path), key_path=str(key_path))
