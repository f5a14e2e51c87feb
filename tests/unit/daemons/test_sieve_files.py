"""Sieve scripts in a mailbox's home: installed by renames, read back, deactivated; nothing
follows a link out of the mail root and no path comes from anything but a checked name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.daemons import sieve_files

OWNER = (os.getuid(), os.getgid())
KEY = "0123abcd"


def test_a_script_is_installed_as_the_active_one_and_an_old_binary_goes(tmp_path: Path) -> None:
    home = tmp_path / KEY
    home.mkdir()
    (home / sieve_files.ACTIVE_BINARY).write_bytes(b"compiled from the previous filter")
    sieve_files.install_active_script(tmp_path, KEY, "spam", b'require "fileinto";\n', OWNER)
    assert os.readlink(home / sieve_files.ACTIVE_LINK) == "sieve/spam.sieve"
    assert (home / "sieve" / "spam.sieve").read_bytes() == b'require "fileinto";\n'
    assert not (home / sieve_files.ACTIVE_BINARY).exists()
    assert (home / "sieve" / "spam.sieve").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (home / "sieve").iterdir()) == ["spam.sieve"]  # no temporary left

    name, path = sieve_files.active_script(home)
    assert (
        name == "spam"
        and path is not None
        and sieve_files.read_script(path, 1024) == b'require "fileinto";\n'
    )

    sieve_files.deactivate(home)
    assert sieve_files.active_script(home) is None
    assert (home / "sieve" / "spam.sieve").exists()  # the script stays for ManageSieve clients
    with pytest.raises(FileNotFoundError):
        sieve_files.deactivate(home)


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
        sieve_files.install_active_script(root, KEY, "spam", b"keep;\n", OWNER)
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
        sieve_files.install_active_script(tmp_path, KEY, name, b"keep;\n", OWNER)
    assert not (tmp_path / KEY).exists()
