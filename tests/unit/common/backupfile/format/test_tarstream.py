import io
import random
import tarfile

import pytest

from common.backupfile.format.tarstream import TarStream
from common.backupfile.read.plainstream import PlainStream

NAMES = ["a.txt", "dir/" + "long" * 40 + ".bin", "naïve ☃.txt", "empty"]


def members() -> list[tuple[tarfile.TarInfo, bytes]]:
    found = []
    for number, name in enumerate(NAMES):
        data = random.randbytes(random.choice([0, 1, 511, 512, 70_000])) if number else b"x"
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.uname = len(data), 1_700_000_000, "user"
        found.append((info, data))
    return found


def with_tarfile(entries) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data))
    return sink.getvalue()


@pytest.mark.parametrize("buffer_size", [1024, 4096, 1 << 20])
def test_tar_stream_writes_the_bytes_tarfile_writes(buffer_size) -> None:
    entries, sink = members(), io.BytesIO()
    stream = TarStream(sink, buffer_size)
    for info, data in entries:
        stream.header(info)
        stream.write(data)
        stream.pad()
    stream.end()
    assert sink.getvalue() == with_tarfile(entries)


def blocks(data: bytes, size: int):
    return lambda: iter([data[i:i + size] for i in range(0, len(data), size)])


def test_plain_stream_reads_across_blocks_and_seeks_forward() -> None:
    data = random.randbytes(10_000)
    stream = PlainStream(blocks(data, 999))
    assert stream.read(10) == data[:10]
    stream.seek(5000)
    assert stream.tell() == 5000
    assert stream.read(3000) == data[5000:8000]
    assert bytes(stream.take(10_000)) == data[8000:8991]
    assert stream.read() == data[8991:]
    assert stream.take(1) == b""
    stream.close()


def test_plain_stream_refuses_to_seek_back() -> None:
    stream = PlainStream(blocks(b"abcdef", 2))
    stream.read(4)
    with pytest.raises(tarfile.ReadError):
        stream.seek(1)
    stream.close()


def test_tarfile_reads_members_through_a_plain_stream() -> None:
    entries = members()
    stream = PlainStream(blocks(with_tarfile(entries), 4096))
    with tarfile.open(fileobj=stream, mode="r:") as tar:
        got = [(member.name, tar.extractfile(member).read()) for member in tar]
    assert got == [(info.name, data) for info, data in entries]
    stream.close()
