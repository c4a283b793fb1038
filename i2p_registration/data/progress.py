"""A minimal progress bar on stderr (no third-party dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """
    Prints ``label [#####.....] k/n  rate  eta`` on one line, at most every ``interval_s``.

    :param total: number of steps.
    :param label: text in front of the bar.
    :param stream: where to print (stderr by default); ``None`` prints nothing.
    :param interval_s: minimum time between redraws.
    """

    def __init__(self, total: int, label: str = '', stream: TextIO | None = sys.stderr,
                 interval_s: float = 0.2):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream
        self.interval_s = interval_s
        self.count = 0
        self.t0 = time.perf_counter()
        self._last = -float('inf')

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report ``done`` steps finished (of ``total`` when it changed)."""
        if total is not None:
            self.total = max(int(total), 1)
        self.count = int(done)
        now = time.perf_counter()
        if self.stream is None or (now - self._last < self.interval_s and done < self.total):
            return
        self._last = now
        frac = min(self.count / self.total, 1.0)
        elapsed = now - self.t0
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else float('nan')
        bar = '#' * int(30 * frac) + '.' * (30 - int(30 * frac))
        self.stream.write(f'\r{self.label} [{bar}] {self.count}/{self.total} '
                          f'{rate:.1f}/s eta {eta:.0f}s ')
        if self.count >= self.total:
            self.stream.write('\n')
        self.stream.flush()
