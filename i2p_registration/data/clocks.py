"""
Independent sensor clocks: rates, start offsets, jitter and dropped frames.

Each stream ticks at its own nominal rate from its own random start offset; each tick is moved by
Gaussian jitter (clipped to a quarter period so the order is kept) and dropped with the stream's
drop probability. Streams therefore never run in lock step, even at equal rates. Times are int64
nanoseconds; the sequence starts at ``start_time_s`` (a fixed, epoch-like value, so files stay
byte-identical between runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synth_config import ClocksConfig, StreamClock


@dataclass
class StreamStamps:
    """
    The ticks of one stream.

    :param stamps_ns: ``(K,)`` int64 acquisition times, increasing.
    :param index: ``(K,)`` int64 nominal tick number of each kept tick (gaps = dropped frames).
    :param offset_s: the stream's start offset after the sequence start, seconds.
    """

    stamps_ns: np.ndarray
    index: np.ndarray
    offset_s: float

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])


def stream_stamps(clock: StreamClock, start_ns: int, duration_s: float, offset_s: float,
                  rng: np.random.Generator) -> StreamStamps:
    """
    Ticks of one stream within ``[start, start + duration)``.

    :param clock: rate, jitter and drop probability.
    :param start_ns: sequence start, int64 nanoseconds.
    :param duration_s: sequence length, seconds.
    :param offset_s: delay of the first tick after the start, seconds (>= 0).
    :param rng: generator for jitter and drops.
    """
    if duration_s <= 0 or offset_s < 0:
        raise ValueError('duration_s must be > 0 and offset_s >= 0')
    period = 1.0 / clock.rate_hz
    k = np.arange(int(np.ceil((duration_s - offset_s) / period)), dtype=np.int64)
    jitter = np.clip(rng.normal(0.0, clock.jitter_std_s, len(k)), -period / 4, period / 4)
    t = offset_s + k * period + jitter
    keep = (t >= 0) & (t < duration_s) & (rng.uniform(size=len(k)) >= clock.drop_probability)
    stamps = start_ns + np.rint(t[keep] * 1e9).astype(np.int64)
    return StreamStamps(stamps, k[keep], float(offset_s))


def sensor_stamps(cfg: ClocksConfig, duration_s: float,
                  rng: np.random.Generator) -> dict[str, StreamStamps]:
    """
    Ticks of the ``lidar``, ``camera`` and ``odom`` streams with independent offsets.

    :param cfg: the clocks section.
    :param duration_s: sequence length, seconds.
    :param rng: the clocks' generator.
    :return: stream name -> :class:`StreamStamps`.
    """
    start_ns = int(round(cfg.start_time_s * 1e9))
    streams = {}
    for name in ('lidar', 'camera', 'odom'):
        clock = getattr(cfg, name)
        offset = float(rng.uniform(0.0, min(cfg.max_start_offset_s, 1.0 / clock.rate_hz)))
        streams[name] = stream_stamps(clock, start_ns, duration_s, offset, rng)
    return streams
