"""Stores: where batches go and where KPIs read them from.

Backends are chosen by the explicit :data:`STORES` registry (config ``store.type``);
importing this package opens nothing and registers nothing.
"""

from __future__ import annotations

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

#: config ``store.type`` -> backend class
STORES: dict[str, type[SqliteStore] | type[InfluxStore]] = {
    "sqlite": SqliteStore,
    "influx": InfluxStore,
}


def open_store(settings: StoreSettings) -> Store:
    """Open the store that ``settings`` describe."""
    if isinstance(settings, InfluxStoreSettings):
        return _open_remote(InfluxStore(settings), settings)
    assert isinstance(settings, SqliteStoreSettings)
    return SqliteStore(
        settings.path,
        synchronous=settings.synchronous,
        retention_days=settings.retention_days,
        compact_every=settings.compact_every,
    )


def _open_remote(store: InfluxStore, settings: InfluxStoreSettings) -> Store:
    """The one place where a remote store gets its store-and-forward spool (``settings.spool``)."""
    try:
        return SpooledStore.open(store, settings.spool, flush_interval_s=settings.flush_interval_s,
                                 flush_points=settings.batch_size)
    except BaseException:
        store.close()
        raise
