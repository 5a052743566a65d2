"""A 7-day ``/kpis`` on InfluxDB 1.6 beside the embedded store, roll-ups off and on.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_influx_kpis.py [--days 7] [--repeat 3] [--no-gzip]
[--keep DIR] [--profile N] [--rollups both|on|off] [--storage both|cache|tsm]
[--statements N] [--live SECONDS [--live-step S]] [--no-read-cache]``.
Starts its own InfluxDB 1.6 (``tests/influx_servers.py``: Debian's influxd on free 127.0.0.1
ports, a temporary data directory). The demo plant's history (``simulators.Plant``, report
by exception, 8 days) is written batch for batch to a SQLite store and to InfluxDB through
``InfluxStore``; each store's roll-ups are computed (``RollupMaintainer.run_once``, as the
gateway's maintainer would have done by then). Then ``KpiService.kpis`` -- what ``GET
/api/v1/kpis`` answers -- over the last ``--days`` days (from 7 minutes past an hour: both
edges partial) on each store, with roll-ups off and on: best of ``--repeat`` after one
warm-up call, the two stores' calls alternating. Prints the times and the InfluxDB/embedded
ratio; asserts that every number of every answer is the same on both stores. ``--keep DIR``
keeps both stores (and InfluxDB's data) in DIR and reuses them on the next run with the same
``--days`` (no writing, no roll-ups); ``--profile N`` prints the N costliest functions
(cProfile, cumulative) of one InfluxDB call.

``--storage``: where InfluxDB holds the data while it answers. ``cache``: in its in-memory
cache, as right after writing or a restart (the cache, reloaded from the WAL, is written to
TSM files once it holds 25 MB or no write came for 10 minutes: the demo plant's 8 days are
~26 MB of cache, so a gateway like it keeps days of recent data there); ``tsm``: in TSM files
(the server started with a 1 s cold interval, timed once its cache is empty), as a server
holds data older than its cache. ``both`` (default) times each. Beside each time, the CPU
per call (means of the timed calls): the embedded store's (this process), InfluxDB's (this
process + influxd's, from ``/proc``) and their ratio -- on a loaded machine a steadier
comparison than the times, and on a quiet 2-core one near what the times come to (the two
processes mostly wait for each other). ``--statements N`` then replays
the InfluxQL statements of one call with roll-ups, by kind (the rows' versions, the raw
edges' samples before their windows, the raw edges' windows), N times each: where InfluxDB's
time goes (its CPU per replay, the answer's bytes and samples).

The roll-up rows of both stores are counted by kind and compared: InfluxDB keeps the hour
rows only (``docs/influxdb.md``: no day, day-sum or head rows), and every hour row must be in
both stores, the same (key, reach, data, evidence); a missing or different one fails the run.

``--live SECONDS`` (default 0: off): after the static timing of each storage state (cache,
tsm: each the run times), a live phase, as a gateway's dashboard sees it: samples keep
arriving and the window moves with them. A static window, the same every call with no
writes, would flatter any read cache; this one cannot. It works on copies of both stores
(the embedded file and the InfluxDB store's meta file by SQLite's backup, InfluxDB's data
directory -- the cache state's or the tsm state's -- by a copy, a server of its own on it, new
samples staying in its cache), made in a temporary directory and deleted after: with
``--keep`` the kept stores (and their ``done-*`` marker) are as the static run left them, and
the next run reuses them. Rounds, for SECONDS of wall time per roll-up setting (``--rollups
both``: off, then on, the plant going on): the plant continues after NOW (the same ``Plant``,
``plant_rounds``: exactly the samples of one unbroken history, no gap or repeat at NOW) by
``--live-step`` seconds (default 1; the demo plant reports ~1 change a second, so many rounds
write nothing, some a few samples), the same batches written to both stores with each
store's ``write`` (untimed); then ``KpiService.kpis`` on both for [T - days + 7 min, T), T the
new data's end (whole seconds), the store going first alternating each round; the answers
must agree as in the static mode (identical; 1e-9 relative with roll-ups). Printed per
store: the median and p90 call time, the ratio of the medians, the CPU per call (as above:
this process, and influxd's from ``/proc``; influxd's includes whatever it does in the
background during a call, e.g. after the round's write), the rounds and the samples
written. One untimed warm-up call each first. Roll-ups: a new hour row needs an hour to
close, 300 s after its end (the maintainer's ``settle_s``), and the live phase starts at
09:17:23 plant time, so a phase of a minute or two at 1 s a round crosses none: the calls
read the new samples raw at the window's right edge. When T passes an hour's end + 300 s
(e.g. ``--live 30 --live-step 20``), both stores' ``RollupMaintainer.run_once`` rolls it,
untimed (printed: the rows each made), and the next calls read its rows.

``--no-read-cache`` turns off the InfluxDB store's read cache (``store.read_cache_samples: 0``,
``store/influx/readcache.py``): every call then reads its raw edges from InfluxDB, as before
session 30. With it on (the default), the static window is answered from what the first call
read (nothing was written since), which says little; the live phase is the figure to take:
each round writes, the window moves, and the cache answers only what the writes kept exact.

Goal (issue 14): InfluxDB <= 2x the embedded store for the same window.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from api.gateway import tag_records
from api.rollups import DAY, HEAD, HOUR_NS, SUM, RollupMaintainer
from api.service import KpiService
from config import load_settings, shipped_config
from config.settings import Settings
from config.store import InfluxStoreSettings
from config.times import to_ns
from simulators import Plant
from store import Batch, InfluxStore, SqliteStore
from store.base import RollupRow
from tests.influx_servers import InfluxDB16

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)


def diff(a: Any, b: Any, where: str = "", rel: float = 0.0) -> list[str]:
    """Where two answers differ: numbers beyond ``rel`` relative (0: exactly), anything else
    when not equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += diff(a[k], b[k], f"{where}.{k}", rel)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in diff(x, y, f"{where}[{i}]", rel)]
    if rel and isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=rel):
        return []
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def timed_call(service: KpiService, start: datetime, end: datetime, server: InfluxDB16, k: int,
               cpu: list[float]) -> tuple[float, Any]:
    """One call of store ``k`` (0: embedded, 1: InfluxDB): its wall time and answer; its CPU
    added to ``cpu`` (embedded; this process for InfluxDB; influxd)."""
    c0, p0 = server.cpu_s(), time.process_time()
    t0 = time.perf_counter()
    answer = service.kpis(start, end)
    took = time.perf_counter() - t0
    cpu[k] += time.process_time() - p0
    if k == 1:
        cpu[2] += server.cpu_s() - c0
    return took, answer


