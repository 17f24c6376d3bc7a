from common.backupfile.io.progress import ProgressThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def throttle_for(total: int, clock: FakeClock, emitted: list[int]) -> ProgressThrottle:
    return ProgressThrottle(total, emitted.append, min_interval=0.25, clock=clock)


def test_emits_when_percent_rises_after_the_interval() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(1000, clock, emitted)
    throttle.advance(100)
    clock.now += 0.3
    throttle.advance(100)
    assert emitted == [10, 20]


def test_rate_limits_rising_percents_within_the_interval() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(1000, clock, emitted)
    for _ in range(9):
        throttle.advance(100)
        clock.now += 0.1
    assert emitted == [10, 40, 70]


def test_does_not_emit_without_a_rise_in_integer_percent() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(10_000, clock, emitted)
    for _ in range(50):
        throttle.advance(1)
        clock.now += 1
    assert emitted == []


def test_percent_is_capped_at_99_before_finish() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(100, clock, emitted)
    throttle.advance(150)
    assert emitted == [99]
    assert throttle.percent == 99


def test_finish_reports_nothing_and_reads_100() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(100, clock, emitted)
    throttle.advance(50)
    clock.now += 1
    throttle.finish()
    throttle.advance(50)
    assert emitted == [50]
    assert throttle.percent == 100


def test_emitted_percents_never_go_down() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(997, clock, emitted)
    for step in [5, 300, 0, 7, 400, 1, 600, 3]:
        throttle.advance(step)
        clock.now += 0.26
    assert emitted == sorted(set(emitted))
    assert max(emitted) <= 99


def test_zero_total_never_divides_or_emits() -> None:
    clock, emitted = FakeClock(), []
    throttle = throttle_for(0, clock, emitted)
    throttle.advance(0)
    throttle.advance(10)
    assert emitted == []
    assert throttle.percent == 0
