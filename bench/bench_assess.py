"""A full tier assessment of a large plant from the store, beside plain pandas (issue 12).

Run: ``.venv/bin/python bench/bench_assess.py --machines 500 --days 30`` (the issue's case;
the defaults, 20 machines x 7 days, are the quick run of ``make bench``). Prints figures and
ends with one JSON line; nothing is asserted but the equality of the two implementations'
numbers, which is reported as ``equal``.

1. **The store.** The demo's eleven machine kinds are replicated over copies of its four lines
   (as ``tests/integration/test_scale_truth.py`` does), cut at ``--machines``; the seeded
   simulator's ``--days`` of history go into one SQLite store as the collectors store them
   by exception (``Plant.history_batches``: state and modes at each change, counters at each
   part, the energy meter at each change of power and at least every 60 s) -- the KPI-role
   samples an assessment reads. Generated once per parameter set under ``--cache``
   (default ``/tmp/tierproof-bench-assess``, keyed by machines, days and the configuration's
   fingerprint) in a child process, and reused: reruns are warm (delete the directory after
   changing the simulator). A store of the same plant polled every second and stored on
   change is not generated at this size: polling 500 machines for 30 days in the simulator
   takes days, and the energy meter alone, which moves at every poll while power flows,
   would add ~1.3 billion samples (section 4 measures what such storage costs instead).
2. **tierproof.** ``assess`` (``api/assessment.py``) over that store, inside
   ``KpiService.snapshot()`` like ``tierproof assess``: baseline = the first half of the
   history, current = the second half (the simulator improves at the midpoint). It runs
   twice; the second (warm: page cache, imports, tag table) is the figure. Whatever
   ``assess`` reads -- raw samples today, roll-ups later -- is what is measured.
3. **pandas.** The same formulas written as a pandas user would: every KPI tag's raw samples
   read with ``store.read`` into DataFrames (assets in chunks, to bound memory), step signals
   pivoted and forward-filled per asset and cut at the shift calendar's edges
   (``simulators/calendar.py``, not ``kpi/``), elements by the OPC 40001 state x mode table,
   counter increases with resets and the implausible-rise rule, each increase spread over the
   time between its two samples in proportion to production time (``merge_asof`` on the
   cumulative weights), sums per asset and for the plant, then divided. Run twice; the second
   is the figure. Its numbers -- availability, effectiveness, quality and OEE per asset and in
   total, automation rate, defect rate, production efficiency and energy per standard hour
   of both windows -- are compared with the assessment's (``equal``).
4. **Storage per machine-month.** The demo's Modbus machines polled every second for
   ``--sample-hours`` (``bench/bench_storage.py``'s poll: simulator register encoder,
   collector decoder), their KPI-role tags stored into real SQLite stores every poll and on
   change (role defaults: deadband 0, 60 s heartbeat, through ``collector/filter.py``);
   bytes are extrapolated to a machine-month (30 days) and printed as such. The default is
   a quick 4 h from 08:00 (day shift, the most changes); ``--sample-hours 24
   --sample-from-h 0`` polls a whole day.

The assessment uses the gateway's cores as configured (``kpi.assess_workers``, default one
worker process per core beyond the first, ``api.assetsplit``): its CPU time and peak RSS count
every process -- this one's plus each worker's (as of its last answer), the JSON line's
``assess_cpu_s`` and ``peak_rss_mb``; ``assess_cpu_parent_s`` and ``peak_rss_parent_mb`` give
this process's share. Peak RSS is the high-water mark after the assessment runs (the
generation runs in a child process; pandas runs after and its peak is printed separately).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import assetsplit
from api.assessment import assess
from api.gateway import tag_records
from api.rollups import SUM, RollupMaintainer, keyed_rows
from api.service import KpiService
from config import Settings, load_settings, load_tiers, shipped_config
from config.fingerprint import config_fingerprint
from config.signals import ChannelMode, MachineState, OperationMode, Quality, Role, canonical_code
from config.times import to_ns
from kpi import ALGORITHM_VERSION
from simulators import Plant
from simulators.calendar import ShiftCalendar
from simulators.scale import replicate
from store.sqlite import SqliteStore

#: a Wednesday, mid-shift in Shanghai (the demo's calendar), as in test_scale_truth
NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)
MB = 2**20
#: the storage comparison's day (bench_storage.DAY: a Wednesday in Shanghai)
DAY_LOCAL = "2026-11-18"
#: relative tolerance of tierproof vs pandas (see compare and docs/benchmarks.md)
REL_TOL = 1e-6
#: arguments the generating and rolling-up child processes get too (``--config``)
_CHILD_ARGS: list[str] = []


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers_cpu_s() -> float:
    """CPU seconds of the assessment workers (``api.assetsplit``) as of their last answer."""
    return sum(u["cpu_s"] for u in assetsplit.usage())


def split_keys(parent_cpu_s: float, peak_parent_mb: float, warm_s: list[float]) -> dict[str, Any]:
    """The JSON line's keys on the processes: ``assess_cpu_s`` and ``peak_rss_mb`` count every
    process (this one and its assessment workers); these give this process's share, and the
    warm runs' (all but the first) minimum and median wall time."""
    return {"assess_workers": len(assetsplit.usage()), "assess_cpu_parent_s": round(parent_cpu_s, 3),
            "peak_rss_parent_mb": round(peak_parent_mb, 1),
            "assess_warm_min_s": round(min(warm_s), 3),
            "assess_warm_median_s": round(float(np.median(warm_s)), 3)}