def best_of(services: tuple[KpiService, KpiService], start: datetime, end: datetime,
            repeat: int, server: InfluxDB16) -> tuple[list[float], list[Any], list[float]]:
    """Each service's best time and answer, and the CPU seconds per call (means): this
    process's for each service, and InfluxDB's for the second. One warm-up call each
    (plans, keys, server caches, read hints), then ``repeat`` calls each, alternating (load
    from other work on the machine falls on both alike)."""
    answers = [s.kpis(start, end) for s in services]
    best = [math.inf] * len(services)
    cpu = [0.0, 0.0, 0.0]  # embedded, this process for InfluxDB, influxd
    for _ in range(repeat):
        for k, service in enumerate(services):
            took, answers[k] = timed_call(service, start, end, server, k, cpu)
            best[k] = min(best[k], took)
    return best, answers, [c / max(1, repeat) for c in cpu]


def fill(settings: Settings, embedded: SqliteStore, influx: InfluxStore, ids: dict[str, int],
         days: float, no_gzip: bool) -> None:
    """The plant's history into both stores, batch for batch, and each store's roll-ups."""
    points = 0
    t0 = time.perf_counter()
    for batch in Plant(settings, now=NOW).history_batches(
            ids, to_ns(NOW - timedelta(days=days + 1)), to_ns(NOW)):
        embedded.write(batch)
        influx.write(batch)
        points += len(batch)
    print(f"{len(settings.assets)} assets, {len(ids)} tags, {days + 1:g} days: "
          f"{points:,} samples into both stores in {time.perf_counter() - t0:.1f} s; "
          f"gzip {'off' if no_gzip else 'on'}")
    for name, store in (("embedded", embedded), ("influxdb", influx)):
        t0 = time.perf_counter()
        rows = RollupMaintainer(KpiService(settings, store, rollups=True), backfill_days=None,
                                clock_ns=lambda: to_ns(NOW)).run_once()
        print(f"roll-ups {name}: {rows:,} rows in {time.perf_counter() - t0:.1f} s")


