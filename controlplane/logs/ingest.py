"""Read Postfix and Dovecot logs into the database from a checkpoint, following rotation.

Each batch of rows is committed together with the checkpoint that says how far the file was
read, so a crash at any point resumes exactly where the last commit left off: no line is
stored twice and none is skipped. Checkpoints belong to a file's content, not its name (see
LogCheckpoint): a renamed, copied or compressed log resumes where it was left.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import gc
import gzip
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from controlplane.errors import LetterheadError
from controlplane.logs import search_indexes, writer_process
from controlplane.logs.dialogue import DialogueRecorder, parse_dialogue_line, process_of_line
from controlplane.logs.dovecot import (
    GENERIC_LOGIN_FAILURE,
    AuthVerdict,
    AuthVerdicts,
    LoginEvent,
    parse_auth_verdict,
    parse_dovecot_line,
    parse_junk_filing,
)
from controlplane.logs.postfix import (
    PASSED_OVER,
    UNDECIDED,
    PostfixEvent,
    parse_postfix_line,
    scan_log_line,
)
from controlplane.logs.rspamd import RSPAMD_LINE, VERDICT_MARK, parse_verdict_line
from controlplane.logs.store import MailLogStore, tune_for_ingest
from controlplane.logs.transactions import TransactionAssembler
from controlplane.logs.writer_process import CheckpointProgress, WriterFailed, WriterProcess
from controlplane.models import LogCheckpoint
from controlplane.networks import client_network

HEAD_BYTES = 256
BATCH_LINES = 50_000
MAX_STORED_LINE = 4000
GZIP_MAGIC = b"\x1f\x8b"
_TIMESTAMPED = re.compile(
    rb"^(?:[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})"
)
# Lines that name a transaction's parts; when the parser returns None for one, a format
# changed and the line is kept for a person to look at instead of silently dropped.
# "smtpd[123]: < client[1.2.3.4]: EHLO ..." / "... > client[...]: 250 ...": the SMTP dialogue.
_DIALOGUE_MARK = re.compile(rb"\]: [<>] ")
_NAMES_A_SESSIONS_TRANSACTION = frozenset({"connect-client", "reject"})
# smtpd's trace lines around the dialogue ("generic_checks: name=... status=0", ">>> START"):
# internal, and numerous; they may carry a marker below but are not a changed format.
_SMTPD_TRACE = re.compile(rb"smtpd\[\d+\]: (?!warning:|error:|fatal:|panic:)(?:[a-z_]+: |>>> |<<< )")
_JUNK_MARK = b"stored mail into mailbox 'Junk'"
# smtpd's "connect from" and "disconnect from" lines, a quarter of a busy log, carry nothing
# stored: they are passed over before any parsing (each went through every parser below).
_SESSION_EDGE = re.compile(
    rb"(?:[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)?|\d{4}-\d{2}-\d{2}T\S+) \S+ "
    rb"postfix[\w./-]*/smtpd\[\d+\]: (?:dis)?connect from "
)
_MEANINGFUL = (b"NOQUEUE:", b" to=<", b" status=", b"Login: ", b"auth failed")


class ConcurrentRead(LetterheadError):
    """Another reader committed lines of the same file first; nothing of this batch was kept."""


@dataclass
class IngestResult:
    lines: int = 0
    postfix_events: int = 0
    logins: int = 0
    spam_verdicts: int = 0
    unparsed: int = 0
    rotated: bool = False

    def add(self, other: IngestResult) -> None:
        for item in fields(self):
            if item.name == "rotated":
                self.rotated = self.rotated or other.rotated
            else:
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LogFile:
    """A log file held open: read through its descriptor, so a file renamed or deleted while it
    is held is still read to its end (the follower relies on this across a rotation)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._raw = open(self.path, "rb")  # noqa: SIM115 - held until close()
        descriptor = self._raw.fileno()
        self.compressed = os.pread(descriptor, 2, 0) == GZIP_MAGIC
        status = os.fstat(descriptor)
        # A gzip file is a finished copy of an earlier file: only its content identifies it.
        self.device: int | None = None if self.compressed else status.st_dev
        self.inode: int | None = None if self.compressed else status.st_ino

    def close(self) -> None:
        self._raw.close()

    def fileno(self) -> int:
        return self._raw.fileno()

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def modified(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(os.fstat(self._raw.fileno()).st_mtime, dt.UTC)

    @contextlib.contextmanager
    def reading(self, offset: int = 0) -> Iterator[BinaryIO]:
        """A stream positioned at `offset` of the (uncompressed) content."""
        # A fresh open file description with its own position (a dup() would share the held
        # one's, and a head() read mid-stream would move it); through /proc it reaches the
        # held file even after it was renamed or deleted.
        with open(f"/proc/self/fd/{self._raw.fileno()}", "rb") as raw:
            raw.seek(0 if self.compressed else offset)
            if not self.compressed:
                yield raw
                return
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                stream.seek(offset)
                yield stream  # type: ignore[misc]

    def head(self, length: int = HEAD_BYTES) -> bytes:
        with self.reading() as stream:
            return stream.read(length)

    def size(self) -> int:
        """The number of readable bytes, uncompressed for a gzip file."""
        if not self.compressed:
            return os.fstat(self._raw.fileno()).st_size
        with self.reading() as stream:
            return sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))

    def continues(self, checkpoint: LogCheckpoint) -> bool:
        """Whether this file holds the content the checkpoint was read from, grown or not."""
        # The head first: it is cheap, while sizing a gzip file means decompressing all of it.
        head = self.head(min(HEAD_BYTES, checkpoint.offset))
        return _hash(head) == checkpoint.head and self.size() >= checkpoint.offset