def scaled(settings: Settings, machines: int, days: int) -> Settings:
    """The demo replicated to ``machines`` (``simulators.scale.replicate``); the simulation keeps
    ``days`` of history, improving at its midpoint, and the KPI windows are its two halves."""
    half = days // 2
    data = replicate(settings, machines, days, improved_days_ago=half)
    data["kpi"].update(baseline={"start": f"now-{days}d", "end": f"now-{half}d"},
                       current={"start": f"now-{half}d", "end": "now"})
    return Settings.model_validate(data)


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# ---------------------------------------------------------------------------- generation

def store_path(cache: Path, settings: Settings, machines: int, days: int) -> Path:
    key = f"m{machines}-d{days}-{config_fingerprint(settings)[:12]}"
    return cache / key / "rbe.db"


def generate(settings: Settings, path: Path, days: int) -> None:
    """Backfill ``days`` of history into a new store at ``path`` (report by exception),
    printing progress, RSS and the time taken; ``path.done`` marks a finished store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    t0 = time.perf_counter()
    store = SqliteStore(path)
    points = 0
    try:
        tag_ids = store.register_tags(tag_records(settings))
        plant = Plant(settings, now=NOW)
        start, end = to_ns(NOW - timedelta(days=days)), to_ns(NOW)
        day_ns = 86400 * 10**9
        shown = start
        # history_batches computes one day at a time (slice_ns): memory stays bounded
        for batch in plant.history_batches(tag_ids, start, end):
            store.write(batch)
            points += len(batch)
            t_last = int(batch.ts_ns[-1])
            if t_last - shown >= day_ns or t_last >= end - 1:
                shown = t_last
                print(f"  {(t_last - start) / day_ns:5.1f} of {days} days: {points:,} samples, "
                      f"{time.perf_counter() - t0:.0f} s, RSS {rss_mb():.0f} MB", flush=True)
                if rss_mb() > 3000:
                    raise SystemExit("RSS above 3 GB: stopping; run with fewer machines")
    finally:
        store.close()
    path.with_name(path.name + ".done").write_text(json.dumps(
        {"samples": points, "seconds": time.perf_counter() - t0, "bytes": db_bytes(path)}))


def roll_up(settings: Settings, path: Path) -> None:
    """Every closed hour and local day of the store rolled up (``RollupMaintainer.run_once``,
    as the gateway's background thread does over time); ``path.rolled`` records the time."""
    t0 = time.perf_counter()
    with SqliteStore(path) as store:
        rows = RollupMaintainer(KpiService(settings, store), backfill_days=None,
                                clock_ns=lambda: to_ns(NOW)).run_once()
    secs = time.perf_counter() - t0
    print(f"  rolled up {rows:,} rows in {secs:.0f} s, RSS {rss_mb():.0f} MB", flush=True)
    path.with_name(path.name + ".rolled").write_text(json.dumps(
        {"rows": rows, "seconds": secs, "algorithm_version": ALGORITHM_VERSION}))


def rows_current(settings: Settings, path: Path) -> bool:
    """Whether the store holds roll-up rows of the current key (``api.rollups.rollup_key``:
    algorithm version and config basis) for its first asset: rows of another key are
    ignored by the assessment, which then computes every window from raw samples."""
    with SqliteStore(path) as store:
        service = KpiService(settings, store)
        asset = settings.assets[0]
        tags = service._tags_by_asset().get(asset.path, {})
        if not tags:
            return False
        key = service.rollup_key(asset, tags)
        # hour rows, and the day-sum rows added later (a store rolled up before has none)
        return all(keyed_rows(store, {asset.path: key + k}, 0, 2**62).get(asset.path)
                   for k in ("", SUM))


def ensure_rollups(settings: Settings, path: Path, days: int) -> dict[str, Any]:
    """The cached store's roll-ups (rows of the current algorithm version and key), computed
    in a child process when absent (its memory does not count in this process's peak)."""
    done = path.with_name(path.name + ".rolled")
    stale = done.exists() and not rows_current(settings, path)
    if stale:
        print("the store's roll-up rows are of another key (config basis or algorithm): "
              "rolling up again", flush=True)
    if stale or not done.exists() or \
            json.loads(done.read_text()).get("algorithm_version") != ALGORITHM_VERSION:
        print(f"rolling up {path} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--rollup", str(path),
                        "--machines", str(len(settings.assets)), "--days", str(days), *_CHILD_ARGS],
                       check=True)
    return dict(json.loads(done.read_text()))


