"""A stored age backup given a new key, without decompressing or re-encrypting anything.

The file key that encrypts the payload is unwrapped with the old passphrase or identities and
wrapped again for the new passphrase or recipients (format/age.rekey_header): only the header
changes, and the payload's bytes stay as they are.

The listed SHA-512 is proved before a byte is written, otherwise a rekey would bless damaged
bytes with a new hash. Once the scrypts are done, one thread hashes the stored file from its
first byte while this one hashes the new header and the payload after it: two hashes on two
cores. (Hashing the old file beside the scrypts made three busy threads on two cores, and a
rekey of 1 GiB took 2.9 s instead of 2.2 s.) Where the storage can rewrite the head in place
(a folder, a header of the same length) it is written only once both hashes are complete and
the old one matches. Where it cannot, this pass writes the new file through `replace` as it
hashes it, and the new file takes the old one's place only once the old hash has matched.

A rekey that a crash or a retry interrupted after the new file was stored finds the header
opening with the new key and not the old: it then only takes the hash of what is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from common.backupfile.format.age import (
    AGE_MAGIC,
    AgeError,
    AgeNoMatch,
    NewKey,
    header_opens,
    header_stanza_types,
    is_recipient,
    rekey_header,
)
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.io.handoff import STOP_SECONDS, Consumer, HandoffStopped
from common.backupfile.io.hashing import format_sha512
from common.backupfile.io.progress import Reporter, Watch
from common.backupfile.io.storage import BackupStorage, BackupWriter
from common.backupfile.read.verify import HASH_MISMATCH, read_failure
from common.errors import (
    BackupCorrupted,
    BackupNotEncrypted,
    BackupNotFound,
    WrongPassword,
)

# How often the calling thread, waiting for the hashing thread, reports progress and asks
# whether to stop.
_POLL = 0.1
# Writes of up to 1 MiB waiting for the disk or the store while the hashing goes on.
_BLOCKS_WRITTEN_BEHIND = 8


@dataclass(frozen=True)
class RekeyJob:
    backup_id: str
    storage: BackupStorage
    file_name: str
    expected_hash: str  # the listed SHA-512 before the rekey
    passphrase: str | None = field(default=None, repr=False)  # the old key
    identities: tuple[str, ...] = field(default=(), repr=False)
    new_passphrase: str | None = field(default=None, repr=False)
    new_recipients: tuple[str, ...] = ()
    work_factor: int = 18  # for a new passphrase
    max_work_factor: int = 20  # cap for reading the old header

    def __post_init__(self) -> None:
        if (self.new_passphrase is None) == (not self.new_recipients):
            raise ValueError("a rekey is to a new passphrase or to new recipients, "
                             "exactly one of them")
        bad = [text for text in self.new_recipients if not is_recipient(text)]
        if bad:
            raise ValueError(f"invalid age X25519 recipient: {bad[0]!r}")
        if self.passphrase is None and not self.identities:
            raise ValueError("the old passphrase or identities are required")
        _ = self.new_key  # an empty passphrase or a work factor out of range fails here

    @property
    def new_key(self) -> NewKey:
        return NewKey(self.new_passphrase, self.new_recipients, self.work_factor)


@dataclass(frozen=True)
class RekeyOutcome:
    backup_id: str
    hash: str  # SHA-512:... of the stored bytes now
    size: int
    # The file already opened with the new key: an earlier attempt replaced it, and only
    # its hash was taken.
    finished_earlier: bool


def run_rekey(job: RekeyJob, reporter: Reporter) -> RekeyOutcome:
    """Wraps the backup's file key for the new key; the file changes only if this returns."""
    with _opened(job, reporter) as stored:
        head = stored.first_block
        if not head.startswith(AGE_MAGIC):
            raise BackupNotEncrypted(job.backup_id)
        try:
            rekeyed = rekey_header(head, job.new_key, job.passphrase, job.identities,
                                   job.max_work_factor)
        except AgeNoMatch as error:
            return _finished_earlier(job, stored, head, error)
        except AgeError as error:
            # A damaged header, or one this service does not accept (a work factor past
            # the cap): the stored hash tells them apart, as a verify does.
            stored.check_old_hash(job.expected_hash, cause=error)
            raise BackupCorrupted(str(error)) from error
        stored.start_old_hash()
        new_hash = _store(job, stored, rekeyed.old_length, rekeyed.header)
    stored.watch.finish()
    size = stored.size - rekeyed.old_length + len(rekeyed.header)
    return RekeyOutcome(job.backup_id, new_hash, size, finished_earlier=False)


