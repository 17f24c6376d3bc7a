"""Work handed between two threads through a small bounded queue, failures included.

The pipelines overlap reading, compressing, encrypting, hashing and writing: zstandard,
hashlib and os release the GIL on large buffers, so a second thread doing some of that work
really runs beside the first. The queue's bound keeps memory small and constant; a failure on
either side reaches the other within a tenth of a second instead of leaving it waiting.

No wait here is unbounded, and a handoff can be stopped from any state. Stopping sets an event
that every wait polls ten times a second, whether it waits for an item, for room in the queue
or for the other thread to end; a stopped consumer refuses items, so a stage feeding it fails
instead of waiting for room that never comes. A stop gives the thread `STOP_SECONDS` to finish
the item in hand, then leaves it behind (a daemon that ends once that item is done). This
matters because a Celery pool process turns SIGTERM into a SystemExit raised wherever its main
thread happens to be, inside these methods and inside `Thread.start` included.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Generic, TypeVar

Item = TypeVar("Item")
_POLL = 0.1
# How long a stop waits for a thread to finish the item in hand.
STOP_SECONDS = 5.0


class HandoffStopped(Exception):
    """The other side of a handoff was stopped, or ended without a word."""


class _End:
    """Put after the last item."""


_END = _End()


class Consumer(Generic[Item]):
    """Calls consume(item) on a background thread for each item put, in order.

    Use as a context manager: leaving it normally waits for every item and raises what the
    thread raised; leaving it with an exception, or being interrupted while waiting, stops the
    thread and drops what is still queued. Consumers feeding one another share `stop`, so
    that stopping one stops them all. While the thread that entered waits (for room, or for
    the queue to drain), it calls `checkpoint` ten times a second: raising from it, say on a
    cancel, stops the wait even when the consumer is stuck.
    """

    def __init__(self, consume: Callable[[Item], object], name: str, depth: int, *,
                 stop: threading.Event | None = None,
                 checkpoint: Callable[[], None] | None = None,
                 stop_seconds: float | None = None) -> None:
        self._consume = consume
        self._queue: queue.Queue[Item | _End] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._stop = stop if stop is not None else threading.Event()
        self._checkpoint, self._caller = checkpoint, threading.get_ident()
        self._stop_seconds = STOP_SECONDS if stop_seconds is None else stop_seconds
        self._daemon = _Daemon(name, self._drain)

    def __enter__(self) -> Consumer[Item]:
        self._caller = threading.get_ident()
        self._daemon.start(self._stop)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if exc_type is not None:
            self.abandon()
            return
        try:
            self.put(_END)
            self._wait_for_thread()
        except BaseException:
            self.abandon()
            raise
        self._raise_problem()

    def put(self, item: Item | _End) -> None:
        """Queues item; raises what the thread raised, or HandoffStopped once stopped."""
        while True:
            self._raise_problem()
            with suppress(queue.Full):
                self._queue.put(item, timeout=_POLL)
                return
            self._waited()

    def abandon(self) -> bool:
        """Stops the thread, dropping what it never took; False if it was still busy with an
        item after stop_seconds (it ends by itself once that item is done)."""
        self._stop.set()
        # Nothing is put to wake the thread: it polls the stop, and a put could wait forever
        # on a queue that another stage keeps full.
        return self._daemon.wait_ended(self._stop_seconds)

    def _wait_for_thread(self) -> None:
        # In polls, so that a failure, a stop or an interrupt is seen while the thread drains.
        while not self._daemon.wait_ended(_POLL):
            self._raise_problem()
            self._waited()

    def _waited(self) -> None:
        # Only on the caller's thread: the stage feeding this one puts from a thread of its own.
        if self._checkpoint is not None and threading.get_ident() == self._caller:
            self._checkpoint()

    def _raise_problem(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stop.is_set():
            raise HandoffStopped(f"{self._daemon.name} was stopped")

    def _drain(self) -> None:
        try:
            while not isinstance(item := self._next(), _End):
                self._consume(item)
        except BaseException as error:  # handed to the putting thread, which raises it
            self._failure = error

    def _next(self) -> Item | _End:
        """The next item, or _END once stopped (what is still queued is dropped)."""
        while not self._stop.is_set():
            with suppress(queue.Empty):
                item = self._queue.get(timeout=_POLL)
                return _END if self._stop.is_set() else item
        return _END


class Producer(Generic[Item]):
    """Runs an iterator on a background thread, up to depth items ahead of `get`."""

    def __init__(self, produce: Callable[[], Iterator[Item]], name: str, depth: int,
                 stop_seconds: float | None = None) -> None:
        self._produce = produce
        self._queue: queue.Queue[Item | _End | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._stop_seconds = STOP_SECONDS if stop_seconds is None else stop_seconds
        self._done = False
        self._daemon = _Daemon(name, self._fill)
        self._daemon.start(self._stop)

    def get(self) -> Item | None:
        """The next item; None once the iterator is exhausted. Raises what it raised."""
        if self._done:
            return None
        item = self._take()
        if isinstance(item, _End | BaseException):
            self._done = True
            self._daemon.wait_ended(self._stop_seconds)
            if isinstance(item, BaseException):
                raise item
            return None
        return item

    def close(self) -> bool:
        """Stops the thread, whether or not everything was taken; False if it was still
        inside the iterator after stop_seconds (it ends by itself at its next item)."""
        self._stop.set()
        self._done = True
        return self._daemon.wait_ended(self._stop_seconds)

    def _take(self) -> Item | _End | BaseException:
        # In polls: a thread that was stopped, or that ended without a word, must not leave
        # the reader waiting for an item that will never come.
        while True:
            with suppress(queue.Empty):
                return self._queue.get(timeout=_POLL)
            if self._stop.is_set() or self._daemon.ended():
                with suppress(queue.Empty):  # its last word may have come meanwhile
                    return self._queue.get_nowait()
                return HandoffStopped(f"{self._daemon.name} ended without finishing")

    def _fill(self) -> None:
        try:
            for item in self._produce():
                if not self._offer(item):
                    return
            self._offer(_END)
        except BaseException as error:  # handed to the getting thread, which raises it
            self._offer(error)

    def _offer(self, item: Item | _End | BaseException) -> bool:
        while not self._stop.is_set():
            with suppress(queue.Full):
                self._queue.put(item, timeout=_POLL)
                return True
        return False


class _Daemon:
    """A daemon thread running target, and an event that says when it has ended.

    The event rather than Thread.join or is_alive: on Python 3.11 a join interrupted by a
    signal handler's exception marks the thread as ended although it still runs.
    """

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name, self._target = name, target
        self._started = False
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, stop: threading.Event) -> None:
        self._started = True
        try:
            self._thread.start()
        except BaseException:
            # An interrupt can land in start() once the thread already runs: stopped, it
            # ends instead of waiting for work that will never come.
            stop.set()
            raise

    def wait_ended(self, seconds: float) -> bool:
        """True once the thread has ended (or never started), waiting at most `seconds`."""
        return not self._started or self._ended.wait(seconds)

    def ended(self) -> bool:
        return self._ended.is_set()

    def _run(self) -> None:
        try:
            self._target()
        finally:
            # The target is the owner's bound method: kept, it ties the owner and this daemon
            # in a cycle that only a full collection frees, with all the owner holds (a
            # storage writer and its 4 MiB buffer).
            self._target = None
            self._ended.set()
