"""What on-change storage saves on the demo plant, per machine-day, and what the filter costs.

Run: ``.venv/bin/python bench/bench_storage.py`` (``--machines all`` for all six Modbus
machines of ``config/demo.yaml``, default the first of each line -- they carry the two tag
layouts; ``--hours 24``; ``--keep DIR`` keeps the stores). Prints figures only.

The simulated machines are polled as the demo's Modbus devices poll them (group ``default``
every 1 s, ``slow`` every 10 s, one batch per group poll and device): each poll writes the
machine's values into a register image with the simulator's own encoder and reads them back
with the collector's decoder, so the samples are those a real poll over Modbus TCP yields,
without the network. The same batches are then stored three ways into real SQLite stores:

- ``every poll``: every sample read (tierproof before on-change storage);
- ``defaults``: the role defaults -- state, mode, channel mode and counters on change
  (deadband 0, 60 s heartbeat), every other tag every poll;
- ``+ analog 1 %``: as ``defaults``, and every other tag on change with a 1 % deadband and a
  300 s heartbeat (device ``storage: {deadband: {type: percent, value: 1}, max_interval_s: 300}``).

Bytes are the SQLite files after the store's final compaction and checkpoint. The filter's
cost: points/s through :meth:`StorageFilter.apply` alone, and the store's write rate of the
every-poll and the filtered batches, in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.filter import StorageFilter
from collector.modbus import Decoder
from config import load_settings, shipped_config
from config.modbus import ModbusDevice, ModbusTag
from config.signals import COUNTER_ROLES, ENUM_ROLES
from config.storage import Storage, StorageDeadband
from config.times import to_ns
from simulators import Plant, RegisterImage, write_machine
from store import Batch, SqliteStore

S = 10**9
#: a Wednesday, local midnight in Shanghai (the demo's calendar): two shifts and the night
DAY = datetime(2026, 11, 17, 16, 0, tzinfo=UTC)
KPI_ROLES = (*ENUM_ROLES, *COUNTER_ROLES)
ANALOG_1PCT = Storage(deadband=StorageDeadband(type="percent", value=1), max_interval_s=300)


class Machine:
    """One simulated machine read the way the demo's Modbus device reads it."""

    def __init__(self, device: ModbusDevice, asset: str, tag_ids: dict[str, int]) -> None:
        self.asset = asset
        self.image = RegisterImage()
        self.groups: dict[str, tuple[list[ModbusTag], np.ndarray]] = {}
        for t in device.tags:
            if t.asset == asset:
                tags, _ = self.groups.setdefault(t.group, ([], np.empty(0, np.int32)))
                tags.append(t)
        for g, (tags, _) in list(self.groups.items()):
            self.groups[g] = (tags, np.array([tag_ids[t.path] for t in tags], np.int32))
        self.interval = {g: device.group_interval(g) for g in self.groups}

    def read(self, group: str, t_ns: int) -> Batch:
        tags, ids = self.groups[group]
        n = len(tags)
        values = np.empty(n)
        text = np.full(n, None, dtype=object)
        for table in ("holding", "input", "coil", "discrete"):
            sel = [i for i, t in enumerate(tags) if t.table == table]
            if not sel:
                continue
            dec = Decoder([tags[i] for i in sel], [tags[i].address for i in sel],
                          bit_table=table in ("coil", "discrete"), positions=sel)
            dec.decode(self.image.table(table), values, text)
        scale = np.array([t.scale for t in tags])
        offset = np.array([t.offset for t in tags])
        has_text = any(t.type == "string" for t in tags)
        return Batch(ids.copy(), np.full(n, t_ns, np.int64), values * scale + offset,
                     np.zeros(n, np.uint8), text if has_text else None)


