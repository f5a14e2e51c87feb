"""A mailbox's home is copied as it stands while mail arrives (backup.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from controlplane import backup


def _home(root: Path) -> Path:
    home = root / "home"
    (home / "Maildir" / "cur").mkdir(parents=True)
    (home / "Maildir" / "cur" / "1.mail").write_text("mail")
    (home / "sieve").mkdir()
    (home / "sieve" / "rules.sieve").write_text("keep;")
    (home / "sieve" / "rules.sieve.lock").write_text("")
    os.symlink("sieve/rules.sieve", home / ".dovecot.sieve")
    (home / ".dovecot.lda-dupes").write_bytes(b"dupes")
    (home / ".dovecot.lda-dupes.locks").mkdir()
    (home / ".dovecot.lda-dupes.locks" / "duplicate.lock.a3348").write_text("")
    return home


def test_the_home_is_copied_but_its_maildir_and_lock_files(tmp_path: Path) -> None:
    home, copy = _home(tmp_path), tmp_path / "copy"
    copy.mkdir()
    backup._copy_home_except_maildir(home, copy)
    copied = sorted(str(path.relative_to(copy)) for path in copy.rglob("*"))
    assert copied == [".dovecot.lda-dupes", ".dovecot.sieve", "sieve", "sieve/rules.sieve"]
    assert os.readlink(copy / ".dovecot.sieve") == "sieve/rules.sieve"
    assert (copy / ".dovecot.lda-dupes").read_bytes() == b"dupes"


def test_a_file_removed_between_the_listing_and_its_copy_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, copy = _home(tmp_path), tmp_path / "copy"
    copy.mkdir()
    (home / "sieve" / "old.sieve").write_text("discard;")
    (home / "notes").write_text("x")
    copy2 = shutil.copy2

    def removed_first(source, target, **options):
        # Dovecot removes the file after the folder was listed, before its copy.
        if Path(source).name in ("old.sieve", "notes"):
            Path(source).unlink()
        return copy2(source, target, **options)

    monkeypatch.setattr(shutil, "copy2", removed_first)
    backup._copy_home_except_maildir(home, copy)
    assert (copy / "sieve" / "rules.sieve").read_text() == "keep;"
    assert not (copy / "sieve" / "old.sieve").exists() and not (copy / "notes").exists()