def ingest_files(
    session: Session,
    paths: list[Path],
    *,
    verdicts: AuthVerdicts | None = None,
    batch_lines: int = BATCH_LINES,
    daemons_reading: Callable[[], bool],
) -> list[IngestResult]:
    """An operator's import of `paths`, in order (`letterhead logs ingest`): when they hold much
    unread log, the search indexes of the tables it fills are built once after all of them
    instead of kept up row by row (search_indexes.py; never while `daemons_reading()`), and the
    rows are written by a second process while this one reads (writer_process.py). The follower
    reads with ingest_log."""
    verdicts = verdicts if verdicts is not None else AuthVerdicts()
    unread = sum(unread_bytes(session, path) for path in paths)
    with (
        search_indexes.deferred(session, unread, daemons_reading=daemons_reading),
        _collector_paused(),
        _rows_written_aside(session, unread),
    ):
        return [ingest_file(session, path, verdicts=verdicts, batch_lines=batch_lines) for path in paths]


# The process writing an import's rows, while one runs (_rows_written_aside).
_WRITER_PROCESS: contextvars.ContextVar[WriterProcess | None] = contextvars.ContextVar(
    "writer_process", default=None
)


@contextlib.contextmanager
def _rows_written_aside(session: Session, unread: int) -> Iterator[None]:
    """A writer process for the streams read in the block, when there is much to read."""
    if not writer_process.worth_a_writer_process(session, unread):
        yield
        return
    with writer_process.started(session) as writer:
        token = _WRITER_PROCESS.set(writer)
        try:
            yield
        finally:
            _WRITER_PROCESS.reset(token)


