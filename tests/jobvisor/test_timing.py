"""Pure timing maths."""

import random

import pytest

from jobvisor.pacing import Pacer, batch_delay
from jobvisor.timing import backoff_delay, ping_interval


def test_backoff_is_capped_and_jittered():
    rng = random.Random(1)
    delays = [backoff_delay(n, base=0.1, cap=2.0, rng=rng) for n in range(20)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert max(delays[:2]) <= 0.2 and len(set(delays)) == len(delays)


def test_ping_interval_allows_three_misses():
    assert ping_interval(30) == 10 and ping_interval(0.1) == 0.5


def test_pacer_never_delays_a_lone_exchange_but_paces_a_stream():
    pacer = Pacer(0.002)
    assert pacer.delay(10.0) == 0
    pacer.sent(10.0)
    assert pacer.delay(10.0005) == 0  # the second frame of one short job: at once
    pacer.sent(10.0005)
    assert abs(pacer.delay(10.001) - 0.0015) < 1e-9  # a stream: wait for the interval
    pacer.sent(10.0025)
    pacer.sent(11.0)  # a quiet spell ends the stream
    assert pacer.delay(11.0001) == 0


def test_a_batch_waits_only_after_a_large_one():
    # a lone job's commits (batches of one or two) never wait, however close together
    assert batch_delay(10.001, 10.0, 2, interval=0.005, busy_size=8) == 0.0
    # after a large batch, the next starts `interval` after it started
    assert batch_delay(10.001, 10.0, 50, interval=0.005, busy_size=8) == pytest.approx(0.004)
    assert batch_delay(10.006, 10.0, 50, interval=0.005, busy_size=8) == 0.0
    # interval 0: never waits
    assert batch_delay(10.0, 10.0, 500, interval=0.0, busy_size=8) == 0.0


def test_retry_backoff_doubles_up_to_its_cap_and_zero_turns_it_off():
    from supervisor.retries import RetryBackoff

    backoff = RetryBackoff(base=1.0, cap=5.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 50)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert RetryBackoff(base=0.0).delay(3) == 0.0
