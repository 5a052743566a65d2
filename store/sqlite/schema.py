"""The file layout of the embedded store: tables, blob encodings, migrations, and the
connection settings (``store/sqlite/SCHEMA.md`` documents the format for auditors)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from config.errors import StoreError

__all__ = [
    "BLOBS_PER_CONNECTION",
    "CHECK_COLS",
    "DAMAGE_SEQ",
    "DAMAGE_TABLE",
    "INSERT_CHUNK",
    "INSERT_INGEST",
    "ROLLUPS_TABLE",
    "ROW_COLS",
    "SCHEMA_VERSION",
    "TAG",
    "TS",
    "UPSERT_LATEST",
    "VAL",
    "BlobRow",
    "Connection",
    "Q",
    "check_schema",
    "connect",
    "enum_json",
    "enum_load",
    "init_schema",
]

log = logging.getLogger("store.sqlite")

#: version of the file layout in ``meta.schema_version``; bump on any incompatible change
#: (2: ``server_ts`` and ``gateway_ts`` in ingest and chunks; version 1 files are migrated;
#: 3: ``gaps.asset``; 4: the ``rollups`` table; 5: chunk checksums and the ``damage`` table;
#: 6: ingest row checksums and ``damage.seq``)
SCHEMA_VERSION = 6

# Blob encodings are fixed little-endian so that a file moves between machines unchanged;
# on little-endian hosts (x86, ARM) these are the native dtypes and cost no conversion.
TAG = np.dtype("<i4")
TS = np.dtype("<i8")
VAL = np.dtype("<f8")
Q = np.dtype("u1")
_BUSY_TIMEOUT_S = 10.0
_WAL_CHECKPOINT_PAGES = 10_000
_WAL_SIZE_LIMIT = 64 * 2**20

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tags (
    tag_id   INTEGER PRIMARY KEY,
    path     TEXT NOT NULL UNIQUE,
    asset    TEXT NOT NULL,
    role     TEXT NOT NULL,
    device   TEXT NOT NULL,
    protocol TEXT NOT NULL,
    unit     TEXT NOT NULL DEFAULT '',
    enum     TEXT
);
CREATE TABLE ingest (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    level   INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    t_min   INTEGER NOT NULL,
    t_max   INTEGER NOT NULL,
    tag_ids BLOB NOT NULL,
    ts      BLOB NOT NULL,
    value   BLOB NOT NULL,
    quality BLOB NOT NULL,
    texts   TEXT,
    server_ts  BLOB,
    gateway_ts BLOB,
    crc_tags   INTEGER,
    crc        INTEGER,
    crc_extra  INTEGER
);
CREATE TABLE chunks (
    chunk_id INTEGER PRIMARY KEY,
    tag_id   INTEGER NOT NULL,
    t_min    INTEGER NOT NULL,
    t_max    INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    ts       BLOB NOT NULL,
    value    BLOB NOT NULL,
    quality  BLOB NOT NULL,
    texts    TEXT,
    server_ts  BLOB,
    gateway_ts BLOB,
    crc        INTEGER,
    crc_extra  INTEGER
);
CREATE INDEX chunks_by_tag ON chunks (tag_id, t_max, t_min);
CREATE TABLE latest (
    tag_id  INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    value   REAL,
    quality INTEGER NOT NULL,
    text    TEXT
);
CREATE TABLE gaps (
    gap_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    device   TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns   INTEGER,
    reason   TEXT NOT NULL DEFAULT '',
    asset    TEXT
);
CREATE INDEX gaps_by_device ON gaps (device, start_ns);
CREATE INDEX gaps_by_end ON gaps (end_ns);
CREATE TABLE heartbeats (
    device TEXT PRIMARY KEY,
    ts_ns  INTEGER NOT NULL
);
"""