def _finished_earlier(job: RekeyJob, stored: _StoredFile, head: bytes,
                      cause: AgeNoMatch) -> RekeyOutcome:
    """The old key does not open the header: an earlier attempt stored the new file, the
    key is wrong, or the header is damaged."""
    new_key_fits = _new_key_fits(job, head)
    stored_hash = stored.old_hash()
    listed = stored_hash == _canonical(job.expected_hash)
    # Only a passphrase proves that it opens the header; recipients are taken on the
    # header's shape, and only once the file has changed since it was listed.
    if new_key_fits and (job.new_passphrase is not None or not listed):
        stored.watch.finish()
        return RekeyOutcome(job.backup_id, stored_hash, stored.size, finished_earlier=True)
    if not listed:
        raise BackupCorrupted(HASH_MISMATCH) from cause
    raise WrongPassword() from cause


def _new_key_fits(job: RekeyJob, head: bytes) -> bool:
    """A new passphrase: whether it opens the header. New recipients: whether the header
    has exactly one X25519 stanza for each, which is what a rekey to them writes (whom an
    X25519 stanza is for cannot be told without the identity)."""
    try:
        if job.new_passphrase is not None:
            cap = max(job.max_work_factor, job.work_factor)
            return header_opens(head, job.new_passphrase, max_work_factor=cap)
        return header_stanza_types(head) == ["X25519"] * len(job.new_recipients)
    except AgeError:
        return False


def _store(job: RekeyJob, stored: _StoredFile, old_length: int, new_head: bytes) -> str:
    """Stores new_head in place of the old one once the old hash has matched; the SHA-512
    of the file as it is then."""
    storage = job.storage
    if storage.rewrites_head_in_place(old_length, len(new_head)):
        new_hash = stored.hash_rewritten(old_length, new_head, None)
        stored.check_old_hash(job.expected_hash)
        storage.rewrite_head(job.file_name, old_length, new_head)
        return new_hash
    # The new file is written as it is hashed, and takes the old one's place only when the
    # block ends: after the old hash has matched.
    with storage.replace(job.file_name) as out, stored.writer(out) as copy:
        new_hash = stored.hash_rewritten(old_length, new_head, copy)
        stored.check_old_hash(job.expected_hash)
    return new_hash


def _canonical(formatted: str) -> str:
    return formatted.strip().upper()


@contextmanager
def _opened(job: RekeyJob, reporter: Reporter) -> Iterator[_StoredFile]:
    """The stored file of the job, its first block read and all of it hashed on a thread."""
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(job.storage.open(job.file_name))
        except FileNotFoundError:
            raise BackupNotFound(job.backup_id) from None
        except OSError as error:
            raise read_failure(error) from error
        stored = _StoredFile(job, opened.stream, opened.size, reporter)
        # Before the stream closes: the hashing thread must be out of its read.
        stack.callback(stored.close)
        yield stored