#: a roll-up row's kind by the suffix of its key (``api.rollups``): hour rows have none
KINDS = {"": "hour", DAY: "day", SUM: "day-sum", HEAD: "head"}


def kind_of(row: RollupRow) -> str:
    tail = row.key[row.key.rfind(":"):] if ":" in row.key else ""
    return KINDS.get(tail, f"other ({tail})")


def row_census(settings: Settings, embedded: SqliteStore, influx: InfluxStore,
               server: InfluxDB16) -> None:
    """Count each store's roll-up rows by kind, say why the counts differ, and require every
    hour row in both stores, the same (InfluxDB keeps hour rows only: see the module)."""
    assets = [a.path for a in settings.assets]
    everything = (-(2**62), 2**62)
    held: dict[str, dict[tuple[str, int], RollupRow]] = {}
    for name, store in (("embedded", embedded), ("InfluxDB", influx)):
        by_kind: dict[str, int] = {}
        hours: dict[tuple[str, int], RollupRow] = {}
        for row in store.rollups(assets, *everything):
            kind = kind_of(row)
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if kind == "hour":
                hours[(row.asset, row.hour_ns)] = row
        held[name] = hours
        parts = " + ".join(f"{n:,} {k}" for k, n in sorted(by_kind.items(), key=lambda x: -x[1]))
        print(f"roll-up rows {name}: {sum(by_kind.values()):,} = {parts}")
    voids = server.query(f'SELECT count("key") FROM "{influx.settings.measurement}_rollup" '
                         "WHERE \"key\" = ''", server.database)
    series = voids["results"][0].get("series") or [{"values": [[0, 0]]}]  # type: ignore[index]
    void_points = int(series[0]["values"][0][1])
    emb, inf = held["embedded"], held["InfluxDB"]
    missing = sorted(emb.keys() - inf.keys())
    extra = sorted(inf.keys() - emb.keys())
    differ = sorted(k for k in emb.keys() & inf.keys()
                    if (emb[k].key, emb[k].reach_ns, emb[k].data, emb[k].extra)
                    != (inf[k].key, inf[k].reach_ns, inf[k].data, inf[k].extra))
    assert not (missing or extra or differ), (
        f"hour rows: {len(missing)} only embedded {missing[:5]}, {len(extra)} only InfluxDB "
        f"{extra[:5]}, {len(differ)} different {differ[:5]}")
    print(f"  the {len(emb):,} hour rows are in both stores, the same; InfluxDB keeps no day, "
          f"day-sum or head rows (docs/influxdb.md); {void_points} void points")


