"""The losses of an evidence pack's current window: ``losses.json`` and ``stops.csv``, their
inputs beyond the KPI samples (``inputs/reason_events.csv``, ``inputs/stop_annotations.csv``;
the stop_reason tags' samples go into ``inputs/samples.csv``), and their check by
``tierproof verify``.

Both files are computed by the code ``GET /api/v1/losses`` and ``GET /api/v1/stops`` answer
with (``api.losses``: ``asset_stops``, ``loss_body``, ``stops_body``), for every asset of the
configuration over the assessment's current window; verify recomputes them from the pack's
inputs alone, with the same code, and compares (numbers within ``verify.REL_TOL``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from config.settings import Settings
from config.signals import Role
from config.times import iso
from store.annotations import StopAnnotations, annotations_path
from store.base import Store, TagRecord
from store.batch import Batch

from ..losses import (
    EVENT_LOOKBACK_NS,
    STOP_COLUMNS,
    AssetStops,
    asset_stops,
    loss_body,
    stops_body,
)
from ..service import KpiService
from . import layout as L

__all__ = [
    "ANNOTATIONS",
    "ANNOTATION_COLUMNS",
    "EVENTS",
    "EVENT_COLUMNS",
    "LOSSES",
    "LOSS_ROLES",
    "STOPS",
    "event_assets",
    "lookback_span",
    "loss_files",
    "pack_annotations",
    "restore_inputs",
    "verify_losses",
    "write_losses",
]

#: the roles of the tags whose samples the losses need beyond the KPI roles
LOSS_ROLES: Final = (Role.STOP_REASON,)
LOSSES, STOPS, EVENTS, ANNOTATIONS = L.LOSSES, L.STOPS, L.EVENTS, L.ANNOTATIONS
EVENT_COLUMNS, ANNOTATION_COLUMNS = L.EVENTS_COLUMNS, L.ANNOTATIONS_COLUMNS


def _current(windows: Any) -> tuple[int, int] | None:
    for label, a, b in windows.spans:
        if label == "current":
            return a, b
    return None


def lookback_span(windows: Any) -> tuple[str, int, int] | None:
    """The day before the current window, whose samples and gaps the pack holds too for the
    assets with events (an event there may give a stop of the window its reason, and which
    stop it is in depends on the state then)."""
    cur = _current(windows)
    if cur is None:
        return None
    return ("lookback", max(cur[0] - EVENT_LOOKBACK_NS, 0), cur[0])


def event_assets(store: Store, settings: Settings) -> set[str]:
    """The assets with a reason_event tag."""
    return {t.asset for t in _event_tags(store, settings)}


def _event_tags(store: Store, settings: Settings) -> list[TagRecord]:
    assets = {a.path for a in settings.assets}
    return sorted((t for t in store.tags() if t.role == Role.REASON_EVENT.value and t.asset in assets),
                  key=lambda t: t.path)


def event_rows(service: KpiService, windows: Any) -> Iterator[list[str]]:
    """Every reason_event tag's events from a day before the current window to its end (a
    stop's event may precede the window: ``api.losses.EVENT_LOOKBACK_NS``)."""
    cur = _current(windows)
    if cur is None:
        return
    a, b = max(cur[0] - EVENT_LOOKBACK_NS, 0), cur[1]
    for t in _event_tags(service.store, service.settings):
        for ts, text, q in service.store.read_text(t.tag_id, a, b):
            yield [t.path, t.asset, L.format_ns(int(ts), nanos=True), str(int(q)), text]


def pack_annotations(settings: Settings) -> StopAnnotations | None:
    """The gateway's stop annotations (None: nobody annotated)."""
    path = annotations_path(settings.store)
    return StopAnnotations(path) if path.exists() else None


def annotation_rows(annotations: StopAnnotations | None, windows: Any) -> Iterator[list[str]]:
    """Every annotation of the stops starting in the current window, in the order made."""
    cur = _current(windows)
    if cur is None or annotations is None:
        return
    for n in annotations.history(None, cur[0], cur[1]):
        yield [n.asset, str(n.start_ns), n.reason, n.note, n.annotated_by, str(n.annotated_at_ns),
               n.replaced_reason or "", n.replaced_source or ""]


def _stops(service: KpiService, windows: Any, annotations: StopAnnotations | None
           ) -> tuple[list[AssetStops], dict[str, Any]] | None:
    cur = _current(windows)
    if cur is None:
        return None
    settings = service.settings
    tree = settings.reasons.tree()
    items = [asset_stops(service, a, cur[0], cur[1], tree, settings.reasons.small_stop_s, annotations)
             for a in settings.assets]
    return items, {"from": iso(cur[0]), "to": iso(cur[1])}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def loss_files(service: KpiService, windows: Any, annotations: StopAnnotations | None
               ) -> tuple[dict[str, Any], list[list[str]]] | None:
    """(losses.json's document, stops.csv's rows) of the current window (call inside
    ``service.snapshot()``); None without a current window."""
    got = _stops(service, windows, annotations)
    if got is None:
        return None
    items, window = got
    settings = service.settings
    tree = settings.reasons.tree()
    small = settings.reasons.small_stop_s
    doc = loss_body(items, tree, small, window) if items else {"window": window, "assets": {}}
    body = stops_body(items, tree, small, window, None, 2**62)
    rows = [[_cell(s[c]) for c in STOP_COLUMNS] for s in body["stops"]]
    return doc, rows


