r"""
``i2p-play``: play a rosbag2 into ROS 2 with ``rosbags`` and rclpy (no ``ros2 bag`` needed).

Every selected topic is published with the QoS it was recorded with (``offered_qos_profiles`` in
the bag's metadata; ``/tf_static`` is always reliable and transient local, so late subscribers
get it), at the recorded timing scaled by ``--rate``, with the recorded CDR bytes as they are (no
deserialization: rclpy publishes serialized bytes of a registered type). ``/clock`` carries the
recorded time for nodes with ``use_sim_time:=true``.

Examples::

    i2p-play out/demo/drive/bag
    i2p-play drive.mcap --rate 0.5 --loop --topics /points /camera/image_raw \
        --remap /points:=/lidar/points --start-offset 10
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
import sys
import time

from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader

CLOCK_TOPIC = '/clock'
TF_STATIC = '/tf_static'
_NS = 1_000_000_000


def message_class(msgtype: str):
    """
    Return the rclpy message class of ``'pkg/msg/Name'``, or None when it is not installed.

    Only the type support is needed (the bytes are published as they are).
    """
    try:
        package, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ValueError, ImportError, AttributeError):
        return None


def qos_profile(topic: str, recorded: list):
    """
    Return the rclpy ``QoSProfile`` of a recorded topic.

    History depth, reliability and durability come from the first offered profile; a topic
    without one gets reliable / volatile / depth 10. ``/tf_static`` is transient local and
    reliable whatever was recorded.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    depth, reliable, transient = 10, True, False
    if recorded:
        q = recorded[0]
        depth = max(int(q.depth), 1)
        reliable = q.reliability != QosReliability.BEST_EFFORT
        transient = q.durability == QosDurability.TRANSIENT_LOCAL
    if topic == TF_STATIC:
        reliable, transient, depth = True, True, max(depth, 100)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient
                      else DurabilityPolicy.VOLATILE)


def parse_remaps(items: list[str]) -> dict[str, str]:
    """Parse ``FROM:=TO`` remappings into ``{FROM: TO}``."""
    remaps = {}
    for item in items:
        if ':=' not in item:
            raise ValueError(f'remapping {item!r} is not FROM:=TO')
        old, new = item.split(':=', 1)
        remaps[old] = new
    return remaps


