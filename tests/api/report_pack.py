"""A small evidence pack for the report's tests, written by the pack layout contract of issue 17
(``api/evidence/report.py`` documents it): the real assessment of a real store, and the CSVs
read from that store. The one place the report tests build a pack; once the evidence writer
(``tierproof evidence``) lands, the tests switch to it and this helper goes."""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from api.assessment import assess
from api.gateway import tag_records
from api.service import KpiService
from config import load_tiers
from config.settings import Settings
from config.signals import MachineState, OperationMode, Role
from config.times import to_ns
from kpi import ALGORITHM_VERSION, TimeElements, gap_intervals, planned_intervals
from kpi.evidence import asset_gaps
from kpi.steps import UNKNOWN, Step, combine
from store.base import Store

_HOUR = 3600 * 1_000_000_000
_KPI_ROLES = (Role.STATE, Role.MODE, Role.CHANNEL_MODE, Role.TOTAL_COUNT, Role.GOOD_COUNT,
              Role.REJECT_COUNT, Role.ENERGY_KWH)


def _z(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ns(text: str) -> int:
    return to_ns(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _name(enum: type[MachineState] | type[OperationMode], code: int) -> str:
    if code == UNKNOWN:
        return ""
    name = enum(code).name
    return "None" if name == "NoMode" else name


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_pack(settings: Settings, cfg: Path, store: Store, out: Path) -> dict[str, Any]:
    """Write the pack of ``settings`` (its config file ``cfg``, its ``store``) into ``out``, for
    the configured windows (``kpi.current``, ``kpi.baseline``). Returns the assessment."""
    service = KpiService(settings, store)
    with service.snapshot():
        assessment = assess(settings, service, load_tiers())
    out.mkdir(parents=True, exist_ok=True)
    (out / "assessment.json").write_text(json.dumps(assessment, indent=1))
    (out / "versions.json").write_text(json.dumps({
        "criteria_version": assessment["criteria_version"], "algorithm_version": ALGORITHM_VERSION,
        "config_sha256": assessment["config_fingerprint"], "tierproof_version": "test",
        "created": _z(to_ns(datetime.now(UTC)))}))
    (out / "config.yaml").write_text(cfg.read_text())
    (out / "declared.json").write_text(json.dumps(settings.declared.model_dump(mode="json"), indent=1))

    store.register_tags(tag_records(settings))
    by_asset: dict[str, dict[Role, Any]] = {}
    for t in store.tags():  # with their ids
        if Role(t.role) in _KPI_ROLES:
            by_asset.setdefault(t.asset, {})[Role(t.role)] = t
    wins = [("baseline", assessment["baseline_window"]), ("current", assessment["window"])]
    hourly: list[list[Any]] = []
    samples: list[list[Any]] = []
    states: list[list[Any]] = []
    gaps_rows: list[list[Any]] = []
    planned_rows: list[list[Any]] = []
    names = [f.name for f in fields(TimeElements)]
    for label, w in wins:
        if w is None:
            continue
        lo, hi = _ns(w["from"]), _ns(w["to"])
        cuts = [lo, *range((lo // _HOUR + 1) * _HOUR, hi, _HOUR), hi]
        ps, pe = planned_intervals(settings.calendar, lo, hi)
        for asset in settings.assets:
            tags = by_asset.get(asset.path, {})
            for a, b in pairwise(cuts):
                e = service.asset_result(asset, a, b, tags, context_start_ns=lo).elements
                hourly.append([asset.path, label, _z(a // _HOUR * _HOUR),
                               *(getattr(e, n) for n in names)])
            for role, t in tags.items():
                s = store.read(t.tag_id, lo, hi, prior=False)
                samples += [[t.path, asset.path, role.value, _z(int(ts)), float(v), int(q)]
                            for ts, v, q in zip(s.ts_ns, s.value, s.quality, strict=True)]
            devices = sorted({t.device for t in tags.values()})
            gaps = asset_gaps((g for d in devices for g in store.gaps(d, lo, hi)), asset.path)
            gaps_rows += [[asset.path, g.device, _z(max(g.start_ns, lo)),
                           _z(min(g.end_ns if g.end_ns is not None else hi, hi)), g.reason] for g in gaps]
            planned_rows += [[asset.path, _z(int(s)), _z(int(e))] for s, e in zip(ps, pe, strict=True)]
            steps = []
            for role in (Role.STATE, Role.MODE):
                step_tag = tags.get(role)
                if step_tag is None:
                    steps.append(Step(np.empty(0, np.int64), np.empty(0, np.int64)))
                    continue
                s = store.read(step_tag.tag_id, lo, hi, prior=True)
                steps.append(Step.from_samples(s.ts_ns, s.value, s.quality, KpiService._lut(step_tag)))
            iv = combine(steps, lo, hi, gap_intervals(gaps, hi))
            run: list[Any] | None = None
            for a, b, st, md in zip(iv.start, iv.end, iv.codes[0], iv.codes[1], strict=True):
                row = [asset.path, _z(int(a)), _z(int(b)), _name(MachineState, int(st)),
                       _name(OperationMode, int(md))]
                if run is not None and run[3:] == row[3:] and run[2] == row[1]:
                    run[2] = row[2]
                else:
                    if run is not None:
                        states.append(run)
                    run = row
            if run is not None:
                states.append(run)
    inputs = out / "inputs"
    _write(inputs / "hourly.csv", ["asset", "window", "hour_start", *names], hourly)
    _write(inputs / "samples.csv", ["tag", "asset", "role", "ts", "value", "quality"], samples)
    _write(inputs / "states.csv", ["asset", "start", "end", "state", "mode"], states)
    _write(inputs / "gaps.csv", ["asset", "device", "start", "end", "reason"], gaps_rows)
    _write(inputs / "planned.csv", ["asset", "start", "end"], planned_rows)
    return assessment
