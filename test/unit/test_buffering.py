"""Buffers, pairing policies and the stream pairer of ``core.buffering``, on synthetic stamps."""

import sys
import threading

from i2p_registration.core.buffering import (
    BufferStats, FixedOffsetPolicy, FramePair, LatestPolicy, make_pairing_policy,
    make_stream_pairer, NearestPolicy, PAIRING_POLICIES, PushResult, StreamPairer, TimeBuffer)
from i2p_registration.core.config import BufferingConfig, parameter_specs
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np
import pytest

MS = 1_000_000
S = 1_000_000_000
CAMERA = CameraModel(np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]), 2, 2)
PIXELS = np.zeros((2, 2, 3), np.uint8)
POINTS = np.zeros((1, 3), np.float32)


def image(stamp_ns):
    return ImageFrame(PIXELS, stamp_ns, 'camera_optical', CAMERA)


def cloud(stamp_ns):
    return CloudFrame(POINTS, stamp_ns, 'lidar')


def pairer(policy, max_count=100, max_age_ns=10 * S, jump_ns=S):
    return StreamPairer(policy, TimeBuffer(max_count, max_age_ns, jump_ns),
                        TimeBuffer(max_count, max_age_ns, jump_ns))


def synthetic_streams(seed, duration_s=4.0, start_ns=1000 * S):
    """
    Camera 20 Hz and LiDAR 10 Hz on clocks 37 ms apart, stamp and transport jitter.

    Returns the image stamps, cloud stamps and the events ``(arrival_ns, kind, stamp_ns)`` in
    arrival order.
    """
    rng = np.random.default_rng(seed)
    n_img, n_cloud = int(duration_s * 20), int(duration_s * 10)
    img = start_ns + np.arange(n_img) * 50 * MS + rng.integers(-2 * MS, 2 * MS, n_img)
    pts = (start_ns + 37 * MS + np.arange(n_cloud) * 100 * MS
           + rng.integers(-3 * MS, 3 * MS, n_cloud))
    events = [(int(s + 15 * MS + rng.integers(0, 10 * MS)), 'image', int(s)) for s in img]
    events += [(int(s + 60 * MS + rng.integers(0, 10 * MS)), 'cloud', int(s)) for s in pts]
    events.sort()
    return [int(s) for s in img], [int(s) for s in pts], events


def assert_accounting(stats):
    images, clouds = stats.images, stats.clouds
    assert images.received == (stats.paired + stats.unmatched + images.dropped
                               + stats.images_buffered)
    assert images.taken == stats.paired + stats.unmatched
    assert clouds.received == clouds.dropped + stats.clouds_buffered
    assert clouds.taken == 0


# TimeBuffer ------------------------------------------------------------------------------------


def test_out_of_order_items_are_inserted_in_time_order():
    buffer = TimeBuffer(10, S)
    results = [buffer.push(stamp * MS, f'item{stamp}') for stamp in (10, 30, 20, 5)]
    assert results == [PushResult.STORED] * 4
    assert buffer.stamps() == [5 * MS, 10 * MS, 20 * MS, 30 * MS]
    assert [item for _, item in buffer.items()] == ['item5', 'item10', 'item20', 'item30']
    assert buffer.newest_stamp_ns == 30 * MS
    assert buffer.stats == BufferStats(received=4)


def test_overflow_drops_the_oldest_and_counts_exactly():
    buffer = TimeBuffer(5, 10 * S)
    for stamp in range(12):
        buffer.push(stamp * MS, stamp)
    assert buffer.stamps() == [s * MS for s in range(7, 12)]
    assert buffer.stats.dropped_overflow == 7
    assert buffer.push(6 * MS + 1, 'older than all') is PushResult.DROPPED_OVERFLOW
    assert buffer.stamps() == [s * MS for s in range(7, 12)]
    assert buffer.push(9 * MS + 1, 'inside') is PushResult.STORED
    assert buffer.stamps() == [8 * MS, 9 * MS, 9 * MS + 1, 10 * MS, 11 * MS]
    assert buffer.stats.dropped_overflow == 9 and buffer.stats.dropped == 9


def test_age_window_is_relative_to_the_newest_stamp_and_inclusive():
    buffer = TimeBuffer(100, 100 * MS)
    for stamp in range(0, 301, 30):
        buffer.push(stamp * MS, stamp)
    assert buffer.stamps() == [210 * MS, 240 * MS, 270 * MS, 300 * MS]
    assert buffer.stats.dropped_age == 7
    edge = TimeBuffer(100, 100 * MS)
    for stamp in (0, 100, 200):
        edge.push(stamp * MS, stamp)
    assert edge.stamps() == [100 * MS, 200 * MS]
    assert edge.push(100 * MS - 1, 'just outside') is PushResult.DROPPED_LATE


