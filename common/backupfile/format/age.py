"""Streaming age v1 files (https://age-encryption.org/v1): scrypt and X25519 recipients.

Backups are far larger than memory, so both directions work chunk by chunk: the writer keeps
at most one plaintext chunk plus half a MiB of sealed output (or one large write's worth),
and the reader keeps one chunk and releases its plaintext only once that chunk has
authenticated.
"""

from __future__ import annotations

import base64
import hmac
import io
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

DEFAULT_WORK_FACTOR = 18
MAX_WORK_FACTOR = 22
CHUNK_SIZE = 64 * 1024
_TAG_SIZE = 16
_SEALED_CHUNK = CHUNK_SIZE + _TAG_SIZE
# Sealed output gathers to this much before the sink gets it; a large write goes out whole.
_SINK_BATCH = 512 << 10
# Chunks read, and opened, at a time: large reads of the source, few Python calls per MiB.
_CHUNKS_PER_READ = 16
# Every age v1 file opens with this line: how a file is told to be one.
AGE_MAGIC = b"age-encryption.org/v1\n"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)
# Generous for every known stanza (hybrid ones carry ~1.5 KB arguments), yet a hostile header
# cannot make the reader buffer without end.
_MAX_LINE = 16 * 1024
_MAX_HEADER = 1 << 20
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")
_ARGUMENT = re.compile(rb"[\x21-\x7e]+")
_FOOTER = re.compile(rb"--- ([A-Za-z0-9+/]{43})\n")
# Two digits cover every acceptable factor and keep int() away from absurd lengths.
_WORK_FACTOR = re.compile(rb"[1-9][0-9]?")
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class AgeError(Exception):
    """Any failure to read an age file."""


class AgeHeaderError(AgeError):
    """The header is malformed, non-canonical or asks for something unsupported."""


class AgeNoMatch(AgeError):
    """No stanza opened with the given passphrase or identities."""


class AgeHMACError(AgeError):
    """The header was altered after it was written."""


class AgePayloadError(AgeError):
    """The payload is damaged, truncated or followed by trailing data."""


class _Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


_Stanza = tuple[list[bytes], bytes]


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_BECH32_GEN):
            check ^= gen if top >> i & 1 else 0
    return check


def _hrp_values(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: Sequence[int], src: int, dst: int, pad: bool) -> list[int]:
    acc, bits, out, mask = 0, 0, [], (1 << dst) - 1
    # Twelve bits hold every partial group that regrouping between 8 and 5 bits can leave.
    for value in data:
        acc, bits = (acc << src | value) & 0xFFF, bits + src
        while bits >= dst:
            bits -= dst
            out.append(acc >> bits & mask)
    if pad and bits:
        out.append(acc << (dst - bits) & mask)
    elif not pad and (bits >= src or acc & ((1 << bits) - 1)):
        raise ValueError("invalid bech32 padding")
    return out


