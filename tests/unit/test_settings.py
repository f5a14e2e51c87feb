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


def test_the_database_is_sqlite_unless_a_postgresql_url_is_given(tmp_path: Path) -> None:
    default = load_settings(environ={}, home=tmp_path)
    assert default.sqlalchemy_url == f"sqlite:///{tmp_path / 'db' / 'letterhead.db'}"
    assert not default.is_postgresql
    (tmp_path / "letterhead.toml").write_text(
        'database_url = "postgresql://lh:pw@db.example:5432/letterhead"\n'
    )
    from_file = load_settings(environ={}, home=tmp_path)
    # psycopg 3 whichever spelling: SQLAlchemy's bare postgresql:// would look for psycopg2.
    assert from_file.sqlalchemy_url == "postgresql+psycopg://lh:pw@db.example:5432/letterhead"
    assert from_file.is_postgresql
    from_environment = load_settings(
        environ={"LETTERHEAD_DATABASE_URL": "postgresql+psycopg://other@db.example/lh"}, home=tmp_path
    )
    assert from_environment.sqlalchemy_url == "postgresql+psycopg://other@db.example/lh"
    with pytest.raises(ValueError, match="database_url must be"):
        load_settings(environ={"LETTERHEAD_DATABASE_URL": "mysql://lh@db/lh"}, home=tmp_path)
