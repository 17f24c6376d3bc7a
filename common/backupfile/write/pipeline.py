"""One backup, from the configured sources to a finished file: walk, tar, zstd, age, hash, store.

Plain Python, free of Celery and Redis, so that it can be tested and benchmarked alone; the task
that runs it passes a Reporter for progress, warnings and the stop flag.

A passphrase's key derivation (scrypt: most of a second of one core, 256 MiB) runs on a thread
of its own while the sources are measured and the first files are asked of the disk
(write/readahead.py); the pipeline starts once the key is there, so that the memory of the two
never adds up.

Reading, the files' hash (format/filehash.py) and feeding zstd run on the calling thread, and
zstd compresses on its own worker threads; the encryption, the SHA-512 and the disk writes each
run on a thread of their own, fed through small bounded queues (io/handoff.py). All of these
release the GIL on large buffers (except the encryption, which is the smallest part), so every
core is kept busy while only a few MiB are in flight between the stages. zstd hands on blocks
of exactly COPY_SIZE, a whole number of age chunks: each is sealed straight into one buffer,
which the SHA-512 and the disk stages take as it is, with no copy or join on the way. The stages
share one stop signal, so that however the calling thread leaves (a failure, a cancel, a
SystemExit from the pool's SIGTERM) no thread is left waiting, and the temporary file goes
with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import zstandard

from common.backupfile.format.age import AgeWriter, PassphraseKey
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.io.handoff import Consumer
from common.backupfile.io.hashing import BinarySink, HashingWriter
from common.backupfile.io.progress import Reporter, Watch
from common.backupfile.io.storage import BackupStorage, backup_file_name
from common.backupfile.write.archive import ArchiveWriter
from common.backupfile.write.readahead import ReadAhead
from common.backupfile.write.sources import Entry, Source, measure, walk

# About 1 MiB each, per stage: enough to ride out a pause on either side of a handoff, small
# next to scrypt's peak.
_CHUNKS_IN_FLIGHT = 8
# What the disk may read ahead while scrypt takes its second of CPU: about that second of a
# disk at 500 MB/s.
_PRIME_BYTES = 512 << 20
# How often a task waiting for its key derivation looks for a cancel.
_KEY_WAIT_SECONDS = 0.2


@dataclass(frozen=True)
class BackupJob:
    backup_id: str
    sources: tuple[Source, ...]
    storage: BackupStorage
    passphrase: str | None = None  # None and no recipients: a plain .tar.zst
    recipients: tuple[str, ...] = ()  # age X25519 public keys
    exclude: tuple[Path, ...] = ()
    zstd_level: int = 1
    zstd_threads: int = 2
    work_factor: int = 18

    def __post_init__(self) -> None:
        # age allows a passphrase only as the file's sole recipient.
        if self.passphrase is not None and self.recipients:
            raise ValueError("a backup is encrypted to a passphrase or to recipients, not both")
        if self.passphrase == "":
            raise ValueError("an empty passphrase would protect nothing")

    @property
    def encrypted(self) -> bool:
        return self.passphrase is not None or bool(self.recipients)


@dataclass(frozen=True)
class BackupOutcome:
    backup_id: str
    file_name: str  # under which the storage keeps it
    size: int
    hash: str  # "SHA-512:AB:CD:..." of the stored bytes
    files: int
    source_bytes: int
    generated_on: int  # ms since the epoch


def run_backup(job: BackupJob, reporter: Reporter) -> BackupOutcome:
    """Writes the backup file of job; it exists under its final name only if this returns."""
    local = job.storage.local_folder()
    exclude = (*job.exclude, *((local,) if local else ()))
    with ThreadPoolExecutor(1, thread_name_prefix="backup-scrypt") as pool:
        # Leaving early (a missing source, a cancel) still waits for a started derivation:
        # its memory must be gone before the next task's begins.
        derivation = (pool.submit(PassphraseKey.derive, job.passphrase, job.work_factor)
                      if job.passphrase is not None else None)
        _, total_bytes = measure(job.sources, exclude)
        watch = Watch(reporter, total_bytes)
        entries = ReadAhead(walk(job.sources, exclude, watch.reporter.warning))
        entries.prime(_PRIME_BYTES if derivation else None)
        key = _derived_key(derivation, watch.checkpoint) if derivation else None
    generated_on = time.time_ns() // 1_000_000
    name = backup_file_name(job.backup_id, job.encrypted)
    stages = _Stages(watch.checkpoint)
    with (job.storage.create(name) as stored,
          stages.writer(stored, "backup-disk", owned=True) as disk):
        hasher = HashingWriter(disk)
        with stages.writer(hasher, "backup-hash", owned=True) as hashing:
            encryptor = _open_encryption(job, key, hashing)
            archive = _write_encrypted(job, entries, encryptor or hashing, watch, generated_on,
                                       stages)
            if encryptor is not None:
                encryptor.close()
    watch.finish()
    return BackupOutcome(job.backup_id, name, hasher.size, hasher.formatted(),
                         archive.files, archive.source_bytes, generated_on)


def _derived_key(derivation: Future[PassphraseKey], checkpoint: Callable[[], None]
                 ) -> PassphraseKey:
    """The derivation's key, once it is there; a cancel meanwhile is raised at once."""
    while True:
        try:
            return derivation.result(timeout=_KEY_WAIT_SECONDS)
        except FutureTimeout:
            checkpoint()


