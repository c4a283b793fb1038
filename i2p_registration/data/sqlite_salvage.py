"""
Salvage the rows of a rosbag2 sqlite3 file that sqlite itself refuses (a file cut short).

A rosbag2 ``.db3`` cut at some byte often cannot be opened at all: the B-tree interior pages
that lead to the message rows may lie past the cut, or sqlite notices that the file is shorter
than its header says. The rows written before the cut are still there, byte for byte, in the
table-leaf pages that the file holds. :class:`SqliteSalvage` reads them directly from the pages,
following the file format (https://www.sqlite.org/fileformat.html), pure Python:

* the 100-byte header: page size (offset 16, 1 = 65536), reserved bytes per page (20), the
  page count it declares (28), the freelist (32, 36) and the text encoding (56);
* ``sqlite_master`` (rooted at page 1) gives the root page of every table; each table's B-tree
  is walked as far as the file allows, so a leaf page reached from a root belongs to that table;
* every other table-leaf page (type ``0x0D``) of the file is classified by the shape of its
  records: ``messages(id, topic_id, timestamp, data)`` is NULL (the INTEGER PRIMARY KEY alias,
  the rowid is the id), integer, integer, blob; ``topics(id, name, type, serialization_format,
  offered_qos_profiles[, type_description_hash])`` is NULL and texts, with a name starting with
  ``/``; ``message_definitions(id, topic_type, encoding, encoded_message_definition,
  type_description_hash)`` is NULL and four texts. Other tables (``schema``, ``metadata``) and
  pages on the freelist are ignored;
* a payload larger than the local maximum continues on a chain of overflow pages (4-byte next
  page number, then data); a cell whose local part or overflow chain reaches past the end of the
  file is a cut row: it is skipped and counted, never returned in part.

Nothing is guessed: every returned row is made of bytes that sqlite wrote for that row. Rows
are returned in rowid order (the order rosbag2 wrote them).
"""

from __future__ import annotations

from dataclasses import dataclass
import mmap
import os
from pathlib import Path
import struct
from typing import Iterator

MAGIC = b'SQLite format 3\x00'
TABLE_INTERIOR, TABLE_LEAF = 0x05, 0x0D
_FIXED_SIZES = (0, 1, 2, 3, 4, 6, 8, 8, 0, 0)
_ENCODINGS = {1: 'utf-8', 2: 'utf-16-le', 3: 'utf-16-be'}


class SalvageError(ValueError):
    """The file is not a sqlite3 database, or too short to hold its header and first page."""


class _Bad(Exception):
    """Bytes that do not follow the file format (not a cell, not a record)."""


class _Cut(Exception):
    """Bytes that lie past the end of the file."""


@dataclass(frozen=True)
class Topic:
    """A row of the rosbag2 ``topics`` table."""

    id: int  # noqa: A003 (the column names of the rosbag2 table)
    name: str
    type: str  # noqa: A003 (the column names of the rosbag2 table)
    serialization_format: str = ''
    offered_qos_profiles: str = ''
    type_description_hash: str = ''


@dataclass(frozen=True)
class Message:
    """A row of the rosbag2 ``messages`` table (``id`` is the rowid)."""

    id: int  # noqa: A003 (the column names of the rosbag2 table)
    topic_id: int
    timestamp: int
    data: bytes


@dataclass(frozen=True)
class _Cell:
    """Where a row lies: its payload size, local bytes and first overflow page."""

    rowid: int
    size: int
    start: int      # absolute file offset of the payload's local part
    local: int      # bytes of the payload on the leaf page
    overflow: int   # first overflow page (0: none)


