"""Declared evidence supplied through the API, kept version by version: ``DeclaredRegistry``.

Declared items (labour hours, the shift calendar, the asset register, ...) can be supplied
through ``PUT /api/v1/declared/{item}`` beside the configuration's ``declared:`` section
(``api.declared``). Each supply is a new **version** of its item -- (item, version, value as
JSON, who supplied it, when, why) -- and nothing is ever updated or deleted: the audit trail
is the table itself. Version 0 of every item is the configuration's value and is not stored.

One mechanism for every store: the registry is its own small SQLite file beside the store's
data (``declared_path``): next to the embedded store's file, or to the InfluxDB store's local
meta file. So the versions survive restarts whatever the store, and a central InfluxDB is not
asked to keep a handful of audit rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from config.errors import StoreError
from config.store import StoreSettings

from .sidecar import open_sidecar, sidecar_path

__all__ = ["DeclaredRegistry", "DeclaredVersion", "declared_path"]

#: the file's layout; a newer file is refused, an older one migrated (``_MIGRATIONS``)
SCHEMA_VERSION: Final = 1
_MIGRATIONS: Final = {
    1: """
    CREATE TABLE declared_versions (
        item TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        value TEXT,                      -- JSON; NULL: back to the configuration's value
        supplied_by TEXT NOT NULL,
        supplied_at_ns INTEGER NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (item, version)
    ) WITHOUT ROWID;
    CREATE INDEX declared_versions_at ON declared_versions (supplied_at_ns);
    """,
}


def declared_path(store: StoreSettings) -> Path:
    """Where the registry of ``store``'s gateway lives: ``<store file>.declared.db`` beside it
    (``store.sidecar.sidecar_path``)."""
    return sidecar_path(store, "declared")


@dataclass(frozen=True, slots=True)
class DeclaredVersion:
    """One supplied version of a declared item."""

    item: str
    version: int
    value: Any  # the JSON value; None: the item went back to the configuration's value
    supplied_by: str
    supplied_at_ns: int
    reason: str


class DeclaredRegistry:
    """The versions of declared items in their own SQLite file (module docstring). Safe to use
    from several threads; ``put`` numbers versions in one write transaction."""

    def __init__(self, path: str | Path) -> None:
        """Opens the file if it exists; the first ``put`` creates it (a gateway to which
        nothing was ever supplied has no file)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self.path.exists():
            self._open()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_sidecar(self.path, "declared-evidence registry", _MIGRATIONS,
                                      SCHEMA_VERSION)
        return self._conn

    def put(self, item: str, value: Any, supplied_by: str, reason: str,
            at_ns: int | None = None) -> DeclaredVersion:
        """Store ``value`` (JSON-ready; None: back to the configuration's) as the next version
        of ``item``."""
        at = time.time_ns() if at_ns is None else at_ns
        text = None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    (last,) = conn.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM declared_versions WHERE item = ?",
                        (item,)).fetchone()
                    conn.execute("INSERT INTO declared_versions VALUES (?, ?, ?, ?, ?, ?)",
                                 (item, last + 1, text, supplied_by, at, reason))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: cannot store {item} version: {exc}") from exc
        return DeclaredVersion(item, last + 1, value, supplied_by, at, reason)

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[DeclaredVersion]:
        with self._lock:
            if self._conn is None:  # nothing was ever supplied
                return []
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: cannot read the declared-evidence registry: "
                                 f"{exc}") from exc
        return [DeclaredVersion(i, v, None if t is None else json.loads(t), by, at, why)
                for i, v, t, by, at, why in rows]

    def latest(self) -> dict[str, DeclaredVersion]:
        """Every item's latest version."""
        rows = self._rows(
            "SELECT d.* FROM declared_versions d JOIN (SELECT item, MAX(version) AS v FROM "
            "declared_versions GROUP BY item) m ON d.item = m.item AND d.version = m.v", ())
        return {r.item: r for r in rows}

    def history(self, item: str | None = None, since_ns: int | None = None,
                until_ns: int | None = None) -> list[DeclaredVersion]:
        """Versions (of ``item``, or all) supplied in [since_ns, until_ns), by time then item."""
        where: list[str] = ["1"]
        args: list[Any] = []
        if item is not None:
            where.append("item = ?")
            args.append(item)
        if since_ns is not None:
            where.append("supplied_at_ns >= ?")
            args.append(since_ns)
        if until_ns is not None:
            where.append("supplied_at_ns < ?")
            args.append(until_ns)
        return self._rows(f"SELECT * FROM declared_versions WHERE {' AND '.join(where)} "
                          "ORDER BY supplied_at_ns, item, version", tuple(args))

    def version(self, item: str, version: int) -> DeclaredVersion | None:
        got = self._rows("SELECT * FROM declared_versions WHERE item = ? AND version = ?",
                         (item, version))
        return got[0] if got else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> DeclaredRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
