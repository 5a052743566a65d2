"""The SQLite store's change feed (``store.changes``): after each commit, the earliest time it
touched, which is what the API's result cache invalidates on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from config.errors import StoreError
from store import Batch, SqliteStore, TagRecord
from store.changes import EVERYTHING

SEC = 10**9


def test_every_change_is_told_with_the_earliest_time_it_touched(tmp_path: Path) -> None:
    told: list[int] = []
    with SqliteStore(tmp_path / "c.db") as store:
        unsubscribe = store.changes.subscribe(told.append)
        (tag,) = store.register_tags([TagRecord("s/a/l/m/state", "s/a/l/m", "state", "plc",
                                                "modbus")]).values()
        store.write(Batch.of(np.array([tag, tag]), np.array([30 * SEC, 20 * SEC]),
                             np.array([1.0, 2.0])))
        # registering the same tag again changes nothing: nothing to tell
        store.register_tags([TagRecord("s/a/l/m/state", "s/a/l/m", "state", "plc", "modbus")])
        gap = store.open_gap("plc", 40 * SEC, "unreachable")
        store.close_gap(gap, 50 * SEC)
        generation = store.changes.generation
        unsubscribe()
        store.write(Batch.of(np.array([tag]), np.array([60 * SEC]), np.array([1.0])))
    assert told == [EVERYTHING, 20 * SEC, 40 * SEC, 40 * SEC]
    assert generation == 4


def test_a_failing_listener_does_not_fail_the_write(tmp_path: Path) -> None:
    def broken(since_ns: int) -> None:
        raise RuntimeError("listener bug")

    with SqliteStore(tmp_path / "c.db") as store:
        store.changes.subscribe(broken)
        (tag,) = store.register_tags([TagRecord("s/a/l/m/state", "s/a/l/m", "state", "plc",
                                                "modbus")]).values()
        store.write(Batch.of(np.array([tag]), np.array([SEC]), np.array([1.0])))
        assert len(store.read(tag, 0, 2 * SEC)) == 1


def test_retention_tells_only_when_it_deleted(tmp_path: Path) -> None:
    told: list[int] = []
    with SqliteStore(tmp_path / "c.db", retention_days=1) as store:
        (tag,) = store.register_tags([TagRecord("s/a/l/m/state", "s/a/l/m", "state", "plc",
                                                "modbus")]).values()
        store.write(Batch.of(np.array([tag, tag]), np.array([SEC, 3 * 86400 * SEC]),
                             np.array([1.0, 2.0])))
        store.changes.subscribe(told.append)
        assert store.apply_retention(3 * 86400 * SEC) == 1
        assert store.apply_retention(3 * 86400 * SEC) == 0
    assert told == [EVERYTHING]


def test_data_version_moves_on_every_other_connections_commit(tmp_path: Path) -> None:
    """What the feed cannot tell a second store object (another process: ``tierproof serve``
    beside a gateway), ``data_version`` can: it moves after each commit by anyone, and stays
    put while nobody commits (reads, a write that commits nothing)."""
    with SqliteStore(tmp_path / "c.db") as writer, SqliteStore(tmp_path / "c.db") as reader:
        told: list[int] = []
        reader.changes.subscribe(told.append)
        v0 = reader.data_version()
        (tag,) = writer.register_tags([TagRecord("s/a/l/m/state", "s/a/l/m", "state", "plc",
                                                 "modbus")]).values()
        v1 = reader.data_version()
        assert v1 != v0
        writer.write(Batch.of(np.array([tag]), np.array([SEC]), np.array([1.0])))
        v2 = reader.data_version()
        assert v2 != v1
        assert len(reader.read(tag, 0, 2 * SEC)) == 1 and reader.data_version() == v2
        assert told == []  # the reader's feed heard nothing of the writer's commits
        writer.write(Batch.of(np.array([tag]), np.array([2 * SEC]), np.array([1.0])))
        assert reader.data_version() != v2
    with pytest.raises(StoreError, match="closed"):
        reader.data_version()
