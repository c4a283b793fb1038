"""RateTracker and PercentileTracker: known answers, windows, bad arguments."""

from i2p_registration.core.latency import PercentileTracker, RateTracker
import numpy as np
import pytest


def test_rate_of_a_regular_stream_and_its_window():
    tracker = RateTracker(window_s=2.0)
    for i in range(50):
        tracker.tick(i * 0.05)  # 20 Hz for 2.45 s
    assert tracker.rate(2.45) == pytest.approx(20.0)
    assert tracker.count == 50
    assert tracker.rate(10.0) == 0.0, 'events outside the window still counted'


def test_rate_needs_two_events():
    tracker = RateTracker()
    assert tracker.rate(0.0) == 0.0
    tracker.tick(1.0)
    assert tracker.rate(1.0) == 0.0


def test_percentiles_of_the_last_values_only():
    tracker = PercentileTracker(size=100)
    for value in range(1000):
        tracker.add(float(value))
    assert len(tracker) == 100
    assert tracker.percentile(50) == pytest.approx(np.percentile(np.arange(900, 1000), 50))
    assert tracker.percentile(95) == pytest.approx(994.05)
    assert tracker.last() == 999.0
    tracker.add(float('nan'))
    assert tracker.last() == 999.0, 'NaN was recorded'
    tracker.clear()
    assert np.isnan(tracker.percentile(50)) and np.isnan(tracker.last())


@pytest.mark.parametrize('make', [lambda: RateTracker(window_s=0.0),
                                  lambda: RateTracker(max_events=1),
                                  lambda: PercentileTracker(size=0),
                                  lambda: PercentileTracker().percentile(101)])
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()
