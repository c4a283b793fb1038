"""
Time-indexed frame buffers and pairing policies for non-synchronized camera and LiDAR streams.

Times are int64 nanoseconds. Three pieces:

- :class:`TimeBuffer`: a bounded, thread-safe, time-ordered buffer of ``(stamp_ns, item)`` that
  counts what it drops and clears itself when the clock jumps backwards (a bag loop), like
  tf2's buffer.
- :class:`PairingPolicy`: which buffered cloud an image goes with, and when that choice is final.
  :class:`NearestPolicy`, :class:`LatestPolicy` and :class:`FixedOffsetPolicy` share that
  interface; :func:`make_pairing_policy` picks one by name.
- :class:`StreamPairer`: an image buffer, a cloud buffer and a policy; callbacks add frames from
  executor threads while a worker pops :class:`FramePair` objects.

Latency rule. Stamps of one stream are assumed to arrive in order. An image waits until no later
cloud could be a better match, then it is decided once: paired, or counted as unmatched and
removed. For the nearest and fixed-offset policies the decision is final as soon as a cloud stamped
at or after the image's target time (image stamp + offset) has arrived: every later cloud is
further from the target than that one. This answers as early as possible (an image waits at most
one LiDAR period plus the cloud's transport delay) and gives the same pair as waiting for a cloud
newer than target + ``max_dt``. The latest policy decides as soon as any cloud is buffered. An
image still waiting when it leaves its buffer (age or count bound) is counted as dropped there;
``max_age`` must therefore exceed the cloud period plus ``max_dt`` for no image to age out.

Clouds are not consumed by pairing: one scan can pair with several images (a 20 Hz camera against
a 10 Hz LiDAR). They leave their buffer by the age and count bounds only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import bisect
from dataclasses import dataclass, replace
import enum
import threading
from typing import Generic, Sequence, TYPE_CHECKING, TypeVar

from .sensors import CloudFrame, ImageFrame

if TYPE_CHECKING:
    from .config import BufferingConfig

NS_PER_S = 1_000_000_000
PAIRING_POLICIES = ('nearest', 'latest', 'fixed_offset')

T = TypeVar('T')


class PushResult(enum.Enum):
    """What :meth:`TimeBuffer.push` did with an item."""

    STORED = 'stored'
    """Inserted in time order."""
    REPLACED = 'replaced'
    """Replaced the buffered item of that stamp (the old one counts as ``dropped_duplicate``)."""
    DROPPED_LATE = 'dropped_late'
    """Older than the age window (newest stamp - ``max_age_ns``): not stored."""
    DROPPED_OVERFLOW = 'dropped_overflow'
    """Stored, then evicted at once as the oldest item of a full buffer."""
    RESET = 'reset'
    """The clock jumped backwards: the buffer was cleared, then the item stored."""


@dataclass
class BufferStats:
    """
    Counters of one :class:`TimeBuffer` since it was made.

    Every received item is, at any time, exactly one of: buffered, taken, or dropped, so
    ``received == len(buffer) + taken + dropped``.
    """

    received: int = 0
    taken: int = 0
    dropped_overflow: int = 0
    dropped_age: int = 0
    dropped_late: int = 0
    dropped_duplicate: int = 0
    dropped_reset: int = 0
    resets: int = 0

    @property
    def dropped(self) -> int:
        """Items dropped for any reason."""
        return (self.dropped_overflow + self.dropped_age + self.dropped_late
                + self.dropped_duplicate + self.dropped_reset)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


class TimeBuffer(Generic[T]):
    """
    A bounded, thread-safe buffer of ``(stamp_ns, item)`` kept in stamp order.

    Bounds: at most ``max_count`` items (the oldest goes first), and no item older than the newest
    stamp seen minus ``max_age_ns``. An out-of-order item inside that window is inserted in order;
    one older than it is dropped as late. A second item with a buffered stamp replaces the first.
    An item older than the newest stamp by more than ``jump_back_threshold_ns`` means the clock
    went backwards (a looping bag, a restarted simulation): the buffer is cleared, counts a reset,
    and starts over from that item.

    :param max_count: largest number of buffered items (> 0).
    :param max_age_ns: age window in nanoseconds relative to the newest stamp (> 0).
    :param jump_back_threshold_ns: backwards step in nanoseconds that is a clock jump (> 0,
        default 1 s).
    """

    def __init__(self, max_count: int, max_age_ns: int,
                 jump_back_threshold_ns: int = NS_PER_S):
        self.max_count = _positive_int('max_count', max_count)
        self.max_age_ns = _positive_int('max_age_ns', max_age_ns)
        self.jump_back_threshold_ns = _positive_int('jump_back_threshold_ns',
                                                    jump_back_threshold_ns)
        self._stamps: list[int] = []
        self._items: list[T] = []
        self._newest_ns: int | None = None
        self._stats = BufferStats()
        self._lock = threading.Lock()

    def push(self, stamp_ns: int, item: T) -> PushResult:
        """Add ``item`` stamped ``stamp_ns`` (int nanoseconds); say what happened to it."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            stats = self._stats
            stats.received += 1
            result = PushResult.STORED
            newest = self._newest_ns
            if newest is not None and newest - stamp_ns > self.jump_back_threshold_ns:
                self._clear_locked()
                stats.resets += 1
                result = PushResult.RESET
            elif newest is not None and newest - stamp_ns > self.max_age_ns:
                stats.dropped_late += 1
                return PushResult.DROPPED_LATE
            index = bisect.bisect_left(self._stamps, stamp_ns)
            if index < len(self._stamps) and self._stamps[index] == stamp_ns:
                self._items[index] = item
                stats.dropped_duplicate += 1
                return PushResult.REPLACED
            self._stamps.insert(index, stamp_ns)
            self._items.insert(index, item)
            if self._newest_ns is None or stamp_ns > self._newest_ns:
                self._newest_ns = stamp_ns
                aged = bisect.bisect_left(self._stamps, stamp_ns - self.max_age_ns)
                del self._stamps[:aged], self._items[:aged]
                stats.dropped_age += aged
            if len(self._stamps) > self.max_count:
                del self._stamps[0], self._items[0]
                stats.dropped_overflow += 1
                if index == 0:
                    result = PushResult.DROPPED_OVERFLOW
            return result

    def take(self, stamp_ns: int) -> T | None:
        """Remove and return the item stamped exactly ``stamp_ns``, or None if there is none."""
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp_ns)
            if index == len(self._stamps) or self._stamps[index] != stamp_ns:
                return None
            del self._stamps[index]
            self._stats.taken += 1
            return self._items.pop(index)

    def reset(self) -> int:
        """Clear the buffer, forget the newest stamp, count a reset; return the number dropped."""
        with self._lock:
            self._stats.resets += 1
            return self._clear_locked()

    def items(self) -> list[tuple[int, T]]:
        """Return a snapshot of the buffered ``(stamp_ns, item)``, oldest first."""
        with self._lock:
            return list(zip(self._stamps, self._items))

    def stamps(self) -> list[int]:
        """Return a snapshot of the buffered stamps in nanoseconds, oldest first."""
        with self._lock:
            return list(self._stamps)

    @property
    def newest_stamp_ns(self) -> int | None:
        """Newest stamp pushed since the last reset (even if taken since), or None."""
        with self._lock:
            return self._newest_ns

    @property
    def stats(self) -> BufferStats:
        """Return a copy of the counters."""
        with self._lock:
            return replace(self._stats)

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)

    def _clear_locked(self) -> int:
        count = len(self._stamps)
        self._stamps.clear()
        self._items.clear()
        self._newest_ns = None
        self._stats.dropped_reset += count
        return count