def test_late_items_are_dropped_and_items_inside_the_window_kept():
    buffer = TimeBuffer(100, 100 * MS)
    buffer.push(300 * MS, 'newest')
    assert buffer.push(150 * MS, 'late') is PushResult.DROPPED_LATE
    assert buffer.push(250 * MS, 'in window') is PushResult.STORED
    assert buffer.stamps() == [250 * MS, 300 * MS]
    assert buffer.stats.dropped_late == 1 and buffer.stats.resets == 0


def test_duplicate_stamp_replaces_and_counts_the_old_item():
    buffer = TimeBuffer(10, S)
    buffer.push(10 * MS, 'first')
    assert buffer.push(10 * MS, 'second') is PushResult.REPLACED
    assert buffer.items() == [(10 * MS, 'second')]
    assert buffer.stats.dropped_duplicate == 1
    assert buffer.stats.received == 2 and len(buffer) == 1


def test_clock_jump_backwards_clears_counts_and_restarts():
    buffer = TimeBuffer(10, 2 * S, jump_back_threshold_ns=S)
    for stamp in (5000, 5100, 5200):
        buffer.push(stamp * MS, stamp)
    assert buffer.push(4200 * MS, 'exactly one second back') is PushResult.STORED
    assert buffer.push(200 * MS, 'bag loop') is PushResult.RESET
    assert buffer.items() == [(200 * MS, 'bag loop')]
    assert buffer.newest_stamp_ns == 200 * MS
    stats = buffer.stats
    assert (stats.resets, stats.dropped_reset, stats.received) == (1, 4, 5)
    assert buffer.push(300 * MS, 'next') is PushResult.STORED
    assert len(buffer) == 2


def test_take_and_reset():
    buffer = TimeBuffer(10, S)
    buffer.push(10 * MS, 'a')
    buffer.push(20 * MS, 'b')
    assert buffer.take(10 * MS) == 'a'
    assert buffer.take(10 * MS) is None
    assert buffer.newest_stamp_ns == 20 * MS
    assert buffer.reset() == 1
    assert buffer.newest_stamp_ns is None and len(buffer) == 0
    stats = buffer.stats
    assert (stats.taken, stats.dropped_reset, stats.resets) == (1, 1, 1)


def test_random_stream_accounting_adds_up():
    rng = np.random.default_rng(42)
    buffer = TimeBuffer(16, 300 * MS, jump_back_threshold_ns=S)
    stamp, taken = 10 * S, 0
    for step in range(3000):
        stamp += int(rng.integers(0, 40 * MS))
        late = int(rng.integers(0, 500 * MS)) if rng.random() < 0.2 else 0
        jump = 5 * S if rng.random() < 0.005 else 0
        stamp = max(stamp - jump, 0)
        buffer.push(stamp - late, step)
        if rng.random() < 0.1 and len(buffer):
            taken += buffer.take(buffer.stamps()[0]) is not None
        assert len(buffer) <= 16
        stamps = buffer.stamps()
        assert stamps == sorted(stamps)
        assert not stamps or stamps[0] >= buffer.newest_stamp_ns - 300 * MS
    stats = buffer.stats
    assert stats.received == 3000 and stats.taken == taken
    assert stats.received == len(buffer) + stats.taken + stats.dropped
    assert min(stats.dropped_overflow, stats.dropped_age, stats.dropped_late,
               stats.resets) > 0


@pytest.mark.parametrize('args, message', [
    ((0, S), 'max_count must be a positive integer, got 0'),
    ((5, -1), 'max_age_ns must be a positive integer, got -1'),
    ((5, S, 0), 'jump_back_threshold_ns must be a positive integer, got 0'),
    ((2.5, S), 'max_count must be a positive integer, got 2.5'),
])
def test_buffer_rejects_bad_bounds(args, message):
    with pytest.raises(ValueError, match=message):
        TimeBuffer(*args)


# Policies --------------------------------------------------------------------------------------


def test_nearest_picks_the_nearest_within_max_dt_and_ties_go_earlier():
    policy = NearestPolicy(50 * MS)
    clouds = [900 * MS, 950 * MS, 1050 * MS, 1200 * MS]
    assert policy.match(1000 * MS, clouds) == 1
    assert policy.match(1060 * MS, clouds) == 2
    assert policy.match(1100 * MS, clouds) == 2
    assert policy.match(1125 * MS, clouds) is None
    assert policy.match(1250 * MS, clouds) == 3
    assert policy.match(1251 * MS, clouds) is None
    assert policy.match(0, []) is None


