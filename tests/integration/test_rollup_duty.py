"""The roll-up maintainer yields to a busy writer (issue 12).

In its thread the maintainer rests after each chunk so that it computes at most ``duty`` of
the time, and less while the store's writer is busy: ``SqliteStore.write_ns`` counts the
time spent in ``write``, and ``RollupMaintainer._duty_now`` takes ``duty`` less the writer's
share of the time since it last looked, never below ``busy_duty``. A real store and real
writes; the assertions hold whatever the machine's speed (no bound on a duration).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import Settings
from store.batch import Batch
from store.sqlite import SqliteStore


def test_the_maintainer_rests_longer_while_the_writer_is_busy(tmp_path: Path, settings: Settings) -> None:
    with SqliteStore(tmp_path / "duty.db") as store:
        ids = sorted(store.register_tags(tag_records(settings)).values())
        service = KpiService(settings, store, rollups=True)
        m = RollupMaintainer(service, duty=0.5, busy_duty=0.1, backfill_days=None)
        assert store.write_ns == 0
        assert m._duty_now() == 0.5  # the first look: where the count starts
        time.sleep(0.05)
        assert m._duty_now() == 0.5  # no write since: the writer is idle
        tags = np.array(ids, np.int32)
        t = 1_790_000_000 * 10**9
        for i in range(300):  # ingest at full speed: the writer is in write nearly all the time
            store.write(Batch(tags, np.full(len(tags), t + i * 10**9, np.int64),
                              np.full(len(tags), float(i)), np.zeros(len(tags), np.uint8)))
        assert store.write_ns > 0
        busy = m._duty_now()
        assert 0.1 <= busy < 0.5, busy
        time.sleep(0.05)
        assert m._duty_now() == 0.5  # idle again
        m.close()