class _StoredFile:
    """The stored file: its old SHA-512 taken on a thread of its own from byte 0, the new
    one on the calling thread, and progress over both passes reported from here."""

    def __init__(self, job: RekeyJob, stream: BinaryIO, size: int, reporter: Reporter) -> None:
        self._job, self.size = job, size
        self.watch = Watch(reporter, 2 * size)
        self.first_block = _read(stream, COPY_SIZE)
        self._stream = stream
        self._old: _HashingThread | None = None
        self._new_done = self._reported = 0

    def start_old_hash(self) -> None:
        """The old SHA-512 on a thread of its own, beside the new one. Started once the
        scrypts are done: on two cores, a third busy thread beside them slows both."""
        if self._old is None:
            self._old = _HashingThread(self.first_block, self._stream, "rekey-old-sha512")

    def writer(self, out: BackupWriter) -> Consumer[bytes]:
        """The new file's bytes go to out on a thread of its own, beside the hashing."""
        return Consumer(out.write, "rekey-writer", _BLOCKS_WRITTEN_BEHIND,
                        checkpoint=self._checkpoint)

    def hash_rewritten(self, old_length: int, new_head: bytes,
                       copy: Consumer[bytes] | None) -> str:
        """SHA-512 of new_head and the payload after the old head, read a second time (the
        first read is the hashing thread's); each block also goes to copy when given."""
        digest = hashlib.sha512(new_head)
        if copy is not None:
            copy.put(new_head)
        self._new_done += len(new_head)
        job = self._job
        # The whole file rather than a range: a plain stream, and only the head read twice.
        with job.storage.open(job.file_name) as opened:
            if len(_read(opened.stream, old_length)) != old_length:
                raise BackupCorrupted("the file ends inside its header")
            for block in _blocks(opened.stream, fresh=copy is not None):
                digest.update(block)
                if copy is not None:
                    copy.put(bytes(block) if isinstance(block, memoryview) else block)
                self._new_done += len(block)
                self._checkpoint()
        return format_sha512(digest.digest())

    def old_hash(self) -> str:
        self.start_old_hash()
        return self._old.wait(self._checkpoint)

    def check_old_hash(self, expected: str, cause: BaseException | None = None) -> None:
        """BackupCorrupted unless the stored bytes, as they were, have the listed hash."""
        if self.old_hash() != _canonical(expected):
            raise BackupCorrupted(HASH_MISMATCH) from cause

    def close(self) -> None:
        if self._old is not None:
            self._old.stop()

    def _checkpoint(self) -> None:
        done = (self._old.done if self._old else 0) + self._new_done
        self.watch.advance(done - self._reported)
        self._reported = done
        self.watch.checkpoint()


class _HashingThread:
    """SHA-512 of first and then the rest of stream, on a daemon thread, counted as it goes
    and stopped between two reads when asked."""

    def __init__(self, first: bytes, stream: BinaryIO, name: str) -> None:
        self.done = 0
        self._first, self._stream = first, stream
        self._stop, self._ended = threading.Event(), threading.Event()
        self._digest: str | None = None
        self._failure: BaseException | None = None
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def wait(self, poll: Callable[[], None]) -> str:
        while not self._ended.wait(_POLL):
            poll()
        if self._failure is not None:
            raise self._failure
        assert self._digest is not None
        return self._digest

    def stop(self) -> None:
        self._stop.set()
        # The stream closes after this: the thread must be out of its read first.
        self._ended.wait(STOP_SECONDS)

    def _run(self) -> None:
        try:
            digest = hashlib.sha512(self._first)
            self.done += len(self._first)
            for block in _blocks(self._stream, fresh=False):
                if self._stop.is_set():
                    raise HandoffStopped("the hashing of the stored file was stopped")
                digest.update(block)
                self.done += len(block)
            self._digest = format_sha512(digest.digest())
        except BaseException as error:  # handed to the waiting thread, which raises it
            self._failure = error
        finally:
            self._ended.set()


def _blocks(stream: BinaryIO, fresh: bool) -> Iterator[bytes | memoryview]:
    """The rest of stream in blocks of up to 1 MiB: new bytes objects, which another thread
    may keep, when fresh; else views of one buffer, read into again for every block, which
    spares an allocation and its page faults per MiB."""
    if fresh:
        while block := _read(stream, COPY_SIZE):
            yield block
        return
    buffer = bytearray(COPY_SIZE)
    view = memoryview(buffer)
    while size := _read_into(stream, buffer):
        yield view[:size]


def _read(stream: BinaryIO, size: int) -> bytes:
    try:
        return stream.read(size)
    except OSError as error:
        raise read_failure(error) from error


def _read_into(stream: BinaryIO, buffer: bytearray) -> int:
    try:
        return stream.readinto(buffer)
    except OSError as error:
        raise read_failure(error) from error
