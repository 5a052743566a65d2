"""Stores: where batches go and where KPIs read them from.

Backends are chosen by the explicit :data:`STORES` registry (config ``store.type``);
importing this package opens nothing and registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config.settings import InfluxStoreSettings, SqliteStoreSettings, StoreSettings

from .base import Gap, Latest, Store, StoreStats, TagRecord
from .batch import TS_UNKNOWN, Batch, Series
from .influx import InfluxStore
from .spool import Spool
from .spool_quarantine import Quarantine
from .spool_store import SpooledStore
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "STORES",
    "TS_UNKNOWN",
    "Batch",
    "Gap",
    "InfluxStore",
    "Latest",
    "Quarantine",
    "Series",
    "Spool",
    "SpooledStore",
    "SqliteStore",
    "Store",
    "StoreStats",
    "TagRecord",
    "open_store",
]


def _open_sqlite(settings: SqliteStoreSettings) -> Store:
    return SqliteStore(
        settings.path,
        synchronous=settings.synchronous,
        retention_days=settings.retention_days,
        compact_every=settings.compact_every,
    )


def _open_influx(settings: InfluxStoreSettings) -> Store:
    """InfluxDB behind its store-and-forward spool (``settings.spool``): the one place a
    remote store gets one."""
    store = InfluxStore(settings)
    try:
        return SpooledStore.open(store, settings.spool, flush_interval_s=settings.flush_interval_s,
                                 flush_points=settings.batch_size)
    except BaseException:
        store.close()
        raise


#: config ``store.type`` -> the function that opens that backend from its settings
STORES: dict[str, Callable[[Any], Store]] = {"sqlite": _open_sqlite, "influx": _open_influx}


def open_store(settings: StoreSettings) -> Store:
    """Open the store that ``settings`` describe."""
    return STORES[settings.type](settings)