def _write_csv(path: Path, rows: Iterator[list[str]] | list[list[str]], header: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_losses(out: Path, service: KpiService, windows: Any) -> None:
    """The inputs and the two loss files into the pack directory ``out`` (inside the pack's
    ``service.snapshot()``)."""
    annotations = pack_annotations(service.settings)
    try:
        _write_csv(out / EVENTS, event_rows(service, windows), EVENT_COLUMNS)
        _write_csv(out / ANNOTATIONS, annotation_rows(annotations, windows), ANNOTATION_COLUMNS)
        files = loss_files(service, windows, annotations)
    finally:
        if annotations is not None:
            annotations.close()
    if files is None:
        return
    doc, rows = files
    (out / LOSSES).write_bytes(
        (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
    _write_csv(out / STOPS, rows, STOP_COLUMNS)


# ------------------------------------------------------------------------------ verify


def restore_inputs(root: Path, settings: Settings, store: Store, tmp: Path
                   ) -> tuple[StopAnnotations | None, int, int]:
    """Put the pack's events into ``store`` (text samples of their reason_event tags, the
    tags of ``config.yaml``) and its annotations into a StopAnnotations under ``tmp``:
    (the annotations or None, events, annotations)."""
    from ..gateway import tag_records
    from .verify import Mismatch, _csv_rows, _time

    records = {t.path: t for t in tag_records(settings)}
    ids = store.register_tags(list(records.values()))
    tag_id: list[int] = []
    ts: list[int] = []
    q: list[int] = []
    texts: list[str] = []
    for i, (tag, asset, t, quality, text) in enumerate(_csv_rows(root, EVENTS, EVENT_COLUMNS), start=2):
        rec = records.get(tag)
        if rec is None or rec.role != Role.REASON_EVENT.value or rec.asset != asset:
            raise Mismatch(EVENTS, f"line {i}", f"tag {tag!r} is not a reason_event tag of asset "
                           f"{asset} in {L.CONFIG}")
        tag_id.append(ids[tag])
        ts.append(_time(EVENTS, i, "ts", t))
        if not quality.isdigit() or int(quality) > 255:
            raise Mismatch(EVENTS, f"line {i} quality", f"{quality!r} is not a stored quality (0-255)")
        q.append(int(quality))
        texts.append(text)
    if tag_id:
        store.write(Batch(np.array(tag_id, np.int32), np.array(ts, np.int64),
                          np.full(len(tag_id), math.nan), np.array(q, np.uint8),
                          np.array(texts, dtype=object)))
    rows = _csv_rows(root, ANNOTATIONS, ANNOTATION_COLUMNS)
    if not rows:
        return None, len(tag_id), 0
    notes = StopAnnotations(tmp / "annotations.db")
    for i, (asset, start, reason, note, by, at, rr, rs) in enumerate(rows, start=2):
        if not (start.isdigit() and at.isdigit()):
            raise Mismatch(ANNOTATIONS, f"line {i}", "stop_start and annotated_at must be ns "
                           "since the epoch (integers)")
        notes.add(asset, int(start), reason, note, by, rr or None, rs or None, at_ns=int(at))
    return notes, len(tag_id), len(rows)


def verify_losses(root: Path, service: KpiService, windows: Any,
                  annotations: StopAnnotations | None) -> list[str]:
    """Recompute losses.json and stops.csv from the pack's store and compare (inside the
    verifying service's snapshot); the lines of verify's report."""
    from .verify import Mismatch, _compare_rows, _csv_rows, first_difference

    files = loss_files(service, windows, annotations)
    if files is None:
        return []
    doc, rows = files
    try:
        recorded = json.loads((root / LOSSES).read_bytes())
    except FileNotFoundError:
        raise Mismatch(LOSSES, "", "missing from the pack") from None
    except ValueError as exc:
        raise Mismatch(LOSSES, "", f"not valid JSON: {exc}") from None
    d = first_difference(json.loads(json.dumps(doc)), recorded, "")
    if d is not None:
        path, exp, got = d
        raise Mismatch(LOSSES, path.lstrip("."), f"recomputed {exp!r}, found {got!r}")
    found = _csv_rows(root, STOPS, STOP_COLUMNS)
    n = _compare_rows(STOPS, iter(rows), found, 2, STOP_COLUMNS, True)
    return [f"{LOSSES}: hours and parts per asset, loss type and reason of the current window "
            f"recomputed from the samples, events and annotations, equal within the tolerance; "
            f"{STOPS}: {n} stops with their reason and its source recomputed, equal"]
