"""Stores: where batches go and where KPIs read them from.

Backends are chosen by the explicit :data:`STORES` registry (config ``store.type``);
importing this package opens nothing and registers nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from config.settings import Settings
from config.store import InfluxStoreSettings, SqliteStoreSettings, StoreSettings

from .base import Damage, Gap, Latest, Store, StoreStats, TagRecord
from .batch import TS_UNKNOWN, Batch, Series
from .changes import Changes
from .influx import InfluxStore
from .spool import Quarantine, Spool, SpoolAdmin, SpooledStore, spool_settings
from .sqlite import SCHEMA_VERSION, SqliteStore
from .tag_index import TagIndex

__all__ = [
    "SCHEMA_VERSION",
    "SINKS",
    "STORES",
    "TS_UNKNOWN",
    "Batch",
    "Changes",
    "Damage",
    "Gap",
    "InfluxStore",
    "Latest",
    "Quarantine",
    "Series",
    "Spool",
    "SpoolAdmin",
    "SpooledStore",
    "SqliteStore",
    "Store",
    "StoreStats",
    "TagIndex",
    "TagRecord",
    "open_spool_admin",
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


#: config ``store.type`` -> the function that opens that backend alone, without the spool that
#: ``open_store`` puts in front of it: the store types that have a spool, and where
#: ``tierproof spool replay`` sends quarantined batches
SINKS: dict[str, Callable[[Any], Store]] = {"influx": InfluxStore}


def open_spool_admin(settings: Settings, source: str) -> SpoolAdmin:
    """The spool of the configuration ``settings`` (read from ``source``) for the ``tierproof
    spool`` commands; ConfigError naming ``source`` when its store has no spool."""
    spool = spool_settings(settings, source)
    return SpoolAdmin(spool, functools.partial(SINKS[settings.store.type], settings.store))