def _open_encryption(job: BackupJob, key: PassphraseKey | None, sink: BinarySink
                     ) -> AgeWriter | None:
    if job.recipients:
        return AgeWriter.for_recipients(sink, list(job.recipients))
    if key is not None:
        return AgeWriter.for_passphrase_key(sink, key)
    return None


def _write_encrypted(
    job: BackupJob, entries: Iterable[Entry], sink: BinarySink, watch: Watch,
    generated_on: int, stages: _Stages,
) -> ArchiveWriter:
    # Owned: the compressor hands on fresh bytes objects that nobody changes.
    with stages.writer(sink, "backup-writer", owned=True) as pipe:
        return _write_compressed(job, entries, pipe, watch, generated_on)


def _write_compressed(
    job: BackupJob, entries: Iterable[Entry], sink: BinarySink, watch: Watch,
    generated_on: int,
) -> ArchiveWriter:
    compressor = _BlockCompressor(zstandard.ZstdCompressor(
        level=job.zstd_level, threads=job.zstd_threads, write_checksum=True), sink)
    warn = watch.reporter.warning
    names = [source.name for source in job.sources]
    with ArchiveWriter(compressor, job.backup_id, names, generated_on, warn,
                       watch.advance, watch.checkpoint) as archive:
        for entry in entries:
            archive.add(entry)
    # Only on success: closing ends the zstd frame, which a failed backup must not get.
    compressor.close()
    return archive


class _BlockCompressor:
    """A zstd frame written to a sink in blocks of exactly COPY_SIZE (the last one shorter)."""

    def __init__(self, compressor: zstandard.ZstdCompressor, sink: BinarySink) -> None:
        self._chunker = compressor.chunker(chunk_size=COPY_SIZE)
        self._sink = sink

    def write(self, data: bytes | memoryview) -> int:
        for block in self._chunker.compress(data):
            self._sink.write(block)
        return len(data)

    def close(self) -> None:
        """Ends the frame."""
        for block in self._chunker.finish():
            self._sink.write(block)


class _Stages:
    """The background writers of one backup: one stop for all, and the calling thread's
    checkpoint, asked while it waits on them, so that a cancel reaches it even when a stage
    is stuck (on a disk that stopped answering, say)."""

    def __init__(self, checkpoint: Callable[[], None]) -> None:
        self.stop, self.checkpoint = threading.Event(), checkpoint

    def writer(self, sink: BinarySink, name: str, owned: bool = False) -> _BackgroundWriter:
        return _BackgroundWriter(Consumer(sink.write, name, _CHUNKS_IN_FLIGHT, stop=self.stop,
                                          checkpoint=self.checkpoint), owned)


class _BackgroundWriter:
    """A write-only file whose bytes reach the sink on another thread, in order.

    Unless the writer hands over buffers it never touches again (owned), each write is
    copied first, since the caller may reuse its buffer as soon as write returns.
    """

    def __init__(self, writes: Consumer[bytes], owned: bool = False) -> None:
        self._writes = writes
        self._owned = owned

    def __enter__(self) -> _BackgroundWriter:
        self._writes.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._writes.__exit__(exc_type, *rest)

    def write(self, data: bytes) -> int:
        if data:
            self._writes.put(data if self._owned else bytes(data))
        return len(data)