class PairingPolicy(ABC):
    """
    Which cloud an image is paired with, and when that choice is final.

    Policies hold no mutable state, so one policy can serve several pairers and threads.
    """

    @abstractmethod
    def match(self, image_stamp_ns: int, cloud_stamps_ns: Sequence[int]) -> int | None:
        """Index of the cloud to pair in ``cloud_stamps_ns`` (ascending, ns), or None for none."""

    @abstractmethod
    def is_ready(self, image_stamp_ns: int, newest_cloud_ns: int | None) -> bool:
        """Tell whether no cloud arriving after ``newest_cloud_ns`` (ns) could change the match."""


class FixedOffsetPolicy(PairingPolicy):
    """
    The cloud nearest to ``image stamp + offset_ns`` within ``max_dt_ns`` of that target.

    Ties go to the earlier cloud: a scan is stamped at the start of its sweep, so an image midway
    between two scan stamps was taken during the earlier sweep.

    :param offset_ns: expected cloud stamp minus image stamp, nanoseconds.
    :param max_dt_ns: largest accepted distance to the target, nanoseconds (>= 0).
    """

    def __init__(self, offset_ns: int, max_dt_ns: int):
        if max_dt_ns < 0:
            raise ValueError(f'max_dt_ns must be >= 0, got {max_dt_ns}')
        self.offset_ns = int(offset_ns)
        self.max_dt_ns = int(max_dt_ns)

    def match(self, image_stamp_ns: int, cloud_stamps_ns: Sequence[int]) -> int | None:
        """Index of the cloud nearest to the target within ``max_dt_ns``, or None."""
        target = image_stamp_ns + self.offset_ns
        after = bisect.bisect_left(cloud_stamps_ns, target)
        best = None
        for index in (after - 1, after):
            if 0 <= index < len(cloud_stamps_ns):
                distance = abs(cloud_stamps_ns[index] - target)
                if distance <= self.max_dt_ns and (best is None or distance < best[0]):
                    best = (distance, index)
        return None if best is None else best[1]

    def is_ready(self, image_stamp_ns: int, newest_cloud_ns: int | None) -> bool:
        """Tell whether a cloud stamped at or after the target has arrived."""
        return newest_cloud_ns is not None and newest_cloud_ns >= image_stamp_ns + self.offset_ns

    def __repr__(self) -> str:
        return f'{type(self).__name__}(offset_ns={self.offset_ns}, max_dt_ns={self.max_dt_ns})'


