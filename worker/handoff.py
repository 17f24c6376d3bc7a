"""Work handed between two threads through a small bounded queue, failures included.

The pipelines overlap reading, compressing, encrypting, hashing and writing: zstandard,
hashlib and os release the GIL on large buffers, so a second thread doing some of that work
really runs beside the first. The queue's bound keeps memory small and constant; a failure on
either side reaches the other within a tenth of a second instead of leaving it waiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Generic, TypeVar

Item = TypeVar("Item")
_POLL = 0.1


class _End:
    """Put after the last item."""


_END = _End()


class Consumer(Generic[Item]):
    """Calls consume(item) on a background thread for each item put, in order.

    Use as a context manager: leaving it normally waits for every item and raises what the
    thread raised; leaving it with an exception drops what is still queued.
    """

    def __init__(self, consume: Callable[[Item], object], name: str, depth: int) -> None:
        self._consume = consume
        self._queue: queue.Queue[Item | _End] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)

    def __enter__(self) -> Consumer[Item]:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if exc_type is not None:
            self.abandon()
            return
        self.put(_END)
        self._thread.join()
        self._raise_failure()

    def put(self, item: Item | _End) -> None:
        # A timeout rather than a plain put: a consumer that died must not leave this thread
        # waiting forever on a full queue.
        while True:
            self._raise_failure()
            with suppress(queue.Full):
                self._queue.put(item, timeout=_POLL)
                return

    def abandon(self) -> list[Item]:
        """Stops the thread; returns the items it never took."""
        self._stopping = True
        dropped = _empty(self._queue)
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        return [item for item in dropped if not isinstance(item, _End)]

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _drain(self) -> None:
        try:
            while not isinstance(item := self._queue.get(), _End) and not self._stopping:
                self._consume(item)
        except BaseException as error:  # handed to the putting thread, which raises it
            self._failure = error


class Producer(Generic[Item]):
    """Runs an iterator on a background thread, up to depth items ahead of `get`."""

    def __init__(self, produce: Callable[[], Iterator[Item]], name: str, depth: int) -> None:
        self._produce = produce
        self._queue: queue.Queue[Item | _End | BaseException] = queue.Queue(maxsize=depth)
        self._stopping = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._fill, name=name, daemon=True)
        self._thread.start()

    def get(self) -> Item | None:
        """The next item; None once the iterator is exhausted. Raises what it raised."""
        if self._done:
            return None
        item = self._queue.get()
        if isinstance(item, _End | BaseException):
            self._done = True
            self._thread.join()
            if isinstance(item, BaseException):
                raise item
            return None
        return item

    def close(self) -> None:
        """Stops the thread, whether or not everything was taken."""
        self._stopping.set()
        while self._thread.is_alive():
            _empty(self._queue)
            self._thread.join(_POLL)
        self._done = True

    def _fill(self) -> None:
        try:
            for item in self._produce():
                if not self._offer(item):
                    return
            self._offer(_END)
        except BaseException as error:  # handed to the getting thread, which raises it
            self._offer(error)

    def _offer(self, item: Item | _End | BaseException) -> bool:
        while not self._stopping.is_set():
            with suppress(queue.Full):
                self._queue.put(item, timeout=_POLL)
                return True
        return False


def _empty(items: queue.Queue) -> list:
    dropped = []
    with suppress(queue.Empty):
        while True:
            dropped.append(items.get_nowait())
    return dropped