def test_nearest_is_ready_once_a_cloud_at_or_after_the_image_arrived():
    policy = NearestPolicy(50 * MS)
    assert not policy.is_ready(1000 * MS, None)
    assert not policy.is_ready(1000 * MS, 999 * MS)
    assert policy.is_ready(1000 * MS, 1000 * MS)


def test_fixed_offset_targets_image_stamp_plus_offset():
    policy = FixedOffsetPolicy(200 * MS, 20 * MS)
    clouds = [1150 * MS, 1190 * MS, 1260 * MS]
    assert policy.match(1000 * MS, clouds) == 1
    assert policy.match(1040 * MS, clouds) == 2
    assert policy.match(1100 * MS, clouds) is None
    assert not policy.is_ready(1000 * MS, 1190 * MS)
    assert policy.is_ready(1000 * MS, 1200 * MS)


def test_latest_takes_the_newest_cloud_optionally_bounded():
    clouds = [100 * MS, 900 * MS]
    assert LatestPolicy().match(0, clouds) == 1
    assert LatestPolicy(100 * MS).match(0, clouds) is None
    assert LatestPolicy(100 * MS).match(850 * MS, clouds) == 1
    assert LatestPolicy().match(0, []) is None
    assert LatestPolicy().is_ready(0, 1) and not LatestPolicy().is_ready(0, None)


def test_policy_factory_and_its_errors():
    assert isinstance(make_pairing_policy('nearest', 5), NearestPolicy)
    latest = make_pairing_policy('latest', None)
    assert isinstance(latest, LatestPolicy) and latest.max_dt_ns is None
    fixed = make_pairing_policy('fixed_offset', 5, offset_ns=-7)
    assert (type(fixed), fixed.offset_ns, fixed.max_dt_ns) == (FixedOffsetPolicy, -7, 5)
    with pytest.raises(ValueError, match=r"unknown pairing policy 'closest', expected one of "
                                         r"\('nearest', 'latest', 'fixed_offset'\)"):
        make_pairing_policy('closest', 5)
    with pytest.raises(ValueError, match="pairing policy 'nearest' needs max_dt_ns"):
        make_pairing_policy('nearest', None)
    with pytest.raises(ValueError, match='max_dt_ns must be >= 0, got -1'):
        NearestPolicy(-1)
    with pytest.raises(ValueError, match='max_dt_ns must be >= 0 or None, got -1'):
        LatestPolicy(-1)


def test_policy_names_are_the_config_choices():
    spec = next(s for s in parameter_specs() if s.name == 'buffering.policy')
    assert spec.choices == PAIRING_POLICIES


# StreamPairer ----------------------------------------------------------------------------------


def test_image_waits_until_no_nearer_cloud_can_arrive():
    p = pairer(NearestPolicy(50 * MS))
    p.add_cloud(cloud(970 * MS))
    p.add_image(image(1000 * MS))
    assert p.pop_ready_pairs() == []
    p.add_cloud(cloud(1070 * MS))
    [pair] = p.pop_ready_pairs()
    assert isinstance(pair, FramePair)
    assert (pair.image.stamp_ns, pair.cloud.stamp_ns) == (1000 * MS, 970 * MS)
    assert pair.dt_ns == -30 * MS
    p.add_image(image(1070 * MS))
    [pair] = p.pop_ready_pairs()
    assert pair.dt_ns == 0
    stats = p.stats
    assert (stats.paired, stats.unmatched, stats.last_dt_ns) == (2, 0, 0)
    assert_accounting(stats)


def test_images_without_a_cloud_within_max_dt_are_unmatched_and_removed():
    p = pairer(NearestPolicy(30 * MS))
    p.add_cloud(cloud(900 * MS))
    for stamp in (950, 1000, 1040):
        p.add_image(image(stamp * MS))
    p.add_cloud(cloud(1100 * MS))
    assert p.pop_ready_pairs() == []
    stats = p.stats
    assert (stats.paired, stats.unmatched, stats.images_buffered) == (0, 3, 0)
    assert_accounting(stats)