class NearestPolicy(FixedOffsetPolicy):
    """The cloud nearest in time to the image, within ``max_dt_ns`` nanoseconds (>= 0)."""

    def __init__(self, max_dt_ns: int):
        super().__init__(0, max_dt_ns)

    def __repr__(self) -> str:
        return f'NearestPolicy(max_dt_ns={self.max_dt_ns})'


class LatestPolicy(PairingPolicy):
    """
    The newest buffered cloud, decided as soon as there is one (no waiting).

    :param max_dt_ns: if given, the image is unmatched when the newest cloud is further than this
        from it, nanoseconds (>= 0); None accepts any offset.
    """

    def __init__(self, max_dt_ns: int | None = None):
        if max_dt_ns is not None and max_dt_ns < 0:
            raise ValueError(f'max_dt_ns must be >= 0 or None, got {max_dt_ns}')
        self.max_dt_ns = None if max_dt_ns is None else int(max_dt_ns)

    def match(self, image_stamp_ns: int, cloud_stamps_ns: Sequence[int]) -> int | None:
        """Index of the newest cloud, or None if there is none or it is too far in time."""
        if not cloud_stamps_ns:
            return None
        dt_ns = cloud_stamps_ns[-1] - image_stamp_ns
        if self.max_dt_ns is not None and abs(dt_ns) > self.max_dt_ns:
            return None
        return len(cloud_stamps_ns) - 1

    def is_ready(self, image_stamp_ns: int, newest_cloud_ns: int | None) -> bool:
        """Tell whether any cloud has arrived."""
        return newest_cloud_ns is not None

    def __repr__(self) -> str:
        return f'LatestPolicy(max_dt_ns={self.max_dt_ns})'


def make_pairing_policy(name: str, max_dt_ns: int | None, offset_ns: int = 0) -> PairingPolicy:
    """
    Build the pairing policy called ``name`` (one of :data:`PAIRING_POLICIES`).

    :param max_dt_ns: largest accepted time offset in nanoseconds (None: unbounded, latest only).
    :param offset_ns: expected cloud minus image stamp, nanoseconds; used by ``fixed_offset``.
    """
    if name == 'latest':
        return LatestPolicy(max_dt_ns)
    if name in ('nearest', 'fixed_offset') and max_dt_ns is None:
        raise ValueError(f'pairing policy {name!r} needs max_dt_ns')
    if name == 'nearest':
        return NearestPolicy(max_dt_ns)
    if name == 'fixed_offset':
        return FixedOffsetPolicy(offset_ns, max_dt_ns)
    raise ValueError(f'unknown pairing policy {name!r}, expected one of {PAIRING_POLICIES}')


@dataclass(frozen=True)
class FramePair:
    """An image and the cloud paired with it; ``dt_ns = cloud.stamp_ns - image.stamp_ns``."""

    image: ImageFrame
    cloud: CloudFrame
    dt_ns: int


