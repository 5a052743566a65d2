"""Operators' reasons for stops, kept annotation by annotation: ``StopAnnotations``.

A stop that no signal explains gets its reason from a person through
``POST /api/v1/stops/{id}/reason`` (``api.routes.losses``). Each annotation is a row --
(asset, the stop's start, reason, note, who, when, and the reason it replaced with that
reason's source) -- and nothing is ever updated or deleted: a stop's reason in force is its
latest annotation, and the table is its audit trail.

Like the declared-evidence registry (``store.declared``), the annotations live in their own
small SQLite file beside the store's data (``annotations_path``), whatever the store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from config.errors import StoreError
from config.store import StoreSettings

from .sidecar import open_sidecar, sidecar_path

__all__ = ["StopAnnotation", "StopAnnotations", "annotations_path"]

SCHEMA_VERSION: Final = 1
_MIGRATIONS: Final = {
    1: """
    CREATE TABLE stop_annotations (
        id INTEGER PRIMARY KEY,
        asset TEXT NOT NULL,
        start_ns INTEGER NOT NULL,        -- the stop's start: with the asset, the stop's id
        reason TEXT NOT NULL,
        note TEXT NOT NULL,
        annotated_by TEXT NOT NULL,
        annotated_at_ns INTEGER NOT NULL,
        replaced_reason TEXT,             -- the reason in force before (NULL: unassigned)
        replaced_source TEXT              -- its source (tag, opcua_event, operator; NULL: unassigned)
    );
    CREATE INDEX stop_annotations_stop ON stop_annotations (asset, start_ns, id);
    CREATE INDEX stop_annotations_at ON stop_annotations (annotated_at_ns);
    """,
}


def annotations_path(store: StoreSettings) -> Path:
    """``<store file>.annotations.db`` beside the store (``store.sidecar.sidecar_path``)."""
    return sidecar_path(store, "annotations")


@dataclass(frozen=True, slots=True)
class StopAnnotation:
    id: int
    asset: str
    start_ns: int
    reason: str
    note: str
    annotated_by: str
    annotated_at_ns: int
    replaced_reason: str | None
    replaced_source: str | None


class StopAnnotations:
    """The annotations in their own SQLite file (module docstring); thread-safe. The file is
    made by the first ``add``: a gateway nobody annotated has none."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self.path.exists():
            self._open()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_sidecar(self.path, "stop annotations", _MIGRATIONS, SCHEMA_VERSION)
        return self._conn

    def add(self, asset: str, start_ns: int, reason: str, note: str, by: str,
            replaced_reason: str | None, replaced_source: str | None,
            at_ns: int | None = None) -> StopAnnotation:
        at = time.time_ns() if at_ns is None else at_ns
        with self._lock:
            conn = self._open()
            try:
                cur = conn.execute(
                    "INSERT INTO stop_annotations (asset, start_ns, reason, note, annotated_by, "
                    "annotated_at_ns, replaced_reason, replaced_source) VALUES (?,?,?,?,?,?,?,?)",
                    (asset, start_ns, reason, note, by, at, replaced_reason, replaced_source))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: cannot store the annotation: {exc}") from exc
        assert cur.lastrowid is not None
        return StopAnnotation(cur.lastrowid, asset, start_ns, reason, note, by, at,
                              replaced_reason, replaced_source)

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[StopAnnotation]:
        with self._lock:
            if self._conn is None:
                return []
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: cannot read the stop annotations: {exc}") from exc
        return [StopAnnotation(*r) for r in rows]

    def in_force(self, asset: str, start_ns: int, end_ns: int) -> dict[int, StopAnnotation]:
        """Stop start -> its latest annotation, for the asset's stops starting in
        [start_ns, end_ns)."""
        rows = self._rows("SELECT * FROM stop_annotations WHERE asset = ? AND start_ns >= ? "
                          "AND start_ns < ? ORDER BY id", (asset, start_ns, end_ns))
        return {r.start_ns: r for r in rows}  # later ids win

    def history(self, asset: str | None, start_ns: int, end_ns: int) -> list[StopAnnotation]:
        """Every annotation of stops (of ``asset``, or all) starting in [start_ns, end_ns),
        in the order they were made."""
        if asset is None:
            return self._rows("SELECT * FROM stop_annotations WHERE start_ns >= ? AND "
                              "start_ns < ? ORDER BY id", (start_ns, end_ns))
        return self._rows("SELECT * FROM stop_annotations WHERE asset = ? AND start_ns >= ? "
                          "AND start_ns < ? ORDER BY id", (asset, start_ns, end_ns))

    def generation(self) -> int:
        """The latest annotation's id (0: none): changes with every annotation."""
        with self._lock:
            if self._conn is None:
                return 0
            (n,) = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM stop_annotations").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
