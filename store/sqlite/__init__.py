"""The embedded store: SQLite (stdlib ``sqlite3``), one bulk write per batch.

A write is one INSERT of the batch's four arrays as BLOBs into ``ingest`` plus one COMMIT,
so its cost hardly depends on the number of points. The batch's server and gateway
timestamps, when it has any, are two more BLOBs (NULL otherwise) that every step below
carries along with the samples. Later, in one transaction each:

- every ``compact_every`` written batches are merged into one *run*: an ``ingest`` row of
  level 1 whose samples are sorted by (tag, ts) and free of duplicates;
- runs of one level are merged into one run of the next level once there are ``_FANOUT`` of
  them (size tiers, so a few large runs rather than many small ones);
- everything in ``ingest`` is *flushed* into per-tag ``chunks`` once that gives chunks of
  ``_CHUNK_TARGET`` samples per tag on average (or ``_MAX_PENDING_POINTS`` are waiting),
  and on ``compact()``, ``apply_retention()`` and ``close()``; a tag with more than
  ``runs.CHUNK_MAX`` samples pending gets several chunks of at most that many, in time order.

Why the runs: a chunk row costs one random page write in the per-tag index. Flushing every
64 batches of a 50-tag device each, with 25,000 tags, made one chunk *per sample*
(measured: 72k points/s and falling, below a naive row-per-point table). The runs are
written sequentially and keep per-tag chunks dense whatever the batch size.

Concurrency: one writer connection behind a lock (writes, compaction, tags, gaps,
retention); readers take connections from a small pool and read inside one transaction,
so each read sees one WAL snapshot and never a half-compacted state. A reader connection
is closed instead of pooled once it has opened ``BLOBS_PER_CONNECTION`` blobs: CPython's
``sqlite3`` keeps a dead weak reference per blob ever opened until the connection closes
(python/cpython#144424), which grew a long-running gateway by ~0.5 GB/h (issue 13).
``store/sqlite/SCHEMA.md`` documents the file format for auditors.
"""

from .schema import SCHEMA_VERSION
from .store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]