class Player:
    """
    Publishes the messages of one bag in a loop of log times (see the module docstring).

    :param node: the rclpy node that owns the publishers.
    :param bag: rosbag2 folder.
    :param topics: topics to play (None: all).
    :param remaps: ``{recorded topic: published topic}``.
    :param clock_hz: rate of ``/clock`` (0: no clock).
    """

    def __init__(self, node, bag: str | Path, topics: list[str] | None = None,
                 remaps: dict[str, str] | None = None, clock_hz: float = 100.0, log=print):
        self.node = node
        self.bag = Path(bag)
        self.remaps = remaps or {}
        self.clock_hz = clock_hz
        self.published = 0
        self.skipped: dict[str, str] = {}
        reader = Reader(self.bag if self.bag.is_dir() else self.bag.parent)
        reader.open()
        self.start_ns, self.end_ns = reader.start_time, reader.end_time
        known = {c.topic for c in reader.connections}
        missing = sorted(set(topics or []) - known)
        if missing:
            reader.close()
            raise ValueError(f'topics {missing} are not in {self.bag} (topics: {sorted(known)})')
        self._publishers = {}
        for conn in reader.connections:
            if topics and conn.topic not in topics:
                continue
            if conn.id in self._publishers:
                continue
            cls = message_class(conn.msgtype)
            if cls is None:
                self.skipped[conn.topic] = f'message type {conn.msgtype} is not installed'
                log(f'i2p-play: skipping {conn.topic}: {self.skipped[conn.topic]}')
                continue
            name = self.remaps.get(conn.topic, conn.topic)
            self._publishers[conn.id] = node.create_publisher(
                cls, name, qos_profile(conn.topic, conn.ext.offered_qos_profiles))
        self._connections = [c for c in reader.connections if c.id in self._publishers]
        self._reader = reader
        self._clock_pub = None
        self._last_clock_ns = 0
        if clock_hz > 0:
            from rclpy.qos import QoSProfile, ReliabilityPolicy
            from rosgraph_msgs.msg import Clock
            self._clock_msg = Clock
            self._clock_pub = node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def wait_for_subscribers(self, topics: list[str], timeout_s: float) -> list[str]:
        """
        Wait until each of ``topics`` (published names) has a matched subscriber.

        :return: the topics still without a subscriber after ``timeout_s`` seconds.
        """
        publishers = {p.topic_name: p for p in self._publishers.values()}
        unknown = sorted(set(topics) - set(publishers))
        if unknown:
            raise ValueError(f'--wait-for topics {unknown} are not played (played: '
                             f'{sorted(publishers)})')
        deadline = time.monotonic() + timeout_s
        waiting = list(topics)
        while waiting and time.monotonic() < deadline:
            waiting = [t for t in waiting if publishers[t].get_subscription_count() == 0]
            time.sleep(0.05)
        return waiting

    def _publish_clock(self, bag_ns: int) -> None:
        if self._clock_pub is None:
            return
        bag_ns = max(int(bag_ns), self._last_clock_ns)
        self._last_clock_ns = bag_ns
        msg = self._clock_msg()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), _NS)
        self._clock_pub.publish(msg)

    def _wait_until(self, wall_target: float, bag_at, should_stop) -> None:
        """Sleep until ``wall_target`` (perf_counter s), publishing /clock meanwhile."""
        period = 1.0 / self.clock_hz if self.clock_hz > 0 else None
        while not should_stop():
            now = time.perf_counter()
            if now >= wall_target:
                return
            step = wall_target - now if period is None else min(period, wall_target - now)
            time.sleep(step)
            self._publish_clock(bag_at(time.perf_counter()))

    def play(self, rate: float = 1.0, start_offset_s: float = 0.0, loop: bool = False,
             should_stop=lambda: False, progress=None) -> int:
        """
        Publish the bag once (or until ``should_stop`` with ``loop``); return messages published.

        :param rate: playback speed factor (> 0).
        :param start_offset_s: seconds of the recording to skip.
        :param progress: called with ``(bag seconds played, bag seconds total)``.
        """
        if rate <= 0:
            raise ValueError(f'rate must be > 0, got {rate}')
        first_ns = self.start_ns + int(start_offset_s * _NS)
        total_s = max((self.end_ns - first_ns) / _NS, 0.0)
        while True:
            wall0 = time.perf_counter()
            self._last_clock_ns = 0  # a loop starts the clock over

            for conn, log_ns, raw in self._reader.messages(connections=self._connections,
                                                           start=first_ns):
                if should_stop():
                    return self.published

                def bag_at(wall, until=log_ns):
                    return min(first_ns + int((wall - wall0) * rate * _NS), until)

                self._wait_until(wall0 + (log_ns - first_ns) / _NS / rate, bag_at, should_stop)
                self._publish_clock(log_ns)
                self._publishers[conn.id].publish(bytes(raw))
                self.published += 1
                if progress is not None:
                    progress((log_ns - first_ns) / _NS, total_s)
            if not loop or should_stop():
                return self.published

    def close(self) -> None:
        """Close the bag."""
        self._reader.close()


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line interface."""
    p = argparse.ArgumentParser(prog='i2p-play', description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.strip().split('\n')[2:]))
    p.add_argument('bag', help='rosbag2 folder (MCAP or sqlite3)')
    p.add_argument('--rate', type=float, default=1.0, help='speed factor (default 1.0)')
    p.add_argument('--loop', action='store_true', help='play again from the start at the end')
    p.add_argument('--start-offset', type=float, default=0.0, metavar='S',
                   help='skip the first S seconds of the recording')
    p.add_argument('--topics', nargs='+', metavar='TOPIC', help='play only these topics')
    p.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO',
                   help='publish a recorded topic under another name')
    p.add_argument('--clock', type=float, default=100.0, metavar='HZ',
                   help='/clock rate for use_sim_time (default 100; 0: no /clock)')
    p.add_argument('--wait-for', nargs='+', default=[], metavar='TOPIC',
                   help='first wait (up to 30 s) until these published topics have subscribers')
    p.add_argument('--delay', type=float, default=0.5, metavar='S',
                   help='then wait S seconds more before the first message (discovery)')
    p.add_argument('--linger', type=float, default=1.0, metavar='S',
                   help='keep the publishers S seconds after the last message (delivery)')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    return p


def main(argv: list[str] | None = None) -> int:
    """Play the bag until its end (or Ctrl-C with ``--loop``); return the exit status."""
    args = build_parser().parse_args(argv)
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        remaps = parse_remaps(args.remap)
    except ValueError as error:
        print(f'i2p-play: error: {error}', file=sys.stderr)
        return 2
    rclpy.init(args=['--ros-args'])
    node = rclpy.create_node('i2p_play')
    player = None
    try:
        player = Player(node, args.bag, args.topics, remaps, args.clock,
                        log=lambda text: print(text, file=sys.stderr))
        missing = player.wait_for_subscribers(args.wait_for, 30.0)
        if missing:
            print(f'i2p-play: warning: no subscriber on {missing} after 30 s; playing anyway',
                  file=sys.stderr)
        time.sleep(args.delay)
        last = [0.0]

        def progress(done_s, total_s):
            if args.quiet or time.perf_counter() - last[0] < 0.5:
                return
            last[0] = time.perf_counter()
            print(f'\ri2p-play: {done_s:7.1f} / {total_s:.1f} s, {player.published} messages',
                  end='', file=sys.stderr, flush=True)

        count = player.play(args.rate, args.start_offset, args.loop,
                            should_stop=lambda: not rclpy.ok(), progress=progress)
        if not args.quiet:
            print(f'\ni2p-play: published {count} messages', file=sys.stderr)
        time.sleep(args.linger)
    except (ValueError, OSError) as error:
        print(f'i2p-play: error: {error}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