# Set while an import has the garbage collector paused (_collector_paused): each stream then
# makes one pass after each commit.
_COLLECT_AFTER_COMMITS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "collect_after_commits", default=False
)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector kept out of an import's way: one pass after each commit instead.

    An import allocates millions of objects that die young (a finished message's rows hold no
    cycle once written, see MailLogStore), and the collector's automatic passes went over the
    objects alive before it (the application's modules, SQLAlchemy's metadata: about 100,000)
    again and again: a tenth of an import's time. Those are frozen (left out of every pass) and
    handed back after it. Process-wide, as the collector is: for the operator's command, a
    process of its own. The follower reads without this: objects it froze poll after poll
    might never meet a pass while unfrozen."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield  # the application manages the collector itself
        return
    token = _COLLECT_AFTER_COMMITS.set(True)
    try:
        gc.freeze()
        gc.disable()
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        _COLLECT_AFTER_COMMITS.reset(token)


def unread_bytes(session: Session, path: Path | str) -> int:
    """About how many bytes of `path` no run has read yet (a gzip file's estimated unpacked)."""
    with LogFile(Path(path).resolve()) as log:
        if log.compressed:
            # Sizing a gzip file means unpacking all of it: its checkpoint is found by its head
            # alone, and its size estimated (a mail log packs about eightfold).
            checkpoint = _by_content(session, log, sized=False)
            offset = checkpoint.offset if checkpoint is not None else 0
            return max(0, os.fstat(log.fileno()).st_size * 8 - offset)
        checkpoint = _attached(session, log)
        if checkpoint is not None and not log.continues(checkpoint):
            checkpoint = None
        if checkpoint is None:
            checkpoint = _by_content(session, log)
        return max(0, log.size() - (checkpoint.offset if checkpoint is not None else 0))


def ingest_file(
    session: Session,
    path: Path | str,
    *,
    reference: dt.datetime | None = None,
    batch_lines: int = BATCH_LINES,
    verdicts: AuthVerdicts | None = None,
) -> IngestResult:
    """Store what `path` logged beyond its checkpoint (plain or gzip), finishing first a
    rotated-away predecessor found beside it.

    `reference` dates year-less syslog stamps (default: the file's modification time, since
    no line in a file is newer than the file). Commits once per batch. Raises ConcurrentRead.
    Pass the same `verdicts` to reads of Dovecot's log and then Postfix's so that failed logins
    get Dovecot's reason.
    """
    with LogFile(Path(path).resolve()) as log:
        # A gzip file never grows, so its last line is complete even without a newline.
        return ingest_log(
            session,
            log,
            reference=reference,
            batch_lines=batch_lines,
            complete=log.compressed,
            verdicts=verdicts,
        )


def ingest_log(
    session: Session,
    log: LogFile,
    *,
    reference: dt.datetime | None = None,
    batch_lines: int = BATCH_LINES,
    complete: bool = False,
    verdicts: AuthVerdicts | None = None,
) -> IngestResult:
    """Store what the open `log` holds beyond its checkpoint; `complete` when no writer will
    finish its last line; `verdicts` holds Dovecot's auth verdicts across reads (one per call
    if not given). Raises ConcurrentRead."""
    result = IngestResult()
    verdicts = verdicts if verdicts is not None else AuthVerdicts()
    try:
        checkpoint = _checkpoint(session, log, reference, batch_lines, result, verdicts)
        _ingest_stream(session, log, checkpoint, reference, batch_lines, result, verdicts, complete=complete)
    except StaleDataError:
        session.rollback()
        raise ConcurrentRead(
            f"Another reader (the log follower?) stored lines of {log.path} first; "
            "nothing was stored twice. Run again to read the rest."
        ) from None
    return result