class SqliteSalvage:
    """
    The rosbag2 rows of a sqlite3 file that its pages still hold (see the module docstring).

    ``topics`` (``{id: Topic}``), ``definitions`` (``{type: (encoding, text)}``) and the
    message ids are known after construction; :meth:`messages` reads the message bytes lazily.
    ``cut_messages`` counts the message cells that reach past the end of the file (skipped);
    ``cut_rows`` the same for topics and definitions; ``damaged_messages`` the message cells
    whose overflow chain is broken inside the file (skipped); ``conflicting`` the rowids found
    on two pages with different content and no B-tree to decide (skipped).
    """

    def __init__(self, path: str | os.PathLike):
        """Map the file at ``path`` and index the rows its pages hold."""
        self.path = Path(path)
        self.size = self.page_size = self.usable = self.pages_declared = 0
        self.topics: dict[int, Topic] = {}
        self.definitions: dict[str, tuple[str, str]] = {}
        self.tables: dict[str, int] = {}
        self.cut_messages = self.cut_rows = self.damaged_messages = self.conflicting = 0
        self._cells: dict[int, tuple] = {}
        self._buf = None
        self._encoding = 'utf-8'
        self._file = open(self.path, 'rb')
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            if self.size < 100:
                raise SalvageError(f'{self.path}: {self.size} bytes, too short for a sqlite3 '
                                   'header')
            self._buf = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._read_header()
            self._index()
        except BaseException:
            self.close()
            raise

    # --- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file."""
        if self._buf is not None:
            self._buf.close()
            self._buf = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> 'SqliteSalvage':
        """Return self."""
        return self

    def __exit__(self, *exc) -> None:
        """Close the file."""
        self.close()

    # --- results ------------------------------------------------------------------------------

    @property
    def message_ids(self) -> list[int]:
        """Ids (rowids) of the salvaged messages, ascending."""
        return sorted(self._cells)

    def message_info(self, rowid: int) -> tuple[int, int]:
        """Return ``(topic id, timestamp)`` of the salvaged message ``rowid``."""
        return self._cells[rowid][1:3]

    def messages(self, after: int | None = None) -> Iterator[Message]:
        """Yield the salvaged messages in rowid order (those with an id above ``after``)."""
        for rowid in self.message_ids:
            if after is not None and rowid <= after:
                continue
            cell, topic_id, timestamp, data_at = self._cells[rowid]
            payload = self._payload(cell)
            yield Message(rowid, topic_id, timestamp, payload[data_at:])

    def overflow_pages(self, rowid: int) -> list[int]:
        """Return the overflow pages of the salvaged message ``rowid``, in chain order."""
        cell = self._cells[rowid][0]
        pages, remaining, page = [], cell.size - cell.local, cell.overflow
        while remaining > 0:
            pages.append(page)
            remaining -= self.usable - 4
            page = struct.unpack_from('>I', self._buf, self._page_start(page))[0]
        return pages

    @property
    def pages_in_file(self) -> int:
        """Whole pages the file holds."""
        return self.size // self.page_size

    def describe(self) -> str:
        """Say what was salvaged and where reading stopped, in one line."""
        ids = self.message_ids
        name = self.path.name
        held = f'{self.pages_in_file} of {self.pages_declared} pages' if \
            self.pages_declared > self.pages_in_file else f'{self.pages_in_file} pages'
        parts = [f'salvaged {len(ids)} messages from the readable pages of {name} ({held})']
        if ids:
            _, timestamp = self.message_info(ids[-1])
            gaps = ids[-1] - len(ids)
            parts.append(f'reading stopped after message {len(ids)} (id {ids[-1]}, log time '
                         f'{timestamp * 1e-9:.3f} s)' + (f', {gaps} earlier ids missing'
                                                         if gaps else ''))
        else:
            parts.append('reading stopped before the first message')
        parts.append(f'{self.cut_messages} cut messages skipped')
        if self.damaged_messages:
            parts.append(f'{self.damaged_messages} damaged messages skipped')
        if self.conflicting:
            parts.append(f'{self.conflicting} ambiguous rows skipped')
        wal = self.path.with_name(self.path.name + '-wal')
        if wal.exists() and wal.stat().st_size:
            parts.append(f'{wal.name} was not read (its pages may hold later rows)')
        return '; '.join(parts)

    # --- file format --------------------------------------------------------------------------

    def _read_header(self) -> None:
        buf = self._buf
        if buf[:16] != MAGIC:
            raise SalvageError(f'{self.path} is not a sqlite3 database')
        (page_size,) = struct.unpack_from('>H', buf, 16)
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512 or page_size & (page_size - 1):
            raise SalvageError(f'{self.path}: invalid page size {page_size}')
        self.page_size = page_size
        self.usable = page_size - buf[20]
        if self.usable < 480:
            raise SalvageError(f'{self.path}: invalid usable page size {self.usable}')
        change, self.pages_declared = struct.unpack_from('>II', buf, 24)
        if struct.unpack_from('>I', buf, 92)[0] != change:
            self.pages_declared = 0  # a header written by an old sqlite: the count is stale
        self._encoding = _ENCODINGS.get(struct.unpack_from('>I', buf, 56)[0], 'utf-8')

    def _page_start(self, number: int) -> int:
        """Return the file offset of page ``number`` (1-based), or raise _Cut."""
        start = (number - 1) * self.page_size
        if number < 1 or start >= self.size:
            raise _Cut
        return start

    def _page_cells(self, number: int) -> tuple[int, list[int], int]:
        """Return ``(type, absolute cell offsets, right-most pointer)`` of a B-tree page."""
        base = self._page_start(number)
        head = base + (100 if number == 1 else 0)
        end = min(base + self.page_size, self.size)
        if head + 8 > end:
            raise _Cut
        kind = self._buf[head]
        if kind not in (2, 5, 10, 13):
            raise _Bad
        interior = kind in (2, 5)
        count = struct.unpack_from('>H', self._buf, head + 3)[0]
        right = struct.unpack_from('>I', self._buf, head + 8)[0] if interior else 0
        pointers = head + (12 if interior else 8)
        if pointers + 2 * count > min(end, base + self.usable):
            raise _Cut if end < base + self.page_size else _Bad
        cells = []
        for i in range(count):
            offset = struct.unpack_from('>H', self._buf, pointers + 2 * i)[0]
            if offset < pointers + 2 * count - base or offset >= self.usable:
                raise _Bad
            cells.append(base + offset)
        return kind, cells, right

    def _leaf_cell(self, at: int, page_end: int) -> _Cell:
        """Read a table-leaf cell at file offset ``at`` (its local bytes must be in the file)."""
        size, pos = _varint(self._buf, at, page_end)
        rowid, pos = _varint(self._buf, pos, page_end)
        if rowid >= 1 << 63:
            rowid -= 1 << 64
        u = self.usable
        x = u - 35
        if size <= x:
            local = size
        else:
            m = (u - 12) * 32 // 255 - 23
            k = m + (size - m) % (u - 4)
            local = k if k <= x else m
        if pos + local + (4 if local < size else 0) > page_end:
            raise _Cut
        overflow = struct.unpack_from('>I', self._buf, pos + local)[0] if local < size else 0
        if local < size and overflow == 0:
            raise _Bad
        return _Cell(rowid, size, pos, local, overflow)

    def _check_chain(self, cell: _Cell) -> None:
        """Raise _Cut if the overflow chain of ``cell`` reaches past the end of the file."""
        remaining, page, seen = cell.size - cell.local, cell.overflow, set()
        while remaining > 0:
            if page == 0 or page in seen:
                raise _Bad
            seen.add(page)
            start = self._page_start(page)
            chunk = min(remaining, self.usable - 4)
            if start + 4 + chunk > self.size:
                raise _Cut
            remaining -= chunk
            page = struct.unpack_from('>I', self._buf, start)[0]

    def _payload(self, cell: _Cell, limit: int | None = None) -> bytes:
        """Return the payload of ``cell`` (its first ``limit`` bytes), overflow pages included."""
        want = cell.size if limit is None else min(limit, cell.size)
        parts = [self._buf[cell.start:cell.start + min(cell.local, want)]]
        got, page = len(parts[0]), cell.overflow
        while got < want:
            start = self._page_start(page)
            chunk = min(want - got, self.usable - 4)
            if start + 4 + chunk > self.size:
                raise _Cut
            parts.append(self._buf[start + 4:start + 4 + chunk])
            got += chunk
            page = struct.unpack_from('>I', self._buf, start)[0]
        return b''.join(parts)

    def _record(self, cell: _Cell) -> tuple[list[int], list[int]]:
        """Return ``(serial types, body offsets)`` of the record of ``cell``."""
        head = self._buf[cell.start:cell.start + cell.local]
        if len(head) < 1:
            raise _Bad
        size, pos = _varint(head, 0, len(head))
        if size < 1 or size > len(head):
            raise _Bad
        types, offsets, body = [], [], size
        while pos < size:
            serial, pos = _varint(head, pos, size)
            if serial in (10, 11):
                raise _Bad
            types.append(serial)
            offsets.append(body)
            body += _serial_size(serial)
        if pos != size or body != cell.size:
            raise _Bad
        return types, offsets

    def _values(self, cell: _Cell, types: list[int], offsets: list[int]) -> list:
        """Decode all the values of a (small) record."""
        payload = self._payload(cell)
        return [_value(payload, t, o, self._encoding) for t, o in zip(types, offsets)]

    # --- indexing -----------------------------------------------------------------------------

    def _index(self) -> None:
        owners = self._walk_trees()
        skip = self._free_pages()
        pages = -(-self.size // self.page_size)
        candidates: dict[int, list] = {}
        buf, page_size = self._buf, self.page_size
        for number in range(1, pages + 1):
            head = (number - 1) * page_size + (100 if number == 1 else 0)
            if head >= self.size or buf[head] != TABLE_LEAF:
                continue  # most pages: overflow pages of the message data
            owner = owners.get(number)
            if number in skip or (owner is not None and owner not in (
                    'messages', 'topics', 'message_definitions')):
                continue
            try:
                kind, cells, _ = self._page_cells(number)
            except (_Bad, _Cut):
                continue
            if kind != TABLE_LEAF:
                continue
            end = min(number * self.page_size, self.size)
            for at in cells:
                self._take_cell(at, end, owner, candidates)
        for rowid, found in candidates.items():
            trusted = [f for f in found if f[0]] or found
            if len(trusted) > 1 and len({(f[2], f[3], self._payload(f[1]))
                                         for f in trusted}) > 1:
                self.conflicting += 1
                continue
            self._cells[rowid] = trusted[0][1:]

    def _take_cell(self, at: int, end: int, owner: str | None, candidates: dict) -> None:
        try:
            cell = self._leaf_cell(at, end)
            types, offsets = self._record(cell)
        except _Cut:
            if owner == 'messages':
                self.cut_messages += 1
            return
        except _Bad:
            return
        table = owner or _shape(types)
        if table is None:
            return
        try:
            self._check_chain(cell)
            if table == 'messages':
                if _shape(types) != 'messages':
                    return
                head = self._payload(cell, offsets[3])
                topic_id = _value(head, types[1], offsets[1], self._encoding)
                timestamp = _value(head, types[2], offsets[2], self._encoding)
                candidates.setdefault(cell.rowid, []).append(
                    (owner is not None, cell, topic_id, timestamp, offsets[3]))
                return
            values = self._values(cell, types, offsets)
        except _Cut:
            if table == 'messages':
                self.cut_messages += 1
            else:
                self.cut_rows += 1
            return
        except _Bad:
            if table == 'messages':
                self.damaged_messages += 1
            return
        if len(values) < 4 or not all(isinstance(v, str) for v in values[1:]):
            return
        if table in ('topics', 'topics?') and values[1].startswith('/'):
            if owner is None and cell.rowid in self.topics:
                return  # a second copy on a stray page: keep the first
            self.topics[cell.rowid] = Topic(cell.rowid, *values[1:6])
        elif table in ('message_definitions', 'topics?') and len(values) == 5 \
                and not values[1].startswith('/'):
            self.definitions.setdefault(values[1], (values[2], values[3]))

    def _walk_trees(self) -> dict[int, str]:
        """Return ``{page: table}`` for the pages reachable from the roots in sqlite_master."""
        owners: dict[int, str] = {}
        master = self._walk(1, 'sqlite_master', owners)
        for number in master:
            try:
                kind, cells, _ = self._page_cells(number)
                end = min(number * self.page_size, self.size)
                for at in cells:
                    cell = self._leaf_cell(at, end)
                    types, offsets = self._record(cell)
                    row = self._values(cell, types, offsets)
                    if len(row) >= 4 and row[0] == 'table' and isinstance(row[3], int):
                        self.tables[str(row[1])] = row[3]
            except (_Bad, _Cut):
                continue
        for name, root in self.tables.items():
            self._walk(root, name, owners)
        return owners

    def _walk(self, root: int, name: str, owners: dict[int, str]) -> list[int]:
        """Mark the pages of the table B-tree at ``root`` readable in the file; return leaves."""
        leaves, todo = [], [root]
        while todo:
            number = todo.pop()
            if number in owners:
                continue
            try:
                kind, cells, right = self._page_cells(number)
            except (_Bad, _Cut):
                continue
            if kind not in (TABLE_LEAF, TABLE_INTERIOR):
                continue
            owners[number] = name
            if kind == TABLE_LEAF:
                leaves.append(number)
                continue
            todo.append(right)
            todo.extend(struct.unpack_from('>I', self._buf, at)[0] for at in cells
                        if at + 4 <= self.size)
        return leaves

    def _free_pages(self) -> set[int]:
        """Return the pages on the freelist (as far as its trunk pages are in the file)."""
        free, trunk = set(), struct.unpack_from('>I', self._buf, 32)[0]
        while trunk and trunk not in free:
            try:
                start = self._page_start(trunk)
            except _Cut:
                break
            if start + 8 > self.size:
                break
            free.add(trunk)
            following, count = struct.unpack_from('>II', self._buf, start)
            count = min(count, (min(self.page_size, self.size - start) - 8) // 4)
            free.update(struct.unpack_from(f'>{count}I', self._buf, start + 8))
            trunk = following
        return free


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Read the sqlite varint at ``pos`` (before ``end``): ``(value, next position)``."""
    value = 0
    for i in range(9):
        if pos + i >= end:
            raise _Cut
        byte = buf[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise AssertionError('unreachable')


def _serial_size(serial: int) -> int:
    if serial < 10:
        return _FIXED_SIZES[serial]
    return (serial - 12) // 2 if serial % 2 == 0 else (serial - 13) // 2


def _value(payload: bytes, serial: int, offset: int, encoding: str):
    """Decode the value of serial type ``serial`` at ``offset`` of a record payload."""
    if serial == 0:
        return None
    if serial in (8, 9):
        return serial - 8
    if serial == 7:
        return struct.unpack_from('>d', payload, offset)[0]
    size = _serial_size(serial)
    raw = payload[offset:offset + size]
    if len(raw) != size:
        raise _Cut
    if serial < 7:
        return int.from_bytes(raw, 'big', signed=True)
    if serial % 2 == 0:
        return bytes(raw)
    try:
        return bytes(raw).decode(encoding)
    except UnicodeDecodeError as error:
        raise _Bad from error


def _shape(types: list[int]) -> str | None:
    """Name the rosbag2 table whose rows have these serial types, if one does."""
    integer = (lambda t: 1 <= t <= 6 or t in (8, 9))
    text = (lambda t: t >= 13 and t % 2 == 1)
    if len(types) == 4 and types[0] == 0 and integer(types[1]) and integer(types[2]) \
            and (types[3] >= 12 and types[3] % 2 == 0):
        return 'messages'
    if 4 <= len(types) <= 6 and types[0] == 0 and all(text(t) for t in types[1:]):
        return 'topics?'  # topics or message_definitions: told apart by the name
    return None


def salvage_topics_from_metadata(path: str | os.PathLike,
                                 salvaged: dict[int, Topic]) -> tuple[dict[int, Topic], str]:
    """
    Complete the topics of a cut ``.db3`` from the ``metadata.yaml`` beside it, when reliable.

    ``metadata.yaml`` lists the topics but not their ids. ``rosbags`` numbers them from 1 in the
    order it lists them; ``ros2 bag record`` lists them in hash-map order. The listing order is
    used when every salvaged topics row agrees with it (at least one), or when no row survived
    and the bag was written by ``rosbags`` or has one topic. Returns ``(topics, note)``: the note
    says what was done or why the ids stay unknown ('' when nothing was needed).
    """
    meta = Path(path).parent / 'metadata.yaml'
    if not meta.exists():
        return salvaged, '' if salvaged else 'the topics table is lost and there is no ' \
            'metadata.yaml: the topic of each message is unknown'
    import yaml
    try:
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        listed = [t['topic_metadata'] for t in info['topics_with_message_count']]
        listed = [Topic(i + 1, m['name'], m['type'], m.get('serialization_format', ''))
                  for i, m in enumerate(listed)]
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        return salvaged, f'metadata.yaml is unreadable ({error})'
    names = {t.name for t in salvaged.values()}
    if len(names) == len(listed):
        return salvaged, ''
    agree = bool(salvaged) and all(i <= len(listed) and listed[i - 1].name == t.name
                                   for i, t in salvaged.items())
    written_by_rosbags = info.get('ros_distro') == 'rosbags'
    if agree or (not salvaged and (written_by_rosbags or len(listed) == 1)):
        why = 'the salvaged topics rows agree with its order' if agree else \
            'rosbags numbers the topics in that order' if written_by_rosbags else 'one topic'
        merged = {t.id: t for t in listed}
        merged.update(salvaged)
        return merged, f'topic ids taken from the order of metadata.yaml ({why})'
    return salvaged, ('the topics table is lost' if not salvaged else 'some topics rows are '
                      'lost') + ' and metadata.yaml does not number the topics reliably: ' \
        'messages of unknown topic ids are skipped'


__all__ = ['Message', 'salvage_topics_from_metadata', 'SalvageError', 'SqliteSalvage', 'Topic']