ROLLUPS_TABLE = """CREATE TABLE rollups (
    asset    TEXT NOT NULL,
    hour_ns  INTEGER NOT NULL,
    key      TEXT NOT NULL,
    reach_ns INTEGER NOT NULL,
    data     BLOB NOT NULL,
    extra    TEXT,
    PRIMARY KEY (asset, hour_ns)
) WITHOUT ROWID"""
_SCHEMA += ROLLUPS_TABLE + ";\n"
#: an asset's rows of one key by time: the read path's day-level rows (day, day-sum, head) lie
#: between the hour rows, one in ~25, so a read of them by the primary key would walk every
#: hour row of the span
ROLLUPS_BY_KEY = "CREATE INDEX IF NOT EXISTS rollups_by_key ON rollups (asset, key, hour_ns)"
#: chunks found damaged (a checksum that does not match, or blobs that do not decode): one row
#: per chunk, so the record is bounded by the chunks; deleted with the chunk by retention
DAMAGE_TABLE = """CREATE TABLE damage (
    chunk_id INTEGER PRIMARY KEY,
    tag_id   INTEGER NOT NULL,
    t_min    INTEGER NOT NULL,
    t_max    INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    found_ns INTEGER NOT NULL
)"""
_SCHEMA += DAMAGE_TABLE + ";\n"
#: ingest rows found damaged (version 6): the row's seq (NULL: a chunk's damage)
DAMAGE_SEQ = "ALTER TABLE damage ADD COLUMN seq INTEGER"
_SCHEMA += DAMAGE_SEQ + ";\n"
INSERT_CHUNK = (
    "INSERT INTO chunks (tag_id, t_min, t_max, n, ts, value, quality, texts, server_ts, gateway_ts,"
    " crc, crc_extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_INGEST = (
    "INSERT INTO ingest"
    " (level, n, t_min, t_max, tag_ids, ts, value, quality, texts, server_ts, gateway_ts,"
    " crc_tags, crc, crc_extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: schema version -> the statements that take a file from it to the next version
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # the optional timestamp columns (NULL in every existing row)
    1: (
        "ALTER TABLE ingest ADD COLUMN server_ts BLOB",
        "ALTER TABLE ingest ADD COLUMN gateway_ts BLOB",
        "ALTER TABLE chunks ADD COLUMN server_ts BLOB",
        "ALTER TABLE chunks ADD COLUMN gateway_ts BLOB",
    ),
    # gaps of one asset of a device (NULL: the whole device, as every existing gap)
    2: ("ALTER TABLE gaps ADD COLUMN asset TEXT",),
    # derived per-asset hourly rows (empty: rebuilt from the samples by whoever uses them)
    3: (ROLLUPS_TABLE,),
    # Chunk checksums (issue 13 item 5). A separate step on purpose: if another branch also
    # bumps the version, renumber this key and SCHEMA_VERSION at merge; nothing else depends
    # on the number. Existing chunks keep crc NULL: unverified (their blobs are still checked
    # to decode), never taken for damage.
    4: (
        "ALTER TABLE chunks ADD COLUMN crc INTEGER",
        "ALTER TABLE chunks ADD COLUMN crc_extra INTEGER",
        DAMAGE_TABLE,
    ),
    # Ingest row checksums (issue 13 item 5, the rows not yet compacted). Existing rows keep
    # NULL: unverified (still checked to decode); damage rows of chunks keep seq NULL.
    5: (
        "ALTER TABLE ingest ADD COLUMN crc_tags INTEGER",
        "ALTER TABLE ingest ADD COLUMN crc INTEGER",
        "ALTER TABLE ingest ADD COLUMN crc_extra INTEGER",
        DAMAGE_SEQ,
    ),
}
#: the columns an ingest row's check needs before ROW_COLS (``checksum.ingest_fault``)
CHECK_COLS = "level, n, t_min, t_max, crc_tags, crc, crc_extra"

#: the ingest columns a merge reads, in BlobRow order
ROW_COLS = "tag_ids, ts, value, quality, texts, server_ts, gateway_ts"
# >=: at equal ts the flush being written now holds the later write.
UPSERT_LATEST = (
    "INSERT INTO latest (tag_id, ts, value, quality, text) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (tag_id) DO UPDATE SET ts = excluded.ts, value = excluded.value,"
    " quality = excluded.quality, text = excluded.text WHERE excluded.ts >= latest.ts"
)

# tag_ids, ts, value, quality, texts, server_ts, gateway_ts (see ROW_COLS)
BlobRow = tuple[bytes, bytes, bytes, bytes, str | None, bytes | None, bytes | None]


