"""Benchmark (issue 12): ingest points/s into a SqliteStore with roll-ups on vs off.

Run: ``.venv/bin/python bench/bench_rollup_ingest.py`` (``--rounds 3`` pairs,
``--hours 24`` of live data per round, ``--late 0.05`` share of late batches). Prints figures
and a final JSON line; no assertions.

Data: the demo plant (11 machines). A template store holds ``--prefill-hours`` of history
(no roll-up rows). Each round copies it to a fresh file under ``--tmp`` and ingests the same
batches: the plant's next ``--hours`` as a collector stores them (report by exception), cut
per device into ``--poll-s`` batches in time order, with heartbeat samples of every tag every
``--heartbeat-s``; every ``1/--late``-th batch is followed by a late one: a copy of an earlier
batch of the same device 1-4 hours behind the live front, shifted by 1 ms (new samples, in
hours the maintainer has already rolled up).

(a) off: no maintainer, no roll-up rows: every write is the autocommit INSERT.
(b) on: a ``RollupMaintainer`` runs in its thread with ``settle_s=60`` and a simulated clock
that follows the newest ingested sample, passing every ``--interval-s``: it computes hours
while ingest runs (far more hours per real second than a live plant closes), and the late
batches take the store's invalidation path (a transaction that deletes the rows they touch).

Rounds alternate (on, off, on, off ...) so that other load on the machine affects both.
``--duty`` sets the maintainer's share of the time while it has a backlog (default: the
maintainer's own).

``--serial-every N``: instead of the rounds, the maintainer's own work without the GIL in
between: one round that ingests the same batches and runs a pass (``run_once``) after every
N-th batch in the same thread, as a maintainer that keeps up would, timing ingest and passes
apart (wall and CPU), then the JSON line of that round. With late batches a maintainer that
keeps up computes again every hour they re-open, as often as they do.
Each write is timed: live and late batches are reported apart, so the invalidation path's
cost shows beside the ratio. Per "on" round also: the rows held at its end and the time to
compute the rest after it, and the CPU of the ingest thread and of the maintainer's thread
(ingest's share of the two is what it keeps at worst on the GIL, steadier than the wall ratio
on a loaded machine). The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.gateway import tag_records
from api.rollups import HOUR_NS, RollupMaintainer
from api.service import KpiService
from config import load_settings, shipped_config
from config.times import to_ns
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 0, 0, tzinfo=UTC)
MS = 1_000_000


def live_batches(plant: Plant, tag_ids: dict[str, int], device_of: dict[int, str], start: int,
                 end: int, poll_ns: int, heartbeat_ns: int) -> list[tuple[str, Batch]]:
    """(device, batch) of [start, end): per device and poll window, in time order."""
    parts = list(plant.history_batches(tag_ids, start, end, max_points=10**9))
    tid = np.concatenate([b.tag_id for b in parts])
    ts = np.concatenate([b.ts_ns for b in parts])
    val = np.concatenate([b.value for b in parts])
    if heartbeat_ns:  # every tag's value in force every heartbeat_ns (as polling would store)
        grid = np.arange(start + heartbeat_ns, end, heartbeat_ns, dtype=np.int64)
        hb_t, hb_ts, hb_v = [], [], []
        for t in np.unique(tid).tolist():
            sel = tid == t
            s_ts, s_v = ts[sel], val[sel]
            i = np.searchsorted(s_ts, grid, "right") - 1
            ok = (i >= 0) & ~np.isin(grid, s_ts)
            hb_t.append(np.full(int(ok.sum()), t, np.int32))
            hb_ts.append(grid[ok])
            hb_v.append(s_v[i[ok]])
        tid = np.concatenate([tid, *hb_t])
        ts = np.concatenate([ts, *hb_ts])
        val = np.concatenate([val, *hb_v])
    devices = sorted(set(device_of.values()))
    dev_idx = np.array([devices.index(device_of[int(t)]) for t in tid.tolist()], np.int64)
    window = (ts - start) // poll_ns
    order = np.lexsort((tid, dev_idx, window))
    tid, ts, val, dev_idx, window = tid[order], ts[order], val[order], dev_idx[order], window[order]
    key = window * len(devices) + dev_idx
    cuts = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    out = []
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        out.append((devices[int(dev_idx[a])],
                    Batch(tid[a:b].copy(), ts[a:b].copy(), val[a:b].copy(), np.zeros(b - a, np.uint8))))
    return out


def schedule(live: list[tuple[str, Batch]], late_share: float, seed: int = 7) -> list[tuple[bool, Batch]]:
    """The live batches, each ``1/late_share``-th followed by a late copy of an earlier batch
    of the same device 1-4 h behind (shifted by 1 ms)."""
    rng = np.random.default_rng(seed)
    every = max(1, round(1 / late_share)) if late_share > 0 else 0
    firsts = np.array([int(b.ts_ns.min()) for _, b in live], np.int64)
    out: list[tuple[bool, Batch]] = []
    for i, (dev, b) in enumerate(live):
        out.append((False, b))
        if not every or (i + 1) % every:
            continue
        front = int(b.ts_ns.max())
        target = front - int(rng.uniform(1.0, 4.0) * HOUR_NS)
        j = int(np.searchsorted(firsts, target))
        while j < i and live[j][0] != dev:
            j += 1
        if j >= i or int(live[j][1].ts_ns.max()) > front - HOUR_NS:
            continue  # not 1 h of history yet
        src = live[j][1]
        out.append((True, Batch(src.tag_id, src.ts_ns + MS, src.value, src.quality)))
    return out


def serial_round(template: Path, path: Path, settings: Any, batches: list[tuple[bool, Batch]],
                 every: int, settle_s: float) -> dict[str, Any]:
    """Ingest and a maintainer pass every ``every`` batches in one thread (``--serial-every``)."""
    shutil.copyfile(template, path)
    store = SqliteStore(path)
    clock = [int(batches[0][1].ts_ns.min())]
    service = KpiService(settings, store, rollups=True)
    maint = RollupMaintainer(service, settle_s=settle_s, backfill_days=None, clock_ns=lambda: clock[0])
    t_in = t_m = cpu_m = 0.0
    for i, (late, b) in enumerate(batches, 1):
        t = time.perf_counter()
        store.write(b)
        t_in += time.perf_counter() - t
        if not late:
            clock[0] = max(clock[0], int(b.ts_ns.max()))
        if i % every == 0 or i == len(batches):
            t, c = time.perf_counter(), time.process_time()
            maint.run_once()
            t_m += time.perf_counter() - t
            cpu_m += time.process_time() - c
    maint.close()
    rows = len(store.rollups([a.path for a in settings.assets], -(2**62), 2**62))
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return {"ingest_s": t_in, "maintainer_s": t_m, "maintainer_cpu_s": cpu_m,
            "maintainer_over_ingest": t_m / t_in, "passes": maint.passes,
            "rows_computed": maint.computed, "rows_at_end": rows,
            "cpu_ms_per_row": 1e3 * cpu_m / max(maint.computed, 1)}


def run_round(template: Path, path: Path, settings: Any, batches: list[tuple[bool, Batch]],
              on: bool, interval_s: float, settle_s: float, duty: float | None = None) -> dict[str, Any]:
    shutil.copyfile(template, path)
    store = SqliteStore(path)
    clock = [int(batches[0][1].ts_ns.min())]
    maint = None
    if on:
        service = KpiService(settings, store, rollups=True)
        maint = RollupMaintainer(service, settle_s=settle_s, interval_s=interval_s,
                                 backfill_days=None, clock_ns=lambda: clock[0],
                                 **({} if duty is None else {"duty": duty}))
        maint.start()
    t_live = t_late = 0.0
    n_live = n_late = p_live = p_late = 0
    late_times: list[float] = []
    t0, c0 = time.perf_counter(), time.thread_time()
    for late, b in batches:
        t = time.perf_counter()
        store.write(b)
        dt = time.perf_counter() - t
        if late:
            t_late += dt
            n_late += 1
            p_late += len(b)
            late_times.append(dt)
        else:
            t_live += dt
            n_live += 1
            p_live += len(b)
            clock[0] = max(clock[0], int(b.ts_ns.max()))
    wall, ingest_cpu = time.perf_counter() - t0, time.thread_time() - c0
    computed = passes = 0
    catch_up_s = maint_cpu = 0.0
    rows = len(store.rollups([a.path for a in settings.assets], -(2**62), 2**62))
    if maint is not None:
        maint_cpu = thread_cpu_s(maint)
        maint.close()
        computed, passes = maint.computed, maint.passes
        rows = len(store.rollups([a.path for a in settings.assets], -(2**62), 2**62))
        # what the maintainer left when ingest stopped, computed at once (no rest)
        t = time.perf_counter()
        RollupMaintainer(maint.service, settle_s=settle_s, backfill_days=None,
                         clock_ns=lambda: clock[0]).run_once()
        catch_up_s = time.perf_counter() - t
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    points = p_live + p_late
    return {
        "on": on, "points": points, "batches": n_live + n_late, "wall_s": wall,
        "points_per_s": points / wall,
        "live_us_per_batch": 1e6 * t_live / n_live, "late_us_per_batch": 1e6 * t_late / max(n_late, 1),
        "late_median_us": 1e6 * statistics.median(late_times) if late_times else 0.0,
        "late_batches": n_late, "late_share_of_time": (t_late / (t_live + t_late)),
        "hours_computed": computed, "passes": passes, "rows_at_end": rows, "catch_up_s": catch_up_s,
        "ingest_cpu_s": ingest_cpu, "maintainer_cpu_s": maint_cpu,
    }


def thread_cpu_s(maint: RollupMaintainer) -> float:
    """CPU seconds (user + system) of the maintainer's thread so far, from /proc (10 ms
    ticks): what it took of the interpreter while ingest ran, whatever the machine's load."""
    thread = maint._thread
    tid = None if thread is None else thread.native_id
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (on, off)")
    ap.add_argument("--hours", type=float, default=24.0, help="live data per round")
    ap.add_argument("--prefill-hours", type=float, default=6.0)
    ap.add_argument("--poll-s", type=float, default=5.0)
    ap.add_argument("--heartbeat-s", type=float, default=10.0)
    ap.add_argument("--late", type=float, default=0.05, help="late batches per live batch")
    ap.add_argument("--interval-s", type=float, default=0.05, help="maintainer pass interval (real)")
    ap.add_argument("--settle-s", type=float, default=60.0, help="maintainer settle (simulated)")
    ap.add_argument("--duty", type=float, default=None, help="maintainer's duty (default: its own)")
    ap.add_argument("--serial-every", type=int, default=0,
                    help="instead: one round, a maintainer pass after every N batches, same thread")
    ap.add_argument("--tmp", default=None, help="directory for the stores (default: a temp dir)")
    args = ap.parse_args()

    settings = load_settings(shipped_config("demo.yaml"))
    plant = Plant(settings, now=NOW)
    start = to_ns(NOW - timedelta(hours=args.prefill_hours))
    live0, live1 = to_ns(NOW), to_ns(NOW + timedelta(hours=args.hours))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        template = Path(tmp) / "template.db"
        with SqliteStore(template) as store:
            tag_ids = store.register_tags(tag_records(settings))
            device_of = {t.tag_id: t.device for t in store.tags()}
            for b in plant.history_batches(tag_ids, start, live0):
                store.write(b)
            store.compact()
        live = live_batches(plant, tag_ids, device_of, live0, live1,
                            int(args.poll_s * 1e9), int(args.heartbeat_s * 1e9))
        batches = schedule(live, args.late)
        n_points = sum(len(b) for _, b in batches)
        n_late = sum(1 for late, _ in batches if late)
        print(f"demo plant, {len(settings.assets)} machines: {args.prefill_hours:g} h prefilled,"
              f" {args.hours:g} h live: {len(batches):,} batches ({n_late:,} late),"
              f" {n_points:,} points, mean {n_points / len(batches):.1f} points/batch")
        load0 = os.getloadavg()
        print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} cores)")
        if args.serial_every:
            res = serial_round(template, Path(tmp) / "serial.db", settings, batches, args.serial_every,
                               args.settle_s)
            load1 = os.getloadavg()
            print(f"serial, a pass every {args.serial_every} batches: ingest {res['ingest_s']:.2f} s,"
                  f" maintainer {res['maintainer_s']:.2f} s ({res['maintainer_cpu_s']:.2f} s CPU,"
                  f" {res['maintainer_over_ingest']:.2f}x ingest) in {res['passes']} passes,"
                  f" {res['rows_computed']:,} rows computed ({res['cpu_ms_per_row']:.2f} ms CPU each),"
                  f" {res['rows_at_end']:,} held at the end; load after {load1[0]:.2f}")
            print(json.dumps({"bench": "rollup_ingest_serial", "machines": len(settings.assets),
                              "hours": args.hours, "late": args.late, "every": args.serial_every,
                              **{k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()},
                              "load_before": [round(x, 2) for x in load0],
                              "load_after": [round(x, 2) for x in load1]}))
            return
        results: list[dict[str, Any]] = []
        for r in range(2 * args.rounds):
            on = r % 2 == 0
            res = run_round(template, Path(tmp) / f"round{r}.db", settings, batches, on,
                            args.interval_s, args.settle_s, args.duty)
            results.append(res)
            print(f"round {r + 1} {'on ' if on else 'off'}: {res['points_per_s']:>10,.0f} points/s"
                  f"  live {res['live_us_per_batch']:6.1f} us/batch  late {res['late_us_per_batch']:7.1f}"
                  f" us/batch (median {res['late_median_us']:.1f})  hours computed {res['hours_computed']}"
                  f" in {res['passes']} passes, rows at end {res['rows_at_end']}"
                  f" (the rest computed after it in {res['catch_up_s']:.2f} s); CPU: ingest thread"
                  f" {res['ingest_cpu_s']:.2f} s, maintainer thread {res['maintainer_cpu_s']:.2f} s")
        load1 = os.getloadavg()
        print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")

    def med(on: bool, k: str) -> float:
        return float(statistics.median(x[k] for x in results if x["on"] == on))

    on_rate, off_rate = med(True, "points_per_s"), med(False, "points_per_s")
    ratio = on_rate / off_rate
    late_on, late_off = med(True, "late_us_per_batch"), med(False, "late_us_per_batch")
    live_on, live_off = med(True, "live_us_per_batch"), med(False, "live_us_per_batch")
    print(f"median points/s: on {on_rate:,.0f}, off {off_rate:,.0f}: ratio {ratio:.3f} (goal >= 0.9)")
    # less noisy than the wall ratio on a loaded machine: if the maintainer's CPU all held the
    # interpreter from ingest (the worst case on the GIL), ingest would run at this share
    cpu_share = med(True, "ingest_cpu_s") / (med(True, "ingest_cpu_s") + med(True, "maintainer_cpu_s"))
    print(f"maintainer thread CPU {med(True, 'maintainer_cpu_s'):.2f} s against ingest thread"
          f" {med(True, 'ingest_cpu_s'):.2f} s per on round: ingest's share {cpu_share:.3f}")
    print(f"live batch: on {live_on:.1f} us, off {live_off:.1f} us; late batch (invalidation path"
          f" when on): on {late_on:.1f} us, off {late_off:.1f} us (+{late_on - late_off:.1f} us);"
          f" late batches' share of ingest time when on: {med(True, 'late_share_of_time'):.1%}")
    # the ingest time the maintainer's work cost, per hour it computed (GIL and cores shared)
    per_hour_ms = [1e3 * (on["wall_s"] - off["wall_s"]) / on["hours_computed"]
                   for on, off in zip(results[0::2], results[1::2], strict=True) if on["hours_computed"]]
    lost_ms = float(statistics.median(per_hour_ms)) if per_hour_ms else None
    if lost_ms is not None:
        print(f"ingest time lost per hour computed: {lost_ms:.1f} ms (median of pairs); a live plant"
              f" of {len(settings.assets)} machines closes {len(settings.assets)} hours per hour")
    print(json.dumps({
        "bench": "rollup_ingest", "machines": len(settings.assets), "hours": args.hours,
        "points": n_points, "batches": len(batches), "late_batches": n_late,
        "points_per_s_on": round(on_rate), "points_per_s_off": round(off_rate),
        "ratio": round(ratio, 3), "goal": 0.9, "goal_met": ratio >= 0.9,
        "ingest_cpu_share": round(cpu_share, 3),
        "live_us_per_batch_on": round(live_on, 1), "live_us_per_batch_off": round(live_off, 1),
        "late_us_per_batch_on": round(late_on, 1), "late_us_per_batch_off": round(late_off, 1),
        "lost_ms_per_hour_computed": None if lost_ms is None else round(lost_ms, 2),
        "hours_computed_per_round": [x["hours_computed"] for x in results if x["on"]],
        "rows_at_end_per_round": [x["rows_at_end"] for x in results if x["on"]],
        "catch_up_s_per_round": [round(x["catch_up_s"], 2) for x in results if x["on"]],
        "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in load1],
        "rounds": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in x.items()}
                   for x in results],
    }))


if __name__ == "__main__":
    main()
