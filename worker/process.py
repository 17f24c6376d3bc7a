"""What a worker process is set up with, and what it gives back after each task.

A backup runs its pipeline on threads of its own (zstd, encryption, hash, disk), and each
passphrase backup starts with scrypt, 256 MiB at work factor 18. Whatever the process keeps
from one task is therefore added to the next task's scrypt peak. Measured with
`bench/worker_memory.py --count 20` (one pool process, 1 GiB each), the peak climbed from 321
to 462 MiB, because of two things:

- glibc's malloc gives each new thread an arena of its own. What a thread frees at the top of
  its arena stays resident up to a trim threshold that glibc raises as large blocks come and
  go (up to 64 MiB), and malloc_trim leaves the top of such an arena alone: 60 to 70 MiB
  stayed in five arenas. With one arena, everything freed lands where malloc_trim(0) gives it
  back to the system.
- a backup's stages form reference cycles (a handoff and its thread), which hold the storage
  writer and its 4 MiB direct-I/O buffer until a full collection, which a worker with
  Celery's many long-lived objects rarely runs by itself: 4 MiB more after every backup.

With one arena and a release after each task that grew the process, every backup peaks where
the first one does: the idle process plus scrypt. The idle process is what the worker's main
process held when it forked the pool, which is why `h4backup worker` starts Celery's worker
without Celery's command line (cli/main.py): 52 MiB between tasks rather than 66, and peaks of
about 308 MiB.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable
from functools import cache

# mallopt's parameter number for the most arenas (glibc's malloc.h).
_M_ARENA_MAX = -8
# One arena: the pipeline's threads allocate a few thousand large blocks per GiB, too few for
# its lock to cost anything measurable, and all that is freed can then be given back.
WORKER_ARENAS = 1


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library of this process, if it is glibc (mallopt and malloc_trim)."""
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(count: int = WORKER_ARENAS) -> bool:
    """Caps glibc's malloc arenas; to be called before the threads that would take more
    start. False where the C library is not glibc or refuses."""
    libc = _libc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, count) == 1)


def release_memory() -> None:
    """Frees what cycles still hold, then gives the free pages of every arena back."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def resident_bytes() -> int:
    """This process's resident set now (one read of /proc, some microseconds)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemoryKeeper:
    """Gives memory back after a task that left the process larger than the last release did.

    A full collection costs about 10 ms in a worker: after every task it would halve the rate
    of small backups, while a task that grew the process by less than `slack` is not worth
    it. A large backup always grows it by more (its arenas, its 4 MiB disk buffer).
    """

    def __init__(self, slack: int = 4 << 20,
                 release: Callable[[], None] = release_memory,
                 resident: Callable[[], int] = resident_bytes) -> None:
        self.slack, self._release, self._resident = slack, release, resident
        self._floor: int | None = None  # the resident set the last release left

    def after_task(self) -> bool:
        """Releases if the process grew past the floor by more than the slack; whether it did."""
        if self._floor is not None and self._resident() <= self._floor + self.slack:
            return False
        self._release()
        # The floor may rise too (a lazy import, a cache): then releases stay rare.
        self._floor = self._resident()
        return True


def lower_priority(nice: int) -> int:
    """Runs this process, and the pool processes and threads it starts afterwards, at least
    at `nice`; a process already nicer stays so (raising a priority takes privileges).
    Returns the nice level now in force."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)
