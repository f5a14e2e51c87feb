"""How a generation goes live, without the daemons' checkers (tests/integration runs those):
which daemons a change touches, files written settled in time, the live link swapped whole,
and a template error recorded without anything going live."""

from __future__ import annotations

import grp
import os
import time
from pathlib import Path

from controlplane.daemons import apply

FILES = {
    "postfix/main.cf": "myhostname = mail\n",
    "postfix/master.cf": "smtp inet n - n - - smtpd\n",
    "dovecot/dovecot.conf": "protocols = imap\n",
    "nginx/nginx.conf": "events {}\n",
}


def written(tmp_path: Path, files: dict[str, str], name: str = "000001") -> Path:
    directory = tmp_path / "generations" / name
    apply._write_generation(directory, files)
    return directory


def test_only_the_daemons_whose_files_changed_are_reloaded(tmp_path: Path) -> None:
    previous = written(tmp_path, FILES)
    assert apply.changed_daemons(None, FILES) == apply.DAEMONS
    assert apply.changed_daemons(previous, FILES) == ()
    assert apply.changed_daemons(previous, {**FILES, "postfix/main.cf": "myhostname = other\n"}) == (
        "postfix",
    )
    assert apply.changed_daemons(previous, {**FILES, "dovecot/new.conf.ext": "x\n"}) == ("dovecot",)
    without_nginx_file = {k: v for k, v in FILES.items() if k != "nginx/nginx.conf"}
    assert apply.changed_daemons(previous, without_nginx_file) == ("nginx",)
    # What the check compiled beside the files (a Sieve binary) is no rendered file gone.
    (previous / "dovecot" / "junk.svbin").write_bytes(b"compiled")
    assert apply.changed_daemons(previous, FILES) == ()


def test_pipe_programs_are_executable_and_the_rest_is_not(tmp_path: Path) -> None:
    directory = written(tmp_path, {**FILES, "dovecot/sieve-pipe/learn-spam.sh": "#!/bin/sh\n"})
    assert (directory / "dovecot/sieve-pipe/learn-spam.sh").stat().st_mode & 0o777 == 0o755
    assert (directory / "dovecot/dovecot.conf").stat().st_mode & 0o777 == 0o644


def test_files_naming_a_database_login_are_readable_by_their_daemon_only(tmp_path: Path) -> None:
    secrets = {
        "postfix/sql-mailboxes.cf": "user = x_postfix\npassword = secret\n",
        "dovecot/dovecot-sql.conf.ext": "connect = user=x_dovecot password=secret\n",
        "dovecot/dovecot-dict-usage.conf.ext": "connect = user=x_dovecot_usage password=secret\n",
    }
    directory = written(tmp_path, {**FILES, **secrets})
    for relative in secrets:
        status = (directory / relative).stat()
        assert status.st_mode & 0o777 == 0o640, relative
        assert (status.st_uid, grp.getgrgid(status.st_gid).gr_name) == (0, relative.split("/")[0]), relative


def test_files_are_written_readable_and_dated_in_the_past(tmp_path: Path) -> None:
    directory = written(tmp_path, FILES)
    for relative, content in FILES.items():
        path = directory / relative
        assert path.read_text() == content
        assert path.stat().st_mode & 0o777 == 0o644
        # Postfix waits for a file whose mtime is not yet past before it reads it again.
        assert path.stat().st_mtime < time.time() - 1
    assert (directory / "postfix").stat().st_mode & 0o777 == 0o755


def test_the_live_link_is_replaced_whole(settings, tmp_path: Path) -> None:
    settings.config_root.mkdir(parents=True, exist_ok=True)
    first, second = written(tmp_path, FILES, "000001"), written(tmp_path, FILES, "000002")
    apply._switch_live(settings, first)
    assert settings.live_config.resolve() == first
    apply._switch_live(settings, second)
    assert settings.live_config.resolve() == second
    assert [p.name for p in settings.config_root.iterdir() if p.name.startswith(".live-")] == []
    assert os.readlink(settings.live_config) == str(second)


def test_a_template_error_is_recorded_and_nothing_goes_live(settings, db, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "postfix").mkdir(parents=True)
    (templates / "postfix" / "main.cf.j2").write_text("{% if %}")
    generation = apply.apply_configuration(
        db, settings, state=apply.build_render_state(settings), template_root=templates, reload=False
    )
    assert generation.status == "refused" and generation.error.startswith("Rendering failed")
    assert not settings.live_config.exists()
    assert apply.live_generation(db) is None