def replay(settings: Settings, influx: InfluxStore, server: InfluxDB16, start: datetime,
           end: datetime, times: int) -> None:
    """The statements of one call with roll-ups, by kind, each kind posted as one request
    ``times`` times: best wall time, InfluxDB's mean CPU, the answer's bytes and samples."""
    sent: list[str] = []
    answers = influx._answers

    def spy(statements: Any, parse: Any, sizes: Any = None) -> Any:
        sent.extend(statements)
        return answers(statements, parse, sizes)

    influx._answers = spy  # type: ignore[method-assign]
    try:
        KpiService(settings, influx, rollups=True).kpis(start, end)
    finally:
        del influx._answers
    kinds: dict[str, list[str]] = {}
    for q in sent:
        kind = ("roll-up versions" if "_rollup" in q else
                "raw: sample before" if "LIMIT 1" in q else "raw: windows")
        kinds.setdefault(kind, []).append(q)
    params = {"db": server.database, "epoch": "ns", "chunked": "true", "chunk_size": "50000"}
    headers = {"Accept-Encoding": "gzip" if influx.settings.gzip else "identity"}
    print(f"{'statements of one call':<24}{'n':>4}{'best s':>9}{'influxd cpu':>13}"
          f"{'bytes':>10}{'samples':>9}")
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for kind, stmts in [*kinds.items(), ("all", sent)]:
            best, cpu = math.inf, 0.0
            for _ in range(times):
                c0, t0 = server.cpu_s(), time.perf_counter()
                body = client.post("/query", params=params, data={"q": ";".join(stmts)}).content
                best = min(best, time.perf_counter() - t0)
                cpu += server.cpu_s() - c0
            samples = sum(len(x.get("values") or ()) for line in body.splitlines() if line.strip()
                          for r in orjson.loads(line).get("results", ()) for x in r.get("series", ()))
            print(f"{kind:<24}{len(stmts):>4}{best:>9.4f}{cpu / times * 1000:>10.1f} ms"
                  f"{len(body):>10,}{samples:>9,}")


def plant_rounds(settings: Settings, ids: dict[str, int],
                 step_ns: int) -> Iterator[tuple[int, list[Batch]]]:
    """The plant going on after NOW, ``step_ns`` a round: each round's end T and the samples
    of [T - step, T) (often none: the demo plant reports ~1 change a second). The same
    ``Plant`` as the history (same settings, same ``now``), started one step before NOW and
    its first slice dropped, so that every slice after NOW probes the value just before it:
    the samples are exactly those of one unbroken history over NOW (checked: the history's
    last hour and the live stream's first 30 min, at steps of 1 and 10 s, equal an 8.5-day
    history's to the sample), no gap and no repeated value at NOW."""
    now = to_ns(NOW)
    feed = Plant(settings, now=NOW).history_batches(
        ids, now - step_ns, now + 366 * 86400 * 10**9, slice_ns=step_ns)
    ahead = next(feed, None)
    t = now
    while True:
        t += step_ns
        batches = []
        # a batch lies in one slice, its samples in time order
        while ahead is not None and int(ahead.ts_ns[0]) < t:
            if int(ahead.ts_ns[0]) >= now:
                batches.append(ahead)
            ahead = next(feed, None)
        yield t, batches


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite store (what its WAL holds included), by SQLite's backup."""
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:
        a.backup(b)