def _checkpoint(
    session: Session,
    log: LogFile,
    reference: dt.datetime | None,
    batch_lines: int,
    result: IngestResult,
    verdicts: AuthVerdicts,
) -> LogCheckpoint:
    """The checkpoint of the content `log` holds (made if new); a rotation this reveals is
    finished first, from the rotated copy beside the file."""
    if log.inode is not None:
        checkpoint = _attached(session, log)
        if checkpoint is not None:
            if log.continues(checkpoint):
                checkpoint.path = str(log.path)[:1000]
                return checkpoint
            # Same file, other content: copied and truncated (or a deleted file's inode
            # reused). The old content keeps its checkpoint, detached from the inode, so that
            # its copy is recognised by content; its unread rest is read from the copy now.
            checkpoint.device = checkpoint.inode = None
            session.flush()
            _finish_copy(session, log, checkpoint, reference, batch_lines, result, verdicts)
            result.rotated = True
    checkpoint = _by_content(session, log)
    if checkpoint is not None:
        if log.inode is not None:
            checkpoint.device, checkpoint.inode = log.device, log.inode
        checkpoint.path = str(log.path)[:1000]
        return checkpoint
    if _older_copy_of_read_content(session, log):
        # An older, shorter copy of a file read further already: everything in it is stored.
        size = log.size()
        checkpoint = LogCheckpoint(
            path=str(log.path)[:1000], device=log.device, inode=log.inode, offset=size,
            head=_hash(log.head(min(HEAD_BYTES, size))),
        )  # fmt: skip
        session.add(checkpoint)
        return checkpoint
    if log.inode is not None and not result.rotated:
        _finish_renamed_predecessor(session, log, reference, batch_lines, result, verdicts)
    checkpoint = LogCheckpoint(
        path=str(log.path)[:1000], device=log.device, inode=log.inode, offset=0, head=_hash(b"")
    )
    session.add(checkpoint)
    return checkpoint


def _attached(session: Session, log: LogFile) -> LogCheckpoint | None:
    return session.scalars(
        select(LogCheckpoint).where(LogCheckpoint.device == log.device, LogCheckpoint.inode == log.inode)
    ).first()


def _by_content(session: Session, log: LogFile, *, sized: bool = True) -> LogCheckpoint | None:
    """The checkpoint of a file this one is a copy or continuation of, if any was read (not
    `sized`: going by the head alone, without checking the file is as long as was read)."""
    head = log.head(HEAD_BYTES)
    # A checkpoint hashes min(HEAD_BYTES, offset) bytes: one candidate hash per length.
    lengths = {_hash(head[:length]): length for length in range(1, len(head) + 1)}
    candidates = session.scalars(
        select(LogCheckpoint)
        .where(LogCheckpoint.head.in_(lengths), LogCheckpoint.offset > 0)
        .order_by(LogCheckpoint.offset.desc())
    ).all()
    size = None
    for candidate in candidates:
        if lengths[candidate.head] != min(HEAD_BYTES, candidate.offset):
            continue
        if not sized:
            return candidate
        size = log.size() if size is None else size
        if size >= candidate.offset:
            return candidate
    return None


def _older_copy_of_read_content(session: Session, log: LogFile) -> bool:
    """Whether `log` begins like content already read past its whole length (a copy taken
    before the original grew): its first HEAD_BYTES bytes match, and it is shorter."""
    head = log.head(HEAD_BYTES)
    if len(head) < HEAD_BYTES:
        return False  # too short to be known by its content
    return (
        session.scalar(
            select(LogCheckpoint.id)
            .where(LogCheckpoint.head == _hash(head), LogCheckpoint.offset > log.size())
            .limit(1)
        )
        is not None
    )


def _siblings(log: LogFile) -> list[Path]:
    """Where logrotate puts a file's old copies: `name.1`, `name.1.gz`, `name-20261125`."""
    return sorted(log.path.parent.glob(log.path.name + "[.-]*"))


def _finish_copy(
    session: Session,
    log: LogFile,
    checkpoint: LogCheckpoint,
    reference: dt.datetime | None,
    batch_lines: int,
    result: IngestResult,
    verdicts: AuthVerdicts,
) -> None:
    for candidate in _siblings(log):
        try:
            copy = LogFile(candidate)
        except OSError:
            continue
        with copy:
            if copy.continues(checkpoint):
                if copy.inode is not None:
                    if _attached(session, copy) is not None:
                        return  # the copy was read under its own name: its checkpoint goes on from there
                    checkpoint.device, checkpoint.inode = copy.device, copy.inode
                checkpoint.path = str(copy.path)[:1000]
                _ingest_stream(
                    session, copy, checkpoint, reference, batch_lines, result, verdicts, complete=True,
                    rotated_away=True,
                )  # fmt: skip
                return