@dataclass
class PairingStats:
    """
    Counters of a :class:`StreamPairer`.

    For images, ``images.received == paired + unmatched + images.dropped + images_buffered``; for
    clouds, ``clouds.received == clouds.dropped + clouds_buffered``.

    :param resets: clock jumps backwards seen on either stream.
    :param last_dt_ns: ``dt_ns`` of the last pair, or None before the first.
    """

    images: BufferStats
    clouds: BufferStats
    paired: int
    unmatched: int
    resets: int
    images_buffered: int
    clouds_buffered: int
    last_dt_ns: int | None


class StreamPairer:
    """
    Pairs images with clouds from two non-synchronized streams (see the module's latency rule).

    ``add_image`` and ``add_cloud`` may be called from executor threads while a worker calls
    :meth:`pop_ready_pairs`. A clock jump backwards in one stream resets that stream's buffer and
    also the other's when the other holds data newer than the jump target by more than its jump
    threshold (data of the old timeline); a looping bag thus counts one reset per stream.

    :param policy: the pairing policy.
    :param images: buffer of :class:`ImageFrame` (owned by the pairer from now on).
    :param clouds: buffer of :class:`CloudFrame` (owned by the pairer from now on).
    """

    def __init__(self, policy: PairingPolicy, images: TimeBuffer[ImageFrame],
                 clouds: TimeBuffer[CloudFrame]):
        self.policy = policy
        self._images = images
        self._clouds = clouds
        self._paired = 0
        self._unmatched = 0
        self._resets = 0
        self._last_dt_ns: int | None = None
        self._lock = threading.Lock()

    def add_image(self, frame: ImageFrame) -> PushResult:
        """Buffer an image (keyed by ``frame.stamp_ns``); say what happened to it."""
        with self._lock:
            result = self._images.push(frame.stamp_ns, frame)
            if result is PushResult.RESET:
                self._on_jump(self._clouds, frame.stamp_ns)
            return result

    def add_cloud(self, frame: CloudFrame) -> PushResult:
        """Buffer a cloud (keyed by ``frame.stamp_ns``); say what happened to it."""
        with self._lock:
            result = self._clouds.push(frame.stamp_ns, frame)
            if result is PushResult.RESET:
                self._on_jump(self._images, frame.stamp_ns)
            return result

    def pop_ready_pairs(self) -> list[FramePair]:
        """
        Decide every image whose match is final; return the new pairs, oldest image first.

        Decided images leave the buffer; those without an acceptable cloud count as unmatched.
        """
        with self._lock:
            clouds = self._clouds.items()
            cloud_stamps = [stamp for stamp, _ in clouds]
            newest_cloud = self._clouds.newest_stamp_ns
            pairs = []
            for stamp, image in self._images.items():
                if not self.policy.is_ready(stamp, newest_cloud):
                    continue
                self._images.take(stamp)
                index = self.policy.match(stamp, cloud_stamps)
                if index is None:
                    self._unmatched += 1
                    continue
                dt_ns = cloud_stamps[index] - stamp
                pairs.append(FramePair(image, clouds[index][1], dt_ns))
                self._paired += 1
                self._last_dt_ns = dt_ns
            return pairs

    def reset(self) -> None:
        """Clear both buffers (counted as one reset), e.g. when the node is told to restart."""
        with self._lock:
            self._resets += 1
            self._images.reset()
            self._clouds.reset()

    @property
    def stats(self) -> PairingStats:
        """Return a consistent snapshot of the counters."""
        with self._lock:
            return PairingStats(self._images.stats, self._clouds.stats, self._paired,
                                self._unmatched, self._resets, len(self._images),
                                len(self._clouds), self._last_dt_ns)

    def _on_jump(self, other: TimeBuffer, stamp_ns: int) -> None:
        self._resets += 1
        newest = other.newest_stamp_ns
        if newest is not None and newest - stamp_ns > other.jump_back_threshold_ns:
            other.reset()


def make_stream_pairer(config: BufferingConfig) -> StreamPairer:
    """Build the pairer described by the ``buffering`` parameters (seconds turned into ns)."""
    policy = make_pairing_policy(config.policy, config.max_dt_ns, config.offset_ns)

    def buffer() -> TimeBuffer:
        return TimeBuffer(config.max_count, config.max_age_ns, config.jump_back_threshold_ns)

    return StreamPairer(policy, buffer(), buffer())