def live(settings: Settings, records: Any, ids: dict[str, int], root: Path, data: Path,
         work: Path, state: str, influx_on: Any, args: argparse.Namespace) -> None:
    """The live phase on copies of both stores (``work``: the embedded file, InfluxDB's data
    directory ``data``, the InfluxDB store's meta file; the stores in ``root`` stay as they
    were): see the module. One sub-phase of ``args.live`` seconds per roll-up setting, the
    plant going on from one to the next."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy_sqlite(root / "embedded.db", work / "embedded.db")
    copy_sqlite(root / "meta.db", work / "meta.db")
    claims = root / "meta.db-rollups.json"
    if claims.exists():
        shutil.copy2(claims, work / "meta.db-rollups.json")
    shutil.copytree(data, work / "influxdb")
    # new samples stay in the server's cache, as on a server that has run a while (its
    # snapshot of a cold cache is 10 minutes away, the 25 MB one a day of the demo plant)
    server = InfluxDB16(work / "influxdb", cache_cold_s=36_000)
    step_ns = round(args.live_step * 1e9)
    clock = [to_ns(NOW)]
    with ExitStack() as done:  # undone in reverse: maintainers, stores, server, the copies
        done.callback(shutil.rmtree, work, ignore_errors=True)
        done.callback(server.kill)
        server.start()
        embedded = SqliteStore(work / "embedded.db")
        done.callback(embedded.close)
        influx = influx_on(server, work / "meta.db")
        done.callback(influx.close)
        stores = (embedded, influx)
        assert embedded.register_tags(records) == ids and influx.register_tags(records) == ids
        maintainers = [RollupMaintainer(KpiService(settings, s, rollups=True), backfill_days=None,
                                        clock_ns=lambda: clock[0]) for s in stores]
        for m in maintainers:
            done.callback(m.close)
        settle_ns = maintainers[0].settle_ns
        due = (clock[0] // HOUR_NS + 1) * HOUR_NS + settle_ns  # the next hour closed
        rolled: list[str] = []
        rounds = plant_rounds(settings, ids, step_ns)
        print(f"live, InfluxDB's history in its {state}, the new samples in its cache: "
              f"{args.live:g} s of rounds a roll-up setting, each writing the next "
              f"{args.live_step:g} s of the plant to both stores (untimed), then the window "
              f"[T - {args.days:g} d + 7 min, T) on both; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'roll-ups':<10}{'rounds':>7}{'samples':>8}{'embedded s':>17}{'influxdb s':>17}"
              f"{'ratio':>7}   CPU ms per call: embedded, InfluxDB (here + influxd), ratio")
        for rollups in {"both": (False, True), "on": (True,), "off": (False,)}[args.rollups]:
            services = tuple(KpiService(settings, s, rollups=rollups) for s in stores)
            t_end = clock[0]
            for service in services:  # warm-up (plans, keys, server caches), untimed
                service.kpis(datetime.fromtimestamp(t_end / 1e9, UTC) - timedelta(days=args.days)
                             + timedelta(minutes=7), datetime.fromtimestamp(t_end / 1e9, UTC))
            times: list[list[float]] = [[], []]
            cpu = [0.0, 0.0, 0.0]  # embedded, this process for InfluxDB, influxd
            samples = n = 0
            same = True
            t0_wall = time.perf_counter()
            while time.perf_counter() - t0_wall < args.live:
                t_end, batches = next(rounds)
                clock[0] = t_end
                for batch in batches:
                    for store in stores:
                        store.write(batch)
                    samples += len(batch)
                if t_end >= due:  # an hour closed: both maintainers roll it, untimed
                    made = [m.run_once() for m in maintainers]
                    hour = datetime.fromtimestamp((due - settle_ns - HOUR_NS) / 1e9, UTC)
                    rolled.append(f"{hour:%H:%M} at T = {hour + timedelta(hours=1):%H:%M}"
                                  f" + {settle_ns / 60e9:g} min: {made[0]} embedded, "
                                  f"{made[1]} InfluxDB rows")
                    due += HOUR_NS
                end = datetime.fromtimestamp(t_end / 1e9, UTC)  # whole seconds: exact
                start = end - timedelta(days=args.days) + timedelta(minutes=7)
                answers: list[Any] = [None, None]
                for k in ((0, 1) if n % 2 == 0 else (1, 0)):
                    took, answers[k] = timed_call(services[k], start, end, server, k, cpu)
                    times[k].append(took)
                differ = diff(answers[0], answers[1], rel=1e-9 if rollups else 0.0)
                assert not differ, (end.isoformat(), differ[:10])
                same = same and not (rollups and diff(answers[0], answers[1]))
                n += 1
            med = [float(np.median(t)) for t in times]
            p90 = [float(np.percentile(t, 90)) for t in times]
            e_cpu, i_cpu = cpu[0] / n, (cpu[1] + cpu[2]) / n
            print(f"{'on' if rollups else 'off':<10}{n:>7,}{samples:>8,}"
                  f"{med[0]:>9.3f} / {p90[0]:.3f}{med[1]:>9.3f} / {p90[1]:.3f}"
                  f"{med[1] / med[0]:>7.1f}   {e_cpu * 1000:.0f}, {i_cpu * 1000:.0f} "
                  f"({cpu[1] / n * 1000:.0f} + {cpu[2] / n * 1000:.0f}), {i_cpu / e_cpu:.1f}"
                  f"   ({'identical' if same else 'to 1e-9 relative'} numbers)")
        print(f"  (times: median / p90 of the calls; the last window ends "
              f"{datetime.fromtimestamp(clock[0] / 1e9, UTC).isoformat()}; hours rolled: "
              f"{'; '.join(rolled) or 'none (no hour closed)'}; InfluxDB's cache "
              f"{server.cache_bytes() / 1e6:.1f} MB; load average now "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-gzip", action="store_true", help="store.gzip false (reads and writes)")
    ap.add_argument("--no-read-cache", action="store_true",
                    help="store.read_cache_samples 0: every call reads its raw edges from InfluxDB")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the stores in DIR; reuse them when DIR holds them (same --days)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="print the N costliest functions of one InfluxDB call with roll-ups")
    ap.add_argument("--rollups", choices=("both", "on", "off"), default="both",
                    help="time the window with roll-ups on, off, or both (default)")
    ap.add_argument("--storage", choices=("both", "cache", "tsm"), default="both",
                    help="InfluxDB's data in its cache, in TSM files, or each (default)")
    ap.add_argument("--statements", type=int, default=0, metavar="N",
                    help="replay the statements of one call with roll-ups N times, by kind")
    ap.add_argument("--live", type=float, default=0.0, metavar="SECONDS",
                    help="after each storage state's timing, SECONDS of live rounds per roll-up "
                         "setting on copies of the stores (default 0: none)")
    ap.add_argument("--live-step", type=float, default=1.0, metavar="SECONDS",
                    help="the plant's seconds written each live round (default 1)")
    args = ap.parse_args()
    if args.live < 0 or args.live_step <= 0 or args.live_step * 1e9 % 1e9:
        ap.error("--live must be >= 0 and --live-step a whole number of seconds > 0")
    settings = load_settings(shipped_config("demo.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) if args.keep is None else args.keep
        done = root / f"done-{args.days:g}d"
        reuse = done.exists()
        embedded = SqliteStore(root / "embedded.db")

        def influx_on(server: InfluxDB16, meta: Path = root / "meta.db") -> InfluxStore:
            store = InfluxStore(InfluxStoreSettings(
                type="influx", api="v1", url=server.url, database=server.database,
                meta_path=str(meta), batch_size=5000, gzip=not args.no_gzip,
                read_cache_samples=0 if args.no_read_cache else 1_000_000,
            ))
            # the gateway's store: the process that writes its samples and rows (its
            # maintainer claims hours before computing them), which therefore knows its rows
            # and does not ask for them again (docs/influxdb.md, "What a gateway asks for");
            # a store that wrote nothing reads another process's rows and asks. A claim of no
            # hours changes no claim
            store.rollup_claim(-(2**63))
            return store

        try:
            records = tag_records(settings)
            ids = embedded.register_tags(records)
            start, end = NOW - timedelta(days=args.days) + timedelta(minutes=7), NOW
            states = {"both": ("cache", "tsm"), "cache": ("cache",), "tsm": ("tsm",)}[args.storage]

            def timed(state: str, server: InfluxDB16, influx: InfluxStore) -> None:
                if args.profile:
                    service = KpiService(settings, influx, rollups=True)
                    service.kpis(start, end)
                    prof = cProfile.Profile()
                    prof.runcall(service.kpis, start, end)
                    order = os.environ.get("SORT", "cumulative")  # e.g. SORT=tottime
                    pstats.Stats(prof).sort_stats(order).print_stats(args.profile)
                answers = "MessagePack" if getattr(influx, "_msgpack", False) else "JSON"
                print(f"InfluxDB data in its {state}; answers in {answers}; window "
                      f"{start.isoformat()} .. {end.isoformat()}, best of {args.repeat}; load average "
                      f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
                print(f"{'roll-ups':<10}{'embedded s':>12}{'influxdb s':>12}{'ratio':>8}"
                      f"   CPU ms per call: embedded, InfluxDB (here + influxd), ratio")
                for rollups in {"both": (False, True), "on": (True,), "off": (False,)}[args.rollups]:
                    (e_s, i_s), (want, got), cpu = best_of(
                        (KpiService(settings, embedded, rollups=rollups),
                         KpiService(settings, influx, rollups=rollups)), start, end,
                        args.repeat, server)
                    # from raw samples alone the two stores' answers are identical; with
                    # roll-ups each store sums its own rows (the embedded store also has
                    # day-sum rows) and the contract is the roll-ups' own: equal to 1e-9
                    # relative (docs/kpis.md)
                    differ = diff(want, got, rel=1e-9 if rollups else 0.0)
                    assert not differ, differ[:10]
                    same = "to 1e-9 relative" if rollups and diff(want, got) else "identical"
                    e_cpu, i_cpu = cpu[0], cpu[1] + cpu[2]
                    print(f"{'on' if rollups else 'off':<10}{e_s:>12.3f}{i_s:>12.3f}"
                          f"{i_s / e_s:>8.1f}   {e_cpu * 1000:.0f}, {i_cpu * 1000:.0f} "
                          f"({cpu[1] * 1000:.0f} + {cpu[2] * 1000:.0f}), {i_cpu / e_cpu:.1f}"
                          f"   ({same} numbers)")
                if args.statements:
                    replay(settings, influx, server, start, end, args.statements)

            # the data as written, in the server's cache (reloaded from its WAL at each start;
            # never written to TSM files here: those would pile up, one copy a run)
            server = InfluxDB16(root / "influxdb", cache_cold_s=36_000)
            server.start()
            influx = influx_on(server)
            try:
                assert influx.register_tags(records) == ids
                if reuse:
                    print(f"stores of {args.days + 1:g} days reused from {root}; "
                          f"gzip {'off' if args.no_gzip else 'on'}")
                else:
                    shutil.rmtree(root / "influxdb-tsm", ignore_errors=True)
                    fill(settings, embedded, influx, ids, args.days, args.no_gzip)
                    if args.keep is not None:
                        done.touch()
                row_census(settings, embedded, influx, server)
                if "cache" in states:
                    print(f"InfluxDB's cache holds {server.cache_bytes() / 1e6:.1f} MB")
                    timed("cache", server, influx)
            finally:
                influx.close()
                server.kill()
            if "cache" in states and args.live:
                live(settings, records, ids, root, root / "influxdb", Path(tmp) / "live", "cache",
                     influx_on, args)
            if "tsm" in states:
                # a copy of it whose cache the server writes to TSM files at once (a 1 s cold
                # interval); its WAL is then deleted (everything in it is in the TSM files), so
                # that the copy holds nothing in the cache on the next run either
                tsm = root / "influxdb-tsm"
                if not tsm.exists():
                    shutil.copytree(root / "influxdb", tsm)
                server = InfluxDB16(tsm, cache_cold_s=1.0)
                server.start()
                influx = influx_on(server)
                try:
                    assert influx.register_tags(records) == ids
                    deadline = time.monotonic() + 120
                    while (held := server.cache_bytes()) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    assert not held, f"InfluxDB still holds {held:,} bytes in its cache"
                    timed("tsm", server, influx)
                    held = server.cache_bytes()
                finally:
                    influx.close()
                    server.kill()
                if not held:
                    for wal in (tsm / "wal").rglob("*.wal"):
                        wal.unlink()
                if args.live:
                    live(settings, records, ids, root, tsm, Path(tmp) / "live", "TSM files",
                         influx_on, args)
        finally:
            embedded.close()


if __name__ == "__main__":
    main()
