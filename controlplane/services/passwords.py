"""The one password scheme that Letterhead and Dovecot both verify.

SHA512-CRYPT with 5,000 rounds: Dovecot checks it on every IMAP, POP3 and SMTP
login (no auth cache), where ~25 ms per login is affordable and passlib's default
656,000 rounds (~280 ms) is not. Hashes carry Dovecot's `{SCHEME}` prefix.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from passlib.hash import bcrypt, sha512_crypt

from controlplane.errors import ValidationError

SCHEME = "SHA512-CRYPT"
ROUNDS = 5000
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
MAX_VERIFIED_PASSWORD_LENGTH = 4 * MAX_PASSWORD_LENGTH

_hasher = sha512_crypt.using(rounds=ROUNDS)
# Schemes accepted as pre-hashed input (migrations), with the check of their form.
_IMPORTABLE = {
    "SHA512-CRYPT": sha512_crypt,
    "BLF-CRYPT": bcrypt,
}


def validate_password(password: str, *, field: str = "password") -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"A password must be at least {MIN_PASSWORD_LENGTH} characters long.", field=field
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"A password may be at most {MAX_PASSWORD_LENGTH} characters long.", field=field
        )
    if any(ch in password for ch in "\0\r\n"):
        raise ValidationError("A password may not contain NUL or line breaks.", field=field)


def hash_password(password: str) -> str:
    validate_password(password)
    return f"{{{SCHEME}}}{_hasher.hash(password)}"


# Fewer passwords than this are hashed in the calling process: handing them to the pool
# would cost more than hashing them here.
PARALLEL_FROM = 16
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def hash_passwords(passwords: Sequence[str]) -> list[str]:
    """Hash many passwords at once, in order, on every core the process may use.

    Hashing is deliberately slow (~3 ms each) and holds Python's lock, so one process hashes
    on one core: a bulk import of 1,000 mailboxes would leave the other cores idle. Each
    password is validated first; the first invalid one raises ValidationError and none is
    hashed.
    """
    for password in passwords:
        validate_password(password)
    if len(passwords) < PARALLEL_FROM:
        return [hash_password(password) for password in passwords]
    pool, workers = _hashing_pool()
    # Small chunks, so that no core idles long while another finishes the last one.
    chunk = max(1, len(passwords) // (workers * 16))
    try:
        return list(pool.map(hash_password, passwords, chunksize=chunk))
    except BrokenProcessPool:
        # A worker died (killed from outside): start afresh next time, hash these here.
        _shut_down_pool()
        return [hash_password(password) for password in passwords]


def _hashing_pool() -> tuple[ProcessPoolExecutor, int]:
    """The process's hashing pool, one worker per usable core, started on first use and kept:
    starting it costs ~0.2 s, as much as hashing 70 passwords."""
    global _pool
    workers = len(os.sched_getaffinity(0))
    with _pool_lock:
        if _pool is None:
            # "spawn", not "fork": the caller (a web worker) holds database connections and
            # threads that a forked child must not inherit. The executor stops its workers
            # itself when this process exits.
            _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _pool, workers


def _shut_down_pool() -> None:
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(cancel_futures=True)


def verify_password(password: str, stored_hash: str) -> bool:
    scheme, _, digest = stored_hash.partition("}")
    handler = _IMPORTABLE.get(scheme.lstrip("{"))
    if handler is None or not isinstance(password, str):
        return False
    if len(password) > MAX_VERIFIED_PASSWORD_LENGTH:
        # SHA512-CRYPT's work grows with the password's length: a megabyte "password" would hold
        # a worker for minutes. No password we set or import is anywhere near this long.
        return False
    try:
        return bool(handler.verify(password, digest))
    except (ValueError, TypeError):
        return False


def normalize_password_hash(stored_hash: str, *, field: str = "password_hash") -> str:
    """Accept an already-hashed password in a scheme Dovecot verifies, e.g. `{SHA512-CRYPT}$6$...`."""
    if not isinstance(stored_hash, str) or not stored_hash.startswith("{") or "}" not in stored_hash:
        raise ValidationError(
            "A password hash must start with its scheme, e.g. {SHA512-CRYPT}$6$...", field=field
        )
    scheme, _, digest = stored_hash[1:].partition("}")
    handler = _IMPORTABLE.get(scheme)
    if handler is None:
        raise ValidationError(
            f"Unsupported password scheme {scheme!r}: use one of {', '.join(sorted(_IMPORTABLE))}.",
            field=field,
        )
    if not handler.identify(digest) or any(ch.isspace() or ch in "'\"\\" for ch in digest):
        raise ValidationError(f"That is not a valid {scheme} hash.", field=field)
    try:
        # identify() looks only at the prefix; parsing checks salt and rounds, and a
        # hash without its checksum would never verify.
        parsed = handler.from_string(digest)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or not parsed.checksum:
        raise ValidationError(f"That is not a valid {scheme} hash.", field=field)
    return f"{{{scheme}}}{digest}"


def generate_password() -> str:
    return secrets.token_urlsafe(12)
