"""
Salvaging the rows of a rosbag2 sqlite3 file from its pages (``data/sqlite_salvage.py``).

The files are made with Python's sqlite3 in the rosbag2 schema, with blobs from empty to several
pages long (overflow chains), then cut at many sizes: every salvaged row must be the row sqlite
wrote, byte for byte, and a longer file must give at least the rows of a shorter one.
"""

from pathlib import Path
import random
import shutil
import sqlite3

from i2p_registration.data.sqlite_salvage import salvage_topics_from_metadata, SalvageError, \
    SqliteSalvage, Topic
import pytest
import yaml

TOPICS = [('/camera/image_raw', 'sensor_msgs/msg/Image'),
          ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
          ('/points', 'sensor_msgs/msg/PointCloud2'), ('/tf', 'tf2_msgs/msg/TFMessage')]


def _make_bag(path: Path, page_size: int = 1024, count: int = 120, seed: int = 3,
              hash_column: bool = True) -> dict[int, tuple[int, int, bytes]]:
    """Write a rosbag2-like ``.db3``; return ``{id: (topic id, timestamp, data)}``."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute(f'PRAGMA page_size = {page_size}')
    db.executescript(f"""
        CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
        CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL,
                              metadata TEXT NOT NULL);
        CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                            serialization_format TEXT NOT NULL,
                            offered_qos_profiles TEXT NOT NULL
                            {', type_description_hash TEXT NOT NULL' if hash_column else ''});
        CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL,
                                         encoding TEXT NOT NULL,
                                         encoded_message_definition TEXT NOT NULL,
                                         type_description_hash TEXT NOT NULL);
        CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,
                              timestamp INTEGER NOT NULL, data BLOB NOT NULL);
        CREATE INDEX timestamp_idx ON messages (timestamp ASC);
    """)
    db.execute("INSERT INTO schema VALUES (4, 'rosbags')")
    db.execute('INSERT INTO metadata VALUES (1, 9, ?)', ('x: 1\n' * 200,))
    for i, (name, msgtype) in enumerate(TOPICS):
        row = [i + 1, name, msgtype, 'cdr', '- depth: 5\n  reliability: reliable\n' * 8]
        db.execute(f'INSERT INTO topics VALUES ({", ".join("?" * (len(row) + hash_column))})',
                   row + ['RIHS01_' + '%064x' % i] * hash_column)
        db.execute('INSERT INTO message_definitions VALUES (?, ?, ?, ?, ?)',
                   (i + 1, msgtype, 'ros2msg', 'uint8 x\n' * 40, 'RIHS01_' + '0' * 64))
    rows, stamp = {}, 1_700_000_000_000_000_000
    # Sizes: empty, small (local), around the local maximum, and several pages (overflow).
    sizes = [0, 1, 5, page_size - 36, page_size - 35, page_size - 34, page_size, 3 * page_size + 7]
    for rowid in range(1, count + 1):
        topic = rng.randrange(len(TOPICS)) + 1
        size = sizes[rowid - 1] if rowid <= len(sizes) else \
            rng.choice([rng.randrange(60), rng.randrange(page_size), rng.randrange(6 * page_size)])
        stamp += rng.randrange(1, 5_000_000)
        data = bytes(rng.getrandbits(8) for _ in range(size))
        db.execute('INSERT INTO messages VALUES (?, ?, ?, ?)', (rowid, topic, stamp, data))
        rows[rowid] = (topic, stamp, data)
    db.commit()
    db.close()
    return rows


def _read_sqlite(path: Path) -> dict[int, tuple[int, int, bytes]]:
    db = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
        return {i: (t, s, bytes(d)) for i, t, s, d in
                db.execute('SELECT id, topic_id, timestamp, data FROM messages')}
    finally:
        db.close()


def _salvage(path: Path):
    with SqliteSalvage(path) as salvage:
        rows = [(m.id, m.topic_id, m.timestamp, m.data) for m in salvage.messages()]
        return salvage, rows


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('salvage') / 'bag.db3'
    rows = _make_bag(path)
    return path, rows


@pytest.mark.parametrize('page_size, hash_column', [(1024, True), (4096, False),
                                                    (65536, True)])
def test_an_uncut_file_gives_exactly_what_sqlite_returns(tmp_path, page_size, hash_column):
    path = tmp_path / 'bag.db3'
    written = _make_bag(path, page_size, count=40 if page_size == 65536 else 120,
                        hash_column=hash_column)
    expected = _read_sqlite(path)
    assert expected == written
    salvage, rows = _salvage(path)
    assert rows == [(i, *expected[i]) for i in sorted(expected)]
    assert salvage.page_size == page_size and salvage.pages_in_file == salvage.pages_declared
    assert (salvage.cut_messages, salvage.damaged_messages, salvage.conflicting) == (0, 0, 0)
    assert {i: (t.name, t.type, t.serialization_format) for i, t in salvage.topics.items()} == \
        {i + 1: (name, msgtype, 'cdr') for i, (name, msgtype) in enumerate(TOPICS)}
    assert (salvage.topics[1].type_description_hash != '') == hash_column
    assert salvage.definitions['sensor_msgs/msg/Image'] == ('ros2msg', 'uint8 x\n' * 40)
    assert set(salvage.tables) == {'schema', 'metadata', 'topics', 'message_definitions',
                                   'messages'}
    assert any(len(d) > 2 * page_size for _, _, _, d in rows)  # overflow chains were read
    assert 'reading stopped after message' in salvage.describe()


def test_a_cut_file_gives_the_written_rows_and_no_corrupted_bytes(bag, tmp_path):
    path, written = bag
    size = path.stat().st_size
    page = 1024
    # Page-aligned cuts, cuts inside a page, and the extremes.
    cuts = sorted({*range(page, size, 7 * page), *range(page + 517, size, 11 * page), size - 1,
                   size})
    previous, counts, cut_cells = set(), [], 0
    for cut in cuts:
        target = tmp_path / 'cut.db3'
        shutil.copyfile(path, target)
        with open(target, 'r+b') as f:
            f.truncate(cut)
        salvage, rows = _salvage(target)
        ids = [r[0] for r in rows]
        assert ids == sorted(ids)
        for rowid, topic, stamp, data in rows:
            assert (topic, stamp, data) == written[rowid], (cut, rowid)
        assert previous <= set(ids), cut  # more bytes never lose a row
        previous = set(ids)
        counts.append(len(rows))
        cut_cells += salvage.cut_messages
        if cut == size:
            assert ids == sorted(written)
    assert counts[0] < len(written) // 4 and counts[-1] == len(written)
    assert cut_cells > 0  # some cuts fell inside an overflow chain: those rows were skipped
    half = tmp_path / 'half.db3'
    shutil.copyfile(path, half)
    with open(half, 'r+b') as f:
        f.truncate(size // 2)
    salvage, rows = _salvage(half)
    assert 0 < len(rows) < len(written)
    assert len(salvage.topics) == len(TOPICS)
    assert f'salvaged {len(rows)} messages from the readable pages of half.db3' in \
        salvage.describe()


def test_a_broken_overflow_chain_skips_only_that_message(tmp_path):
    path = tmp_path / 'bag.db3'
    written = _make_bag(path, count=60)
    with SqliteSalvage(path) as salvage:
        victim = [i for i in salvage.message_ids if len(salvage.overflow_pages(i)) >= 2][2]
        page = salvage.overflow_pages(victim)[0]
    with open(path, 'r+b') as f:
        f.seek((page - 1) * 1024)
        f.write(b'\x00\x00\x00\x00')  # the chain ends too early
    salvage, rows = _salvage(path)
    assert [r[0] for r in rows] == [i for i in sorted(written) if i != victim]
    assert all(written[r[0]] == tuple(r[1:]) for r in rows)
    assert salvage.damaged_messages == 1 and 'damaged messages skipped' in salvage.describe()


def test_not_a_database(tmp_path):
    for data in (b'', b'not sqlite' * 20):
        (tmp_path / 'x.db3').write_bytes(data)
        with pytest.raises(SalvageError):
            SqliteSalvage(tmp_path / 'x.db3')


def _metadata(folder: Path, distro: str, order: list[int]) -> Path:
    info = {'ros_distro': distro, 'topics_with_message_count': [
        {'message_count': 1, 'topic_metadata': {'name': TOPICS[i][0], 'type': TOPICS[i][1],
                                                'serialization_format': 'cdr'}}
        for i in order]}
    (folder / 'metadata.yaml').write_text(yaml.safe_dump(
        {'rosbag2_bagfile_information': info}))
    return folder / 'bag.db3'


def test_topic_ids_from_metadata_only_when_reliable(tmp_path):
    in_order = _metadata(tmp_path, 'rosbags', [0, 1, 2, 3])
    topics, note = salvage_topics_from_metadata(in_order, {})
    assert [topics[i + 1].name for i in range(4)] == [t[0] for t in TOPICS]
    assert 'rosbags numbers the topics in that order' in note
    # A salvaged row agrees with the listing order: the other ids follow it.
    one = {2: Topic(2, *TOPICS[1])}
    _metadata(tmp_path, 'jazzy', [0, 1, 2, 3])
    topics, note = salvage_topics_from_metadata(in_order, one)
    assert len(topics) == 4 and 'agree' in note
    # A recorder's listing (hash-map order) with nothing to check it against: ids unknown.
    topics, note = salvage_topics_from_metadata(in_order, {})
    assert topics == {} and 'does not number the topics reliably' in note
    _metadata(tmp_path, 'jazzy', [1, 0, 2, 3])
    topics, note = salvage_topics_from_metadata(in_order, one)
    assert topics == one and 'some topics rows are lost' in note
    (tmp_path / 'metadata.yaml').unlink()
    topics, note = salvage_topics_from_metadata(in_order, {})
    assert topics == {} and 'no metadata.yaml' in note