def ensure_store(settings: Settings, path: Path, days: int, given: bool = False) -> dict[str, Any]:
    """The cached store's record, generating it in a child process when absent (so that
    the generation's memory does not count in this process's peak RSS). ``given``: a store
    named by ``--store``, used as it is (never generated)."""
    done = path.with_name(path.name + ".done")
    if given:
        if not path.exists():
            raise SystemExit(f"--store {path}: no such file")
        print(f"store given: {path}")
        return dict(json.loads(done.read_text())) if done.exists() else \
            {"samples": -1, "seconds": float("nan"), "bytes": db_bytes(path)}
    if not done.exists():
        print(f"generating {path} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--generate", str(path),
                        "--machines", str(len(settings.assets)), "--days", str(days), *_CHILD_ARGS],
                       check=True)
    else:
        print(f"store cached: {path}")
    return dict(json.loads(done.read_text()))


# ---------------------------------------------------------------------------- pandas

#: OPC 40001-1 state x mode -> ISO 22400 element, first match wins (mode None: any mode)
ELEMENTS = (
    (MachineState.NotAvailable, None, "not_available"),
    (MachineState.OutOfService, None, "adet"),
    (MachineState.Executing, OperationMode.Processing, "apt"),
    (MachineState.NotExecuting, OperationMode.Processing, "adet"),
    (MachineState.Executing, OperationMode.Setup, "asut"),
    (MachineState.NotExecuting, OperationMode.Setup, "asut"),
    (MachineState.Executing, OperationMode.Maintenance, "maintenance"),
    (MachineState.NotExecuting, OperationMode.Maintenance, "maintenance"),
    (MachineState.Executing, OperationMode.NoMode, "other"),
    (MachineState.NotExecuting, OperationMode.NoMode, "other"),
)
STEPS = ("state", "mode", "channel_mode")
COUNTS = ("total_count", "good_count", "reject_count", "energy_kwh")
PARTS = ("total_count", "good_count", "reject_count")


def read_samples(store: SqliteStore, tags: pd.DataFrame, start_ns: int, end_ns: int) -> pd.DataFrame:
    """Every sample of ``tags`` in [start_ns, end_ns) and the one before, usable ones only."""
    frames = []
    for t in tags.itertuples():
        s = store.read(int(t.tag_id), start_ns, end_ns, prior=True)
        frames.append(pd.DataFrame({"tag_id": t.tag_id, "ts": s.ts_ns, "value": s.value,
                                    "quality": s.quality}))
    df = pd.concat(frames, ignore_index=True).merge(tags[["tag_id", "asset", "role"]], on="tag_id")
    return df[(df.quality < int(Quality.BAD)) & np.isfinite(df.value)]


def step_intervals(samples: pd.DataFrame, tags: pd.DataFrame, plan: tuple[Any, Any],
                   start_ns: int, end_ns: int) -> pd.DataFrame:
    """Per asset, the intervals between changes of state, mode and channel mode and the plan's
    edges, with each signal's canonical code (-1 unknown), seconds in and outside the plan
    and the element; sorted by time."""
    st = samples[samples.role.isin(STEPS)].copy()
    lut = pd.DataFrame(
        [(t.tag_id, float(raw), canonical_code(Role(t.role), name))
         for t in tags[tags.role.isin(STEPS)].itertuples() if t.enum
         for raw, name in t.enum.items()], columns=["tag_id", "value", "code"])
    st = st.merge(lut, on=["tag_id", "value"], how="left")
    has_lut = st.tag_id.isin(lut.tag_id)
    raw_int = st.value == st.value.round()
    st["code"] = np.where(has_lut, st.code.fillna(-1),
                          np.where(raw_int, st.value, -1)).astype(np.int64)
    st["ts"] = st.ts.clip(lower=start_ns)  # the sample before the window holds from its start
    st = st.sort_values("ts", kind="stable").drop_duplicates(["asset", "role", "ts"], keep="last")
    wide = st.pivot(index=["asset", "ts"], columns="role", values="code")
    for r in STEPS:
        if r not in wide:
            wide[r] = np.nan
    ps, pe = plan
    edges = np.unique(np.concatenate([[start_ns], ps, pe]))
    edges = edges[(edges >= start_ns) & (edges < end_ns)]
    assets = tags.asset.unique()
    grid = pd.MultiIndex.from_product([assets, edges], names=["asset", "ts"])
    wide = wide.reindex(wide.index.union(grid)).sort_index()
    wide = wide.groupby(level="asset").ffill().fillna(-1).astype(np.int64).reset_index()
    wide["end"] = wide.groupby("asset").ts.shift(-1).fillna(end_ns).astype(np.int64)
    wide["seconds"] = (wide.end - wide.ts) / 1e9
    # each interval is wholly in or out of the plan (cut at its edges)
    p = pd.DataFrame({"ps": ps, "pe": pe})
    wide = pd.merge_asof(wide.sort_values("ts"), p, left_on="ts", right_on="ps")
    planned = wide.ts < wide.pe.fillna(np.iinfo(np.int64).min)
    wide["in_plan"] = np.where(planned, wide.seconds, 0.0)
    wide["out_plan"] = wide.seconds - wide.in_plan
    conds = [(wide.state == s) & ((wide["mode"] == m) if m is not None else True)
             for s, m, _ in ELEMENTS]
    wide["element"] = np.select(conds, [e for _, _, e in ELEMENTS], default="")
    return wide.drop(columns=["ps", "pe"])  # in time order (merge_asof), each asset's too


