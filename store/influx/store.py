"""InfluxDB as the store: samples and gap markers in InfluxDB, metadata in a local file.

- **Writes**: line protocol built columnarly (``store.influx.lp``), in bodies of
  ``batch_size`` lines, a large write split by series into up to ``posts_in_flight`` lanes
  posted at once (``Sink.post_lanes``), by ``store.influx.sink``: ``api: v2`` through influxdb-client to
  ``/api/v2/write`` (InfluxDB 2.x, 3.x, 1.8+, VictoriaMetrics), ``api: v1`` to ``/write``
  (InfluxDB 1.x). A failed write raises :class:`SinkUnavailable` or :class:`SinkRejected` and is
  never retried here: the spool (``store.spool``) keeps and re-sends the batch. Re-sending is
  harmless: InfluxDB keeps one point per series and time, the last written.
- **Reads**: InfluxQL over ``/query`` (``store.influx.ql``); on a 2.x server the DBRP mapping
  of the configured database/retention policy to the bucket is created when missing.
- **Metadata** — tag ids, gaps, heartbeats — must be local and fast (the supervisor and every
  KPI request ask for them): an embedded :class:`SqliteStore` at ``meta_path`` keeps them, with
  its own tables and code, and holds no samples. Gap markers go to InfluxDB as well
  (``<measurement>_gaps``), for dashboards and other readers of the central database.

- **Roll-ups** (``<measurement>_rollup``) and the **tag register** (``<measurement>_tags``):
  see ``store.influx.rollups``. The gateway that owns an asset writes its rows and, with every
  late or backfilled write of its samples, voids the rows of the hours it touches in the same
  posted body; a store without devices of its own (the central tierproof, :meth:`discover_tags`)
  reads the tags, rows and gap markers every gateway wrote.

The schema is documented in ``store/influx/SCHEMA.md``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np

from config.errors import SinkRejected, SinkUnavailable, StoreError
from config.store import InfluxStoreSettings

from ..base import Gap, Latest, RollupRow, SamplePage, StoreStats, TagRecord
from ..batch import I64, Batch, Series
from ..changes import Changes
from ..rollup_log import asset_since
from ..sqlite import SqliteStore
from .lp import HIERARCHY, LineEncoder, UnknownTags, gap_line, series_key
from .ql import (
    Body,
    Rows,
    int_column,
    join,
    msgpack_docs,
    parse_chunked,
    parse_grouped,
    parse_series,
    path_filter,
    quote_ident,
    quote_str,
    series_of,
)
from .readcache import OPEN, ReadCache
from .rollups import HOUR_NS, Claims, decode_point, evidence, rollup_line, tag_line, void_lines
from .sink import make_sink, server_message

__all__ = ["InfluxStore"]

T = TypeVar("T")

#: a roll-up row as the read path takes it: (hour_ns, reach_ns, data, extra), as ``api.rollups``
Cell = tuple[int, int, bytes, "str | None"]

log = logging.getLogger("store.influx")

#: statements sent in one /query request (each tag of a read_many is one or two)
_STATEMENTS_PER_QUERY = 200
_CHUNK_SIZE = 50_000
#: roll-up rows kept decoded (``_rows``): ~1.6 kB each, so at most ~16 MB; a week of 11 assets
#: is 1,848 rows, of 200 assets 33,600 (a window larger than this reads its rows whole)
_ROW_CACHE = 10_000
#: a gateway's knowledge of its own rows (``InfluxStore._rows``, not central): at most this
#: many (asset, hour) slots held (a slot with a row ~1.6 kB: ~16 MB; a window of more slots is
#: asked as a central store asks), and how long what a read learned is trusted: then it is
#: asked again, so that a second writer of the same assets (a misconfiguration: the owner is
#: their only writer) cannot keep this store wrong for longer
_KNOWN_SLOTS = 10_000
_RECHECK_NS = 600 * 1_000_000_000
#: how far back a read first looks for the sample before its window (then, for the tags
#: without one there, anywhere): an unbounded one opens every shard (~40 vs ~20 ms for a
#: 7-day /kpis of the demo plant)
_PRIOR_BOUND_NS = 24 * 3600 * 1_000_000_000
#: look backs in which a read finds the sample before its window among the window's own
#: (``InfluxStore.read_ranges``: folding), and how many samples a tag's last read rate must
#: put in one for it to be used: a denser tag costs fewer extra samples than the cursors of
#: a statement of its own; a sparser one (a state, a rarely rising reject counter) has one
_FOLD_BACK_NS = (60 * 1_000_000_000, 600 * 1_000_000_000, 3600 * 1_000_000_000)
_FOLD_SAMPLES = 4
#: a request whose answer is expected to hold at most this many samples is asked for whole,
#: not chunked (``InfluxStore._answers``): InfluxDB encodes a large answer whole at a higher
#: cost than chunked (a week of an asset's tags, ~30-90k samples: 1.7 s of its CPU for a
#: 7-day /kpis without roll-ups against 1.0 s chunked; 15k: the same as chunked)
_WHOLE_SAMPLES = 15_000
#: ``Accept`` for a MessagePack answer (``InfluxStore._answers``), and how the flag of a cut
#: answer (``"partial": true``) is encoded in one
_MSGPACK = "application/x-msgpack"
_ASK_MSGPACK = {"Accept": _MSGPACK}
_MSGPACK_PARTIAL = b"\xa7partial\xc3"
#: the tag register is written again this often (a retention policy would expire it)
_REGISTER_EVERY_NS = 24 * 3600 * 1_000_000_000
_NEVER = -(2**63)


def _has_msgpack() -> bool:
    try:
        import msgpack  # noqa: F401
    except ImportError:  # the JSON answers: the same samples, more of the server's CPU
        return False
    return True


class InfluxStore:
    """The :class:`~store.base.Store` on InfluxDB (see the module docstring).

    ``write`` is durable on return in the sense of the protocol once the server answered 2xx
    (InfluxDB has then written its WAL). Retention is the server's: the retention policy (1.x)
    or the bucket's retention period (2.x/3.x); ``apply_retention`` deletes nothing.
    """

    def __init__(self, settings: InfluxStoreSettings) -> None:
        self.settings = settings
        self._where = f"InfluxDB {settings.url}"
        self._database = settings.database or settings.bucket or ""
        self._rp = settings.retention_policy or ("autogen" if settings.api == "v2" else None)
        self._meta = SqliteStore(settings.meta_path)
        try:
            self._sink = make_sink(settings)
            self._http = self._query_client()
        except BaseException:
            self._meta.close()
            raise
        self._lock = threading.Lock()
        self._encoder = LineEncoder({})
        self._paths: dict[int, str] = {}
        self._ids: dict[str, int] = {}  # path -> tag id: the inverse of _paths
        self._dbrp_checked = settings.api == "v1"
        #: ask for MessagePack answers (``_answers``): the package is there and the server
        #: has not answered otherwise
        self._msgpack = _has_msgpack()
        self._unsent_gaps: set[int] = set()
        self._sink_ok = True  # last post succeeded: worth sending gap markers right away
        self._batches = 0
        self._points = 0
        #: points InfluxDB dropped from written batches it otherwise stored ("partial write")
        self._partial_dropped = 0
        self._closed = False
        #: ``ns``: the cap of this thread's open ``snapshot()``, if any
        self._cap = threading.local()
        self._asset_of: dict[int, str] = {}
        #: tag id -> its samples per ns in its last read window (``read_ranges``: a hint)
        self._rate: dict[int, float] = {}
        self._device_of: dict[int, str] = {}
        #: samples read back, kept exact by this store's writes (``store.influx.readcache``);
        #: None: off (``read_cache_samples: 0``), or a reader of other gateways' data
        self._cache: ReadCache | None = (ReadCache(settings.read_cache_samples)
                                         if settings.read_cache_samples else None)
        self._keys: dict[int, str] = {}
        #: (asset, hour_ns) -> ((key, reach_ns, written_ns), row): rows read (``_rows``)
        self._row_cache: dict[tuple[str, int], tuple[tuple[object, object, object], RollupRow]] = {}
        self._written_ns = 0  # the last written_ns stamped on a row put
        #: a gateway's (not central) knowledge of its rows (``_rows``): (asset, hour slot) ->
        #: (when a read learned it, monotonic ns; the rows of the slot's hour in time order,
        #: none: no usable row), kept up to date by this store's own voids and puts
        self._known: dict[tuple[str, int], tuple[int, tuple[RollupRow, ...]]] = {}
        #: changes of that knowledge: a counter, asset -> the counter at its last void or put,
        #: the counter when it was all dropped. A read stores what it learned only for the
        #: assets unchanged since it asked (a void landing meanwhile is not undone)
        self._known_seq = 0
        self._known_changed: dict[str, int] = {}
        self._known_dropped = 0
        #: this store has written samples or claimed rows: it is the process that writes its
        #: assets' data (the gateway), so it knows its rows. A store that wrote nothing
        #: (``tierproof serve`` over a gateway's configuration, the CLI) reads another
        #: process's rows, and asks as a central store does
        self._writer = False
        #: voids of rows whose hours a gap opened or closed touched: sent before the next rows
        #: or with the next write of samples (see open_gap)
        self._pending_voids = ""
        #: their (asset, hours): still to be voided in InfluxDB, so a read learns them stale
        self._pending_hours: list[tuple[str, range]] = []
        #: roll-ups: claims (from ``<meta_path>-rollups.json`` at first use), and the lock
        #: that orders writes of samples (and their voids) against puts of computed rows
        self._claims: Claims | None = None
        self._rollup_lock = threading.Lock()
        self._register_due = False  # the tag register waits for a successful write
        self._register_sent_ns = _NEVER
        #: a store without devices of its own reads what gateways wrote (``discover_tags``)
        self.central = False
        #: no day rows (``api.rollups.day_slot``): a late write voids the hour points it makes
        #: stale, and a day row's point (an hour + 1 ns, or off the hour grid in a zone with a
        #: half-hour offset) would stay; the assessment sums hour rows instead
        self.keeps_day_rows = False
        #: every write of this store, told to subscribers (the roll-up maintainer, the KPI
        #: cache); None once ``discover_tags`` made this a reader of other gateways' data
        self.changes: Changes | None = Changes()
        # the metadata's own changes (tags registered, gaps opened or closed) are this store's
        self._meta.changes.subscribe(self._meta_changed)
        self._load_tags(self._meta.tags())

    def _query_client(self) -> httpx.Client:
        s = self.settings
        # store.gzip governs reads too: on loopback or a fast LAN the server's compression
        # costs more than the bytes it saves (a 7-day KPI read: 0.92 s with, 0.42-0.58 s
        # without); httpx would ask for gzip on every request unless told otherwise
        headers = {"Accept": "application/json",
                   "Accept-Encoding": "gzip" if s.compress else "identity"}
        auth: httpx.Auth | None = None
        if s.api == "v2":
            assert s.token is not None
            headers["Authorization"] = f"Token {s.token.get_secret_value()}"
        elif s.username is not None and s.password is not None:
            auth = httpx.BasicAuth(s.username, s.password.get_secret_value())
        return httpx.Client(base_url=s.url, headers=headers, auth=auth, timeout=s.timeout_s,
                            verify=s.verify_tls)

    # ------------------------------------------------------------------ tags

    def _load_tags(self, tags: Sequence[TagRecord]) -> None:
        try:
            keys = {t.tag_id: series_key(self.settings.measurement, t) for t in tags}
        except ValueError as exc:
            raise StoreError(f"{self._where}: {exc}") from exc
        encoder = LineEncoder(keys)
        paths = {t.tag_id: t.path for t in tags}
        with self._lock:
            self._encoder = encoder
            self._asset_of = {t.tag_id: t.asset for t in tags}
            self._device_of = {t.tag_id: t.device for t in tags}
            if self._paths != paths:  # rows read hold tag ids: new ids, rows read anew
                self._row_cache = {}
                self._drop_known()
            self._paths = paths
            self._ids = {t.path: t.tag_id for t in tags}
            if self._keys != keys and self._cache is not None:
                self._cache.clear()  # a tag id now names another series
            self._keys = keys

    def register_tags(self, tags: Sequence[TagRecord]) -> dict[str, int]:
        """Tag ids are kept in the local metadata file (stable by path across restarts)."""
        for t in tags:  # refuse before storing anything InfluxDB cannot carry
            try:
                series_key(self.settings.measurement, t)
            except ValueError as exc:
                raise StoreError(f"{self._where}: {exc}") from exc
        ids = self._meta.register_tags(tags)
        self._load_tags(self._meta.tags())
        if tags and not self.central:  # sent after the next successful write of samples
            self._register_due = True
        return ids

    def _meta_changed(self, since_ns: int) -> None:
        changes = self.changes
        if changes is not None:
            changes.note(since_ns)

    def _send_register(self) -> None:
        """Post the tag register (best effort: a failure leaves it due after the next
        successful write; it is a copy for the central tierproof, the ids stay local)."""
        now = time.time_ns()
        lines = "".join(tag_line(self._tags_m, t, now) for t in self._meta.tags())
        try:
            if lines:
                self._sink.post(lines.encode())
        except SinkUnavailable as exc:
            self._sink_ok = False
            log.warning("%s: tag register not sent yet: %s", self._where, exc)
            return
        except SinkRejected as exc:
            log.error("%s: tag register refused: %s", self._where, exc)
        self._register_due = False
        self._register_sent_ns = now

    @property
    def _tags_m(self) -> str:
        return f"{self.settings.measurement}_tags"

    @property
    def _rollup_m(self) -> str:
        return f"{self.settings.measurement}_rollup"

    def discover_tags(self, assets: Sequence[str]) -> int:
        """Make this store a reader of what gateways wrote (the central tierproof): register
        locally every tag of ``assets`` found in the tag register in InfluxDB (ids are this
        store's own), read gaps from the gap markers, and offer no change feed (other
        processes write here). Returns the number of tags found; call again to refresh."""
        self.central = True
        self.changes = None
        self._cache = None  # other processes write here: nothing read can be kept
        with self._lock:  # other gateways write the rows: asked for at every read
            self._drop_known()
        stmts = [f"SELECT * FROM {self._src(self._tags_m)} WHERE {path_filter(a)}" for a in assets]
        found: dict[str, TagRecord] = {}
        for rows in self._query(stmts) if stmts else []:
            for values in rows.values:  # in time order: a tag's last registration wins
                point = dict(zip(rows.columns, values, strict=False))
                segs = [point.get(k) for k in HIERARCHY]
                if not all(segs):
                    continue
                path = "/".join(str(x) for x in segs)
                enum_text = point.get("enum")
                enum = ({int(k): str(v) for k, v in json.loads(enum_text).items()}
                        if enum_text else None)
                found[path] = TagRecord(
                    path=path, asset=path.rsplit("/", 1)[0], role=str(point.get("role") or ""),
                    device=str(point.get("device") or ""), protocol=str(point.get("protocol") or ""),
                    unit=str(point.get("unit") or ""), enum=enum)
        if found:
            self._meta.register_tags(list(found.values()))
            self._load_tags(self._meta.tags())
        return len(found)

    def tags(self) -> list[TagRecord]:
        return self._meta.tags()

    @property
    def tags_version(self) -> int:
        """Bumped when a tag is registered or discovered (the local register's, ``TagIndex``)."""
        return self._meta.tags_version

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> None:
        """Post the batch (``batch_size`` lines per request); raises SinkUnavailable or
        SinkRejected (see ``store.influx.sink``), never retries."""
        if len(batch) == 0:
            return
        self._check_open()
        with self._lock:
            encoder = self._encoder
        try:
            lanes = encoder.encode_lanes(batch, self.settings.batch_size, self.settings.posts_in_flight)
        except UnknownTags as exc:
            # no server will ever take these: the spool quarantines the batch with the reason
            raise SinkRejected(f"{self._where}: {exc}", status=None, reason=str(exc)) from exc
        cache = self._cache
        # the read cache: the batch's tags are being written (a read asked meanwhile is not
        # kept); after the post, what InfluxDB took extends or drops their ranges
        if cache is not None:
            cache.writing(batch)
        try:
            dropped = self._post_batch(batch, lanes)
        except BaseException:
            if cache is not None:
                cache.written(batch, whole=False)
            raise
        if cache is not None:
            cache.written(batch, whole=dropped == 0)
        self._sink_ok = True
        self._writer = True
        with self._lock:  # counted once the whole batch is taken: a batch sent again counts once
            self._batches += 1
            self._points += len(batch)
            self._partial_dropped += dropped
        if self.changes is not None:
            self.changes.note(int(batch.ts_ns.min()))
        if self._unsent_gaps:
            self._send_gaps()
        if self._register_due or (self._register_sent_ns != _NEVER
                                  and time.time_ns() - self._register_sent_ns > _REGISTER_EVERY_NS):
            self._send_register()

    def _post_batch(self, batch: Batch, lanes: list[list[bytes]]) -> int:
        """Post the encoded batch and the voids it makes (``write``); the points InfluxDB
        dropped."""
        dropped = 0
        # under the roll-up lock: a computation claims its hours before or after this write
        # as a whole (see store.influx.rollups)
        with self._rollup_lock:
            since: dict[str | None, int] = {}
            stale: dict[str, range] = {}
            voids = ""
            claims = self._claims
            if claims is None:
                claims = self._load_claims()
            if int(batch.ts_ns.min()) < claims.end_ns:
                with self._lock:
                    asset_of = self._asset_of
                since = asset_since(batch.tag_id, batch.ts_ns, asset_of)
                stale = claims.stale_hours(since)
                if stale:
                    voids = "".join(void_lines(self._rollup_m, a, h) for a, h in stale.items())
            pending = self._pending_voids
            n_pending = len(self._pending_hours)
            # after the samples: in the same request as the last of them when there is one
            # lane, else in a request of their own once every lane is taken
            after = (voids + pending).encode()
            if after and len(lanes) == 1:
                lanes[0][-1] += after
                after = b""
            try:
                dropped += self._sink.post_lanes(lanes)
                if after:
                    dropped += self._sink.post(after)
            except BaseException as exc:
                if isinstance(exc, SinkUnavailable):
                    self._sink_ok = False
                if stale:  # the voids may have landed, in part or not at all: asked again
                    self._forget_known(stale)
                raise
            if since:
                claims.note(since)
            if stale or pending:
                with self._lock:
                    self._void_known(stale)
                    self._sent_pending(n_pending)
            if pending:
                self._pending_voids = self._pending_voids[len(pending):]
        return dropped

    # ------------------------------------------------------------------ roll-ups

    def _src(self, measurement: str) -> str:
        m = quote_ident(measurement)
        return f"{quote_ident(self._rp)}.{m}" if self._rp else m

    def _claims_path(self) -> Path | None:
        meta = self.settings.meta_path
        return None if meta == ":memory:" else Path(f"{meta}-rollups.json")

    def _load_claims(self) -> Claims:
        """The claims, at first use from the local metadata: the end of the hours this
        gateway ever computed rows for (it is their only writer), so that a late write after a
        restart (a spool draining) voids the rows of an earlier run too."""
        if self._claims is None:
            end = _NEVER
            path = self._claims_path()
            if path is not None and path.exists():
                try:
                    end = int(json.loads(path.read_text())["end_ns"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise StoreError(f"{path}: unreadable ({exc}); delete it only after deleting "
                                     f"this gateway's rows in {self._rollup_m}") from exc
            self._claims = Claims(end)
        return self._claims

    def rollup_claim(self, end_ns: int) -> int:
        """A computation of rows of hours ending up to ``end_ns`` starts: its token. The new
        end is kept in the local metadata before any row can be put."""
        with self._rollup_lock:
            self._writer = True
            claims = self._load_claims()
            before = claims.end_ns
            token = claims.claim(int(end_ns))
            path = self._claims_path()
            if claims.end_ns > before and path is not None:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps({"end_ns": claims.end_ns}))
                tmp.replace(path)
            return token

    def put_rollups(self, rows: Sequence[RollupRow], token: int) -> int:
        """Post the rows that no write since ``token`` has made stale; returns how many.
        Raises SinkUnavailable/SinkRejected when InfluxDB does not take them: the maintainer
        computes them again on its next pass (rows are derived: nothing is lost)."""
        self._check_open()
        if self.central:
            raise StoreError(f"{self._where}: a central store reads roll-ups, it does not write them")
        with self._rollup_lock:
            if self._pending_voids:  # before any row computed after the gap that made them
                self._sink.post(self._pending_voids.encode())
                self._pending_voids = ""
                with self._lock:
                    self._sent_pending(len(self._pending_hours))
            rows = list(rows)
            admitted = self._load_claims().admit(rows, token)
            if len(admitted) < len(rows):  # refused: what a write made of their hours is asked
                taken = {id(r) for r in admitted}
                self._forget_rows([r for r in rows if id(r) not in taken])
            # each write of a row stamps it anew: readers holding a row see it changed
            now = max(time.time_ns(), self._written_ns + 1)
            lines = [rollup_line(self._rollup_m, r, now + k) for k, r in enumerate(admitted)]
            self._written_ns = now + len(admitted)
            step = max(1, self.settings.batch_size // 10)  # a row is ~10 points' worth of bytes
            for i in range(0, len(lines), step):
                try:
                    self._sink.post("".join(lines[i:i + step]).encode())
                except BaseException:  # may have landed in part: these and the rest asked again
                    self._forget_rows(admitted[i:])
                    raise
                self._put_known(admitted[i:i + step])
        return len(admitted)

    def rollups(self, assets: Sequence[str], start_ns: int, end_ns: int, key: str | None = None,
                min_reach_ns: int | None = None) -> list[RollupRow]:
        """Rows of ``assets`` whose hour starts in [start_ns, end_ns), by asset and hour (void
        points left out); only those of ``key`` and with ``reach_ns >= min_reach_ns`` when
        given. Tag ids in the rows are this store's (see ``store.influx.rollups``)."""
        got = self._rows({a: key for a in assets}, start_ns, end_ns, min_reach_ns)
        return [r for a in assets for r in got.get(a, ())]

    def rollups_keyed(self, keys: Mapping[str, str], start_ns: int, end_ns: int,
                      min_reach_ns: int | None = None) -> dict[str, list[Cell]]:
        """The read path's rows (``api.rollups.keyed_rows``): asset -> (hour_ns, reach_ns, data,
        extra) of the rows of key ``keys[asset]`` whose hour starts in [start_ns, end_ns) and
        whose ``reach_ns >= min_reach_ns``, by hour (key and reach filtered by the server)."""
        got = self._rows(dict(keys), start_ns, end_ns, min_reach_ns)
        return {a: [(r.hour_ns, r.reach_ns, r.data, r.extra) for r in rows] for a, rows in got.items()}

    def _rows(self, keys: Mapping[str, str | None], start_ns: int, end_ns: int,
              min_reach_ns: int | None) -> dict[str, list[RollupRow]]:
        """asset -> its rows (of key ``keys[asset]`` where not None, and ``reach_ns >=
        min_reach_ns`` where given) whose hour starts in [start_ns, end_ns), by hour.

        The gateway's store (not central, and it has written samples or claimed rows: the
        process that writes its assets' data) is the only writer of its assets' rows: it
        answers from what it knows of each hour (``_known_rows``) and asks InfluxDB only for
        the hours it does not know. A central store, a store that has written nothing (a
        reader of a gateway's data in another process), and a window of more than
        ``_KNOWN_SLOTS`` hours of all its assets, ask for every row's version
        (``_rows_asked``)."""
        assets = list(keys)
        if not assets:
            return {}
        self._check_open()
        slots = range(int(start_ns) // HOUR_NS * HOUR_NS, int(end_ns), HOUR_NS)
        if self.central or not self._writer or len(slots) * len(assets) > _KNOWN_SLOTS:
            return self._rows_asked(keys, start_ns, end_ns, min_reach_ns)
        got = self._known_rows(assets, slots)
        low = -(2**63) if min_reach_ns is None else int(min_reach_ns)
        out: dict[str, list[RollupRow]] = {}
        for a in assets:
            key = keys[a]
            out[a] = [r for r in got[a] if start_ns <= r.hour_ns < end_ns and r.reach_ns >= low
                      and (key is None or r.key == key)]
        return out

    def _known_rows(self, assets: Sequence[str], slots: range) -> dict[str, list[RollupRow]]:
        """asset -> every row whose hour starts in one of ``slots`` (hours), by hour: those
        of the hours this store knows (read within ``_RECHECK_NS``, and kept since by its
        own voids and puts), the others asked for in one request (a statement per asset:
        every usable row, of any key, from its first hour not known to its last), and then
        known. What a read learns of an asset is not kept if this store voided or put a row
        of it meanwhile (the answer may predate that), and hours whose voids are still to
        be sent (a gap opened or closed: ``_pending_hours``) are learned stale."""
        now = time.monotonic_ns()
        asked: dict[str, list[int]] = {}
        out: dict[str, list[RollupRow]] = {}
        with self._lock:
            known = self._known
            seq = self._known_seq
            for a in assets:
                held: list[RollupRow] = []
                for h in slots:
                    slot = known.get((a, h))
                    if slot is None or now - slot[0] > _RECHECK_NS:
                        asked.setdefault(a, []).append(h)
                    else:
                        held += slot[1]
                out[a] = held
            if not asked:
                return out
            ids = self._ids
            pending = list(self._pending_hours)  # and those sent while this read is answered
        src = self._src(self._rollup_m)
        fetch = list(asked)
        answers = self._query([
            f'SELECT "key", "reach_ns", "data", "extra" FROM {src} WHERE {path_filter(a)}'
            f""" AND "key" != '' AND time >= {asked[a][0]} AND time < {asked[a][-1] + HOUR_NS}"""
            for a in fetch])
        learned: dict[str, dict[int, list[RollupRow]]] = {}
        for a, rows in zip(fetch, answers, strict=True):
            hours: dict[int, list[RollupRow]] = {h: [] for h in asked[a]}
            for t, k, r, d, x in zip(rows.column("time"), rows.column("key"),
                                     rows.column("reach_ns"), rows.column("data"),
                                     rows.column("extra"), strict=True):
                bucket = hours.get(int(t) // HOUR_NS * HOUR_NS)
                if bucket is not None and (row := decode_point(a, t, k, r, d, x, ids)) is not None:
                    bucket.append(row)
            learned[a] = hours
        with self._lock:
            keep = self._known_dropped <= seq
            pending += self._pending_hours
            for a, hours in learned.items():
                stale = [h for pa, h in pending if pa == a]
                mine = keep and self._known_changed.get(a, 0) <= seq
                for h, rows_ in hours.items():
                    if stale:
                        rows_ = [r for r in rows_ if not any(r.hour_ns in s for s in stale)]
                    out[a] += rows_
                    if mine:
                        self._known.pop((a, h), None)  # newest last: the bound keeps it
                        self._known[(a, h)] = (now, tuple(rows_))
                out[a].sort(key=lambda row: row.hour_ns)
            if len(self._known) > _KNOWN_SLOTS:  # the newest kept, in one pass
                self._known = dict(list(self._known.items())[-_KNOWN_SLOTS:])
        return out

    # what this store knows of its rows (``_known_rows``): every call under self._lock but
    # _forget_rows, _forget_known and _put_known

    def _changed(self, assets: Iterable[str]) -> None:
        self._known_seq += 1
        for a in assets:
            self._known_changed[a] = self._known_seq

    def _drop_known(self) -> None:
        self._known = {}
        self._known_seq += 1
        self._known_dropped = self._known_seq

    def _known_in(self, asset: str, hours: range) -> list[tuple[str, int]]:
        """The known slots of ``asset`` among ``hours``."""
        known = self._known
        if len(hours) <= len(known):
            return [(asset, h) for h in hours if (asset, h) in known]
        return [k for k in known if k[0] == asset and k[1] in hours]

    def _void_known(self, stale: Mapping[str, range]) -> None:
        """The rows of ``stale`` (asset -> hours) were voided: no longer held."""
        known = self._known
        for a, hours in stale.items():
            for k in self._known_in(a, hours):
                learned, rows = known[k]
                known[k] = (learned, tuple(r for r in rows if r.hour_ns != k[1]))
        self._changed(stale)

    def _sent_pending(self, n: int) -> None:
        """The first ``n`` pending voids are in InfluxDB: no longer applied to what a read
        learns, so a read that asked before they landed keeps nothing of their assets."""
        self._changed({a for a, _ in self._pending_hours[:n]})
        del self._pending_hours[:n]

    def _forget_known(self, stale: Mapping[str, range]) -> None:
        """Not known any more: asked for at the next read."""
        with self._lock:
            for a, hours in stale.items():
                for k in self._known_in(a, hours):
                    del self._known[k]
            self._changed(stale)

    def _forget_rows(self, rows: Sequence[RollupRow]) -> None:
        with self._lock:
            for r in rows:
                self._known.pop((r.asset, r.hour_ns // HOUR_NS * HOUR_NS), None)
            self._changed({r.asset for r in rows})

    def _put_known(self, rows: Sequence[RollupRow]) -> None:
        """``rows`` are in InfluxDB: each replaces its hour's row where the hour is known,
        as a read gives it back (``decode_point``)."""
        with self._lock:
            ids = self._ids
            known = self._known
            for r in rows:
                k = (r.asset, int(r.hour_ns) // HOUR_NS * HOUR_NS)
                slot = known.get(k)
                if slot is None:
                    continue
                held = [x for x in slot[1] if x.hour_ns != r.hour_ns]
                if r.key:  # an empty key is a void point
                    held.append(RollupRow(r.asset, int(r.hour_ns), r.key, int(r.reach_ns),
                                          bytes(r.data), evidence(r.extra, ids)))
                    held.sort(key=lambda row: row.hour_ns)
                known[k] = (slot[0], tuple(held))
            self._changed({r.asset for r in rows})

    def _rows_asked(self, keys: Mapping[str, str | None], start_ns: int, end_ns: int,
                    min_reach_ns: int | None) -> dict[str, list[RollupRow]]:
        """``_rows`` of a store that does not know the rows (central: other gateways write
        them), by their versions.

        A row's points are ~1.3 kB (its ``data`` and ``extra``): a week of 11 assets is 2.3 MB
        that InfluxDB takes ~35 ms to encode as JSON. So rows read are kept (up to
        ``_ROW_CACHE`` of them, decoded), and each read first asks only for the rows'
        ``key``, ``reach_ns`` and ``written_ns`` (~5 ms): a held row whose three are the same is
        the same row (every write of a row stamps a new ``written_ns``; a void changes its
        key), only the others are read whole. Rows without ``written_ns`` (written before it
        existed) are read whole every time."""
        src = self._src(self._rollup_m)

        def cond(asset: str) -> str:
            out = path_filter(asset)
            key = keys[asset]
            out += f' AND "key" = {quote_str(key)}' if key is not None else ' AND "key" != \'\''
            if min_reach_ns is not None:
                out += f' AND "reach_ns" >= {int(min_reach_ns)}'
            return out

        assets = list(keys)
        if not assets:
            return {}
        window = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
        # where the key is given the condition fixes it: not asked for (a week of 11 assets'
        # keys is 85 of the answer's 199 kB, and ~1/3 of InfluxDB's time for it)
        def columns(asset: str) -> str:
            return ('"reach_ns", "written_ns"' if keys[asset] is not None
                    else '"key", "reach_ns", "written_ns"')

        versions = self._query([f"SELECT {columns(a)} FROM {src} WHERE {cond(a)} AND {window}"
                                for a in assets])
        with self._lock:
            cache = self._row_cache
        out: dict[str, list[RollupRow]] = {}
        missing: dict[str, list[int]] = {}
        for a, rows in zip(assets, versions, strict=True):
            held: list[RollupRow] = []
            given = keys[a]
            key_column = rows.column("key") if given is None else [given] * len(rows.values)
            for t, k, r, w in zip(rows.column("time"), key_column, rows.column("reach_ns"),
                                  rows.column("written_ns"), strict=True):
                hit = cache.get((a, int(t))) if w is not None else None
                if hit is not None and hit[0] == (k, r, w):
                    held.append(hit[1])
                elif k and r is not None:
                    missing.setdefault(a, []).append(int(t))
            out[a] = held
        if not missing:
            return out
        with self._lock:
            ids = self._ids
        fetch = list(missing)
        whole = self._query([
            f'SELECT "key", "reach_ns", "written_ns", "data", "extra" FROM {src} WHERE {cond(a)}'
            f" AND time >= {min(missing[a])} AND time <= {max(missing[a])}" for a in fetch])
        fresh: dict[tuple[str, int], tuple[tuple[object, object, object], RollupRow]] = {}
        for a, rows in zip(fetch, whole, strict=True):
            wanted = set(missing[a])
            for t, k, r, w, d, x in zip(rows.column("time"), rows.column("key"), rows.column("reach_ns"),
                                        rows.column("written_ns"), rows.column("data"),
                                        rows.column("extra"), strict=True):
                if int(t) not in wanted:
                    continue
                row = decode_point(a, t, k, r, d, x, ids)
                if row is None:
                    continue
                out[a].append(row)
                if w is not None:
                    fresh[(a, int(t))] = ((k, r, w), row)
            out[a].sort(key=lambda row: row.hour_ns)
        with self._lock:
            if self._row_cache is cache:  # not dropped meanwhile (tags re-registered)
                cache.update(fresh)
                if len(cache) > _ROW_CACHE:  # the newest kept, in one pass
                    self._row_cache = dict(list(cache.items())[-_ROW_CACHE:])
        return out

    # ------------------------------------------------------------------ gaps

    def _send_gaps(self) -> None:
        """Send the gap markers not yet accepted by the server (kept locally in any case)."""
        with self._lock:
            pending = sorted(self._unsent_gaps)
        if not pending:
            return
        by_id = {g.gap_id: g for g in self._meta.gaps(None, -(2**62), 2**62)}
        lines = "".join(
            gap_line(self.settings.measurement, g.device, g.start_ns, g.end_ns, g.reason, g.asset)
            for gid in pending if (g := by_id.get(gid)) is not None
        )
        try:
            if lines:
                self._sink.post(lines.encode())
        except SinkUnavailable as exc:
            self._sink_ok = False
            # The gap is recorded locally, where KPIs read it: the marker is only a copy for
            # other readers of InfluxDB, re-sent after the next successful write.
            log.warning("%s: gap markers %s not sent yet: %s", self._where, pending, exc)
            return
        except SinkRejected as exc:  # would be refused again: say so once, keep them local
            log.error("%s: gap markers %s refused, kept only in %s: %s", self._where, pending,
                      self.settings.meta_path, exc)
        with self._lock:
            self._unsent_gaps.difference_update(pending)

    def _gap_changed(self, device: str, asset: str | None, start_ns: int) -> None:
        """A gap of ``device`` (``asset`` of it only) from ``start_ns`` opened or closed: the
        rows of the hours it touches are stale, as with a late write. Their voids are sent
        before any row is put again, or with the next write of samples; rows being computed
        are refused at once."""
        with self._lock:
            assets = ({asset} if asset is not None else
                      {a for t, a in self._asset_of.items() if self._device_of.get(t) == device})
        since: dict[str | None, int] = {a: int(start_ns) for a in assets}
        with self._rollup_lock:
            claims = self._load_claims()
            stale = claims.stale_hours(since)
            if stale:
                self._pending_voids += "".join(void_lines(self._rollup_m, a, h)
                                               for a, h in stale.items())
                claims.note(since)
                with self._lock:  # stale from now on: no read learns otherwise meanwhile
                    self._pending_hours.extend(stale.items())
                    self._void_known(stale)
        if stale:  # again, after the claims: a computation they refused is done anew
            self._meta_changed(int(start_ns))

    def open_gap(self, device: str, start_ns: int, reason: str, asset: str | None = None) -> int:
        gap_id = self._meta.open_gap(device, start_ns, reason, asset)
        self._gap_changed(device, asset, start_ns)
        with self._lock:
            self._unsent_gaps.add(gap_id)
        if self._sink_ok:  # else after the next successful write: do not wait on a dead server
            self._send_gaps()
        return gap_id

    def close_gap(self, gap_id: int, end_ns: int) -> None:
        self._meta.close_gap(gap_id, end_ns)
        gap = next((g for g in self._meta.gaps(None, -(2**62), 2**62) if g.gap_id == gap_id), None)
        if gap is not None:
            self._gap_changed(gap.device, gap.asset, gap.start_ns)
        with self._lock:
            self._unsent_gaps.add(gap_id)
        if self._sink_ok:
            self._send_gaps()

    def mark_alive(self, device: str, ts_ns: int) -> None:
        self._meta.mark_alive(device, ts_ns)

    def last_alive(self, device: str) -> int | None:
        return self._meta.last_alive(device)

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Gap]:
        """The local gaps; on a central store (``discover_tags``) the gap markers the
        gateways wrote, which is all it has."""
        if not self.central:
            return self._meta.gaps(device, start_ns, end_ns)
        cond = f' AND "device" = {quote_str(device)}' if device is not None else ""
        (rows,) = self._query([
            f'SELECT "start_ns", "end_ns", "reason", "asset", "device" FROM '
            f"{self._src(self.settings.measurement + '_gaps')} WHERE time < {int(end_ns)}{cond}"])
        out: list[Gap] = []
        for t, s, e, reason, asset, dev in zip(
                rows.column("time"), rows.column("start_ns"), rows.column("end_ns"),
                rows.column("reason"), rows.column("asset"), rows.column("device"), strict=True):
            start = int(s if s is not None else t)
            if e is not None and int(e) <= start_ns:
                continue
            gap_id = zlib.crc32(f"{dev}|{start}|{asset}".encode()) & 0x7FFFFFFF  # same in every process
            out.append(Gap(gap_id, str(dev or ""), start,
                           None if e is None else int(e), str(reason or ""), asset or None))
        return out

    # ------------------------------------------------------------------ reading

    def _path(self, tag_id: int) -> str:
        with self._lock:
            path = self._paths.get(int(tag_id))
        if path is None:
            raise StoreError(f"{self._where}: no tag {tag_id} in {self.settings.meta_path}")
        return path

    def _source(self) -> str:
        m = quote_ident(self.settings.measurement)
        return f"{quote_ident(self._rp)}.{m}" if self._rp else m

    def _ensure_dbrp(self) -> None:
        """On InfluxDB 2.x, InfluxQL needs a database/retention-policy mapping to the bucket:
        create it when there is none (``/api/v2/dbrps``, documented API of 2.x; 2.x cannot run
        on the test machine, so this path is written to the documentation, untested live)."""
        if self._dbrp_checked:
            return
        s = self.settings
        params = {"org": s.org or "", "db": self._database, "rp": self._rp or "autogen"}
        got = self._http.get("/api/v2/dbrps", params=params)
        if got.status_code == 404:  # no /api/v2 at all (1.8 compat, 3.x): /query takes db as is
            self._dbrp_checked = True
            return
        self._raise_for(got, "list DBRP mappings")
        if not got.json().get("content"):
            buckets = self._http.get("/api/v2/buckets", params={"org": s.org or "", "name": s.bucket or ""})
            self._raise_for(buckets, "find the bucket")
            found = buckets.json().get("buckets") or []
            if not found:
                raise StoreError(f"{self._where}: bucket {s.bucket!r} not found in org {s.org!r}")
            made = self._http.post("/api/v2/dbrps", json={
                "org": s.org, "bucketID": found[0]["id"], "database": self._database,
                "retention_policy": self._rp or "autogen", "default": True,
            })
            self._raise_for(made, "create the DBRP mapping")
            log.info("%s: mapped database %s/%s to bucket %s for InfluxQL", self._where,
                     self._database, self._rp, s.bucket)
        self._dbrp_checked = True

    def _is_msgpack(self, r: httpx.Response) -> bool:
        """Whether the answer is MessagePack; a server asked for it that answered something
        else is not asked again."""
        if r.headers.get("content-type", "").startswith(_MSGPACK):
            return True
        if self._msgpack:
            self._msgpack = False
            log.info("%s answers queries in %s, not MessagePack: asking for JSON from now on",
                     self._where, r.headers.get("content-type", "an unnamed type"))
        return False

    def _raise_for(self, r: httpx.Response, action: str) -> None:
        if r.status_code >= 300:
            body = r.content
            if r.headers.get("content-type", "").startswith(_MSGPACK):
                with suppress(StoreError, StopIteration):  # {"error": ...} as asked for
                    body = json.dumps(next(msgpack_docs([body], self._where))).encode()
            msg = self._sink.scrub(server_message(body, r.reason_phrase))
            raise StoreError(f"{self._where}: {action}: {r.status_code} {msg}")

    def _answers(self, statements: Sequence[str], parse: Callable[[Body, int], list[T]],
                 sizes: Sequence[float | None] | None = None) -> list[T]:
        """``parse(lines, n)`` of the answer to each request of ``n`` of the statements (as
        few requests as is reasonable), joined. The lines of a chunked answer are parsed as
        they arrive: decoding overlaps the server's work on the next statements.

        ``sizes``: the samples each statement's answer is expected to hold (None: not known).
        A request whose statements are expected to hold at most ``_WHOLE_SAMPLES`` is asked
        for whole, not chunked: InfluxDB sends each series of a chunked answer as an HTTP chunk
        of its own, which costs it and httpx (~285 chunks for a 7-day /kpis' raw edges: ~4 ms
        of this process's CPU, ~10 ms of InfluxDB's). A server whose ``max-row-limit`` cut
        the answer (``"partial":true``, which no string value in the answer can hold
        unescaped) is asked again, chunked.

        Answers are asked for in MessagePack (``Accept: application/x-msgpack``) where the
        ``msgpack`` package is installed: InfluxDB 1.x encodes it at less CPU than JSON. A
        server that answers JSON instead (VictoriaMetrics, InfluxDB 2.x/3.x) is parsed as
        JSON, and no longer asked for MessagePack by this store."""
        self._check_open()
        out: list[T] = []
        where = f"{self._where} query"
        try:
            self._ensure_dbrp()
            for i in range(0, len(statements), _STATEMENTS_PER_QUERY):
                part = statements[i:i + _STATEMENTS_PER_QUERY]
                params = {"db": self._database, "epoch": "ns"}
                if self._rp:
                    params["rp"] = self._rp
                data = {"q": ";".join(part)}
                headers = _ASK_MSGPACK if self._msgpack else None
                expect = None if sizes is None else sizes[i:i + _STATEMENTS_PER_QUERY]
                if expect is not None and sum(x if x is not None else math.inf
                                              for x in expect) <= _WHOLE_SAMPLES:
                    r = self._http.post("/query", params=params, data=data, headers=headers)
                    self._raise_for(r, "query")
                    if self._is_msgpack(r):
                        if _MSGPACK_PARTIAL not in r.content:
                            out += parse(msgpack_docs([r.content], where), len(part))
                            continue
                    elif b'"partial":true' not in r.content:
                        out += parse([r.content.decode()], len(part))  # JSON: UTF-8
                        continue
                params.update(chunked="true", chunk_size=str(_CHUNK_SIZE))
                with self._http.stream("POST", "/query", params=params, data=data,
                                       headers=headers) as r:
                    if r.status_code >= 300:
                        r.read()
                        self._raise_for(r, "query")
                    if self._is_msgpack(r):
                        out += parse(msgpack_docs(r.iter_bytes(), where), len(part))
                    else:
                        out += parse(r.iter_lines(), len(part))
        except httpx.HTTPError as exc:
            detail = self._sink.scrub(str(exc) or type(exc).__name__)
            raise StoreError(f"{self._where}: query failed: {type(exc).__name__}: {detail}") from exc
        return out

    def _query(self, statements: Sequence[str]) -> list[Rows]:
        """Results of the statements in order."""
        where = f"{self._where} query"
        return self._answers(statements, lambda lines, n: parse_chunked(lines, n, where))

    def _query_series(self, statements: Sequence[str], tag: str,
                      sizes: Sequence[float | None] | None = None) -> list[dict[str, Series]]:
        """``_query_grouped`` of statements of time, value and quality, as Series (``sizes``:
        see ``_answers``)."""
        where = f"{self._where} query"
        return self._answers(statements, lambda lines, n: parse_series(lines, n, where, tag),
                             sizes)

    def _query_grouped(self, statements: Sequence[str], tag: str) -> list[dict[str, Rows]]:
        """Results of the statements (each ``GROUP BY`` ``tag``) in order: tag value -> rows."""
        where = f"{self._where} query"
        return self._answers(statements, lambda lines, n: parse_grouped(lines, n, where, tag))

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads of this thread inside the block see no sample newer than the block's start.

        InfluxDB has no transactions: every read is capped at the instant the block was
        entered (``time < entry``), and the local metadata (tags, gaps, heartbeats) is read
        from one snapshot of its SQLite file. That keeps new live samples out, but **not** a
        sample written meanwhile with an earlier timestamp (a spool draining, a device
        delivering late): such a sample can appear in one read of the block and not in an
        earlier one. Nested blocks share the outer one's cap."""
        if getattr(self._cap, "ns", None) is not None:
            yield
            return
        with self._meta.snapshot():
            self._cap.ns = time.time_ns() + 1  # a sample stamped at the entry instant is in
            try:
                yield
            finally:
                self._cap.ns = None

    def _capped(self, ns: int) -> int:
        """``ns``, no later than this thread's snapshot cap."""
        cap: int | None = getattr(self._cap, "ns", None)
        return int(ns) if cap is None else min(int(ns), cap)

    def _by_asset(self, tag_ids: Sequence[int]) -> dict[str, dict[str, list[int]]]:
        """asset path -> signal -> the positions in ``tag_ids`` of that tag."""
        out: dict[str, dict[str, list[int]]] = {}
        for k, t in enumerate(tag_ids):
            asset, signal = self._path(int(t)).rsplit("/", 1)
            out.setdefault(asset, {}).setdefault(signal, []).append(k)
        return out

    @staticmethod
    def _signals(asset: str, signals: Sequence[str]) -> str:
        """WHERE condition selecting ``signals`` of ``asset`` (by the hierarchy tags, as
        ``path_filter``); answers ``GROUP BY "signal"`` tell them apart."""
        cond = path_filter(asset)
        either = " OR ".join(f'"signal" = {quote_str(s)}' for s in signals)
        return f"{cond} AND ({either})" if len(signals) > 1 else f"{cond} AND {either}"

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Series:
        """Samples with start_ns <= ts < end_ns in time order; with ``prior`` also the last
        sample before start_ns. Text samples read as NaN."""
        return self.read_many([tag_id], start_ns, end_ns, prior)[int(tag_id)]

    def read_many(
        self, tag_ids: Sequence[int], start_ns: int, end_ns: int, prior: bool = True
    ) -> dict[int, Series]:
        """``read`` of several tags in few requests (not one snapshot: InfluxDB has none; see
        ``snapshot`` for what a block of reads can rely on)."""
        ids = [int(t) for t in tag_ids]
        got = self.read_ranges([(t, start_ns, end_ns) for t in ids], prior)
        return dict(zip(ids, got, strict=True))

    def read_ranges(self, wanted: Sequence[tuple[int, int, int]], prior: bool = True) -> list[Series]:
        """``read`` of each (tag_id, start_ns, end_ns), every tag over its own window: from
        the read cache where it holds the range (``store.influx.readcache``: a gateway's store,
        with ``prior``), the rest from InfluxDB (``_read_ranges``), whose answers the cache then
        keeps. A tag this process has written nothing of after the window's end is asked with
        no upper bound (every sample from the window's start on: a range the tag's next
        writes extend)."""
        # only the process that writes the tags' samples sees every change of them (a store
        # that wrote nothing reads a gateway's data in another process: ``_writer``)
        cache = self._cache if prior and self._writer else None  # None: central, or off
        if cache is None:
            return self._read_ranges(wanted, prior, frozenset())[0]
        out: list[Series | None] = [None] * len(wanted)
        todo: list[int] = []
        for k, (t, a, b) in enumerate(wanted):
            a_c, b_c = self._capped(a), self._capped(b)
            got = cache.answer(int(t), a_c, b_c) if b_c > a_c else None
            if got is None:
                todo.append(k)
            else:
                out[k] = got
        if todo:
            sub = [wanted[k] for k in todo]
            last = cache.last_written()
            opened = frozenset() if last is None else frozenset(
                i for i, (_, _, b) in enumerate(sub) if self._capped(b) > last)
            gens = cache.generations(sorted({int(t) for t, _, _ in sub}))
            got_sub, seen = self._read_ranges(sub, prior, opened)
            for i, (k, series) in enumerate(zip(todo, got_sub, strict=True)):
                out[k] = series
                t, a, b = sub[i]
                a_c, b_c = self._capped(a), self._capped(b)
                before, window, unbounded = seen[i]
                cache.keep(int(t), a_c, OPEN if unbounded else b_c, before, window, gens)
        return [s if s is not None else Series.empty() for s in out]

    def _read_ranges(self, wanted: Sequence[tuple[int, int, int]], prior: bool,
                     opened: frozenset[int]
                     ) -> tuple[list[Series], list[tuple[Series | None, Series, bool]]]:
        """``read_ranges`` from InfluxDB, in few
        requests (as ``read_many``): what a KPI request's read-ahead (``api.readahead``) asks
        for its assets' raw parts at once. The tags of one asset over one window are one
        statement (``GROUP BY "signal"``; the sample before the window another, whose
        ``LIMIT 1`` holds per signal): InfluxDB's cost is per statement more than per point
        (a 7-day ``/kpis``: 376 statements of one tag took ~0.13 s, the same points ~0.04 s).

        **Folding** (with ``prior``): InfluxDB's cost is also per series and field that a
        statement opens (a cursor each; with the data in its cache each copies the series'
        cached points), and the statement of the sample before a window opens as many as the
        window's own. So a tag that the last read of it showed dense enough to have a few
        samples in a short look back (``_fold_back``) is read from that far before its window
        in the window's statement, and its sample before the window is the last one read
        before the window's start; a tag with none there (the hint was wrong: the machine
        stopped) is asked for it on its own, as an unfolded tag, in the next request. The
        hint (the tag's rate, the least of a call's reads of it) is capped by how far back its
        last sample before a window lay: a tag dense in its window whose sample before lay
        hours back (a reject counter's burst) is not folded, so that its look back does not
        miss and cost that request at every call. The answer is the same either way; only
        the first read of a tag in a process, and the tags with sparse samples, take the
        statement of their own.

        ``opened``: positions in ``wanted`` that may be read with no upper bound; a statement
        has none when all of its tags may. Also returns, per position, what the cache may
        keep: the sample before the window (None: there is none), the window's samples, and
        whether they are every sample from its start on (no upper bound).
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (_, a, b) in enumerate(wanted):
            groups.setdefault((self._capped(a), self._capped(b)), []).append(k)
        src = self._source()
        with self._lock:
            rates = {t: r for t, _, _ in wanted if (r := self._rate.get(int(t))) is not None}
        stmts: list[str] = []
        # the samples each statement's answer will hold, at the rates of its tags' last reads
        # (None: a tag not read yet): a small answer is asked for whole (``_answers``)
        sizes: list[float | None] = []
        # each statement's (kind, asset, window start, signal -> positions in wanted); kind:
        # "before" (the sample before the window), "window", "fold" (the window and a look
        # back before it)
        plan: list[tuple[str, str, int, dict[str, list[int]]]] = []
        unbounded: set[int] = set()  # positions read with no upper bound
        for (a, b), ks in groups.items():
            for asset, signals in self._by_asset([wanted[k][0] for k in ks]).items():
                mine = [ks[i] for pos in signals.values() for i in pos]
                bare = all(k in opened for k in mine)
                if bare:
                    unbounded.update(mine)
                by_back: dict[int, dict[str, list[int]]] = {}
                size: dict[int, float | None] = {}
                for sig, pos in signals.items():
                    rate = rates.get(int(wanted[ks[pos[0]]][0]))
                    back = self._fold_back(rate) if prior else 0
                    by_back.setdefault(back, {})[sig] = [ks[i] for i in pos]
                    held = size.get(back, 0.0)
                    size[back] = (None if rate is None or held is None
                                  else held + rate * (b - a + back) + 1)
                for back, sigs in sorted(by_back.items()):
                    cond = self._signals(asset, list(sigs))
                    if back == 0 and prior:
                        stmts.append(self._before(cond, a, _PRIOR_BOUND_NS))
                        sizes.append(len(sigs))
                        plan.append(("before", asset, a, sigs))
                    upper = "" if bare else f" AND time < {b}"
                    stmts.append(f'SELECT "value", "quality" FROM {src} WHERE {cond}'
                                 f' AND time >= {a - back}{upper} GROUP BY "signal"')
                    sizes.append(size[back])
                    plan.append(("fold" if back else "window", asset, a, sigs))
        results = self._query_series(stmts, "signal", sizes) if stmts else []
        before: dict[int, Series] = {}  # position -> the sample before its window (prior)
        inside: dict[int, Series] = {}  # position -> its window's samples
        # (asset, window start, bound) -> signal -> positions: samples before still to find,
        # in the day before the window (bound _PRIOR_BOUND_NS), or anywhere (None)
        again: dict[tuple[str, int, int | None], dict[str, list[int]]] = {}
        for (kind, asset, a, sigs), got in zip(plan, results, strict=True):
            for sig, positions in sigs.items():
                series = got.get(sig)
                if kind == "window":
                    for k in positions:
                        inside[k] = series if series is not None else Series.empty()
                    continue
                if kind == "before":
                    if series is not None:
                        for k in positions:
                            before[k] = series
                    else:
                        again.setdefault((asset, a, None), {}).setdefault(sig, []).extend(positions)
                    continue
                s = series if series is not None else Series.empty()
                i = int(np.searchsorted(s.ts_ns, a, "left"))
                cut = s.cut(i, len(s))
                last = s.cut(i - 1, i) if i else None
                for k in positions:
                    inside[k] = cut
                    if last is not None:
                        before[k] = last
                if not i:  # nothing in the look back: the day before, then anywhere
                    again.setdefault((asset, a, _PRIOR_BOUND_NS), {}).setdefault(sig, []).extend(
                        positions)
        for _ in range(2):
            if not again:
                break
            todo = list(again.items())
            found = self._query_series(  # a sample per signal at most
                [self._before(self._signals(asset, list(sigs)), a, bound)
                 for (asset, a, bound), sigs in todo], "signal", [len(sigs) for _, sigs in todo])
            again = {}
            for ((asset, a, bound), sigs), got in zip(todo, found, strict=True):
                for sig, positions in sigs.items():
                    series = got.get(sig)
                    if series is not None:
                        for k in positions:
                            before[k] = series
                    elif bound is not None:
                        again.setdefault((asset, a, None), {}).setdefault(sig, []).extend(positions)
        out: list[Series] = []
        seen: list[tuple[Series | None, Series, bool]] = []
        dense: dict[int, float] = {}
        for k, (t, a, b) in enumerate(wanted):
            a, b = self._capped(a), self._capped(b)
            window = inside[k]
            prev = before.get(k)
            seen.append((prev, window, k in unbounded))
            if k in unbounded:  # its statement had no upper bound
                j = int(np.searchsorted(window.ts_ns, b, "left"))
                window = window.cut(0, j)
            out.append(join(prev, window) if prev is not None else window)
            if prior and b > a:
                # the rate the next read folds by: the window's, but no more than puts
                # _FOLD_SAMPLES samples between the sample before and the window's start (a
                # look back chosen by it reaches that sample), the least of this call's reads
                # of the tag. A tag whose sample before lies far back (a reject counter: a
                # sample in the window, the one before hours earlier) is then not folded,
                # where its look back would find nothing and cost another request; a tag with
                # no sample before is never folded
                lead = a - int(prev.ts_ns[-1]) if prev is not None and len(prev.ts_ns) else 0
                rate = min(len(window.ts_ns) / (b - a), _FOLD_SAMPLES / lead) if lead > 0 else 0.0
                dense[int(t)] = min(rate, dense.get(int(t), rate))
        with self._lock:
            self._rate.update(dense)
        return out, seen

    @staticmethod
    def _fold_back(rate: float | None) -> int:
        """How far before a window a tag with ``rate`` samples per ns (its hint) is read
        in the window's statement: the shortest of ``_FOLD_BACK_NS`` in which it would have
        ``_FOLD_SAMPLES`` samples; 0 (a statement of its own for its sample before) when
        none is, or its rate is not known yet."""
        if not rate:
            return 0
        for back in _FOLD_BACK_NS:
            if rate * back >= _FOLD_SAMPLES:
                return back
        return 0

    def _before(self, cond: str, start_ns: int, bound_ns: int | None) -> str:
        """The statement of the last sample before ``start_ns`` of each signal of ``cond``,
        no further back than ``bound_ns`` when given (a statement without a lower time
        bound looks into every shard of the database)."""
        lower = f" AND time >= {start_ns - bound_ns}" if bound_ns is not None else ""
        return (f'SELECT "value", "quality" FROM {self._source()} WHERE {cond}{lower}'
                f' AND time < {start_ns} GROUP BY "signal" ORDER BY time DESC LIMIT 1')

    def read_text(self, tag_id: int, start_ns: int, end_ns: int) -> list[tuple[int, str, int]]:
        cond = path_filter(self._path(tag_id))
        start_ns, end_ns = self._capped(start_ns), self._capped(end_ns)
        (rows,) = self._query([
            f'SELECT "text", "quality" FROM {self._source()} WHERE {cond}'
            f" AND time >= {int(start_ns)} AND time < {int(end_ns)}"
        ])
        out: list[tuple[int, str, int]] = []
        for t, text, q in zip(rows.column("time"), rows.column("text"), rows.column("quality"),
                              strict=True):
            if text is not None:  # rows of numeric samples of the same tag have no text
                out.append((int(t), str(text), int(q) if q is not None else 2))
        return out

    def read_timestamps(self, tag_id: int, start_ns: int, end_ns: int) -> tuple[I64, I64, I64]:
        """(ts, server_ts, gateway_ts) of the samples ``read(..., prior=False)`` returns;
        TS_UNKNOWN where a sample has no such field."""
        cond = path_filter(self._path(tag_id))
        start_ns, end_ns = self._capped(start_ns), self._capped(end_ns)
        (rows,) = self._query([
            f'SELECT "quality", "server_ts", "gateway_ts" FROM {self._source()} WHERE {cond}'
            f" AND time >= {int(start_ns)} AND time < {int(end_ns)}"
        ])
        return (int_column(rows, "time"), int_column(rows, "server_ts"),
                int_column(rows, "gateway_ts"))

    def read_page(self, tag_id: int, start_ns: int, end_ns: int, limit: int) -> SamplePage:
        """The first ``limit`` samples of the window with their timestamps: one statement
        whose ``ORDER BY time LIMIT`` makes the server stop at the page (one more sample
        says whether the window holds more), so the answer is as long as the page."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        cond = path_filter(self._path(tag_id))
        start_ns, end_ns = self._capped(start_ns), self._capped(end_ns)
        (rows,) = self._query([
            f'SELECT "value", "quality", "server_ts", "gateway_ts" FROM {self._source()}'
            f" WHERE {cond} AND time >= {int(start_ns)} AND time < {int(end_ns)}"
            f" ORDER BY time ASC LIMIT {int(limit) + 1}"
        ])
        more = len(rows.values) > limit
        del rows.values[limit:]
        s = series_of(rows)
        if not len(s):  # no rows, hence no columns
            return SamplePage(s.ts_ns, s.value, s.quality, s.ts_ns.copy(), s.ts_ns.copy(), False)
        return SamplePage(s.ts_ns, s.value, s.quality, int_column(rows, "server_ts"),
                          int_column(rows, "gateway_ts"), more)

    def latest(self, tag_ids: Sequence[int]) -> dict[int, Latest]:
        """The last sample of each tag: one statement per asset (``GROUP BY "signal"``, whose
        ``LIMIT 1`` holds per signal)."""
        ids = sorted({int(t) for t in tag_ids})
        src = self._source()
        cap: int | None = getattr(self._cap, "ns", None)
        until = "" if cap is None else f" AND time < {cap}"
        assets = self._by_asset(ids)
        results = self._query_grouped([
            f'SELECT "value", "quality", "text" FROM {src} WHERE {self._signals(a, list(signals))}'
            f'{until} GROUP BY "signal" ORDER BY time DESC LIMIT 1'
            for a, signals in assets.items()
        ], "signal") if ids else []
        out: dict[int, Latest] = {}
        for signals, got in zip(assets.values(), results, strict=True):
            for sig, positions in signals.items():
                rows = got.get(sig)
                if rows is None or not rows.values:
                    continue
                (ts,), (v,), (q,), (text,) = (rows.column(c) for c in ("time", "value", "quality", "text"))
                for k in positions:
                    out[ids[k]] = Latest(int(ts), float("nan") if v is None else float(v),
                                         2 if q is None else int(q),
                                         None if text is None else str(text))
        return out

    def last_ts(self, tag_ids: Sequence[int]) -> int | None:
        return max((v.ts_ns for v in self.latest(tag_ids).values()), default=None)

    # ------------------------------------------------------------------ the rest

    def apply_retention(self, now_ns: int) -> int:
        """InfluxDB applies its own retention (policy or bucket period): nothing to do here."""
        return 0

    def probe(self) -> bool:
        """Whether InfluxDB answers at all (its ``/ping``): the spool's cheap probe while it is down."""
        return self._sink.ping()

    def stats(self) -> StoreStats:
        s = self.settings
        with self._lock:
            return StoreStats(
                batches_written=self._batches,
                points_written=self._points,
                extra={"url": s.url, "api": s.api, "database": self._database,
                       "bucket": s.bucket, "measurement": s.measurement,
                       "meta_path": s.meta_path, "gap_markers_unsent": len(self._unsent_gaps),
                       "partial_write_dropped_points": self._partial_dropped},
            )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._where}: store is closed")

    def close(self) -> None:
        """Close the connections and the metadata file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.close()
            self._http.close()
        finally:
            self._meta.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.settings
        target = f"bucket={s.bucket!r}" if s.api == "v2" else f"database={s.database!r}"
        return f"InfluxStore({s.url!r}, api={s.api!r}, {target})"
