"""Settings as the operator writes them: one spelling of the hostname everywhere it is compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import load_settings


def test_the_hostname_is_kept_in_lower_case_and_nonsense_is_refused(tmp_path: Path) -> None:
    settings = load_settings(environ={"LETTERHEAD_HOSTNAME": "Mail.Example.NET"}, home=tmp_path)
    # Postfix's SRS maps, postsrsd's domain and nginx compare it as written.
    assert settings.hostname == "mail.example.net"
    with pytest.raises(ValueError, match="not a server name"):
        load_settings(environ={"LETTERHEAD_HOSTNAME": "mail example"}, home=tmp_path)
