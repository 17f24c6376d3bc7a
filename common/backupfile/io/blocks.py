"""The block size every stage of a backup reads, writes and hands on: 1 MiB, large enough
that zstd, hashlib and os release the GIL for long stretches, small enough to stay in cache."""

COPY_SIZE = 1 << 20
