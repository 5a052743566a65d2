"""``report.html`` of an evidence pack: the auditor's report, one self-contained page.

``render_report(pack_dir)`` reads the pack (layout below) and returns the complete HTML: inline
CSS, inline script, the vendored Apache ECharts embedded with its licence notice, and the
report's data as one JSON block; the page makes no network request. Every number it shows is
either the pack's own (the assessment's verdicts, values, intervals and coverage, copied) or
computed here, in Python, from the pack's inputs with the KPI core's functions
(``kpi.oee.Kpis.of`` of ``kpi.oee.roll_up`` of the hourly ``TimeElements``): the browser only
formats and draws. The page is English and Chinese (a language switch; numbers and dates per
locale, times in the plant's time zone from ``config.yaml``'s ``calendar.timezone``) and prints
to A4 (each section on its own page).

Pack layout read (issue 17; ``tierproof evidence`` writes it):

- ``assessment.json``: the ``GET /api/v1/tiers/assessment`` document;
- ``versions.json``: ``criteria_version``, ``algorithm_version``, ``config_sha256``,
  ``tierproof_version``, ``created``;
- ``config.yaml``: the effective configuration, secrets redacted;
- ``declared.json``: the declared items with who supplied them and when;
- ``inputs/hourly.csv``: ``asset,window,hour_start`` + every ``TimeElements`` field in
  declaration order; ``window`` ``baseline`` or ``current``, ``hour_start`` ISO UTC with ``Z``;
- ``inputs/samples.csv``: ``tag,asset,role,ts,value,quality``;
- ``inputs/states.csv``: ``asset,start,end,state,mode`` (OPC 40001-1 names; empty: unknown);
- ``inputs/gaps.csv``: ``asset,device,start,end,reason`` (an empty asset: every asset of the
  device);
- ``inputs/planned.csv``: ``asset,start,end``;
- ``losses.json`` (optional): the current window's ``GET /api/v1/losses`` document for every
  asset, whose Pareto the page shows.

A missing file, column or bad value is a ``ReportError`` naming the file, the line and the
field.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from config.errors import TierproofError
from config.signals import OperationMode
from kpi.oee import ELEMENT_TABLE, Kpis, TimeElements, roll_up

__all__ = ["ReportError", "render_report", "report_data"]

WINDOWS: Final = ("baseline", "current")
#: the state timeline's states, in legend order; "" is unknown (no known state)
STATES: Final = ("Executing", "NotExecuting", "OutOfService", "NotAvailable", "")
MODES: Final = ("Processing", "Setup", "Maintenance", "None", "")
_ELEMENTS: Final = tuple(f.name for f in fields(TimeElements))
_INTS: Final = frozenset(f.name for f in fields(TimeElements) if f.type in ("int", int))
_OPTIONAL: Final = frozenset({"shared_pru_s"})
#: a tag's own keys in config.yaml that are not where it is read from (the mapping's "source")
_NOT_SOURCE: Final = frozenset({"name", "asset", "role", "enum", "unit", "scale", "group", "description"})
#: the roles the KPIs read, in the mapping table's order
_KPI_ROLES: Final = ("state", "mode", "channel_mode", "total_count", "good_count", "reject_count",
                     "energy_kwh")
#: the assets' KPIs shown per window (keys of ``kpi.oee.Kpis``)
_ASSET_KPIS: Final = ("availability", "effectiveness", "quality_ratio", "oee", "coverage")


class ReportError(TierproofError):
    """The pack cannot be reported: names the file, the line and the field, and why."""


def _ms(text: str, where: str) -> int:
    """Milliseconds since the epoch of an ISO instant (``Z`` or an offset)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ReportError(f"{where}: {text!r} is not an ISO 8601 instant") from None
    if t.tzinfo is None:
        raise ReportError(f"{where}: {text!r} has no offset (the pack's times are UTC, with Z)")
    return round(t.timestamp() * 1000)


def _json(pack: Path, name: str) -> Any:
    path = pack / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing from the pack") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from None


def _no_column(path: Path, lacking: list[str], have: list[str] | Sequence[str]) -> ReportError:
    return ReportError(f"{path}: no column {', '.join(lacking)} (columns: {', '.join(have) or 'none'})")


