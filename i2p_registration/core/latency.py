"""
Rate and percentile trackers for diagnostics: message rates, latencies, time offsets.

Both keep a bounded window and are thread-safe, because executor callbacks add samples while
a timer reads them. Times are seconds (float, any monotonic origin); values are in the unit the
caller chose (milliseconds in the node).
"""

from __future__ import annotations

import collections
import threading

import numpy as np


class RateTracker:
    """
    The rate of events over the last ``window_s`` seconds.

    :param window_s: length of the averaging window in seconds (> 0).
    :param max_events: largest number of event times kept (> 1).
    """

    def __init__(self, window_s: float = 5.0, max_events: int = 1000):
        if not window_s > 0:
            raise ValueError(f'window_s must be > 0 s, got {window_s}')
        if int(max_events) < 2:
            raise ValueError(f'max_events must be > 1, got {max_events}')
        self.window_s = float(window_s)
        self._times = collections.deque(maxlen=int(max_events))
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now_s: float) -> None:
        """Record one event at ``now_s`` seconds."""
        with self._lock:
            self._times.append(float(now_s))
            self.count += 1

    def rate(self, now_s: float) -> float:
        """
        Return the events per second in ``(now_s - window_s, now_s]``; 0.0 for fewer than two.

        The rate is ``(n - 1) / (last - first)`` over the events in the window, which does not
        depend on where the window starts; it is 0.0 once the newest event left the window.
        """
        with self._lock:
            times = [t for t in self._times if now_s - self.window_s < t <= now_s]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


class PercentileTracker:
    """
    Percentiles of the last ``size`` values.

    :param size: number of values kept (> 0).
    """

    def __init__(self, size: int = 200):
        if int(size) < 1:
            raise ValueError(f'size must be > 0, got {size}')
        self._values = collections.deque(maxlen=int(size))
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        """Record one finite value; non-finite values are ignored."""
        value = float(value)
        if np.isfinite(value):
            with self._lock:
                self._values.append(value)

    def percentile(self, q: float) -> float:
        """Return the percentile ``q`` (0..100, linear interpolation), NaN when empty."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f'q must be in [0, 100], got {q}')
        with self._lock:
            values = list(self._values)
        return float(np.percentile(values, q)) if values else float('nan')

    def last(self) -> float:
        """Return the newest value, NaN when empty."""
        with self._lock:
            return self._values[-1] if self._values else float('nan')

    def clear(self) -> None:
        """Forget every value (e.g. after a clock jump)."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
