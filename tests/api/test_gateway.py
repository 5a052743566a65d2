"""The gateway applies the store's retention by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from api.gateway import Gateway
from config import settings_from_dict
from store.batch import Batch

DAY = 86_400 * 1_000_000_000


async def test_retention_runs_in_the_background(tmp_path: Path) -> None:
    settings = settings_from_dict({
        "assets": [{"path": "s/a/l/m1"}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
                     "tags": [{"name": "t", "asset": "s/a/l/m1", "address": 0}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "r.db"), "retention_days": 1},
    })
    gw = Gateway(settings, collect=False)
    tid = gw.tag_ids["s/a/l/m1/t"]
    now = time.time_ns()
    old, new = now - 3 * DAY, now - DAY // 2
    gw.store.write(Batch.of([tid, tid], np.array([old, new]), [1.0, 2.0]))
    async with gw:
        for _ in range(200):
            s = gw.store.read(tid, 0, now + 1, prior=False)
            if len(s) == 1:
                break
            await asyncio.sleep(0.05)
        assert s.ts_ns.tolist() == [new] and s.value.tolist() == [2.0]
