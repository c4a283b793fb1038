"""
Reading rosbag2 files (MCAP or sqlite3) without ROS, message by message, surviving truncation.

:class:`BagInput` lists a bag's topics and yields its raw messages in log-time order with
``rosbags``; when a file is cut short it goes on reading the records (MCAP) or table pages
(sqlite3, :mod:`.sqlite_salvage`) that are still there, and ``stopped`` says where reading
ended. ``i2p-replay`` (``tools/replay.py``) is its user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import sqlite3
import struct
from typing import Iterator

from rosbags.rosbag2 import Reader
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

from .sqlite_salvage import salvage_topics_from_metadata, SalvageError, SqliteSalvage


class BagReadError(ValueError):
    """A file or folder that is not a readable rosbag2; the message says what and where."""


@dataclass
class BagInput:
    """
    The topics of a rosbag2 and a reader of its raw messages that survives a truncated file.

    The bag is opened with ``rosbags``; when that fails (a file cut short has no MCAP summary, a
    killed recorder leaves no ``metadata.yaml``) MCAP files are scanned record by record up to
    the first unreadable byte, and sqlite3 files read table by table; where sqlite refuses a
    ``.db3`` (a cut file often cannot be opened at all) or stops in it, the rows still in its
    pages are salvaged (:mod:`~i2p_registration.data.sqlite_salvage`). ``stopped`` then says
    where reading ended.
    """

    path: Path
    topics: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str = ''
    typestore: object = None
    _reader: Reader | None = None
    _files: list[Path] = field(default_factory=list)

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> 'BagInput':
        """Open the bag folder (or one ``.mcap`` / ``.db3`` file) at ``path``."""
        path = Path(path)
        if not path.exists():
            raise BagReadError(f'{path}: no such bag')
        bag = cls(path)
        bag.typestore = get_typestore(Stores.ROS2_KILTED)
        folder = path if path.is_dir() else path.parent
        try:
            reader = Reader(folder)
            reader.open()
        except Exception as error:  # noqa: B902 (any rosbags failure falls back to scanning)
            bag._files = sorted(folder.glob('*.mcap')) + sorted(folder.glob('*.db3')) \
                if path.is_dir() else [path]
            if not bag._files:
                raise BagReadError(f'{path}: not a rosbag2 ({error})') from error
            bag.stopped = f'the bag index is unreadable ({error}); read the files directly'
            try:
                for topic, msgtype, msgdef in bag._scan_connections():
                    bag.topics.setdefault(topic, msgtype)
                    bag._register(msgtype, msgdef)
            except (ValueError, sqlite3.DatabaseError, OSError) as scan_error:
                # A cut-short file: the topics declared before the cut are known.
                bag._note(f'{type(scan_error).__name__}: {scan_error}')
            if not bag.topics:
                raise BagReadError(f'{path}: not a readable rosbag2 ({bag.stopped})') from error
            return bag
        bag._reader = reader
        for conn in reader.connections:
            bag.topics.setdefault(conn.topic, conn.msgtype)
            bag.counts[conn.topic] = bag.counts.get(conn.topic, 0) + conn.msgcount
            bag._register(conn.msgtype, getattr(conn, 'msgdef', None))
        return bag

    def _register(self, msgtype: str, msgdef) -> None:
        """Add a message type defined in the bag (``.msg`` text) to the typestore if new."""
        text = getattr(msgdef, 'data', msgdef)
        if msgtype in self.typestore.types or not text:
            return
        try:
            self.typestore.register(get_types_from_msg(text, msgtype))
        except Exception:  # noqa: B902 (an unparsable definition leaves the type unknown)
            pass

    def known(self, msgtype: str) -> bool:
        """Whether messages of ``msgtype`` can be deserialized."""
        return msgtype in self.typestore.types

    def deserialize(self, raw: bytes, msgtype: str):
        """Deserialize CDR bytes of ``msgtype``."""
        return self.typestore.deserialize_cdr(raw, msgtype)

    def messages(self, topics: set[str]) -> Iterator[tuple[str, str, int, bytes]]:
        """
        Yield ``(topic, msgtype, log time ns, CDR bytes)`` of ``topics`` in the bag's order.

        Reading stops at the first unreadable record; ``stopped`` then says after which message.
        When ``rosbags`` stops inside a sqlite3 bag, the messages after the last one read are
        salvaged from the pages of its ``.db3`` files.
        """
        count, last_ns, at_last, failure = 0, None, [], None
        salvage = self._reader is not None and bool(self._db3_files())
        try:
            if self._reader is not None:
                conns = [c for c in self._reader.connections if c.topic in topics]
                source = ((c.topic, c.msgtype, t, raw) for c, t, raw in
                          self._reader.messages(connections=conns))
            else:
                source = (m for m in self._scan_messages() if m[0] in topics)
            for item in source:
                if item[2] != last_ns:
                    at_last = []
                at_last.append((item[0], item[3]))
                count, last_ns = count + 1, item[2]
                yield item
        except Exception as error:  # noqa: B902 (a truncated bag: report, keep what was read)
            failure = error
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if failure is None:
            return
        where = 'before the first message' if last_ns is None else \
            f'after message {count} (log time {last_ns * 1e-9:.3f} s)'
        if not salvage:
            self._note(f'reading stopped {where}: {type(failure).__name__}: {failure}')
            return
        self._note(f'rosbags stopped {where}: {type(failure).__name__}: {failure}; the later '
                   'messages come from the pages of the .db3 files')
        try:
            for file in self._db3_files():
                for log_ns, msgtype, topic, _, raw in _salvage_sqlite(file, False, self._note):
                    if topic not in topics or last_ns is not None and (
                            log_ns < last_ns or log_ns == last_ns and (topic, raw) in at_last):
                        continue
                    yield topic, msgtype, log_ns, raw
        except (SalvageError, OSError) as error:
            self._note(f'salvaging stopped: {error}')

    def _note(self, text: str) -> None:
        """Add ``text`` to ``stopped`` (once)."""
        if text and text not in self.stopped:
            self.stopped = '; '.join(filter(None, [self.stopped, text]))

    def _db3_files(self) -> list[Path]:
        """Return the ``.db3`` files of a sqlite3 bag (none for an MCAP bag)."""
        if self.path.is_dir():
            return [] if any(self.path.glob('*.mcap')) else sorted(self.path.glob('*.db3'))
        return [self.path] if self.path.suffix == '.db3' else []

    def _scan_connections(self):
        for _, msgtype, topic, msgdef, _ in self._scan(metadata_only=True):
            yield topic, msgtype, msgdef

    def _scan_messages(self):
        for log_ns, msgtype, topic, _, raw in self._scan(metadata_only=False):
            yield topic, msgtype, log_ns, raw

    def _scan(self, metadata_only: bool):
        for file in self._files:
            if file.suffix == '.db3':
                yield from _scan_sqlite(file, metadata_only, self._note)
            else:
                yield from _scan_mcap(file, metadata_only)


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def _scan_mcap(path: Path, metadata_only: bool):
    """
    Yield ``(log ns, type, topic, msgdef, data)`` of an MCAP file read front to back.

    Channels come with ``data`` None; messages with ``msgdef`` None. Ends with a ``ValueError``
    at the first record that is cut short (the caller reports where).
    """
    data = memoryview(path.read_bytes())
    if bytes(data[:5]) != b'\x89MCAP':
        raise ValueError(f'{path} is not an MCAP file')
    schemas, channels = {}, {}

    def records(buf, pos, end):
        while pos < end:
            if pos + 9 > end:
                raise ValueError(f'record header cut short at byte {pos} of {path.name}')
            op, length = buf[pos], struct.unpack_from('<Q', buf, pos + 1)[0]
            if pos + 9 + length > end:
                raise ValueError(f'record at byte {pos} of {path.name} is cut short '
                                 f'({end - pos - 9} of {length} bytes)')
            yield op, buf[pos + 9:pos + 9 + length]
            pos += 9 + length

    def walk(buf, pos, end):
        for op, rec in records(buf, pos, end):
            if op == 0x03:
                (sid,) = struct.unpack_from('<H', rec, 0)
                name, p = _string(rec, 2)
                _, p = _string(rec, p)
                schemas[sid] = (name, bytes(rec[p + 4:]).decode(errors='replace'))
            elif op == 0x04:
                cid, sid = struct.unpack_from('<HH', rec, 0)
                topic, _ = _string(rec, 4)
                channels[cid] = (topic, *schemas.get(sid, ('', '')))
                if metadata_only:
                    yield 0, channels[cid][1], topic, channels[cid][2], None
            elif op == 0x05 and not metadata_only:
                cid, _, log_ns = struct.unpack_from('<HIQ', rec, 0)
                topic, msgtype, _ = channels[cid]
                yield log_ns, msgtype, topic, None, bytes(rec[22:])
            elif op == 0x06:
                _, _, size, _ = struct.unpack_from('<QQQI', rec, 0)
                compression, p = _string(rec, 28)
                (csize,) = struct.unpack_from('<Q', rec, p)
                inner = rec[p + 8:p + 8 + csize]
                if compression == 'zstd':
                    from rosbags.rosbag2.storage_mcap import decompress
                    inner = memoryview(decompress(bytes(inner), compression, size, 0))
                elif compression:
                    raise ValueError(f'unsupported MCAP chunk compression {compression!r}')
                yield from walk(inner, 0, len(inner))

    yield from walk(data, 8, len(data))


def _sqlite_topics(db: sqlite3.Connection) -> dict[int, tuple[str, str]]:
    """Return ``{topic id: (name, type)}`` from the topics table."""
    return {tid: (name, msgtype) for tid, name, msgtype in
            db.execute('SELECT id, name, type FROM topics')}


def _scan_sqlite(path: Path, metadata_only: bool, note=None):
    """
    Yield ``(log ns, type, topic, msgdef, data)`` of a rosbag2 sqlite3 file in write order.

    Rows are read in batches by id. Where sqlite refuses the file or stops in it (a cut or
    damaged file), the rows after the last one read are salvaged from its pages, and ``note``
    (a callable taking a line) is told what was salvaged and where reading stopped.
    """
    last = None
    try:
        db = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
        try:
            topics = _sqlite_topics(db)
            if metadata_only:
                for name, msgtype in topics.values():
                    yield 0, msgtype, name, None, None
                return
            last = -1
            while True:
                batch = db.execute('SELECT id, topic_id, timestamp, data FROM messages WHERE '
                                   'id > ? ORDER BY id LIMIT 64', (last,)).fetchall()
                if not batch:
                    return
                for rowid, tid, log_ns, raw in batch:
                    name, msgtype = topics[tid]
                    yield log_ns, msgtype, name, None, bytes(raw)
                    last = rowid
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        refused = f'sqlite3 refused {path.name} ({error})' if last in (None, -1) else \
            f'sqlite3 stopped in {path.name} after id {last} ({error})'
    if note is not None:
        note(refused)
    yield from _salvage_sqlite(path, metadata_only, note, after=last)


def _salvage_sqlite(path: Path, metadata_only: bool, note=None, after: int | None = None):
    """
    Yield ``(log ns, type, topic, msgdef, data)`` of the rows still in the pages of ``path``.

    Messages come in write (id) order, those with an id above ``after``; the topics are the
    salvaged ``topics`` rows, completed from ``metadata.yaml`` where that is reliable. ``note``
    is told what was salvaged, where reading stopped, and what could not be attributed.
    """
    note = note or (lambda text: None)
    with SqliteSalvage(path) as salvage:
        topics, why = salvage_topics_from_metadata(path, salvage.topics)
        note(why)
        if metadata_only:
            for topic in topics.values():
                definition = salvage.definitions.get(topic.type, ('', ''))
                yield 0, topic.type, topic.name, \
                    definition[1] if definition[0] == 'ros2msg' else None, None
            return
        note(salvage.describe())
        unknown = 0
        for message in salvage.messages(after):
            topic = topics.get(message.topic_id)
            if topic is None:
                unknown += 1
                continue
            yield message.timestamp, topic.type, topic.name, None, message.data
        if unknown:
            note(f'{unknown} salvaged messages of unknown topic ids skipped')
