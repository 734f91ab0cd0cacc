"""Pure timing maths."""

import random

from jobvisor.timing import Pacer, backoff_delay, ping_interval


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
