import threading
import time

import pytest

from worker.handoff import Consumer, Producer


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
