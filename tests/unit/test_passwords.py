from __future__ import annotations

import pytest
from passlib.hash import sha512_crypt

from controlplane.errors import ValidationError
from controlplane.services import passwords

# A real bcrypt hash (OpenWall test vector for "U*U").
BCRYPT_HASH = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def test_hash_password_uses_sha512_crypt_with_5000_rounds() -> None:
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("{SHA512-CRYPT}$6$")
    # 5000 is crypt(3)'s default, so passlib leaves "rounds=5000$" implicit; Dovecot reads it the same.
    assert sha512_crypt.from_string(hashed.removeprefix("{SHA512-CRYPT}")).rounds == 5000


def test_hash_password_salts_each_hash() -> None:
    assert passwords.hash_password("correct horse") != passwords.hash_password("correct horse")


def test_verify_password_round_trips() -> None:
    hashed = passwords.hash_password("correct horse")
    assert passwords.verify_password("correct horse", hashed)
    assert not passwords.verify_password("correct horsE", hashed)
    assert not passwords.verify_password("", hashed)


def test_verify_password_accepts_an_explicit_rounds_hash_from_elsewhere() -> None:
    hashed = "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash("imported")
    imported = "{SHA512-CRYPT}$6$rounds=5000$" + hashed.removeprefix("{SHA512-CRYPT}$6$")
    assert passwords.verify_password("imported", imported)


@pytest.mark.parametrize(
    "stored",
    ["", "garbage", "{PLAIN}correct horse", "{SHA512-CRYPT}", "{SHA512-CRYPT}$6$broken", "correct horse"],
)
def test_verify_password_is_false_for_unusable_hashes(stored: str) -> None:
    assert passwords.verify_password("correct horse", stored) is False


def test_verify_password_is_false_for_non_string_passwords() -> None:
    assert passwords.verify_password(None, passwords.hash_password("correct horse")) is False


def test_verify_password_handles_imported_bcrypt_hashes() -> None:
    assert passwords.verify_password("U*U", "{BLF-CRYPT}" + BCRYPT_HASH) is True


@pytest.mark.parametrize("password", ["", "7 chars", "x" * 257, "with\x00nul", "with\nnewline", None])
def test_hash_password_refuses_bad_passwords(password) -> None:
    with pytest.raises(ValidationError) as caught:
        passwords.hash_password(password)
    assert caught.value.message
    assert caught.value.field == "password"


def test_normalize_password_hash_keeps_valid_hashes() -> None:
    hashed = passwords.hash_password("correct horse")
    assert passwords.normalize_password_hash(hashed) == hashed
    assert passwords.normalize_password_hash("{BLF-CRYPT}" + BCRYPT_HASH) == "{BLF-CRYPT}" + BCRYPT_HASH


def test_generate_password_is_long_enough_and_random() -> None:
    first, second = passwords.generate_password(), passwords.generate_password()
    assert first != second
    passwords.validate_password(first)


# --- many at once -------------------------------------------------------------------------------


def _refuse_the_pool():
    raise AssertionError("the hashing pool was started")


def test_hash_passwords_hashes_many_on_the_pool_each_in_its_place() -> None:
    given = [f"password number {n}" for n in range(passwords.PARALLEL_FROM * 2)]
    hashed = passwords.hash_passwords(given)
    assert len(hashed) == len(given)
    assert len(set(hashed)) == len(given)
    for password, stored in zip(given, hashed, strict=True):
        assert stored.startswith("{SHA512-CRYPT}$6$")
        assert passwords.verify_password(password, stored)


def test_hash_passwords_hashes_a_few_in_this_process(monkeypatch) -> None:
    monkeypatch.setattr(passwords, "_hashing_pool", _refuse_the_pool)
    given = ["first password", "second password"]
    hashed = passwords.hash_passwords(given)
    assert [passwords.verify_password(p, h) for p, h in zip(given, hashed, strict=True)] == [True, True]
    assert passwords.hash_passwords([]) == []


def test_hash_passwords_refuses_a_bad_password_before_hashing_any(monkeypatch) -> None:
    monkeypatch.setattr(passwords, "_hashing_pool", _refuse_the_pool)
    given = [f"password number {n}" for n in range(passwords.PARALLEL_FROM)] + ["short"]
    with pytest.raises(ValidationError) as caught:
        passwords.hash_passwords(given)
    assert caught.value.field == "password"