def _bech32_encode(hrp: str, data: bytes) -> str:
    values = _regroup(data, 8, 5, True)
    poly = _polymod([*_hrp_values(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [poly >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[v] for v in values + checksum)


def _bech32_decode(text: str) -> tuple[str, bytes]:
    if text != text.lower() and text != text.upper():
        raise ValueError("mixed-case bech32")
    hrp, sep, rest = text.lower().rpartition("1")
    if not sep or not hrp or len(rest) < 6 or not set(rest) <= set(_BECH32):
        raise ValueError("malformed bech32")
    values = [_BECH32.index(c) for c in rest]
    if any(not 33 <= ord(c) <= 126 for c in hrp) or _polymod(_hrp_values(hrp) + values) != 1:
        raise ValueError("bad bech32 checksum")
    return hrp, bytes(_regroup(values[:-6], 5, 8, False))


def _decode_key(text: str, hrp: str) -> bytes | None:
    try:
        found, key = _bech32_decode(text)
    except ValueError:
        return None
    return key if found == hrp and len(key) == 32 else None


def _parse_recipient(text: str) -> X25519PublicKey:
    key = _decode_key(text, "age")
    if key is None:
        raise ValueError(f"invalid age X25519 recipient: {text!r}")
    return X25519PublicKey.from_public_bytes(key)


def _parse_identity(text: str) -> X25519PrivateKey:
    key = _decode_key(text.strip(), "age-secret-key-")
    if key is None:
        # The value itself is a secret, so only its kind is named.
        raise ValueError("invalid or unsupported identity (expected AGE-SECRET-KEY-1...)")
    return X25519PrivateKey.from_private_bytes(key)


def is_recipient(text: str) -> bool:
    """True for a well-formed X25519 public key `age1...`."""
    return _decode_key(text, "age") is not None


def is_identity(text: str) -> bool:
    """True for a well-formed X25519 identity `AGE-SECRET-KEY-1...`."""
    return _decode_key(text.strip(), "age-secret-key-") is not None


def read_identity_file(path: str | os.PathLike[str]) -> str:
    """The first identity of an age identity file, as age-keygen writes it (comment lines,
    then `AGE-SECRET-KEY-1...`); ValueError when it holds none."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read(1 << 16).splitlines()
    for line in lines:
        if is_identity(line.strip()):
            return line.strip()
    raise ValueError(f"{path} holds no age X25519 identity")


def generate_x25519_identity() -> tuple[str, str]:
    """A new (AGE-SECRET-KEY-1... identity, age1... recipient) pair."""
    key = X25519PrivateKey.generate()
    secret = _bech32_encode("age-secret-key-", key.private_bytes_raw()).upper()
    return secret, _bech32_encode("age", key.public_key().public_bytes_raw())


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    if len(text) % 4 == 1 or not _BASE64.fullmatch(text):
        raise AgeHeaderError("invalid base64 in header")
    data = base64.b64decode(text + b"=" * (-len(text) % 4))
    if _b64(data) != text:
        raise AgeHeaderError("non-canonical base64 in header")
    return data


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)


def _scrypt_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    # cryptography's Scrypt sizes its own memory limit; hashlib.scrypt cannot go past 2 GiB,
    # less than work factor 21 needs.
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase)


def _x25519_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    return _hkdf(shared, share + recipient, _X25519_LABEL)


def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.digest(_hkdf(file_key, b"", b"header"), header, "sha256")


def _sealed_header(file_key: bytes, stanzas: list[bytes]) -> bytes:
    """The whole header, its MAC line included: what comes before the payload nonce."""
    header = AGE_MAGIC + b"".join(stanzas) + b"---"
    return header + b" " + _b64(_header_mac(file_key, header)) + b"\n"


def _encode_stanza(args: list[bytes], body: bytes) -> bytes:
    text = _b64(body)
    # range() reaching len(text) adds the empty final line a 64-column multiple requires.
    lines = [text[i : i + 64] for i in range(0, len(text) + 1, 64)]
    return b"-> " + b" ".join(args) + b"\n" + b"\n".join(lines) + b"\n"


@dataclass(frozen=True)
class PassphraseKey:
    """A passphrase's scrypt key with its salt: all of an scrypt stanza but the file key.

    Deriving it is the slow, memory-hungry part of writing to a passphrase (256 MiB and most
    of a second at work factor 18); it needs no file key, so a caller can derive it while it
    does other work and hand it to AgeWriter.for_passphrase_key.
    """

    salt: bytes
    work_factor: int
    key: bytes = field(repr=False)

    @classmethod
    def derive(cls, passphrase: str | bytes, work_factor: int = DEFAULT_WORK_FACTOR
               ) -> PassphraseKey:
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise ValueError(f"work factor must be 1..{MAX_WORK_FACTOR}")
        salt = os.urandom(16)
        return cls(salt, work_factor, _scrypt_key(_as_bytes(passphrase), salt, work_factor))

    def stanza(self, file_key: bytes) -> bytes:
        body = ChaCha20Poly1305(self.key).encrypt(_ZERO_NONCE, file_key, None)
        return _encode_stanza([b"scrypt", _b64(self.salt), str(self.work_factor).encode()], body)


def _x25519_stanza(recipient: X25519PublicKey, file_key: bytes) -> bytes:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    key = _x25519_key(ephemeral.exchange(recipient), share, recipient.public_bytes_raw())
    body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
    return _encode_stanza([b"X25519", _b64(share)], body)


def _open_file_key(key: bytes, body: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def _check_wrapped(body: bytes) -> None:
    # A 16-byte file key plus its tag; checked first so nothing else is ever decrypted.
    if len(body) != 16 + _TAG_SIZE:
        raise AgeHeaderError("wrapped file key is not 16 bytes")


def _unwrap_scrypt(args: list[bytes], body: bytes, passphrase: bytes, cap: int) -> bytes | None:
    if len(args) != 3:
        raise AgeHeaderError("scrypt stanza needs exactly a salt and a work factor")
    salt = _unb64(args[1])
    if len(salt) != 16:
        raise AgeHeaderError("scrypt salt is not 16 bytes")
    if not _WORK_FACTOR.fullmatch(args[2]) or int(args[2]) > cap:
        raise AgeHeaderError(f"scrypt work factor not accepted (at most {cap})")
    _check_wrapped(body)
    return _open_file_key(_scrypt_key(passphrase, salt, int(args[2])), body)


def _unwrap_x25519(args: list[bytes], body: bytes, identity: X25519PrivateKey) -> bytes | None:
    share = _unb64(args[1]) if len(args) == 2 else b""
    if len(share) != 32:
        raise AgeHeaderError("X25519 stanza needs exactly one 32-byte share")
    _check_wrapped(body)
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError as exc:
        raise AgeHeaderError("X25519 share is a low-order point") from exc
    key = _x25519_key(shared, share, identity.public_key().public_bytes_raw())
    return _open_file_key(key, body)


def _try_stanza(
    stanza: _Stanza, passphrase: bytes | None, identities: list[X25519PrivateKey], cap: int
) -> bytes | None:
    args, body = stanza
    if args[0] == b"scrypt" and passphrase is not None:
        return _unwrap_scrypt(args, body, passphrase, cap)
    if args[0] == b"X25519":
        keys = (_unwrap_x25519(args, body, identity) for identity in identities)
        return next((key for key in keys if key is not None), None)
    return None


def _opening_keys(
    passphrase: str | bytes | None, identities: Sequence[str] | None
) -> tuple[bytes | None, list[X25519PrivateKey]]:
    if passphrase is None and not identities:
        raise ValueError("a passphrase or identities are required")
    secret = None if passphrase is None else _as_bytes(passphrase)
    return secret, [_parse_identity(text) for text in identities or ()]


class _Source:
    """Exact-size reads and header lines over any object with read(n)."""

    def __init__(self, raw: _Readable) -> None:
        self._raw = raw
        self._buf = b""
        self.lines: list[bytes] = []
        self.header_size = 0

    def _more(self, size: int) -> bytes:
        data = self._raw.read(size)
        return data if isinstance(data, bytes) else bytes(data or b"")

    def readline(self) -> bytes:
        while (end := self._buf.find(b"\n")) < 0:
            data = self._more(4096) if len(self._buf) <= _MAX_LINE else b""
            if not data:
                raise AgeHeaderError("header line truncated or too long")
            self._buf += data
        line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
        self.lines.append(line)
        self.header_size += len(line)
        if self.header_size > _MAX_HEADER:
            raise AgeHeaderError("header too large")
        return line

    def read_exact(self, size: int) -> bytes:
        """Exactly size bytes, or fewer only at the end of the stream."""
        parts, have = [self._buf[:size]], min(size, len(self._buf))
        self._buf = self._buf[have:]
        while have < size and (data := self._more(size - have)):
            parts.append(data)
            have += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_stanza(src: _Source, line: bytes) -> _Stanza:
    args = line[3:-1].split(b" ")
    if not all(_ARGUMENT.fullmatch(arg) for arg in args):
        raise AgeHeaderError("malformed stanza arguments")
    lines = []
    while True:
        text = src.readline()[:-1]
        if len(text) > 64 or not _BASE64.fullmatch(text):
            raise AgeHeaderError("malformed stanza body line")
        lines.append(text)
        if len(text) < 64:
            return args, _unb64(b"".join(lines))


def _read_header(src: _Source) -> tuple[list[_Stanza], bytes, bytes]:
    """Stanzas, the bytes the MAC covers, and the MAC."""
    if src.readline() != AGE_MAGIC:
        raise AgeHeaderError("not an age v1 file (armored input is not supported)")
    stanzas = []
    while not (line := src.readline()).startswith(b"---"):
        if not line.startswith(b"-> "):
            raise AgeHeaderError("malformed header line")
        stanzas.append(_read_stanza(src, line))
    footer = _FOOTER.fullmatch(line)
    if footer is None:
        raise AgeHeaderError("malformed header MAC line")
    return stanzas, b"".join(src.lines[:-1]) + b"---", _unb64(footer.group(1))


def _unwrap_file_key(
    parsed: tuple[list[_Stanza], bytes, bytes], secret: bytes | None,
    keys: list[X25519PrivateKey], cap: int,
) -> bytes:
    """The file key a parsed header wraps for secret or keys, once its MAC is proved."""
    stanzas, header, mac = parsed
    if len(stanzas) > 1 and any(args[0] == b"scrypt" for args, _ in stanzas):
        raise AgeHeaderError("an scrypt stanza must be the only one")
    keys_found = (_try_stanza(stanza, secret, keys, cap) for stanza in stanzas)
    file_key = next((key for key in keys_found if key is not None), None)
    if file_key is None:
        raise AgeNoMatch("no stanza matched the passphrase or identities")
    if not hmac.compare_digest(_header_mac(file_key, header), mac):
        raise AgeHMACError("header MAC mismatch")
    return file_key


class AgeWriter:
    """Write-only file object encrypting to an age v1 stream on sink.

    Build with for_passphrase(), for_passphrase_key() or for_recipients(); the header goes to
    the sink at once.
    """

    def __init__(self, sink: _Sink, file_key: bytes, stanzas: list[bytes]) -> None:
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._sink, self._buf = sink, bytearray()
        self._out: list[bytearray] = []
        self._out_size = self._counter = 0
        self.closed = False
        sink.write(_sealed_header(file_key, stanzas) + nonce)

    @classmethod
    def for_passphrase(
        cls, sink: _Sink, passphrase: str | bytes, work_factor: int = DEFAULT_WORK_FACTOR
    ) -> AgeWriter:
        return cls.for_passphrase_key(sink, PassphraseKey.derive(passphrase, work_factor))

    @classmethod
    def for_passphrase_key(cls, sink: _Sink, key: PassphraseKey) -> AgeWriter:
        """To a passphrase whose key was derived beforehand; a fresh file key each time."""
        file_key = os.urandom(16)
        return cls(sink, file_key, [key.stanza(file_key)])

    @classmethod
    def for_recipients(cls, sink: _Sink, recipients: Sequence[str]) -> AgeWriter:
        keys = [_parse_recipient(text) for text in recipients]
        if not keys:
            raise ValueError("at least one recipient is required")
        file_key = os.urandom(16)
        return cls(sink, file_key, [_x25519_stanza(key, file_key) for key in keys])

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed AgeWriter")
        view = memoryview(data).cast("B")
        size, chunks = len(view), []
        if self._buf and len(self._buf) + len(view) > CHUNK_SIZE:
            take = CHUNK_SIZE - len(self._buf)
            full, self._buf = self._buf, bytearray()
            full += view[:take]
            chunks.append(memoryview(full))
            view = view[take:]
        # A full chunk stays buffered until more data shows it is not the last one.
        whole = max(0, (len(view) - 1) // CHUNK_SIZE) * CHUNK_SIZE
        chunks.extend(view[start:start + CHUNK_SIZE] for start in range(0, whole, CHUNK_SIZE))
        self._buf += view[whole:]
        if chunks:
            self._seal(chunks, last=False)
        return size

    def _seal(self, chunks: list[memoryview], last: bool) -> None:
        """Seals the chunks in turn into one buffer: one write to the sink for a large write,
        and no copy of the sealed bytes on the way."""
        out = bytearray(sum(map(len, chunks)) + _TAG_SIZE * len(chunks))
        target, start = memoryview(out), 0
        for index, chunk in enumerate(chunks):
            final = last and index == len(chunks) - 1
            nonce = self._counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
            end = start + len(chunk) + _TAG_SIZE
            self._aead.encrypt_into(nonce, chunk, None, target[start:end])
            self._counter, start = self._counter + 1, end
        target.release()
        self._out.append(out)
        self._out_size += len(out)
        if self._out_size >= _SINK_BATCH:
            self.flush()

    def flush(self) -> None:
        """Hand sealed chunks to the sink; the open chunk stays until more data or close()."""
        if self._out:
            # Fresh buffers each time: the sink may keep a reference to what it was given.
            out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out, self._out_size = [], 0
            self._sink.write(out)

    def close(self) -> None:
        """Seal the final chunk. The sink stays open."""
        if not self.closed:
            self._seal([memoryview(self._buf)], last=True)
            self._buf = bytearray()
            self.flush()
            self.closed = True

    def __enter__(self) -> AgeWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            # Without the final chunk a reader reports truncation, instead of authenticating
            # a stream cut short by the failure.
            self.closed, self._buf, self._out = True, bytearray(), []


class AgeReader(io.RawIOBase):
    """Readable file object decrypting an age v1 stream from source.

    The header is parsed and authenticated here, so a wrong passphrase or identity fails
    at construction; the payload is decrypted lazily, up to 1 MiB at a time, and each 64 KiB
    chunk's plaintext is handed out only once that chunk has authenticated.
    """

    def __init__(
        self,
        source: _Readable,
        passphrase: str | bytes | None = None,
        identities: Sequence[str] | None = None,
        max_work_factor: int = MAX_WORK_FACTOR,
    ) -> None:
        super().__init__()
        secret, keys = _opening_keys(passphrase, identities)
        self._src = _Source(source)
        file_key = self._open_header(secret, keys, max_work_factor)
        nonce = self._src.read_exact(16)
        if len(nonce) != 16:
            raise AgeHeaderError("payload nonce missing or short")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter, self._done = 0, False
        self._pending, self._error = memoryview(b""), None

    def _open_header(self, secret: bytes | None, keys: list[X25519PrivateKey], cap: int) -> bytes:
        return _unwrap_file_key(_read_header(self._src), secret, keys, cap)

    def readable(self) -> bool:
        return True

    def _next_block(self) -> memoryview:
        """The plaintext of the next chunks, up to _CHUNKS_PER_READ of them, read at once.

        A failure after some of them opened is kept for the next call, so that the plaintext
        that did authenticate comes out first, as it would chunk by chunk.
        """
        sealed = memoryview(self._src.read_exact(_SEALED_CHUNK * _CHUNKS_PER_READ))
        plain = bytearray(len(sealed))
        filled = start = 0
        try:
            # Once at least, so that an empty read reports the missing final chunk.
            while not self._done and (start < len(sealed) or not start):
                piece = sealed[start:start + _SEALED_CHUNK]
                filled += self._open_chunk(piece, memoryview(plain)[filled:])
                start += len(piece)
        except AgePayloadError as exc:
            if not filled:
                raise
            self._error = exc
        if self._done and (start < len(sealed) or self._src.read_exact(1)):
            self._error = AgePayloadError("trailing data after the final chunk")
        return memoryview(plain)[:filled]

    def _open_chunk(self, sealed: memoryview, into: memoryview) -> int:
        """Opens one chunk into the start of into; how many plaintext bytes it held."""
        if len(sealed) < _TAG_SIZE:
            raise AgePayloadError("payload truncated: final chunk missing")
        if len(sealed) == _TAG_SIZE and self._counter:
            raise AgePayloadError("final chunk is empty but the payload is not")
        target = into[:len(sealed) - _TAG_SIZE]
        # A short chunk must be the final one; a full-size one may still be.
        last = len(sealed) < _SEALED_CHUNK
        if last or not self._open(sealed, target, last=False):
            last = True
            if not self._open(sealed, target, last=True):
                raise AgePayloadError(f"payload chunk {self._counter} failed authentication")
        self._counter += 1
        self._done = last
        return len(target)

    def _open(self, sealed: memoryview, target: memoryview, last: bool) -> bool:
        """Whether the chunk authenticated; only then does target hold its plaintext."""
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            self._aead.decrypt_into(nonce, sealed, None, target)
        except InvalidTag:
            return False
        return True

    def _fill(self, raise_now: bool) -> bool:
        """Whether plaintext is pending; an error waits while earlier plaintext is returned."""
        if self._pending:
            return True
        if self._error is None and not self._done:
            try:
                self._pending = self._next_block()
                return True
            except AgePayloadError as exc:
                self._error = exc
        if self._error is not None and raise_now:
            raise self._error
        return False

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed AgeReader")
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(out) and self._fill(raise_now=not filled):
            size = min(len(out) - filled, len(self._pending))
            out[filled : filled + size] = self._pending[:size]
            self._pending = self._pending[size:]
            filled += size
        return filled

    def read(self, size: int | None = -1) -> bytes:
        """At most size bytes, fewer at a block's end: one copy, where RawIOBase makes two."""
        if size is None or size < 0:
            return self.readall()
        if self.closed:
            raise ValueError("read from a closed AgeReader")
        if not size or not self._fill(raise_now=True):
            return b""
        data, self._pending = self._pending[:size], self._pending[size:]
        return bytes(data)

    def readall(self) -> bytes:
        parts = []
        while self._fill(raise_now=True):
            parts.append(self._pending)
            self._pending = memoryview(b"")
        return b"".join(parts)


def encrypt_bytes(
    data: bytes, passphrase: str | bytes, work_factor: int = DEFAULT_WORK_FACTOR
) -> bytes:
    sink = io.BytesIO()
    with AgeWriter.for_passphrase(sink, passphrase, work_factor) as writer:
        writer.write(data)
    return sink.getvalue()


def decrypt_bytes(
    data: bytes, passphrase: str | bytes | None = None, identities: Sequence[str] | None = None
) -> bytes:
    return AgeReader(io.BytesIO(data), passphrase, identities).readall()


# --- re-keying: the same file key, wrapped for another passphrase or other recipients --------
# Only the header changes: the payload (its nonce and every chunk) stays byte for byte, so a
# re-keyed file is the old payload behind a new header, and no chunk is decrypted.


@dataclass(frozen=True)
class RekeyedHeader:
    old_length: int  # bytes of the header read, its MAC line included
    header: bytes  # the header that replaces them, wrapping the same file key


@dataclass(frozen=True)
class NewKey:
    """What a re-keyed header is wrapped for: a passphrase or recipients, never both."""

    passphrase: str | bytes | None = field(default=None, repr=False)
    recipients: tuple[str, ...] = ()
    work_factor: int = DEFAULT_WORK_FACTOR  # for a passphrase

    def __post_init__(self) -> None:
        if (self.passphrase is None) == (not self.recipients):
            raise ValueError("a new key is a passphrase or recipients, exactly one of them")
        if self.passphrase is not None and not self.passphrase:
            raise ValueError("an empty passphrase would protect nothing")
        if not 1 <= self.work_factor <= MAX_WORK_FACTOR:
            raise ValueError(f"work factor must be 1..{MAX_WORK_FACTOR}")
        for text in self.recipients:
            _parse_recipient(text)


def rekey_header(
    head: bytes,
    new_key: NewKey,
    passphrase: str | bytes | None = None,
    identities: Sequence[str] | None = None,
    max_work_factor: int = MAX_WORK_FACTOR,
) -> RekeyedHeader:
    """The header of head (a file's first bytes, its whole header at least) wrapped anew.

    The file key is opened with passphrase or identities, as AgeReader does, and the same
    errors come out: AgeHeaderError, AgeNoMatch, AgeHMACError. A new passphrase's scrypt needs
    no file key, so it runs on a second thread while this one opens the old header: the wall
    time of two scrypts is about that of one (both release the GIL).
    """
    secret, keys = _opening_keys(passphrase, identities)
    source = _Source(io.BytesIO(head))
    parsed = _read_header(source)
    with ThreadPoolExecutor(1, thread_name_prefix="age-new-scrypt") as pool:
        wrap = (pool.submit(PassphraseKey.derive, new_key.passphrase, new_key.work_factor)
                if new_key.passphrase is not None else None)
        file_key = _unwrap_file_key(parsed, secret, keys, max_work_factor)
        if wrap is not None:
            stanzas = [wrap.result().stanza(file_key)]
        else:
            stanzas = [_x25519_stanza(_parse_recipient(text), file_key)
                       for text in new_key.recipients]
    return RekeyedHeader(source.header_size, _sealed_header(file_key, stanzas))


def header_opens(
    head: bytes,
    passphrase: str | bytes | None = None,
    identities: Sequence[str] | None = None,
    max_work_factor: int = MAX_WORK_FACTOR,
) -> bool:
    """Whether the header in head opens with passphrase or identities; a damaged header
    raises as AgeReader would (AgeHeaderError, AgeHMACError)."""
    secret, keys = _opening_keys(passphrase, identities)
    try:
        _unwrap_file_key(_read_header(_Source(io.BytesIO(head))), secret, keys,
                         max_work_factor)
    except AgeNoMatch:
        return False
    return True


def header_stanza_types(head: bytes) -> list[str]:
    """The type of each stanza in the header in head (`scrypt`, `X25519`, ...), in order.

    Recipients cannot be told from an X25519 stanza without their identity, so this is all
    that can be known of whom a header is for without a key."""
    stanzas, _, _ = _read_header(_Source(io.BytesIO(head)))
    return [args[0].decode("ascii") for args, _ in stanzas]