def test_synthetic_streams_pair_with_the_nearest_cloud_as_early_as_possible():
    max_dt = 40 * MS
    img, pts, events = synthetic_streams(seed=5)
    p = pairer(NearestPolicy(max_dt), max_count=20, max_age_ns=S)
    pts_arrival = {stamp: t for t, kind, stamp in events if kind == 'cloud'}
    img_arrival = {stamp: t for t, kind, stamp in events if kind == 'image'}
    decided_at = {}
    pairs = []
    for t, kind, stamp in events:
        (p.add_image(image(stamp)) if kind == 'image' else p.add_cloud(cloud(stamp)))
        for pair in p.pop_ready_pairs():
            decided_at[pair.image.stamp_ns] = t
            pairs.append(pair)
    pts_arr = np.array(pts)
    expected_unmatched = 0
    for stamp in img:
        distance = np.abs(pts_arr - stamp)
        nearest = int(np.argmin(distance))
        later = [s for s in pts if s >= stamp]
        if not later:
            continue
        ready_at = max(img_arrival[stamp], pts_arrival[later[0]])
        if distance[nearest] > max_dt:
            expected_unmatched += 1
            continue
        assert decided_at[stamp] == ready_at
        [pair] = [q for q in pairs if q.image.stamp_ns == stamp]
        assert pair.cloud.stamp_ns == pts[nearest] and abs(pair.dt_ns) <= max_dt
    stats = p.stats
    assert stats.paired == len(pairs) > 50
    assert stats.unmatched == expected_unmatched > 0
    assert stats.images.dropped == 0
    assert stats.clouds_buffered == 10
    assert stats.clouds.dropped == stats.clouds.dropped_age == len(pts) - 10
    assert stats.images_buffered == sum(s > pts[-1] for s in img)
    assert len({q.cloud.stamp_ns for q in pairs}) < len(pairs), 'clouds are shared by images'
    assert_accounting(stats)


def test_fixed_offset_and_latest_pairers():
    fixed = pairer(FixedOffsetPolicy(200 * MS, 20 * MS))
    fixed.add_image(image(1000 * MS))
    fixed.add_cloud(cloud(1190 * MS))
    assert fixed.pop_ready_pairs() == []
    fixed.add_cloud(cloud(1290 * MS))
    [pair] = fixed.pop_ready_pairs()
    assert pair.dt_ns == 190 * MS
    latest = pairer(LatestPolicy(500 * MS))
    latest.add_image(image(1000 * MS))
    assert latest.pop_ready_pairs() == []
    latest.add_cloud(cloud(600 * MS))
    latest.add_cloud(cloud(700 * MS))
    latest.add_image(image(1300 * MS))
    pairs = latest.pop_ready_pairs()
    assert [(q.image.stamp_ns, q.dt_ns) for q in pairs] == [(1000 * MS, -300 * MS)]
    assert latest.stats.unmatched == 1


def test_bag_loop_resets_both_streams_and_keeps_the_new_timeline():
    p = pairer(NearestPolicy(50 * MS), jump_ns=S)
    for k in range(20):
        p.add_image(image(100 * S + k * 100 * MS))
        p.add_cloud(cloud(100 * S + k * 100 * MS + 30 * MS))
    p.pop_ready_pairs()
    assert p.add_image(image(100 * S)) is PushResult.RESET
    stats = p.stats
    assert (stats.resets, stats.images_buffered, stats.clouds_buffered) == (1, 1, 0)
    assert p.add_cloud(cloud(101 * S + 950 * MS)) is PushResult.STORED
    assert p.pop_ready_pairs() == []
    assert p.add_cloud(cloud(100 * S + 20 * MS)) is PushResult.RESET
    stats = p.stats
    assert (stats.resets, stats.images_buffered, stats.clouds_buffered) == (2, 0, 1)
    assert stats.unmatched == 1
    p.add_image(image(100 * S + 50 * MS))
    p.add_cloud(cloud(100 * S + 120 * MS))
    [pair] = p.pop_ready_pairs()
    assert (pair.image.stamp_ns, pair.dt_ns) == (100 * S + 50 * MS, -30 * MS)
    assert_accounting(p.stats)


def test_bag_loop_clears_the_other_stream_only_if_it_is_on_the_old_timeline():
    p = pairer(NearestPolicy(50 * MS), jump_ns=S)
    p.add_image(image(10 * S))
    p.add_cloud(cloud(10 * S))
    p.add_image(image(2 * S))
    assert p.stats.clouds_buffered == 0
    p.add_cloud(cloud(2 * S + 30 * MS))
    assert p.stats.images_buffered == 1
    assert p.stats.resets == 1


def test_manual_reset_counts_once_and_empties_both_buffers():
    p = pairer(NearestPolicy(50 * MS))
    p.add_image(image(S))
    p.add_cloud(cloud(S - 200 * MS))
    p.reset()
    stats = p.stats
    assert (stats.resets, stats.images_buffered, stats.clouds_buffered) == (1, 0, 0)
    assert stats.images.dropped_reset == stats.clouds.dropped_reset == 1
    assert_accounting(stats)