def _finish_renamed_predecessor(
    session: Session,
    log: LogFile,
    reference: dt.datetime | None,
    batch_lines: int,
    result: IngestResult,
    verdicts: AuthVerdicts,
) -> None:
    """A new file at a known path: the file last read there was renamed away; finish it."""
    previous = session.scalars(
        select(LogCheckpoint)
        .where(
            LogCheckpoint.path == str(log.path),
            LogCheckpoint.device == log.device,
            LogCheckpoint.inode != log.inode,
        )
        .order_by(LogCheckpoint.updated_at.desc(), LogCheckpoint.id.desc())
        .limit(1)
    ).first()
    if previous is None:
        return
    for candidate in _siblings(log):
        try:
            if candidate.stat().st_ino != previous.inode:
                continue
            renamed = LogFile(candidate)
        except OSError:
            continue
        with renamed:
            if renamed.inode == previous.inode and renamed.continues(previous):
                previous.path = str(renamed.path)[:1000]
                _ingest_stream(
                    session, renamed, previous, reference, batch_lines, result, verdicts, complete=True,
                    rotated_away=True,
                )  # fmt: skip
                result.rotated = True
        return


def _ingest_stream(
    session: Session,
    log: LogFile,
    checkpoint: LogCheckpoint,
    reference: dt.datetime | None,
    batch_lines: int,
    result: IngestResult,
    verdicts: AuthVerdicts,
    *,
    complete: bool,
    rotated_away: bool = False,
) -> None:
    """Read `log` from `checkpoint` on, committing each batch with it: through the writer
    process if one runs, except for a `rotated_away` file. That one's checkpoint has just been
    given the copy's name (and file), which must commit with its first rows: committed alone,
    a run killed before them would find the rest of the copy neither by the live file's name
    nor by the copy's, and never read it. Its rest is small (what the last poll left)."""
    if reference is None:
        reference = log.modified
    tune_for_ingest(session)
    writer = None if rotated_away else _WRITER_PROCESS.get()
    progress: LogCheckpoint | CheckpointProgress = checkpoint
    if writer is not None:
        # The checkpoint as it stands is committed here (its place, or a new one at its file's
        # start, never further than its rows); from now on the writer commits it.
        session.commit()
        progress = writer.track(checkpoint)
    store = MailLogStore(session, writer)
    assembler = TransactionAssembler(store, junk_filings=verdicts)
    logins = _LoginRecorder(store, verdicts)
    dialogue = DialogueRecorder(session, store.writer)
    offset = checkpoint.offset
    pending = 0
    reader = _LineReader(store, str(log.path), reference, assembler, logins, result, dialogue)
    read = reader.read
    with log.reading(offset) as stream:
        # The loop reads the stream itself (a generator between them cost a resume per line),
        # and scans each line before any call: a third of the lines end there.
        for raw in stream:
            if not complete and not raw.endswith(b"\n"):
                break  # an unfinished last line is left for the next run
            offset += len(raw)
            pending += 1
            try:
                scanned = scan_log_line(raw, reference)
                if scanned is not PASSED_OVER:
                    read(raw, scanned)
            except (SQLAlchemyError, WriterFailed):
                raise  # the database's failure (or the writer's, met in a read), not the line's
            except Exception:  # noqa: BLE001 - one line that trips the assembler is kept, not fatal
                reader.keep_unparsed(_decoded(raw))
            if pending >= batch_lines:
                store.flush()
                dialogue.flush()
                _save_checkpoint(log, progress, offset)
                _commit(session, writer, progress)
                result.lines += pending
                pending = 0
                if _COLLECT_AFTER_COMMITS.get():
                    gc.collect()  # what this batch left behind
    result.lines += pending
    store.flush()
    dialogue.flush()
    moved = offset != progress.offset or progress.id is None
    if moved:
        # A follower polls unchanged files twice a second: no write when nothing was read.
        _save_checkpoint(log, progress, offset)
    _commit(session, writer, progress if moved else None)
    if writer is not None:
        writer.sync()
        session.expire(checkpoint)  # the writer moved it on
    if _COLLECT_AFTER_COMMITS.get():
        gc.collect()


