"""How the spool recovers (issue 13): damage and the return of InfluxDB.

Run: ``.venv/bin/python bench/bench_spool_recovery.py`` (``--outage`` s, default 40). Prints
figures only; no assertions (the tests assert exact counts: tests/store/spool/test_spool_damage.py
and test_spool_probe_auth.py).

1. Damage: 20 batches (70..89 points, 1,590 in all) in one segment; 8 bytes changed at the
   segment's head, then in its middle; reopened: points kept and counted lost.
2. Return of InfluxDB: a real InfluxDB 1.6 is stopped for ``--outage`` seconds while a
   SpooledStore with the default spool settings writes a batch every 0.5 s; then started again:
   seconds from its answering again until the spool is drained, and the /ping probes sent.
   Before the probe (issue 13) this waited for the backoff's next retry: up to ``max_s`` 60 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.store import InfluxStoreSettings, SpoolSettings  # noqa: E402
from store import SpooledStore, TagRecord, open_store  # noqa: E402
from store.batch import Batch  # noqa: E402
from store.spool import Spool  # noqa: E402
from tests.influx_servers import InfluxDB16  # noqa: E402

T0 = 1_700_000_000_000_000_000


def damage(where: str) -> str:
    d = Path(tempfile.mkdtemp())
    total = 0
    with Spool(d, 1 << 24) as sp:
        for s in range(20):
            n = 70 + s
            i = np.arange(n)
            sp.append(Batch.of(i % 5, T0 + s * 10**9 + i, s + i * 1.0, 0))
            total += n
    (seg,) = sorted(d.glob("*.seg"))
    data = bytearray(seg.read_bytes())
    at = 0 if where == "head" else len(data) // 2
    data[at : at + 8] = bytes(b ^ 0xA5 for b in data[at : at + 8])
    seg.write_bytes(bytes(data))
    with Spool(d, 1 << 24) as sp:
        st = sp.stats()
        return (f"damage at the segment's {where}: {st.points:,} of {total:,} points kept; counted "
                f"lost: {st.lost_batches} batches, {st.lost_points} points known")


def outage(seconds: float) -> str:
    tmp = Path(tempfile.mkdtemp())
    srv = InfluxDB16(tmp / "influx")
    srv.start()
    cfg = InfluxStoreSettings(type="influx", api="v1", url=srv.url, database=srv.database,
                              timeout_s=3.0, meta_path=str(tmp / "meta.db"),
                              spool=SpoolSettings(path=str(tmp / "spool")))
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    try:
        tid = store.register_tags([TagRecord(path="p/a/l/m/s", asset="p/a/l/m", role="analog",
                                             device="d", protocol="modbus")])["p/a/l/m/s"]
        srv.stop()
        t0, k = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            store.write(Batch.of(np.full(10, tid), T0 + k * 10 + np.arange(10), np.arange(10.0)))
            k += 1
            time.sleep(0.5)
        srv.start()
        back = time.monotonic()
        if not store.wait_drained(120):
            return "not drained within 120 s"
        st = store.spool_stats()
        return (f"InfluxDB down {seconds:.0f} s, {k} batches spooled: drained "
                f"{time.monotonic() - back:.1f} s after it answered again ({st['probes']} probes, "
                f"{st['probes_answered']} answered; backoff would have waited up to "
                f"{cfg.spool.backoff.max_s:g} s)")
    finally:
        store.close()
        srv.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outage", type=float, default=40.0)
    args = ap.parse_args()
    print(damage("head"))
    print(damage("middle"))
    print(outage(args.outage))


if __name__ == "__main__":
    main()
