"""store/declared.py: the registry of declared versions -- its file beside either store's data,
created at the first supply, versions numbered per item and never overwritten, a file of a
newer schema refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from config.errors import StoreError
from config.store import InfluxStoreSettings, SqliteStoreSettings
from store.declared import SCHEMA_VERSION, DeclaredRegistry, declared_path


def test_the_file_lies_beside_the_store_s_data() -> None:
    assert declared_path(SqliteStoreSettings(path="/var/lib/tp/plant.db")) == Path(
        "/var/lib/tp/plant.declared.db")
    influx = InfluxStoreSettings(type="influx", api="v1", database="db",
                                 meta_path="/var/lib/tp/meta.db")
    assert declared_path(influx) == Path("/var/lib/tp/meta.declared.db")


def test_versions_per_item_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "d" / "x.declared.db"
    with DeclaredRegistry(path) as reg:
        assert reg.latest() == {} and reg.history() == []
        assert not path.exists()  # nothing supplied: no file
        a1 = reg.put("labour-hours", [{"amount": 1}], "mes", "first", at_ns=10)
        c1 = reg.put("calendar", {"timezone": "UTC"}, "ops", "tz", at_ns=20)
        a2 = reg.put("labour-hours", None, "mes", "back to the file", at_ns=30)
        assert (a1.version, c1.version, a2.version) == (1, 1, 2)
    with DeclaredRegistry(path) as reg:  # reopened: all there
        assert reg.latest() == {"labour-hours": a2, "calendar": c1}
        assert reg.history() == [a1, c1, a2]
        assert reg.history("labour-hours", since_ns=11) == [a2]
        assert reg.history(until_ns=30) == [a1, c1]
        assert reg.version("labour-hours", 1) == a1 and reg.version("labour-hours", 3) is None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.declared.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this tierproof"):
        DeclaredRegistry(path)
