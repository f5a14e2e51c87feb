"""Sieve scripts in a mailbox's home: installed by renames, read back, deactivated; nothing
follows a link out of the mail root and no path comes from anything but a checked name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.daemons import sieve_files

OWNER = (os.getuid(), os.getgid())
KEY = "0123abcd"


def test_an_admin_filter_is_written_beside_the_users_scripts_and_an_old_binary_goes(tmp_path: Path) -> None:
    home = tmp_path / KEY
    home.mkdir()
    (home / sieve_files.ADMIN_BINARY).write_bytes(b"compiled from the previous filter")
    sieve_files.install_admin_script(tmp_path, KEY, "spam", b'require "fileinto";\n', OWNER)
    assert not (home / sieve_files.ADMIN_BINARY).exists()
    assert (home / sieve_files.ADMIN_SCRIPT).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in home.iterdir()) == [sieve_files.ADMIN_SCRIPT]  # no temporary left
    assert sieve_files.admin_script(home, 1024) == ("spam", b'require "fileinto";\n')
    # The user's own scripts are not touched, nor is an active one of theirs.
    assert not os.path.lexists(home / sieve_files.ACTIVE_LINK)
    assert sieve_files.remove_admin_script(home) is True
    assert sieve_files.admin_script(home, 1024) is None
    assert sieve_files.remove_admin_script(home) is False


def _users_script(home: Path, name: str, script: bytes) -> None:
    (home / "sieve").mkdir(parents=True, exist_ok=True)
    (home / "sieve" / f"{name}.sieve").write_bytes(script)
    os.symlink(f"sieve/{name}.sieve", home / sieve_files.ACTIVE_LINK)
    (home / sieve_files.ACTIVE_BINARY).write_bytes(b"compiled")


def test_an_admin_filter_once_written_as_the_active_script_moves_to_its_own_place(tmp_path: Path) -> None:
    home = tmp_path / KEY
    _users_script(home, "invoices", b"keep;\n")
    (home / "sieve" / "mine.sieve").write_bytes(b"discard;\n")
    assert sieve_files.move_active_to_admin(home, {"other"}, OWNER) is None
    assert sieve_files.move_active_to_admin(home, {"invoices"}, OWNER) == "invoices"
    assert sieve_files.admin_script(home, 1024) == ("invoices", b"keep;\n")
    assert sieve_files.active_script(home) is None and not (home / sieve_files.ACTIVE_BINARY).exists()
    assert sorted(p.name for p in (home / "sieve").iterdir()) == ["mine.sieve"]  # the user's own stays
    # A second run finds nothing to move.
    assert sieve_files.move_active_to_admin(home, {"invoices"}, OWNER) is None


def test_a_link_set_by_another_client_is_named_but_not_read(tmp_path: Path) -> None:
    home = tmp_path / KEY
    home.mkdir()
    os.symlink("/etc/passwd", home / sieve_files.ACTIVE_LINK)
    assert sieve_files.active_script(home) == ("passwd", None)


def test_a_home_that_is_a_link_out_of_the_mail_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "mail"
    root.mkdir()
    os.symlink(outside, root / KEY)
    with pytest.raises(NotADirectoryError):
        sieve_files.install_admin_script(root, KEY, "spam", b"keep;\n", OWNER)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("key", ["../etc", "", "ABC", "a/b"])
def test_only_a_storage_key_names_a_home(tmp_path: Path, key: str) -> None:
    with pytest.raises(OSError):
        sieve_files.mailbox_home(tmp_path, key)


def test_a_link_to_nothing_reads_as_no_script(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.sieve", tmp_path / "link.sieve")
    assert sieve_files.read_script(tmp_path / "link.sieve", 1024) is None


@pytest.mark.parametrize("name", ["../../etc/evil", "a/b", "", ".hidden", "x" * 65])
def test_a_filter_name_that_is_no_filter_name_is_refused_and_nothing_written(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(OSError):
        sieve_files.install_admin_script(tmp_path, KEY, name, b"keep;\n", OWNER)
    assert not (tmp_path / KEY).exists()
