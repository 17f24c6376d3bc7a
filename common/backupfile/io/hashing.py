"""SHA-512 of the stored backup bytes, written as vCDA writes BackupInfo.hash."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Protocol

_READ_SIZE = 1 << 20


class BinarySink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class HashingWriter:
    """Passes bytes through to a sink while counting them and hashing them with SHA-512."""

    def __init__(self, sink: BinarySink) -> None:
        self._sink = sink
        self._sha512 = hashlib.sha512()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        self._sha512.update(data)
        self.size += len(data)
        return len(data)

    def digest(self) -> bytes:
        return self._sha512.digest()

    def formatted(self) -> str:
        return format_sha512(self.digest())


def format_sha512(digest: bytes) -> str:
    """`SHA-512:AB:CD:...`: upper-case hex pairs joined by colons, as vCDA writes a digest."""
    return "SHA-512:" + digest.hex(":").upper()


def plain_hex(formatted: str) -> str:
    """The lower-case hex of a `SHA-512:AB:CD:...` digest, as sha512sum prints it."""
    return formatted.strip().removeprefix("SHA-512:").replace(":", "").lower()


def sha512_of_stream(stream: BinaryIO) -> str:
    """Formatted SHA-512 of everything left in a binary stream, read in bounded chunks."""
    sha512 = hashlib.sha512()
    while chunk := stream.read(_READ_SIZE):
        sha512.update(chunk)
    return format_sha512(sha512.digest())


def sha512_of_file(path: str | os.PathLike[str]) -> str:
    """Formatted SHA-512 of a file's bytes, as BackupInfo.hash gives it."""
    with open(path, "rb") as stream:
        return sha512_of_stream(stream)