class Connection(sqlite3.Connection):
    """A connection that counts the blobs it opened.

    CPython's ``sqlite3`` keeps a weak reference to every ``Blob`` a connection ever opened,
    in a list that is emptied only when the connection closes (python/cpython#144424, open
    in 3.11 to 3.14): about 85 bytes per ``blobopen``, for good. Readers open one blob per
    tag and sorted ingest row (``runs.Run.part``), tens of thousands a minute under a few
    dashboards while data arrive, so a long-lived connection grew without bound (the
    soak's 0.5 GB/h, issue 13). The store retires a reader connection once it has opened
    ``BLOBS_PER_CONNECTION`` blobs (``SqliteStore._reader``)."""

    blobs_opened = 0

    def blobopen(self, *args: Any, **kwargs: Any) -> sqlite3.Blob:
        self.blobs_opened += 1
        return super().blobopen(*args, **kwargs)


#: blobs a reader connection opens before the store closes it (its dead weak references go
#: with it): ~0.5 MB at most per connection (tracemalloc: 97 bytes per blob, the reference
#: and its slot in the list), a reconnect (~1 ms) every 5 k blob reads. The pool holds one
#: connection per concurrent reader (KPI workers, roll-up maintainer, API threads); at 20 k
#: each held up to ~2 MB, and under 5 dashboards they filled for the first half hour or so
#: (the soak's traced run: 30,938 references at minute 25; issue 13)
BLOBS_PER_CONNECTION = 5_000


def connect(path: Path, synchronous: str, reader: bool = False) -> Connection:
    """A connection to the file at ``path``: a reader (query only), or the writer (WAL,
    ``synchronous``)."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a write is exactly one
    # transaction and a read is exactly one snapshot.
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False,
        factory=Connection,
    )
    if reader:
        conn.execute("PRAGMA query_only = ON")
    else:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"{path}: cannot use WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        # Checkpoint every ~40 MB of WAL instead of 4 MB: ingest pages are freed and
        # reused within minutes, so a page rewritten several times is copied into the
        # database once (measured: 10k-point batches 3.4M -> 6M points/s). The limit
        # truncates the WAL file back after a checkpoint so it does not keep its peak.
        conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
    return conn


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new file, or migrate an older one to ``SCHEMA_VERSION``; one
    transaction on the writer connection ``conn``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        names = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "meta" not in names:
            if names - {"sqlite_sequence"}:
                raise StoreError(
                    f"{path}: not a tierproof store (has tables {sorted(names)}, no meta)"
                )
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('created_by', ?)",
                (str(SCHEMA_VERSION), "tierproof store.sqlite"),
            )
        else:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: store schema version {version} is newer than this"
                    f" tierproof's ({SCHEMA_VERSION}); upgrade tierproof to open it"
                )
            if version in _MIGRATIONS:
                # in this transaction: a failed migration leaves the file as it was
                old = version
                while version in _MIGRATIONS:
                    for stmt in _MIGRATIONS[version]:
                        conn.execute(stmt)
                    version += 1
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),)
                )
                log.info("%s: store schema migrated from version %d to %d", path, old, version)
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: unknown store schema version {version}"
                    f" (this tierproof reads {SCHEMA_VERSION})"
                )
        # not a change of the layout (a file with it opens in any version): created where missing
        conn.execute(ROLLUPS_BY_KEY)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """For a read-only open (``SqliteStore(readonly=True)``): the file is a tierproof store at
    exactly ``SCHEMA_VERSION`` (a reader neither creates nor migrates one)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in names:
        raise StoreError(f"{path}: not a tierproof store (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema version {version}, this tierproof reads "
                         f"{SCHEMA_VERSION}: open it read-write once (the gateway migrates it)")


def enum_json(enum: dict[int, str] | None) -> str | None:
    if enum is None:
        return None
    return json.dumps({str(k): enum[k] for k in sorted(enum)}, ensure_ascii=False)


def enum_load(text: str | None) -> dict[int, str] | None:
    if text is None:
        return None
    return {int(k): str(v) for k, v in json.loads(text).items()}