def increases(samples: pd.DataFrame, assets: pd.DataFrame, factor: float,
              start_ns: int, end_ns: int, late_s: float = 0.0) -> pd.DataFrame:
    """Counter increases dated in the window (a drop is a reset: the new value counts from 0;
    a part-counter rise faster than the machine can make parts in the time between its samples
    and ``late_s`` of stamping lateness, plus one, is excluded)."""
    c = samples[samples.role.isin(COUNTS)].sort_values(["tag_id", "ts"])
    g = c.groupby("tag_id")
    c = c.assign(d=g.value.diff(), t0=g.ts.shift())
    c = c[c.d.notna() & (c.ts >= start_ns) & (c.ts < end_ns)]
    c = c.assign(inc=np.where(c.d >= 0, c.d, c.value), t0=c.t0.astype(np.int64))
    c = c.merge(assets[["asset", "pru"]], on="asset")
    allowed = ((c.ts - c.t0) / 1e9 + late_s) * factor / c.pru + 1.0
    wrong = c.role.isin(PARTS) & c.pru.notna() & (c.inc > allowed)
    return c.assign(inc=c.inc.where(~wrong, 0.0))


def attributed(inc: pd.DataFrame, iv: pd.DataFrame, start_ns: int) -> pd.Series:
    """Each increase's share in known planned time: spread over (t0, t1] in proportion to
    where output can have been made (production in known PBT, unknown PBT, production or
    unknown outside PBT), or over the wall time when none of that lies between them."""
    known = iv.element != ""
    apt = iv.element == "apt"
    w = pd.DataFrame({
        "asset": iv.asset, "ts": iv.ts, "len": (iv.end - iv.ts).astype(np.float64),
        "w0": iv.in_plan.where(apt, 0.0), "w1": iv.in_plan.where(~known, 0.0),
        "w2": iv.out_plan.where(apt | ~known, 0.0),
        "v0": iv.in_plan.where(known, 0.0), "v1": iv.in_plan.where(~known, 0.0), "v2": iv.out_plan,
    })
    cols = ["w0", "w1", "w2", "v0", "v1", "v2"]
    cum = w.groupby("asset")[cols].cumsum() - w[cols]  # before each interval
    w = w.join(cum.add_prefix("c_"))  # in time order already (step_intervals)

    def at(t: Any) -> pd.DataFrame:
        """The cumulative weights at instants ``t`` (one per increase, in its asset)."""
        t = np.asarray(t)
        order = np.argsort(t, kind="stable")  # merge_asof wants them sorted; put back after
        left = pd.DataFrame({"asset": inc.asset.to_numpy()[order], "t": t[order]})
        m = pd.merge_asof(left, w, left_on="t", right_on="ts", by="asset")
        frac = ((m.t - m.ts) / m["len"]).clip(0.0, 1.0).to_numpy()
        out = np.empty((len(t), len(cols)))
        out[order] = np.column_stack([m[f"c_{k}"].to_numpy() + m[k].to_numpy() * frac for k in cols])
        return pd.DataFrame(out, columns=cols)

    lo = inc.t0.clip(lower=start_ns)
    hi = np.maximum(inc.ts, lo + 1)
    share = at(hi) - at(lo)
    prod = share[["w0", "w1", "w2"]].sum(axis=1)
    wall = share[["v0", "v1", "v2"]].sum(axis=1)
    use_w = prod > 0
    frac0 = np.where(use_w, share.w0 / prod.where(use_w, 1.0), share.v0 / wall.where(wall > 0, 1.0))
    return pd.Series(frac0 * inc.inc.to_numpy(), index=inc.index)