def test_make_stream_pairer_turns_seconds_into_nanoseconds():
    config = BufferingConfig(policy='fixed_offset', max_dt=0.05, offset=0.2, max_count=7,
                             max_age=1.5, jump_back_threshold=2.0)
    p = make_stream_pairer(config)
    assert isinstance(p.policy, FixedOffsetPolicy)
    assert (p.policy.offset_ns, p.policy.max_dt_ns) == (200 * MS, 50 * MS)
    p.add_image(image(10 * S))
    p.add_cloud(cloud(10 * S + 230 * MS))
    [pair] = p.pop_ready_pairs()
    assert pair.dt_ns == 230 * MS
    for k in range(10):
        p.add_cloud(cloud(11 * S + k))
    assert p.stats.clouds_buffered == 7
    assert p.add_cloud(cloud(11 * S - 1600 * MS)) is PushResult.DROPPED_LATE
    assert p.add_cloud(cloud(11 * S - 2100 * MS)) is PushResult.RESET


@pytest.fixture
def fast_thread_switching():
    """Switch threads every 10 us (default 5 ms) so that producers and consumer interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


CHUNK = 100


def run_threads(p, img, pts):
    """
    Push from two producer threads while a consumer pops; return the pairs and stats seen.

    Producers race the consumer item by item, and each also waits at the end of every chunk of
    ``CHUNK`` items until the consumer has popped once since the chunk began, so that popping
    provably happens during production, whatever the scheduler does.
    """
    pairs, snapshots = [], []
    pops = threading.Condition()
    pop_count = [0]

    def produce(add, make, stamps):
        for k, stamp in enumerate(stamps):
            if k % CHUNK == 0:
                with pops:
                    seen = pop_count[0]
            add(make(stamp))
            if k % CHUNK == CHUNK - 1:
                with pops:
                    pops.wait_for(lambda: pop_count[0] > seen, timeout=5.0)

    producers = [threading.Thread(target=produce, args=(p.add_image, image, img)),
                 threading.Thread(target=produce, args=(p.add_cloud, cloud, pts))]
    for thread in producers:
        thread.start()
    while any(thread.is_alive() for thread in producers):
        pairs += p.pop_ready_pairs()
        snapshots.append(p.stats)
        with pops:
            pop_count[0] += 1
            pops.notify_all()
    for thread in producers:
        thread.join()
    pairs += p.pop_ready_pairs()
    snapshots.append(p.stats)
    return pairs, snapshots


def test_two_producers_and_a_consumer_match_the_sequential_result(fast_thread_switching):
    img, pts, events = synthetic_streams(seed=9, duration_s=60.0)
    reference = pairer(NearestPolicy(40 * MS), max_count=10_000, max_age_ns=1000 * S)
    expected = []
    for _, kind, stamp in events:
        (reference.add_image(image(stamp)) if kind == 'image' else reference.add_cloud(
            cloud(stamp)))
        expected += reference.pop_ready_pairs()
    p = pairer(NearestPolicy(40 * MS), max_count=10_000, max_age_ns=1000 * S)
    pairs, snapshots = run_threads(p, img, pts)
    assert len(img) == 1200 and len(pts) == 600
    assert [(q.image.stamp_ns, q.cloud.stamp_ns) for q in pairs] == \
        [(q.image.stamp_ns, q.cloud.stamp_ns) for q in expected]
    assert len(snapshots) > len(img) // CHUNK, 'the consumer did not run during production'
    for stats in snapshots:
        assert_accounting(stats)
    final = snapshots[-1]
    assert (final.images.received, final.clouds.received) == (1200, 600)
    assert (final.paired, final.unmatched) == (reference.stats.paired, reference.stats.unmatched)


def test_threaded_accounting_is_exact_when_buffers_drop(fast_thread_switching):
    img, pts, _ = synthetic_streams(seed=13, duration_s=60.0)
    p = pairer(NearestPolicy(40 * MS), max_count=8, max_age_ns=300 * MS)
    pairs, snapshots = run_threads(p, img, pts)
    assert len(snapshots) > len(img) // CHUNK, 'the consumer did not run during production'
    for stats in snapshots:
        assert_accounting(stats)
    final = snapshots[-1]
    assert (final.images.received, final.clouds.received) == (1200, 600)
    assert final.paired == len(pairs) and final.clouds.dropped >= 600 - 8
    assert all(abs(q.dt_ns) <= 40 * MS for q in pairs)