def polls(plant: Plant, machines: list[Machine], start: int, end: int) -> Iterator[Batch]:
    """Every group poll of every machine in [start, end), in time order."""
    for t in range(start, end, S):
        for m in machines:
            read = False
            for g, iv in m.interval.items():
                if (t - start) % round(iv * S):
                    continue
                if not read:
                    write_machine(m.image, plant.machine_values(m.asset, t))
                    read = True
                yield m.read(g, t)


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", default="first", help="first (of each line) | all")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()

    settings = load_settings(shipped_config("demo.yaml"))
    devices = [d for d in settings.devices if isinstance(d, ModbusDevice)]
    all_tags = [(d, t) for d in devices for t in d.tags]
    tag_ids = {t.path: i + 1 for i, (_, t) in enumerate(all_tags)}
    machines: list[Machine] = []
    for d in devices:
        assets = list(dict.fromkeys(t.asset for t in d.tags))
        for a in assets if args.machines == "all" else assets[:1]:
            machines.append(Machine(d, a, tag_ids))
    plant = Plant(settings, now=DAY + timedelta(days=1))
    start = to_ns(DAY)
    end = start + round(args.hours * 3600) * S
    print(f"polling {len(machines)} simulated machine(s) for {args.hours:g} h "
          f"({', '.join(m.asset.rsplit('/', 1)[-1] for m in machines)}) ...", flush=True)
    t0 = time.perf_counter()
    batches = list(polls(plant, machines, start, end))
    print(f"  {len(batches):,} batches, {sum(len(b) for b in batches):,} samples "
          f"({time.perf_counter() - t0:.0f} s)")

    roles = {tag_ids[t.path]: t.role for _, t in all_tags}
    kpi_ids = np.array([i for i, r in roles.items() if r in KPI_ROLES])

    def make_filter(analog: Storage | None) -> StorageFilter:
        f = StorageFilter()
        for d, t in all_tags:
            dd = d.model_copy(update={"storage": analog}) if analog is not None else d
            f.configure(dd, [t], tag_ids)
        return f

    policies = {"every poll": None, "defaults": make_filter(None),
                "+ analog 1 %": make_filter(ANALOG_1PCT)}
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="tierproof-bench-storage-"))
    tmp.mkdir(parents=True, exist_ok=True)
    days = args.hours / 24 * len(machines)
    rows = []
    role_of = np.full(len(tag_ids) + 1, "", dtype=object)
    for i, r in roles.items():
        role_of[i] = r.value
    by_role: dict[str, dict[str, int]] = {}
    for name, f in policies.items():
        counts = by_role.setdefault(name, {})
        path = tmp / f"{name.replace(' ', '_').replace('%', 'pct').replace('+', 'plus')}.db"
        path.unlink(missing_ok=True)
        store = SqliteStore(path)
        filt_s = write_s = 0.0
        n_kpi = n_all = 0
        for b in batches:
            t_a = time.perf_counter()
            out = f.apply(b) if f is not None else b
            t_c = time.perf_counter()
            if len(out):
                store.write(out)
            write_s += time.perf_counter() - t_c
            filt_s += t_c - t_a
            n_all += len(out)
            n_kpi += int(np.isin(out.tag_id, kpi_ids).sum())
            for r in role_of[out.tag_id]:
                counts[r] = counts.get(r, 0) + 1
        if f is not None:
            tail = f.withheld()
            store.write(tail)
            n_all += len(tail)
            n_kpi += int(np.isin(tail.tag_id, kpi_ids).sum())
            for r in role_of[tail.tag_id]:
                counts[r] = counts.get(r, 0) + 1
        t_c = time.perf_counter()
        store.close()
        write_s += time.perf_counter() - t_c
        rows.append((name, n_kpi / days, n_all / days, db_bytes(path) / days, filt_s, write_s))

    points = sum(len(b) for b in batches)
    print(f"\nper machine-day (averaged over {days:g} machine-days):")
    print(f"{'storage':<14} {'KPI-role samples':>17} {'all samples':>12} {'bytes':>12} "
          f"{'x fewer bytes':>14}")
    base = rows[0][3]
    for name, kpi, alls, size, _, _ in rows:
        print(f"{name:<14} {kpi:>17,.0f} {alls:>12,.0f} {size:>12,.0f} {base / size:>14.1f}")
    print("\nsamples per machine-day by role:")
    print(f"{'role':<14}" + "".join(f"{name:>14}" for name in policies))
    for role in sorted(by_role["every poll"], key=lambda x: -by_role["every poll"][x]):
        print(f"{role:<14}"
              + "".join(f"{by_role[name].get(role, 0) / days:>14,.0f}" for name in policies))
    print(f"\nfilter cost ({points:,} points in {len(batches):,} batches of "
          f"{points / len(batches):.0f}):")
    for name, _, _, _, filt_s, write_s in rows:
        through = f"{points / filt_s:>12,.0f} points/s through the filter" \
            if policies[name] is not None else f"{'(no filter)':>41}"
        print(f"{name:<14} {through};  store writes {write_s:6.2f} s, "
              f"end to end {points / (filt_s + write_s):>10,.0f} polled points/s")
    print("\nfilter alone, larger batches (one per poll of a device; tags on change, deadband 0, "
          "each changing at one poll in 20):")
    rng = np.random.default_rng(1)
    for size in (50, 1_000):
        f = StorageFilter()
        for i in range(size):
            f.set(i, Storage(), counter=i % 7 == 0)
        ids = np.arange(size, dtype=np.int32)
        level = np.zeros(size)
        polled = []
        for k in range(max(200, 200_000 // size)):
            level += rng.random(size) < 0.05
            polled.append(Batch(ids, np.full(size, start + k * S, np.int64), level.copy(),
                                np.zeros(size, np.uint8)))
        t_a = time.perf_counter()
        for b in polled:
            f.apply(b)
        dt = time.perf_counter() - t_a
        print(f"{size:>6} tags: {len(polled) * size / dt:>12,.0f} points/s, "
              f"{dt / len(polled) * 1e6:6.0f} us per batch")
    if args.keep is None:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