def pandas_elements(store: SqliteStore, settings: Settings, start_ns: int, end_ns: int,
                    chunk: int) -> pd.DataFrame:
    """Per asset: the sums the figures divide (seconds in known PBT, attributed parts, energy).
    Written for the demo's assets: no manual machines, no ``default_mode``, no recorded gaps."""
    assert not any(a.control in ("manual", "none") or a.default_mode for a in settings.assets)
    tags = pd.DataFrame([{"tag_id": t.tag_id, "asset": t.asset, "role": t.role, "enum": t.enum}
                         for t in store.tags() if t.role in STEPS + COUNTS])
    tags = tags.drop_duplicates(["asset", "role"])
    assets = pd.DataFrame({"asset": [a.path for a in settings.assets],
                           "pru": [a.ideal_cycle_time_s for a in settings.assets]}).astype({"pru": float})
    plan = ShiftCalendar(settings.calendar).intervals(start_ns, end_ns)
    factor = settings.kpi.counter_rate_factor
    out = []
    names = assets.asset.tolist()
    for i in range(0, len(names), chunk):
        part = tags[tags.asset.isin(names[i:i + chunk])]
        samples = read_samples(store, part, start_ns, end_ns)
        iv = step_intervals(samples, part, plan, start_ns, end_ns)
        iv["auto"] = np.where((iv.element == "apt") & (iv.channel_mode == ChannelMode.Automatic),
                              iv.in_plan, 0.0)
        iv["mode_known"] = np.where((iv.element == "apt") & (iv.channel_mode != -1), iv.in_plan, 0.0)
        iv["known"] = np.where(iv.element != "", iv.in_plan, 0.0)
        el = iv.pivot_table(index="asset", columns="element", values="in_plan", aggfunc="sum",
                            fill_value=0.0)
        el = el.reindex(columns=["apt", "asut", "adet"], fill_value=0.0)
        el = el.join(iv.groupby("asset")[["known", "auto", "mode_known"]].sum())
        inc = increases(samples, assets, factor, start_ns, end_ns,
                        settings.kpi.counter_stamp_tolerance_s)
        inc["plan"] = attributed(inc, iv, start_ns)
        q = inc.pivot_table(index="asset", columns="role", values=["inc", "plan"], aggfunc="sum")
        q.columns = [f"{v}_{r}" for v, r in q.columns]
        el = el.join(q)
        roles = part.groupby("asset").role.agg(set)
        out.append(el.join(roles.rename("roles")))
        del samples, iv, inc
    df = pd.concat(out).reset_index().rename(columns={"index": "asset"})
    df = df.merge(assets, on="asset", how="right").set_index("asset")
    has = {r: df.roles.map(lambda s, r=r: isinstance(s, set) and r in s) for r in COUNTS}
    for v in ("inc", "plan"):
        for r in COUNTS:
            col = f"{v}_{r}"
            df[col] = df[col].fillna(0.0) if col in df else 0.0
    # PQ: the total counter, or good + reject; GQ: good, or total - reject; SQ: reject, or total - good
    for v in ("inc", "plan"):
        tot = df[f"{v}_total_count"].where(has["total_count"],
                                           df[f"{v}_good_count"] + df[f"{v}_reject_count"])
        df[f"{v}_pq"] = tot
        df[f"{v}_gq"] = df[f"{v}_good_count"].where(has["good_count"], tot - df[f"{v}_reject_count"])
        df[f"{v}_sq"] = df[f"{v}_reject_count"].where(has["reject_count"], tot - df[f"{v}_good_count"])
    df["gq_known"] = has["good_count"] | (has["total_count"] & has["reject_count"])
    df["metered"] = has["energy_kwh"]
    return df


def pandas_figures(df: pd.DataFrame) -> dict[str, Any]:
    """A, E, Q, OEE per asset and in total, and the assessment's four ratio figures."""
    rated = df.pru.notna()
    std = rated & df.gq_known
    busy = df.apt + df.asut + df.adet

    def kpis(e: pd.DataFrame | pd.Series) -> dict[str, float]:
        a = e["apt"] / e["known"]
        eff = e["ideal"] / e["apt_pru"]
        q = e["plan_gq"] / e["plan_pq"]
        return {"availability": a, "effectiveness": eff, "quality_ratio": q, "oee": a * eff * q}

    e = pd.DataFrame({
        "apt": df.apt, "known": df.known, "plan_gq": df.plan_gq, "plan_pq": df.plan_pq,
        "ideal": (df.pru * df.plan_pq).fillna(0.0), "apt_pru": df.apt.where(rated, 0.0),
        "auto": df.auto, "mode_known": df.mode_known, "plan_sq": df.plan_sq,
        "std_gq_s": (df.pru * df.plan_gq).where(std, 0.0), "std_busy_s": busy.where(std, 0.0),
        "energy_std": df.inc_energy_kwh.where(std & df.metered, 0.0),
        "energy_std_gq_s": (df.pru * df.inc_gq).where(std & df.metered, 0.0),
    })
    per_asset = pd.DataFrame(kpis(e))
    t = e.sum()
    return {
        "assets": per_asset.to_dict(orient="index"),
        "total": kpis(t),
        "figures": {
            "automation_rate": t["auto"] / t["mode_known"],
            "defect_rate": t["plan_sq"] / t["plan_pq"],
            "production_efficiency": t["std_gq_s"] / t["std_busy_s"],
            "energy_per_standard_hour_kwh": t["energy_std"] / (t["energy_std_gq_s"] / 3600.0),
        },
    }



# ---------------------------------------------------------------------------- comparison

def worst_diff(a: Any, b: Any) -> float:
    """Largest relative difference of any number between two JSON answers (inf when their
    shapes or non-numbers differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((worst_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((worst_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (a != a and b != b):
            return 0.0
        return abs(a - b) / max(abs(a), abs(b), 1e-300)
    return 0.0 if a == b else float("inf")


def without_provenance(result: dict[str, Any]) -> dict[str, Any]:
    """The answer without each asset's ``rollups`` entry (how its numbers were obtained)."""
    assets = {p: {k: v for k, v in e.items() if k != "rollups"} for p, e in result["assets"].items()}
    return {**result, "assets": assets}


def compare(result: dict[str, Any], cur: dict[str, Any], base: dict[str, Any], rel: float
            ) -> tuple[bool, int, float, list[str]]:
    """Every number pandas computed beside the assessment's: (all within ``rel``, numbers
    compared, largest relative difference, the first differences)."""
    pairs: list[tuple[str, Any, Any]] = []
    for path, k in cur["assets"].items():
        for name, v in k.items():
            pairs.append((f"{path} {name}", result["assets"][path][name], v))
    for name, v in cur["total"].items():
        pairs.append((f"total {name}", result["total"][name], v))
    for f, v in cur["figures"].items():
        pairs.append((f"current {f}", (result["figures"][f]["value"] or {}).get("point"), v))
    for f, v in base["figures"].items():
        pairs.append((f"baseline {f}", result["deltas"][f]["baseline_value"], v))
    worst, bad = 0.0, []
    for what, a, b in pairs:
        b = None if b is None or not np.isfinite(b) else float(b)
        if a is None or b is None:
            if a is not None or b is not None:
                bad.append(f"{what}: tierproof {a}, pandas {b}")
            continue
        d = abs(a - b) / max(abs(a), abs(b), 1e-300)
        worst = max(worst, d)
        if d > rel:
            bad.append(f"{what}: tierproof {a!r}, pandas {b!r}")
    return not bad, len(pairs), worst, bad


# ---------------------------------------------------------------------------- storage