def _commit(
    session: Session, writer: WriterProcess | None, progress: LogCheckpoint | CheckpointProgress | None
) -> None:
    """Commit the rows read so far with the checkpoint's progress (or without, if None)."""
    if writer is not None:
        writer.commit(progress if isinstance(progress, CheckpointProgress) else None)
    # With a writer process: nothing is written through this session; this ends its reads'
    # transaction, so that SQLite can checkpoint its WAL past them.
    session.commit()


def _save_checkpoint(log: LogFile, checkpoint: LogCheckpoint | CheckpointProgress, offset: int) -> None:
    if checkpoint.offset < HEAD_BYTES or not checkpoint.head:
        # The head hash covers the first HEAD_BYTES bytes once the file is that long: it
        # changes only while the file is shorter.
        checkpoint.head = _hash(log.head(min(HEAD_BYTES, offset)))
    checkpoint.offset = offset
    checkpoint.updated_at = dt.datetime.now(dt.UTC)


def _decoded(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class _LineReader:
    """What each line of one stream becomes: a Postfix event for the assembler, a login, an
    rspamd verdict, a line of SMTP dialogue, or a line kept as not understood."""

    def __init__(
        self,
        store: MailLogStore,
        source: str,
        reference: dt.datetime,
        assembler: TransactionAssembler,
        logins: _LoginRecorder,
        result: IngestResult,
        dialogue: DialogueRecorder,
    ) -> None:
        self.store = store
        self.source = source[:1000]
        self.reference = reference
        self.assembler = assembler
        self.logins = logins
        self.result = result
        self.dialogue = dialogue

    def read(self, raw: bytes, event: object) -> None:
        """What `raw` is, given its compiled scan (`scan_log_line`, not PASSED_OVER): most lines
        are Postfix's, which the scan parses from the raw bytes, as it does Dovecot's successful
        logins, leaving every line it is not certain of (UNDECIDED) to the whole path."""
        if event is UNDECIDED:
            self._read_whole(raw)
        elif isinstance(event, PostfixEvent):
            self._add_postfix_event(event, raw)
        elif event is None:
            self._read_other(raw, _decoded(raw))
        else:  # a Dovecot login, read as _read_other reads it
            self.logins.add(event)
            self.result.logins += 1

    def keep_unparsed(self, line: str) -> None:
        self.result.unparsed += 1
        self.store.add_unparsed(self.reference, self.source, line[:MAX_STORED_LINE])

    def _read_whole(self, raw: bytes) -> None:
        if _SESSION_EDGE.match(raw):
            return
        line = _decoded(raw)
        if RSPAMD_LINE.match(raw):
            # rspamd's log: only Letterhead's verdict lines carry something stored.
            if VERDICT_MARK in raw:
                verdict = parse_verdict_line(line)
                if verdict is None:
                    self.keep_unparsed(line)
                else:
                    self.assembler.add_spam_verdict(verdict)
                    self.result.spam_verdicts += 1
            return
        event = parse_postfix_line(line, self.reference)
        if event is not None:
            self._add_postfix_event(event, raw)
        else:
            self._read_other(raw, line)

    def _add_postfix_event(self, event: PostfixEvent, raw: bytes) -> None:
        self.result.postfix_events += 1
        transaction = self.assembler.add(event)
        dialogue = self.dialogue
        if (
            transaction is not None
            and event.kind in _NAMES_A_SESSIONS_TRANSACTION
            and event.program == "smtpd"
            and dialogue.active(event.time)
        ):
            process = process_of_line(_decoded(raw), self.reference)
            if process is not None:
                dialogue.claim(process, transaction, event.time)
        login = _postfix_login(event)
        if login is not None:
            self.logins.add(login)
            self.result.logins += 1

    def _read_other(self, raw: bytes, line: str) -> None:
        """A line that is neither rspamd's nor a Postfix event: Dovecot's, the dialogue, or noise."""
        logins = self.logins
        if _JUNK_MARK in raw:
            filing = parse_junk_filing(line)
            if filing is not None:
                delivery = logins.verdicts.note_junk_filing(filing)
                if delivery is not None:
                    self.assembler.file_as_junk(delivery)
                return
        login = parse_dovecot_line(line, self.reference)
        if login is not None:
            logins.add(login)
            self.result.logins += 1
            return
        if b"auth" in raw:
            verdict = parse_auth_verdict(line, self.reference)
            if verdict is not None:
                logins.add_verdict(verdict)
                return
        if _DIALOGUE_MARK.search(raw):
            said = parse_dialogue_line(line, self.reference)
            if said is not None:
                self.dialogue.add(said)
                return
        if not line.strip():
            return
        if not _TIMESTAMPED.match(raw) or (
            any(marker in raw for marker in _MEANINGFUL) and not _SMTPD_TRACE.search(raw)
        ):
            self.keep_unparsed(line)


def _postfix_login(event: PostfixEvent) -> LoginEvent | None:
    # Postfix logs a successful SASL login only on the client= line of each message it then
    # accepts, and a failed one with the login tried (sasl_username=), when the client named one.
    if event.kind == "connect-client" and event.sasl_user:
        return LoginEvent(event.time, "smtp", event.sasl_user, event.client_ip, True, "")
    if event.kind == "sasl-failed":
        return LoginEvent(event.time, "smtp", event.sasl_user, event.client_ip, False, GENERIC_LOGIN_FAILURE)
    return None


class _LoginRecorder:
    """Turns login events into AuthEvent rows, attributed to the mailbox's domain and tenant."""

    def __init__(self, store: MailLogStore, verdicts: AuthVerdicts) -> None:
        self.store = store
        self.verdicts = verdicts
        self._networks: dict[str, str] = {}

    def add_verdict(self, verdict: AuthVerdict) -> None:
        explained = self.verdicts.take_unexplained(verdict)
        if explained is None:
            self.verdicts.add(verdict)
            return
        # Read after the failure it explains (that was stored): give the stored row its reason.
        self.store.set_login_reason(
            service=explained.service,
            login=explained.user[:255],
            client_ip=explained.client_ip[:64],
            time=explained.time,
            was=GENERIC_LOGIN_FAILURE,
            reason=verdict.reason,
        )

    def add(self, login: LoginEvent) -> None:
        if login.reason == GENERIC_LOGIN_FAILURE:
            reason = self.verdicts.reason_for(login)
            if reason is None:
                self.verdicts.note_unexplained(login)
            else:
                login = dataclasses.replace(login, reason=reason)
        account = login.user.strip().lower()[:255]
        tenant_id, domain_id = self.store.owner(account)
        network = self._networks.get(login.client_ip)
        if network is None:
            network = client_network(login.client_ip) if login.client_ip else ""
            self._networks[login.client_ip] = network
        self.store.add_login(
            time=login.time,
            service=login.service,
            login=login.user[:255],
            account=account,
            tenant_id=tenant_id,
            domain_id=domain_id,
            client_ip=login.client_ip[:64],
            network=network,
            user_agent="",
            success=login.success,
            reason=login.reason[:50],
            password_fingerprint=None,
        )