def _rows(pack: Path, name: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of an input CSV that must have ``columns``."""
    path = pack / "inputs" / name
    try:
        f = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: missing from the pack") from None
    with f:
        reader = csv.DictReader(f)
        have = reader.fieldnames or []
        if lacking := [c for c in columns if c not in have]:
            raise _no_column(path, lacking, have)
        for row in reader:
            yield reader.line_num, row


def _elements(row: dict[str, str], where: str) -> TimeElements:
    values: dict[str, Any] = {}
    for name in _ELEMENTS:
        text = row[name]
        try:
            if name in _OPTIONAL and text == "":
                values[name] = None
            elif name in _INTS:
                values[name] = int(text)
            else:
                values[name] = float(text)
                if not math.isfinite(values[name]):
                    raise ValueError(text)
        except ValueError:
            raise ReportError(f"{where}, field {name}: {text!r} is not a (finite) number") from None
    return TimeElements(**values)


def _kpis(e: TimeElements) -> dict[str, Any]:
    k = Kpis.of(e)
    out: dict[str, Any] = {n: getattr(k, n) for n in _ASSET_KPIS}
    out.update(pq=e.pq, gq=e.gq, pbt_h=e.pbt_s / 3600, known_h=e.known_s / 3600)
    return out


def _hourly(pack: Path, tz: ZoneInfo) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The KPI trends (plant total per hour and per local day, each window) and each asset's
    KPIs per window, from ``inputs/hourly.csv``."""
    hours: dict[str, dict[int, list[TimeElements]]] = {w: defaultdict(list) for w in WINDOWS}
    assets: dict[str, dict[str, list[TimeElements]]] = defaultdict(lambda: {w: [] for w in WINDOWS})
    for line, row in _rows(pack, "hourly.csv", ("asset", "window", "hour_start", *_ELEMENTS)):
        where = f"{pack / 'inputs' / 'hourly.csv'} line {line}"
        w = row["window"]
        if w not in WINDOWS:
            raise ReportError(f"{where}, field window: {w!r} is neither baseline nor current")
        e = _elements(row, where)
        hours[w][_ms(row["hour_start"], f"{where}, field hour_start")].append(e)
        assets[row["asset"]][w].append(e)
    trends: dict[str, Any] = {k: {} for k in ("oee_hour", "parts_hour", "oee_day", "parts_day")}
    days: dict[str, dict[str, list[TimeElements]]] = {w: defaultdict(list) for w in WINDOWS}
    for w in WINDOWS:
        oee_h, parts_h = [], []
        for ms in sorted(hours[w]):
            total = roll_up(hours[w][ms])
            oee_h.append([ms, Kpis.of(total).oee])
            parts_h.append([ms, total.gq])
            # the plant's local day the hour starts in
            days[w][datetime.fromtimestamp(ms / 1000, tz).date().isoformat()].extend(hours[w][ms])
        trends["oee_hour"][w], trends["parts_hour"][w] = oee_h, parts_h
    # the daily series share one category axis: every local day of either window, in order
    trends["days"] = sorted({d for w in WINDOWS for d in days[w]})
    for w in WINDOWS:
        totals = {d: roll_up(es) for d, es in days[w].items()}
        trends["oee_day"][w] = [Kpis.of(totals[d]).oee if d in totals else None for d in trends["days"]]
        trends["parts_day"][w] = [totals[d].gq if d in totals else None for d in trends["days"]]
    per_asset = [{"path": p, **{w: _kpis(roll_up(by[w])) if by[w] else None for w in WINDOWS}}
                 for p, by in assets.items()]
    return trends, per_asset


def _states(pack: Path, order: list[str], spans: dict[str, tuple[int, int]]) -> dict[str, list[list[int]]]:
    """The state timelines: per window (the one an interval starts in) [asset index, start ms,
    end ms, state index, mode index]; ``order`` (the assets' order) gains the assets it lacks."""
    cols = ("asset", "start", "end", "state", "mode")
    out: dict[str, list[list[int]]] = {w: [] for w in WINDOWS}
    for line, row in _rows(pack, "states.csv", cols):
        where = f"{pack / 'inputs' / 'states.csv'} line {line}"
        if row["state"] not in STATES:
            raise ReportError(f"{where}, field state: {row['state']!r} is not an OPC 40001-1 "
                              f"MachineryItemState name ({', '.join(s for s in STATES if s)}, or empty)")
        if row["asset"] not in order:
            order.append(row["asset"])
        if row["mode"] not in MODES:
            raise ReportError(f"{where}, field mode: {row['mode']!r} is not an OPC 40001-1 "
                              f"MachineryOperationMode name ({', '.join(m for m in MODES if m)}, or empty)")
        mode = MODES.index(row["mode"])
        start = _ms(row["start"], f"{where}, field start")
        for w, (lo, hi) in spans.items():
            if lo <= start < hi:
                out[w].append([order.index(row["asset"]), start, _ms(row["end"], f"{where}, field end"),
                               STATES.index(row["state"]), mode])
                break
    return out


def _intervals(pack: Path, name: str, cols: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for line, row in _rows(pack, name, cols):
        where = f"{pack / 'inputs' / name} line {line}"
        out.append({**row, "start": _ms(row["start"], f"{where}, field start"),
                    "end": _ms(row["end"], f"{where}, field end")})
    return out


def _samples(pack: Path) -> list[dict[str, Any]]:
    """Per tag: how many samples the pack holds, and how many of them are bad (quality >= 2,
    ``config.signals.Quality.BAD``). The largest input: read by column position, not as dicts."""
    path = pack / "inputs" / "samples.csv"
    cols = ("tag", "asset", "role", "ts", "value", "quality")
    counts: dict[tuple[str, str, str], list[int]] = {}
    try:
        f = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: missing from the pack") from None
    with f:
        reader = csv.reader(f)
        head = next(reader, [])
        if lacking := [c for c in cols if c not in head]:
            raise _no_column(path, lacking, head)
        it, ia, ir, iq = (head.index(c) for c in ("tag", "asset", "role", "quality"))
        for row in reader:
            try:
                key, q = (row[ia], row[ir], row[it]), row[iq]
                bad = int(q) >= 2
            except (ValueError, IndexError):
                raise ReportError(f"{path} line {reader.line_num}, field quality: "
                                  f"{row[iq] if len(row) > iq else None!r} is not an integer") from None
            c = counts.get(key)
            if c is None:
                c = counts[key] = [0, 0]
            c[0] += 1
            c[1] += bad
    return [{"asset": a, "role": r, "tag": t, "n": n, "bad": b}
            for (a, r, t), (n, b) in sorted(counts.items())]


def _mapping(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The signal mapping table: every configured tag with a KPI role, where it is read from and
    how its values map to canonical names."""
    out = []
    for d in config.get("devices") or []:
        for t in d.get("tags") or []:
            if t.get("role") not in _KPI_ROLES:
                continue
            source = "; ".join(f"{k} {v}" for k, v in t.items() if k not in _NOT_SOURCE)
            enum = ", ".join(f"{k} → {v}" for k, v in (t.get("enum") or {}).items())
            out.append({"asset": t.get("asset"), "role": t["role"],
                        "tag": f"{t.get('asset')}/{t.get('name')}", "device": d.get("name"),
                        "protocol": d.get("protocol"), "source": source,
                        "enum": enum, "scale": t.get("scale"), "unit": t.get("unit")})
    out.sort(key=lambda m: (str(m["asset"]), _KPI_ROLES.index(m["role"])))
    return out


def _mode_name(m: OperationMode | None) -> str:
    """A mode of the element table by its OPC 40001-1 name; ``*``: any mode."""
    if m is None:
        return "*"
    return "None" if m is OperationMode.NoMode else m.name


def _summary(value: Any) -> Any:
    """A declared value for a table cell: a number or text as it is, a list as its count, an
    object as its scalar fields (the page never shows a raw JSON structure)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return f"{len(value)} entries" if value else None
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()
                         if isinstance(v, str | int | float | bool)) or None
    return str(value)


def _supplied(node: Any, path: str) -> list[dict[str, Any]]:
    """The entries inside a declared value that name who supplied them (an object with
    ``supplied_by``, at any depth): where each is, its value, unit, who, when, from what."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "supplied_by" in node:
            value = next((node[k] for k in ("value", "amount", "level", "point") if k in node), None)
            if value is None:  # e.g. a list of scenarios: how many
                value = ", ".join(f"{k}: {len(v)}" for k, v in node.items() if isinstance(v, list)) or None
            out.append({"item": path, "value": _summary(value), "unit": node.get("unit"),
                        "supplied_by": node.get("supplied_by"), "supplied_at": node.get("supplied_at"),
                        "source": node.get("source")})
            return out
        for k, v in node.items():
            out += _supplied(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            key = v.get("period", i) if isinstance(v, dict) else i
            out += _supplied(v, f"{path}[{key}]")
    return out


def _declared_items(doc: Any) -> list[dict[str, Any]]:
    """Every declared item of ``declared.json`` (``items``: name -> its version, who supplied it
    and when, and its value): the entries inside its value that name their own supplier, or
    else the item itself with who supplied it (e.g. the configuration file)."""
    items = doc.get("items") if isinstance(doc, dict) else None
    out: list[dict[str, Any]] = []
    for name, it in (items or {}).items():
        if not isinstance(it, dict):
            continue
        inner = _supplied(it.get("value"), name)
        out += inner or [{"item": name, "value": _summary(it.get("value")), "unit": None,
                          "supplied_by": it.get("supplied_by"), "supplied_at": it.get("supplied_at"),
                          "source": it.get("source")}]
    return out


def _criteria(assessment: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("tier", "id", "title", "figure", "kind", "measure", "direction", "threshold", "reference",
            "reference_value", "value", "interval", "verdict", "coverage", "missing", "reason", "supplied")
    units = {f: e.get("unit") for f, e in assessment.get("figures", {}).items()}
    tiers = []
    for name, t in assessment.get("tiers", {}).items():
        tiers.append({"name": name, "verdict": t.get("verdict"), "counts": t.get("counts", {}),
                      "criteria": [{**{k: c.get(k) for k in keep}, "unit": units.get(c.get("figure"))}
                                   for c in t.get("criteria", [])]})
    return tiers


def _figures(assessment: dict[str, Any]) -> list[dict[str, Any]]:
    """Baseline vs current of every figure, with the intervals of the value and the delta."""
    out = []
    for f, e in assessment.get("figures", {}).items():
        v = e.get("value") or {}
        d = e.get("delta") or {}
        base = (d.get("baseline") or {})
        out.append({
            "figure": f, "unit": e.get("unit"), "coverage": e.get("coverage"),
            "baseline_coverage": e.get("baseline_coverage"),
            "baseline": base.get("value", base.get("point")),
            "current": v.get("point"), "low": v.get("low"), "high": v.get("high"),
            "delta": d.get("point"), "delta_low": d.get("low"), "delta_high": d.get("high"),
            "missing": e.get("missing") or (assessment.get("deltas", {}).get(f) or {}).get("missing"),
            "reason": v.get("reason") or d.get("reason"), "note": e.get("note"),
        })
    return out


def _losses(pack: Path) -> dict[str, Any] | None:
    """The Pareto of ``losses.json`` (the current window's losses, largest first), each
    reason with its number of stops; None in a pack without the file."""
    if not (pack / "losses.json").exists():
        return None
    doc = _json(pack, "losses.json")
    try:
        stops = {r["reason"]: r["stops"] for r in doc.get("reasons", [])}
        pareto = [{**p, "stops": stops.get(p["key"]) if p["kind"] == "reason" else None}
                  for p in doc.get("pareto", [])]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReportError(f"{pack / 'losses.json'}: not the losses of a pack ({type(exc).__name__}: "
                          f"{exc})") from None
    return {"window": doc.get("window"), "loss_s": doc.get("loss_s"), "pareto": pareto}


def report_data(pack_dir: Path) -> dict[str, Any]:
    """Everything the page shows, computed from the pack (JSON-ready)."""
    pack = Path(pack_dir)
    assessment = _json(pack, "assessment.json")
    versions = _json(pack, "versions.json")
    declared = _json(pack, "declared.json")
    try:
        config = yaml.safe_load((pack / "config.yaml").read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ReportError(f"{pack / 'config.yaml'}: missing from the pack") from None
    except yaml.YAMLError as exc:
        raise ReportError(f"{pack / 'config.yaml'}: not YAML: {exc}") from None
    tz_name = (config.get("calendar") or {}).get("timezone")
    try:
        tz = ZoneInfo(tz_name or "")
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"{pack / 'config.yaml'}, field calendar.timezone: {tz_name!r} is not an IANA "
                          "time zone") from None
    trends, per_asset = _hourly(pack, tz)
    register = {a.get("path"): a for a in config.get("assets") or []}
    order = [a for a in register if a]
    for a in per_asset:
        a["description"] = (register.get(a["path"]) or {}).get("description", "")
        if a["path"] not in order:
            order.append(a["path"])
    per_asset.sort(key=lambda a: order.index(a["path"]))
    windows = {"baseline": assessment.get("baseline_window"), "current": assessment.get("window")}
    planned = _intervals(pack, "planned.csv", ("asset", "start", "end"))
    spans = {w: (_ms(v["from"], f"{pack / 'assessment.json'}, field {w}.from"),
                 _ms(v["to"], f"{pack / 'assessment.json'}, field {w}.to"))
             for w, v in (("baseline", windows["baseline"]), ("current", windows["current"])) if v}
    timeline = _states(pack, order, spans)
    return {
        "tz": tz_name,
        "versions": versions,
        "windows": windows,
        "assets": order,
        "tiers": _criteria(assessment),
        "figures": _figures(assessment),
        "trends": trends,
        "per_asset": per_asset,
        "timeline": {"states": STATES, "modes": MODES, **timeline,
                     "windows": {w: list(s) for w, s in spans.items()}},
        # the calendar's planned busy time: one plan for the plant, whether the pack lists it
        # once or per asset
        "planned": [list(p) for p in sorted({(p["start"], p["end"]) for p in planned})],
        "gaps": _intervals(pack, "gaps.csv", ("asset", "device", "start", "end", "reason")),
        "samples": _samples(pack),
        "losses": _losses(pack),
        "methods": {
            "elements": [[s.name, _mode_name(m), el] for s, m, el in ELEMENT_TABLE],
            "mapping": _mapping(config),
            "bootstrap": assessment.get("bootstrap"),
            "coverage_min": assessment.get("coverage_min"),
            "days": assessment.get("days"),
            "history": assessment.get("history"),
            "not_computed": assessment.get("not_computed"),
            "config_fingerprint": assessment.get("config_fingerprint"),
            "declared_versions": assessment.get("declared_versions") or {},
            "declared": _declared_items(declared),
        },
    }


def _asset(name: str) -> str:
    return resources.files("api.evidence").joinpath("report_assets", name).read_text(encoding="utf-8")


def _vendor(name: str) -> str:
    return resources.files("api").joinpath("static", "vendor", "echarts", name).read_text(encoding="utf-8")


def _script_safe(data: str) -> str:
    """JSON text that cannot end (``</script>``) or comment out (``<!--``) the inline <script> it
    is put in: every ``<`` (only ever inside a JSON string) as the JSON escape ``\\u003c``."""
    return data.replace("<", "\\u003c")


def render_report(pack_dir: Path) -> str:
    """The complete, self-contained ``report.html`` of the pack in ``pack_dir``."""
    data = json.dumps(report_data(pack_dir), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    echarts = _vendor("echarts.min.js")
    if "</script" in echarts.lower():
        raise ReportError("api/static/vendor/echarts/echarts.min.js holds '</script': it cannot be inlined")
    notice = "\n".join(_vendor(n).replace("*/", "* /") for n in ("NOTICE", "LICENSE", "LICENSE-d3"))
    html = _asset("report.html")
    parts = {
        "/*@CSS@*/": _asset("report.css"),
        "/*@ECHARTS@*/": "/*! Apache ECharts 6.1.0, embedded unchanged. Its notice and licences:\n"
                         f"{notice}\n*/\n{echarts}",
        "/*@DATA@*/": _script_safe(data),
        "/*@SCRIPT@*/": _asset("report.js"),
    }
    for mark, text in parts.items():
        head, sep, tail = html.partition(mark)
        if not sep:
            raise ReportError(f"report_assets/report.html has no {mark} mark")
        html = head + text + tail
    return html