def storage_bytes(hours: float, from_h: float) -> dict[str, float]:
    """Bytes per machine-month of the KPI-role tags of the demo's first Modbus machine of each
    line, polled every second for ``hours`` from ``from_h`` (local time), stored every poll and
    on change (role defaults), extrapolated to 30 days."""
    from bench_storage import DAY, KPI_ROLES, Machine, polls

    from collector.filter import StorageFilter
    from config.modbus import ModbusDevice
    from store import Batch

    demo = load_settings(shipped_config("demo.yaml"))
    devices = [d for d in demo.devices if isinstance(d, ModbusDevice)]
    all_tags = [(d, t) for d in devices for t in d.tags]
    tag_ids = {t.path: i + 1 for i, (_, t) in enumerate(all_tags)}
    machines = [Machine(d, next(t.asset for t in d.tags), tag_ids) for d in devices]
    kpi_ids = np.array([tag_ids[t.path] for _, t in all_tags if t.role in KPI_ROLES], np.int32)
    plant = Plant(demo, now=DAY + timedelta(days=1))
    start = to_ns(DAY) + round(from_h * 3600) * 10**9
    end = start + round(hours * 3600) * 10**9
    f = StorageFilter()
    for d, t in all_tags:
        if t.role in KPI_ROLES:
            f.configure(d, [t], tag_ids)
    tmp = Path(tempfile.mkdtemp(prefix="tierproof-bench-assess-storage-"))
    stores = {"poll": SqliteStore(tmp / "poll.db"), "on_change": SqliteStore(tmp / "on_change.db")}
    n = {"poll": 0, "on_change": 0}
    t0 = time.perf_counter()
    try:
        for b in polls(plant, machines, start, end):
            keep = np.isin(b.tag_id, kpi_ids)
            if not keep.any():
                continue
            kb = Batch(b.tag_id[keep], b.ts_ns[keep], b.value[keep], b.quality[keep])
            stores["poll"].write(kb)
            out = f.apply(kb)
            if len(out):
                stores["on_change"].write(out)
            n["poll"] += len(kb)
            n["on_change"] += len(out)
        tail = f.withheld()
        stores["on_change"].write(tail)
        n["on_change"] += len(tail)
    finally:
        for st in stores.values():
            st.close()
    months = len(machines) * hours / 24 / 30
    res: dict[str, float] = {}
    for k in stores:
        res[k] = db_bytes(tmp / f"{k}.db") / months
        res[f"{k}_samples"] = n[k] / months
        for p in tmp.glob(f"{k}.db*"):
            p.unlink()
    tmp.rmdir()
    res["seconds"] = time.perf_counter() - t0
    res["machines"] = len(machines)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tierproof-bench-assess")
    ap.add_argument("--sample-hours", type=float, default=4.0,
                    help="hours the storage comparison polls each sample machine (24: a whole day)")
    ap.add_argument("--sample-from-h", type=float, default=8.0,
                    help="local hour the polling starts (default 08:00, the busy day shift: the "
                         "most changes, so on-change bytes are not flattered)")
    ap.add_argument("--pandas-chunk", type=int, default=50, help="assets per pandas read")
    ap.add_argument("--store", type=Path, default=None,
                    help="reuse this store (generated earlier by this script for the same "
                         "--machines and --days) instead of the cache's: the cache is keyed by "
                         "the whole configuration's fingerprint, which any new setting changes, "
                         "and generating plus rolling up 500 x 30 takes ~25 min")
    ap.add_argument("--config", type=Path, default=None,
                    help="the plant configuration replicated (default: the shipped demo.yaml); "
                         "a --store generated and rolled up under an earlier demo.yaml is "
                         "measured with that file (its calendar is part of the roll-up key)")
    ap.add_argument("--skip-pandas", action="store_true",
                    help="time the assessment only (no pandas run, no storage comparison; "
                         "equal is then null)")
    ap.add_argument("--runs", type=int, default=2,
                    help="assessments in a row (at least 2); the last is the figure (assess_s), "
                         "the warm ones' minimum and median are added to the JSON line: on a "
                         "shared machine one run may find the second core busy")
    ap.add_argument("--generate", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rollup", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--raw", action="store_true", help="also assess from raw samples once "
                    "(kpi.rollups: false; slow) and compare with the roll-ups' answer to 1e-9")
    args = ap.parse_args()
    if args.days < 2:
        ap.error("--days must be at least 2 (a baseline and a current half)")
    settings = scaled(load_settings(args.config or shipped_config("demo.yaml")), args.machines, args.days)
    if args.config is not None:
        _CHILD_ARGS[:] = ["--config", str(args.config)]
    if args.generate is not None:
        generate(settings, args.generate, args.days)
        return
    if args.rollup is not None:
        roll_up(settings, args.rollup)
        return
    path = args.store if args.store is not None else store_path(args.cache, settings, args.machines,
                                                                args.days)
    rec = ensure_store(settings, path, args.days, given=args.store is not None)
    print(f"store: {args.machines} machines x {args.days} days, {rec['samples']:,} samples "
          f"(report by exception), {rec['bytes'] / MB:,.1f} MB = "
          f"{rec['bytes'] / (args.machines * args.days / 30) / MB:,.2f} MB per machine-month, "
          f"generated in {rec['seconds']:.0f} s")
    rolled = ensure_rollups(settings, path, args.days)
    print(f"roll-ups: {rolled['rows']:,} rows (hours and local days), computed once in "
          f"{rolled['seconds']:.0f} s (the gateway's background thread does this as hours close)")
    print(f"RSS before the assessment: {rss_mb():.0f} MB")

    criteria = load_tiers()
    store = SqliteStore(path)
    try:
        service = KpiService(settings, store)
        assess_s = []
        # CPU seconds of this process and of its assessment workers (api.assetsplit): steadier
        # than wall on a shared machine; the parent's alone beside it
        assess_cpu = []
        parent_cpu = []
        result: dict[str, Any] = {}
        for _ in range(max(2, args.runs)):
            w0 = workers_cpu_s()
            t0, c0 = time.perf_counter(), time.process_time()
            with service.snapshot():
                result = assess(settings, service, criteria, now=NOW)
            assess_s.append(time.perf_counter() - t0)
            parent_cpu.append(time.process_time() - c0)
            assess_cpu.append(parent_cpu[-1] + workers_cpu_s() - w0)
            print(f"assess: {assess_s[-1]:.2f} s ({assess_cpu[-1]:.2f} s CPU, of which "
                  f"{parent_cpu[-1]:.2f} s this process, {len(assetsplit.usage())} worker(s)), "
                  f"RSS {rss_mb():.0f} MB, "
                  f"load average (1 min) {os.getloadavg()[0]:.1f}", flush=True)
        # every process counts: this one's high-water mark plus each worker's (a bound: their
        # peaks need not coincide)
        peak_parent = peak_rss_mb()
        peak_workers = [u["peak_rss_mb"] for u in assetsplit.usage()]
        peak_assess = peak_parent + sum(peak_workers)
        print(f"peak RSS after the assessment: {peak_assess:.0f} MB (this process "
              f"{peak_parent:.0f} MB, workers {' + '.join(f'{w:.0f}' for w in peak_workers) or 'none'})")
        gc.collect()
        raw_s = None
        raw_equal = None
        if args.raw:
            t0 = time.perf_counter()
            raw_service = KpiService(settings, store, rollups=False)
            with raw_service.snapshot():
                raw_result = assess(settings, raw_service, criteria, now=NOW)
            raw_s = time.perf_counter() - t0
            # each asset's "rollups" says where its numbers came from (whole hours from rows or
            # from raw samples), not a number of the answer: raw has none
            raw_worst = worst_diff(without_provenance(result), without_provenance(raw_result))
            raw_equal = raw_worst <= 1e-9
            print(f"assess from raw samples (kpi.rollups false): {raw_s:.2f} s; largest relative "
                  f"difference from the roll-ups' answer {raw_worst:.1e} (bar 1e-9: "
                  f"{'equal' if raw_equal else 'NOT equal'})", flush=True)
            del raw_result
            gc.collect()

        if args.skip_pandas:
            print(f"\nassessment of {args.machines} machines x {args.days} days, warm: "
                  f"{assess_s[-1]:.2f} s wall, {assess_cpu[-1]:.2f} s CPU (goal <= 1 s: "
                  f"{'met' if assess_s[-1] <= 1 else 'NOT met'}); first run {assess_s[0]:.2f} s")
            print(json.dumps({
                "machines": args.machines, "days": args.days, "assess_s": round(assess_s[-1], 3),
                "assess_cpu_s": round(assess_cpu[-1], 3), "pandas_s": None, "equal": None,
                "peak_rss_mb": round(peak_assess, 1),
                "raw_assess_s": None if raw_s is None else round(raw_s, 3), "raw_equal": raw_equal,
                "load_1m": round(os.getloadavg()[0], 1),
                **split_keys(parent_cpu[-1], peak_parent, assess_s[1:]),
            }))
            return

        def window(w: dict[str, str]) -> tuple[int, int]:
            return (to_ns(datetime.fromisoformat(w["from"])), to_ns(datetime.fromisoformat(w["to"])))

        (c0, c1), (b0, b1) = window(result["window"]), window(result["baseline_window"])
        assert not store.gaps(None, b0, c1), "the pandas version assumes a store without gaps"
        pandas_s = []
        cur: dict[str, Any] = {}
        base: dict[str, Any] = {}
        for _ in range(2):
            t0 = time.perf_counter()
            cur = pandas_figures(pandas_elements(store, settings, c0, c1, args.pandas_chunk))
            base = pandas_figures(pandas_elements(store, settings, b0, b1, args.pandas_chunk))
            pandas_s.append(time.perf_counter() - t0)
            print(f"pandas: {pandas_s[-1]:.2f} s, RSS {rss_mb():.0f} MB", flush=True)
        print(f"peak RSS after pandas: {peak_rss_mb():.0f} MB")
    finally:
        store.close()

    equal, n, worst, bad = compare(result, cur, base, REL_TOL)
    print(f"\n{n:,} numbers compared (A, E, Q, OEE of {len(cur['assets'])} assets and the total, "
          f"current window; automation rate, defect rate, production efficiency, energy per "
          f"standard hour of both windows): largest relative difference {worst:.1e}, "
          f"tolerance {REL_TOL:g}: {'equal' if equal else 'NOT equal'}")
    for line in bad[:10]:
        print("  " + line)
    print(f"{'figure':<42} {'tierproof':>14} {'pandas':>14}")
    for name in ("availability", "effectiveness", "quality_ratio", "oee"):
        print(f"{'total ' + name:<42} {result['total'][name]:>14.6f} {cur['total'][name]:>14.6f}")
    for f, v in cur["figures"].items():
        print(f"{'current ' + f:<42} {result['figures'][f]['value']['point']:>14.6f} {v:>14.6f}")
    for f, v in base["figures"].items():
        print(f"{'baseline ' + f:<42} {result['deltas'][f]['baseline_value']:>14.6f} {v:>14.6f}")

    warm_a, warm_p = assess_s[-1], pandas_s[-1]
    print(f"\nassessment of {args.machines} machines x {args.days} days, warm: tierproof "
          f"{warm_a:.2f} s (goal <= 1 s: {'met' if warm_a <= 1 else 'NOT met'}), pandas "
          f"{warm_p:.2f} s: {warm_p / warm_a:.1f}x (goal >= 10x: "
          f"{'met' if warm_p / warm_a >= 10 else 'NOT met'}); first runs {assess_s[0]:.2f} s and "
          f"{pandas_s[0]:.2f} s; CPU of the warm assessment {assess_cpu[-1]:.2f} s")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    print(f"peak RSS of the assessment {peak_assess:.0f} MB (goal <= 500 MB: "
          f"{'met' if peak_assess <= 500 else 'NOT met'})")

    print(f"\nstorage: the demo's Modbus machines polled every second for {args.sample_hours:g} h "
          f"from {args.sample_from_h:g}:00 local on {DAY_LOCAL}, "
          "KPI-role tags, extrapolated to a machine-month (30 days) ...", flush=True)
    sb = storage_bytes(args.sample_hours, args.sample_from_h)
    print(f"  {sb['machines']} machines x {args.sample_hours:g} h polled in {sb['seconds']:.0f} s")
    for k, label in (("poll", "every poll"), ("on_change", "on change (role defaults)")):
        print(f"  {label:<26} {sb[k + '_samples']:>14,.0f} samples {sb[k] / MB:>10,.1f} MB "
              "per machine-month (extrapolated)")
    print(f"  on change stores {sb['poll'] / sb['on_change']:.1f}x fewer bytes")
    print(json.dumps({
        "machines": args.machines, "days": args.days, "assess_s": round(warm_a, 3),
        "assess_cpu_s": round(assess_cpu[-1], 3), "pandas_s": round(warm_p, 3), "equal": equal,
        "peak_rss_mb": round(peak_assess, 1),
        "raw_assess_s": None if raw_s is None else round(raw_s, 3), "raw_equal": raw_equal,
        "load_1m": round(os.getloadavg()[0], 1), **split_keys(parent_cpu[-1], peak_parent, assess_s[1:]),
        "bytes_per_machine_month_poll": round(sb["poll"]),
        "bytes_per_machine_month_on_change": round(sb["on_change"]),
    }))


if __name__ == "__main__":
    main()
