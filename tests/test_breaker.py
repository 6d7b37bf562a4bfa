"""The circuit breaker's open / half-open / closed cycle under a manual clock."""

from __future__ import annotations

from logosq_os_scheduler import ManualClock
from logosq_os_scheduler.core._breaker import BreakerState, CircuitBreaker


def test_breaker_opens_after_consecutive_failures_and_closes_after_a_good_probe(
    clock: ManualClock,
) -> None:
    b = CircuitBreaker(threshold=3, cooldown=5.0)
    assert b.record_failure(clock.now()) is False
    b.record_success()  # a success resets the count: failures must be consecutive
    assert [b.record_failure(clock.now()) for _ in range(3)] == [False, False, True]
    assert b.state(clock.now()) is BreakerState.OPEN and not b.allows(clock.now())
    assert b.probe_due_at() == 5.0
    clock.advance(4.999)
    assert b.state(clock.now()) is BreakerState.OPEN
    clock.advance(0.001)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN and not b.allows(clock.now())
    assert b.probe_result(False, clock.now()) is BreakerState.OPEN
    assert b.probe_due_at() == 10.0 and b.trips == 1
    clock.advance(5)
    assert b.probe_result(True, clock.now()) is BreakerState.CLOSED
    assert b.allows(clock.now()) and b.failures == 0 and b.trips == 1


def test_unavailable_backend_is_forced_open(clock: ManualClock) -> None:
    b = CircuitBreaker(threshold=5, cooldown=2.0)
    b.force_open(clock.now())
    assert b.state(clock.now()) is BreakerState.OPEN and b.trips == 1
    clock.advance(2)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN
