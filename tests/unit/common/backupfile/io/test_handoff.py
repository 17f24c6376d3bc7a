import signal
import threading
import time

import pytest

from common.backupfile.io.handoff import Consumer, HandoffStopped, Producer


def test_consumer_takes_every_item_in_order() -> None:
    seen: list[int] = []
    with Consumer(seen.append, "test-consumer", depth=2) as consumer:
        for number in range(100):
            consumer.put(number)
    assert seen == list(range(100))


def test_a_consumer_failure_is_raised_by_the_next_put() -> None:
    def fail(_item: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), Consumer(fail, "test-consumer", 2) as consumer:
        for number in range(10):
            consumer.put(number)


def test_leaving_with_an_error_stops_the_thread_and_drops_the_rest() -> None:
    seen: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.01)
        seen.append(item)

    with pytest.raises(RuntimeError), Consumer(slow, "test-consumer", 4) as consumer:
        for number in range(4):
            consumer.put(number)
        raise RuntimeError("stop")
    assert len(seen) < 4
    assert "test-consumer" not in [thread.name for thread in threading.enumerate()]


def test_producer_yields_everything_then_none() -> None:
    producer = Producer(lambda: iter(range(50)), "test-producer", depth=3)
    assert [producer.get() for _ in range(51)] == [*range(50), None]


def test_a_producer_failure_is_raised_after_what_came_before() -> None:
    def items():
        yield 1
        raise ValueError("broken stream")

    producer = Producer(items, "test-producer", depth=3)
    assert producer.get() == 1
    with pytest.raises(ValueError, match="broken stream"):
        producer.get()


def test_closing_a_producer_early_stops_its_thread() -> None:
    producer = Producer(lambda: iter(range(10**9)), "test-producer", depth=2)
    assert producer.get() == 0
    producer.close()
    assert "test-producer" not in [thread.name for thread in threading.enumerate()]


# --- stopping from any state: no wait without a timeout or a stop signal ------------------

def _gone(name: str, seconds: float = 2.0) -> bool:
    """True once no thread of that name is left, waiting at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if name not in [thread.name for thread in threading.enumerate()]:
            return True
        time.sleep(0.02)
    return False


def _finishes(call, seconds: float) -> bool:
    """Runs call on a helper thread: True if it returned within `seconds` (never hangs)."""
    helper = threading.Thread(target=call, daemon=True)
    helper.start()
    helper.join(seconds)
    return not helper.is_alive()


@pytest.fixture
def interrupt_after():
    """interrupt_after(seconds): a SystemExit raised on the main thread by a signal handler,
    the way a Celery pool process ends a task it can no longer acknowledge (SIGTERM)."""
    def handler(_signum, _frame):
        raise SystemExit(-15)

    previous = signal.signal(signal.SIGALRM, handler)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_an_interrupt_inside_start_leaves_no_thread_waiting_on_the_queue(monkeypatch) -> None:
    real_start = threading.Thread.start

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)  # the thread runs, then SystemExit lands in start()'s own wait
        raise SystemExit(-15)

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(SystemExit), Consumer(print, "test-interrupted-start", 2):
        pass
    monkeypatch.undo()
    assert _gone("test-interrupted-start")


def test_an_interrupt_while_draining_stops_the_consumer(interrupt_after) -> None:
    seen: list[int] = []

    def consume(item: int) -> None:
        seen.append(item)
        time.sleep(0.5)

    with pytest.raises(SystemExit), Consumer(consume, "test-draining", 4) as consumer:
        consumer.put(1)
        consumer.put(2)
        interrupt_after(0.2)  # lands while leaving the block waits for the queue to drain
    assert _gone("test-draining")
    assert seen == [1]


def test_abandon_returns_within_its_timeout_while_the_consumer_is_stuck() -> None:
    busy, stuck = threading.Event(), threading.Event()

    def consume(_item: int) -> None:
        busy.set()
        stuck.wait(30)

    consumer = Consumer(consume, "test-stuck", 2, stop_seconds=0.3).__enter__()
    consumer.put(1)
    assert busy.wait(2)
    stopped: list[bool] = []
    assert _finishes(lambda: stopped.append(consumer.abandon()), seconds=3)
    assert stopped == [False]  # still busy with its item, but nobody waits for it
    stuck.set()
    assert _gone("test-stuck")


def test_stopping_a_stage_fails_the_thread_feeding_it() -> None:
    downstream = Consumer(lambda _item: time.sleep(0.01), "test-downstream", 1)
    refused: list[BaseException] = []

    def feed() -> None:  # the stage upstream, putting on its own thread
        try:
            while True:
                downstream.put(b"chunk")
        except HandoffStopped as error:
            refused.append(error)

    with pytest.raises(SystemExit), downstream:
        feeder = threading.Thread(target=feed, name="test-feeder", daemon=True)
        feeder.start()
        time.sleep(0.1)
        raise SystemExit(-15)
    assert _gone("test-feeder") and _gone("test-downstream")
    assert len(refused) == 1


def test_abandoning_one_stage_stops_the_stages_sharing_its_stop() -> None:
    stop = threading.Event()
    last = Consumer(lambda _item: time.sleep(0.01), "test-last", 1, stop=stop).__enter__()
    first = Consumer(last.put, "test-first", 1, stop=stop).__enter__()
    first.put(b"chunk")
    first.abandon()
    assert _gone("test-first") and _gone("test-last")
    with pytest.raises(HandoffStopped):
        last.put(b"late")


def test_a_raising_checkpoint_ends_the_callers_wait_on_a_stuck_consumer() -> None:
    stuck, checks = threading.Event(), []

    class Canceled(Exception):
        pass

    def checkpoint() -> None:
        checks.append(1)
        if len(checks) == 3:
            raise Canceled

    consumer = Consumer(lambda _item: stuck.wait(30), "test-canceled", 1,
                        checkpoint=checkpoint, stop_seconds=0.3)
    with pytest.raises(Canceled), consumer:
        for number in range(10):  # the queue fills up behind the stuck item
            consumer.put(number)
    stuck.set()
    assert _gone("test-canceled")


def test_closing_a_producer_stuck_in_its_iterator_returns_within_its_timeout() -> None:
    stuck = threading.Event()

    def items():
        yield 1
        stuck.wait(30)
        yield 2

    producer = Producer(items, "test-stuck-producer", depth=2, stop_seconds=0.3)
    assert producer.get() == 1
    assert _finishes(producer.close, seconds=3)
    stuck.set()
    assert _gone("test-stuck-producer")
