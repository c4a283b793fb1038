"""The demo recorder's log times: simulated time, never before the first ``/clock``."""

import threading
import time
from types import SimpleNamespace

import pytest

demo = pytest.importorskip('i2p_registration.tools.demo')


class _Writer:
    """Collect what would be written to the bag."""

    def __init__(self):
        self.rows = []

    def write(self, connection, log_ns, raw):
        self.rows.append((connection, log_ns, raw))


def _recorder():
    """Return a Recorder without ROS: a fake writer, one connection, no clock yet."""
    recorder = object.__new__(demo.Recorder)
    recorder.writer = _Writer()
    recorder._connections = {'/tf': 'tf-connection'}
    recorder.counts = {}
    recorder._clock = (0, time.perf_counter())
    recorder._before_clock = []
    recorder._lock = threading.Lock()
    recorder._stop = False
    return recorder


def _clock(ns):
    return SimpleNamespace(clock=SimpleNamespace(sec=ns // 10**9, nanosec=ns % 10**9))


def test_outputs_before_the_first_clock_wait_for_it():
    recorder = _recorder()
    recorder._write('/tf', b'first')
    # Counted at once (the demo waits for the nodes' first outputs), written with the clock.
    assert recorder.writer.rows == [] and recorder.counts == {'/tf': 1}
    recorder._on_clock(_clock(1_700_000_000_500_000_000))
    assert recorder.writer.rows == [('tf-connection', 1_700_000_000_500_000_000, b'first')]
    recorder._write('/tf', b'second')
    connection, log_ns, raw = recorder.writer.rows[-1]
    # Interpolated from the last clock: at or after it, within the test's run time.
    assert raw == b'second' and 0 <= log_ns - 1_700_000_000_500_000_000 < 10**9
    assert recorder.counts == {'/tf': 2}


def test_outputs_that_never_see_a_clock_are_kept_at_close():
    recorder = _recorder()
    recorder._write('/tf', b'lonely')
    recorder._thread = threading.Thread(target=lambda: None)
    recorder._thread.start()
    recorder.executor = SimpleNamespace(shutdown=lambda: None)
    recorder.node = SimpleNamespace(destroy_node=lambda: None)
    recorder.writer.close = lambda: None
    recorder.close()
    assert recorder.writer.rows == [('tf-connection', 0, b'lonely')]
    assert recorder.counts == {'/tf': 1}
