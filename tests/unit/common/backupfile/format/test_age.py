"""age files against the C2SP test vectors, pyrage, the age CLI, tampering and memory bounds."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pyrage
import pytest

from common.backupfile.format import age as age_module
from common.backupfile.format.age import (
    CHUNK_SIZE,
    MAX_WORK_FACTOR,
    AgeError,
    AgeHeaderError,
    AgeHMACError,
    AgeNoMatch,
    AgePayloadError,
    AgeReader,
    AgeWriter,
    NewKey,
    decrypt_bytes,
    encrypt_bytes,
    generate_x25519_identity,
    header_opens,
    header_stanza_types,
    rekey_header,
)
from tests.tools import require_tool

PASSPHRASE = "correct horse battery staple"
LOW_WORK_FACTOR = 10  # fast enough for many cases, still a real scrypt stanza
SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, (1 << 20) + 12345]
SEALED = CHUNK_SIZE + 16


def _testkit_dir() -> Path:
    """The official age vectors, kept in tests/data (0BSD/CC0: see their README)."""
    override = os.environ.get("H4_AGE_TESTKIT")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[4] / "data" / "age-testkit"


TESTKIT = _testkit_dir()
VECTORS = sorted(p.name for p in TESTKIT.glob("*") if p.name != "README.md")
SCRYPT_VECTORS = [name for name in VECTORS if name.startswith("scrypt")]
OTHER_VECTORS = [name for name in VECTORS if not name.startswith("scrypt")]
OUTCOMES: dict[str, type[AgeError] | None] = {
    "success": None,
    "no match": AgeNoMatch,
    "HMAC failure": AgeHMACError,
    "header failure": AgeHeaderError,
    "payload failure": AgePayloadError,
    "armor failure": AgeError,
}


def _require_testkit() -> None:
    if not VECTORS:
        message = f"age test vectors not found at {TESTKIT} (set H4_AGE_TESTKIT)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _load_vector(name: str) -> tuple[dict[str, list[str]], bytes]:
    head, _, body = (TESTKIT / name).read_bytes().partition(b"\n\n")
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return meta, body


def _decrypt(data: bytes, **kwargs: object) -> tuple[bytes, AgeError | None]:
    """Plaintext released before any AgeError, and that error; other exceptions propagate."""
    released = bytearray()
    try:
        reader = AgeReader(io.BytesIO(data), **kwargs)  # type: ignore[arg-type]
        while piece := reader.read(10000):
            released += piece
    except AgeError as exc:
        return bytes(released), exc
    return bytes(released), None


def _check_outcome(meta: dict[str, list[str]], released: bytes, error: AgeError | None) -> None:
    expected = OUTCOMES[meta["expect"][0]]
    if expected is None:
        assert error is None, f"unexpected {error!r}"
    else:
        assert isinstance(error, expected), f"expected {expected.__name__}, got {error!r}"
    if "payload" in meta:
        assert hashlib.sha256(released).hexdigest() == meta["payload"][0]
    else:
        assert released == b""


@pytest.mark.parametrize("name", SCRYPT_VECTORS or ["<missing>"])
def test_scrypt_vector(name: str) -> None:
    _require_testkit()
    meta, body = _load_vector(name)
    released, error = _decrypt(body, passphrase=meta["passphrase"][0])
    _check_outcome(meta, released, error)


@pytest.mark.parametrize("name", OTHER_VECTORS or ["<missing>"])
def test_other_vector(name: str) -> None:
    _require_testkit()
    meta, body = _load_vector(name)
    identities = meta.get("identity", [])
    x25519 = [key for key in identities if key.startswith("AGE-SECRET-KEY-1")]
    armored = meta.get("armored") == ["yes"]
    if x25519 and len(x25519) == len(identities) and not armored:
        released, error = _decrypt(body, identities=x25519)
        _check_outcome(meta, released, error)
        return
    # Armor, hybrid (ML-KEM) and other recipient types are unsupported: a clean AgeError.
    kwargs = {"identities": x25519} if x25519 else {"passphrase": "password"}
    released, error = _decrypt(body, **kwargs)
    assert isinstance(error, AgeError)
    assert released == b""
    if "hybrid" in name or "mlkem" in name or "tag" in name.split("_")[0]:
        assert isinstance(error, AgeNoMatch | AgeHeaderError)


def test_testkit_is_complete() -> None:
    _require_testkit()
    assert len(SCRYPT_VECTORS) >= 20 and len(OTHER_VECTORS) >= 100


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed + size).randbytes(size)


def _write_in_pieces(writer: AgeWriter, data: bytes) -> None:
    # Odd piece sizes cross chunk boundaries in every way the buffering can meet them.
    view, pieces = memoryview(data), [1, 4095, CHUNK_SIZE, 100_000, 7, CHUNK_SIZE - 1]
    offset, i = 0, 0
    while offset < len(view):
        step = pieces[i % len(pieces)]
        assert writer.write(view[offset : offset + step]) == min(step, len(view) - offset)
        offset, i = offset + step, i + 1


def _encrypt(data: bytes, work_factor: int = LOW_WORK_FACTOR) -> bytes:
    sink = io.BytesIO()
    with AgeWriter.for_passphrase(sink, PASSPHRASE, work_factor) as writer:
        _write_in_pieces(writer, data)
    return sink.getvalue()


def _payload_start(ciphertext: bytes) -> int:
    """Offset of the first sealed chunk: after the MAC line and the 16-byte nonce."""
    return ciphertext.index(b"\n", ciphertext.index(b"\n--- ") + 1) + 1 + 16


@pytest.mark.parametrize("size", SIZES)
def test_writer_output_decrypts_with_pyrage(size: int) -> None:
    data = _payload(size)
    ciphertext = _encrypt(data)
    assert len(ciphertext) - _payload_start(ciphertext) == size + 16 * max(
        1, -(-size // CHUNK_SIZE)
    )
    assert pyrage.passphrase.decrypt(ciphertext, PASSPHRASE) == data


def test_pyrage_passphrase_file_reads_back() -> None:
    # pyrage picks its own (slow) work factor, so a single case.
    data = _payload((1 << 20) + 3)
    assert decrypt_bytes(pyrage.passphrase.encrypt(data, PASSPHRASE), PASSPHRASE) == data


@pytest.mark.parametrize("size", SIZES)
def test_recipients_output_decrypts_with_pyrage(size: int) -> None:
    data = _payload(size)
    identity, recipient = generate_x25519_identity()
    _, other = generate_x25519_identity()
    sink = io.BytesIO()
    with AgeWriter.for_recipients(sink, [other, recipient]) as writer:
        _write_in_pieces(writer, data)
    key = pyrage.x25519.Identity.from_str(identity)
    assert pyrage.decrypt(sink.getvalue(), [key]) == data


@pytest.mark.parametrize("size", SIZES)
def test_pyrage_x25519_file_reads_back(size: int) -> None:
    data = _payload(size)
    key = pyrage.x25519.Identity.generate()
    ciphertext = pyrage.encrypt(data, [key.to_public()])
    reader = AgeReader(io.BytesIO(ciphertext), identities=[str(key)])
    out = bytearray()
    buffer = bytearray(30_000)
    while count := reader.readinto(buffer):
        out += buffer[:count]
    assert out == data


def test_generated_identity_matches_pyrage() -> None:
    identity, recipient = generate_x25519_identity()
    assert identity.startswith("AGE-SECRET-KEY-1") and recipient.startswith("age1")
    assert str(pyrage.x25519.Identity.from_str(identity).to_public()) == recipient


@pytest.mark.parametrize("size", [0, 65536, 3 * 65536 + 5])
def test_round_trip_read_styles(size: int) -> None:
    data = _payload(size)
    ciphertext = _encrypt(data)
    assert decrypt_bytes(ciphertext, PASSPHRASE) == data
    reader = AgeReader(io.BytesIO(ciphertext), PASSPHRASE)
    assert reader.readable()
    first = reader.read(100)
    assert first + reader.read() == data
    assert reader.read(10) == b""
    assert decrypt_bytes(encrypt_bytes(data, PASSPHRASE, LOW_WORK_FACTOR), PASSPHRASE) == data
    assert io.BufferedReader(AgeReader(io.BytesIO(ciphertext), PASSPHRASE)).read() == data


class _Trickle:
    """A source that, like a pipe, returns fewer bytes than asked for."""

    def __init__(self, data: bytes) -> None:
        self._data, self._offset, self._sizes = data, 0, random.Random(7)

    def read(self, size: int) -> bytes:
        step = min(size, self._sizes.choice([1, 5, 999, 70_000]))
        self._offset += step
        return self._data[self._offset - step : self._offset]


def test_short_reads_from_source() -> None:
    data = _payload(3 * CHUNK_SIZE + 1)
    assert AgeReader(_Trickle(_encrypt(data)), PASSPHRASE).read() == data
    released, error = _decrypt(_encrypt(data)[:-1], passphrase=PASSPHRASE)
    assert isinstance(error, AgePayloadError) and released == data[: 3 * CHUNK_SIZE]


def _expect(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Run an expect script; the passphrase reaches it through the environment only."""
    prelude = """
set timeout 60
proc answer {prompt} {
    expect {
        $prompt { send -- "$::env(H4_AGE_PASSPHRASE)\\r" }
        timeout { exit 101 }
        eof { exit 102 }
    }
}
"""
    ending = "\nexpect eof\nlassign [wait] pid spawn_id os_error status\nexit $status\n"
    full_env = {**os.environ, "H4_AGE_PASSPHRASE": PASSPHRASE, **env}
    return subprocess.run(
        [require_tool("expect"), "-c", prelude + script + ending],
        env=full_env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_age_cli_decrypts_passphrase_file(tmp_path: Path) -> None:
    age_cli = require_tool("age")
    data = _payload(3 * 65536 + 77)
    source, target = tmp_path / "in.age", tmp_path / "out"
    source.write_bytes(_encrypt(data, work_factor=12))
    script = "spawn -noecho $env(H4_AGE) -d -o $env(H4_OUT) $env(H4_IN)\nanswer {Enter passphrase}"
    result = _expect(script, {"H4_AGE": age_cli, "H4_IN": str(source), "H4_OUT": str(target)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.read_bytes() == data


def test_age_cli_passphrase_file_reads_back(tmp_path: Path) -> None:
    age_cli = require_tool("age")
    data = _payload(65536 * 2)
    source, target = tmp_path / "in", tmp_path / "out.age"
    source.write_bytes(data)
    script = (
        "spawn -noecho $env(H4_AGE) -e -p -o $env(H4_OUT) $env(H4_IN)\n"
        "answer {Enter passphrase}\nanswer {Confirm passphrase}"
    )
    result = _expect(script, {"H4_AGE": age_cli, "H4_IN": str(source), "H4_OUT": str(target)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSPHRASE.encode() not in target.read_bytes()
    assert decrypt_bytes(target.read_bytes(), PASSPHRASE) == data


def test_age_cli_decrypts_recipients_file(tmp_path: Path) -> None:
    age_cli = require_tool("age")
    data = _payload(65537)
    identity, recipient = generate_x25519_identity()
    (tmp_path / "key.txt").write_text(identity + "\n")
    with (
        (tmp_path / "in.age").open("wb") as sink,
        AgeWriter.for_recipients(sink, [recipient]) as writer,
    ):
        writer.write(data)
    command = [age_cli, "-d", "-i", "key.txt", "-o", "out", "in.age"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert (tmp_path / "out").read_bytes() == data


def test_age_cli_recipient_file_reads_back(tmp_path: Path) -> None:
    age_cli = require_tool("age")
    data = _payload(70000)
    identity, recipient = generate_x25519_identity()
    (tmp_path / "in").write_bytes(data)
    command = [age_cli, "-e", "-r", recipient, "-o", "out.age", "in"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert decrypt_bytes((tmp_path / "out.age").read_bytes(), identities=[identity]) == data


def test_flipped_payload_byte_fails_after_first_chunk() -> None:
    data = _payload(3 * CHUNK_SIZE)
    damaged = bytearray(_encrypt(data))
    damaged[_payload_start(damaged) + SEALED + 1000] ^= 0x01
    released, error = _decrypt(bytes(damaged), passphrase=PASSPHRASE)
    assert isinstance(error, AgePayloadError)
    assert released == data[:CHUNK_SIZE]


@pytest.mark.parametrize("size", [2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 10])
def test_truncation_at_chunk_boundary_fails(size: int) -> None:
    data = _payload(size)
    ciphertext = _encrypt(data)
    released, error = _decrypt(
        ciphertext[: _payload_start(ciphertext) + SEALED], passphrase=PASSPHRASE
    )
    assert isinstance(error, AgePayloadError)
    assert released == data[:CHUNK_SIZE]
    released, error = _decrypt(ciphertext[: _payload_start(ciphertext)], passphrase=PASSPHRASE)
    assert isinstance(error, AgePayloadError) and released == b""


@pytest.mark.parametrize(
    ("size", "extra"),
    [(2 * CHUNK_SIZE, b"\x00"), (2 * CHUNK_SIZE, b"garbage" * 10_000), (CHUNK_SIZE + 3, b"\x00")],
)
def test_trailing_bytes_fail(size: int, extra: bytes) -> None:
    data = _payload(size)
    released, error = _decrypt(_encrypt(data) + extra, passphrase=PASSPHRASE)
    assert isinstance(error, AgePayloadError)
    # A full final chunk authenticates before the extra bytes show up; a short one cannot.
    assert released == (data if size % CHUNK_SIZE == 0 else data[: size - size % CHUNK_SIZE])


def test_work_factor_above_cap_is_refused_without_scrypt() -> None:
    ciphertext = _encrypt(b"x")
    stanza_end = ciphertext.index(b"\n", len(b"age-encryption.org/v1\n"))
    assert ciphertext[stanza_end - 3 : stanza_end] == b" 10"
    raised = (
        ciphertext[: stanza_end - 2] + str(MAX_WORK_FACTOR + 1).encode() + ciphertext[stanza_end:]
    )
    started = time.monotonic()
    with pytest.raises(AgeHeaderError):
        AgeReader(io.BytesIO(raised), PASSPHRASE)
    with pytest.raises(AgeHeaderError):
        AgeReader(io.BytesIO(ciphertext), PASSPHRASE, max_work_factor=LOW_WORK_FACTOR - 1)
    assert time.monotonic() - started < 0.5


def test_wrong_secrets_fail_at_construction() -> None:
    with pytest.raises(AgeNoMatch):
        AgeReader(io.BytesIO(_encrypt(b"data")), "wrong passphrase")
    identity, _ = generate_x25519_identity()
    _, recipient = generate_x25519_identity()
    sink = io.BytesIO()
    AgeWriter.for_recipients(sink, [recipient]).close()
    with pytest.raises(AgeNoMatch):
        AgeReader(io.BytesIO(sink.getvalue()), identities=[identity])
    with pytest.raises(AgeNoMatch):
        AgeReader(io.BytesIO(sink.getvalue()), passphrase=PASSPHRASE)


def test_altered_header_fails_mac() -> None:
    identity, recipient = generate_x25519_identity()
    sink = io.BytesIO()
    with AgeWriter.for_recipients(sink, [recipient]) as writer:
        writer.write(b"payload")
    ciphertext = sink.getvalue()
    footer = ciphertext.index(b"\n--- ") + 1
    altered = ciphertext[:footer] + b"-> grease x\n\n" + ciphertext[footer:]
    with pytest.raises(AgeHMACError):
        AgeReader(io.BytesIO(altered), identities=[identity])


def test_armored_and_foreign_input_fail_cleanly() -> None:
    armored = b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24=\n"
    for data in (armored, b"", b"age-encryption.org/v1", b"\xff" * 100_000):
        with pytest.raises(AgeHeaderError):
            AgeReader(io.BytesIO(data), PASSPHRASE)


def test_bad_keys_are_rejected() -> None:
    _, recipient = generate_x25519_identity()
    bad = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    with pytest.raises(ValueError, match=bad):
        AgeWriter.for_recipients(io.BytesIO(), [recipient, bad])
    with pytest.raises(ValueError):
        AgeReader(io.BytesIO(b""), identities=["AGE-SECRET-KEY-1QQQQ"])
    with pytest.raises(ValueError):
        AgeReader(io.BytesIO(b""))


def test_writer_lifecycle() -> None:
    sink = io.BytesIO()
    writer = AgeWriter.for_passphrase(sink, PASSPHRASE, LOW_WORK_FACTOR)
    header_size = len(sink.getvalue())
    assert header_size > 0 and writer.writable()
    writer.write(bytearray(b"abc"))
    writer.close()
    writer.close()
    assert not sink.closed
    assert len(sink.getvalue()) == header_size + 3 + 16
    with pytest.raises(ValueError):
        writer.write(b"more")
    assert decrypt_bytes(sink.getvalue(), PASSPHRASE) == b"abc"


def test_writer_failure_leaves_stream_unterminated() -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), AgeWriter.for_passphrase(sink, PASSPHRASE, 10) as writer:
        writer.write(_payload(3 * CHUNK_SIZE))
        raise RuntimeError("source failed")
    released, error = _decrypt(sink.getvalue(), passphrase=PASSPHRASE)
    assert isinstance(error, AgePayloadError)
    assert len(released) < 3 * CHUNK_SIZE


class _CountingSink:
    def __init__(self) -> None:
        self.total = self.largest = 0

    def write(self, data: bytes) -> int:
        self.total += len(data)
        self.largest = max(self.largest, len(data))
        return len(data)


class _EncryptingSource:
    """Ciphertext produced on demand, so no side of the pipe ever holds the stream."""

    def __init__(self, size: int, block: bytes) -> None:
        self._pending, self._left, self._block = bytearray(), size, block
        self.plain = hashlib.sha256()
        self._writer = AgeWriter.for_passphrase(self, PASSPHRASE, LOW_WORK_FACTOR)

    def write(self, data: bytes) -> None:
        self._pending += data

    def read(self, size: int) -> bytes:
        while len(self._pending) < size and not self._writer.closed:
            piece = self._block[: min(self._left, len(self._block))]
            self._left -= len(piece)
            self.plain.update(piece)
            self._writer.write(piece) if piece else self._writer.close()
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out


def test_streaming_memory_stays_bounded() -> None:
    size, block = 64 << 20, os.urandom(1 << 20)
    sink = _CountingSink()
    tracemalloc.start()
    try:
        with AgeWriter.for_passphrase(sink, PASSPHRASE, LOW_WORK_FACTOR) as writer:
            for _ in range(size // len(block)):
                writer.write(block)
        source = _EncryptingSource(size, block)
        reader, plain = AgeReader(source, PASSPHRASE), hashlib.sha256()
        buffer = bytearray(256 * 1024)
        while count := reader.readinto(buffer):
            plain.update(memoryview(buffer)[:count])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sink.total > size and sink.largest <= 2 << 20
    assert plain.digest() == source.plain.digest()
    assert peak < 8 << 20, f"peak traced memory {peak} bytes"


def test_block_writes_reach_the_sink_as_one_sealed_block_each() -> None:
    """What the backup pipeline relies on: a write of whole chunks comes out as one buffer
    (the previous write's held-back chunk first), with no join and no small pieces."""
    writes: list[int] = []

    class Sink:
        def write(self, data: bytes) -> None:
            writes.append(len(data))
            sink.write(data)

    sink = io.BytesIO()
    data = _payload(3 * 16 * CHUNK_SIZE)
    with AgeWriter.for_passphrase(Sink(), PASSPHRASE, LOW_WORK_FACTOR) as writer:
        for start in range(0, len(data), 16 * CHUNK_SIZE):
            writer.write(data[start:start + 16 * CHUNK_SIZE])
    header = writes.pop(0)
    assert writes == [15 * SEALED, 16 * SEALED, 16 * SEALED, SEALED]
    assert decrypt_bytes(sink.getvalue(), PASSPHRASE) == data and header < 300


# --- re-keying a header ----------------------------------------------------------------------

def _rekeyed(ciphertext: bytes, new_key: NewKey, **old) -> bytes:
    rekeyed = rekey_header(ciphertext[:4096], new_key, **old)
    return rekeyed.header + ciphertext[rekeyed.old_length:]


def test_a_rekeyed_header_opens_the_same_payload_with_the_new_passphrase_only() -> None:
    data = _payload(3 * CHUNK_SIZE + 5)
    ciphertext = _encrypt(data)
    new = _rekeyed(ciphertext, NewKey("new words", work_factor=LOW_WORK_FACTOR),
                   passphrase=PASSPHRASE)
    assert new[-len(data):] == ciphertext[-len(data):]
    assert len(new) == len(ciphertext)
    assert pyrage.passphrase.decrypt(new, "new words") == data
    assert decrypt_bytes(new, "new words") == data
    with pytest.raises(AgeNoMatch):
        decrypt_bytes(new, PASSPHRASE)


def test_a_rekeyed_header_for_recipients_opens_with_each_identity() -> None:
    data = _payload(70_000)
    ciphertext = _encrypt(data)
    keys = [generate_x25519_identity() for _ in range(2)]
    new = _rekeyed(ciphertext, NewKey(recipients=tuple(r for _, r in keys)),
                   passphrase=PASSPHRASE)
    for identity, _ in keys:
        assert decrypt_bytes(new, identities=[identity]) == data
        assert header_opens(new[:4096], identities=[identity])
    assert header_stanza_types(new[:4096]) == ["X25519", "X25519"]
    assert not header_opens(new[:4096], PASSPHRASE)


def test_rekeying_from_an_identity() -> None:
    identity, recipient = generate_x25519_identity()
    sink = io.BytesIO()
    with AgeWriter.for_recipients(sink, [recipient]) as writer:
        writer.write(b"payload")
    new = _rekeyed(sink.getvalue(), NewKey("new words", work_factor=LOW_WORK_FACTOR),
                   identities=[identity])
    assert decrypt_bytes(new, "new words") == b"payload"
    assert header_stanza_types(new) == ["scrypt"]


def test_rekeying_fails_as_reading_does() -> None:
    ciphertext = _encrypt(b"x", work_factor=12)
    new_key = NewKey("new words", work_factor=LOW_WORK_FACTOR)
    with pytest.raises(AgeNoMatch):
        rekey_header(ciphertext, new_key, passphrase="wrong")
    with pytest.raises(AgeHeaderError):
        rekey_header(ciphertext, new_key, passphrase=PASSPHRASE, max_work_factor=11)
    with pytest.raises(AgeHeaderError):
        rekey_header(b"not age\n" + ciphertext, new_key, passphrase=PASSPHRASE)
    damaged = bytearray(ciphertext)
    damaged[ciphertext.index(b"\n--- ") + 6] ^= 0x01
    with pytest.raises((AgeHMACError, AgeHeaderError)):
        rekey_header(bytes(damaged), new_key, passphrase=PASSPHRASE)


def test_the_new_passphrase_scrypt_runs_beside_the_old_one(monkeypatch) -> None:
    ciphertext = _encrypt(b"x")
    threads = []
    real = age_module._scrypt_key

    def recording(passphrase, salt, work_factor):
        threads.append(threading.current_thread().name)
        return real(passphrase, salt, work_factor)

    monkeypatch.setattr(age_module, "_scrypt_key", recording)
    rekey_header(ciphertext, NewKey("new words", work_factor=LOW_WORK_FACTOR),
                 passphrase=PASSPHRASE)
    assert len(threads) == 2 and len(set(threads)) == 2


@pytest.mark.parametrize("fields", [{}, {"passphrase": "a", "recipients": ("x",)},
                                    {"passphrase": ""}, {"passphrase": "a", "work_factor": 0},
                                    {"recipients": ("age1nope",)}])
def test_a_new_key_is_one_valid_passphrase_or_valid_recipients(fields) -> None:
    with pytest.raises(ValueError):
        NewKey(**fields)
