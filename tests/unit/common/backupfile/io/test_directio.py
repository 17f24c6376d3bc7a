import os
import random

import pytest

from common.backupfile.io import directio
from common.backupfile.io.directio import DirectWriter, aligned_buffer


def write_through(path, chunks, direct=True, buffer_size=64 << 10) -> DirectWriter:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = DirectWriter(fd, aligned_buffer(buffer_size), direct=direct)
        for chunk in chunks:
            writer.write(chunk)
        writer.finish()
    finally:
        os.close(fd)
    return writer


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65536, 65536 * 3 + 17, 1 << 20])
def test_every_byte_arrives_in_order_whatever_the_size(tmp_path, size) -> None:
    data = random.randbytes(size)
    cuts = sorted(random.sample(range(size + 1), min(size, 5)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    write_through(tmp_path / "f", chunks)
    assert (tmp_path / "f").read_bytes() == data


def test_a_filesystem_refusing_o_direct_gets_buffered_writes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(directio, "_set_direct", lambda fd, on: False)
    data = random.randbytes(200_000)
    writer = write_through(tmp_path / "f", [data])
    assert not writer.direct
    assert (tmp_path / "f").read_bytes() == data


def test_a_write_refused_under_o_direct_is_done_buffered(tmp_path, monkeypatch) -> None:
    real_write, refused = os.write, []

    def refuse_first_aligned_write(fd, data):
        if not refused and len(data) % directio.ALIGNMENT == 0 and len(data):
            refused.append(len(data))
            raise OSError(22, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(directio.os, "write", refuse_first_aligned_write)
    data = random.randbytes(300_000)
    writer = write_through(tmp_path / "f", [data])
    assert refused and not writer.direct
    assert (tmp_path / "f").read_bytes() == data


def test_other_write_errors_are_raised(tmp_path, monkeypatch) -> None:
    def full(_fd, _data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(directio.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        write_through(tmp_path / "f", [random.randbytes(200_000)])
