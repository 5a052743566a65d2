"""The Grafana dashboard of a plant, generated from its configuration (``tierproof grafana``).

A state or mode tag stores what its device sent: a Modbus PLC's native code, an OPC UA server's
enumeration value (the store keeps raw values, as the samples API and the KPIs read them
through the tag's ``enum``). A reader outside tierproof sees those raw codes; a dashboard that
labelled every series with the canonical OPC 40001-1 codes would call a running Modbus lathe
(native 2 = Executing) "NotExecuting". So the state and mode panels carry one value mapping
per machine, generated from that machine's ``enum``: raw code -> canonical name, coloured by
the canonical name. A tag without an ``enum`` (a discovered one) carries canonical codes, and
the panel's default mapping is the canonical one.

Series are named ``<line>/<asset>`` (InfluxQL ``GROUP BY "line", "asset"``); the mappings are
overrides matched by that name. Two configured machines with the same name on lines of the
same name but different mappings cannot be told apart by it: that is refused, naming both.

``deploy/grafana/dashboards/plant.json`` is this module's output for the demo plant (a test
keeps it equal for ``config/demo.yaml`` and for ``deploy/gateway.yaml``, which has the same
tags): regenerate it with
``tierproof grafana --config config/demo.yaml --output deploy/grafana/dashboards/plant.json``.
"""

from __future__ import annotations

import json
from typing import Any

from config.errors import ConfigError
from config.settings import Settings
from config.signals import CANONICAL, Role, canonical_names

from .gateway import tag_records

__all__ = ["COLOURS", "calendar_text", "dashboard", "dashboard_json", "series_name", "value_mapping"]

INFLUX = {"type": "influxdb", "uid": "tierproof-influxdb"}
API = {"type": "yesoreyeram-infinity-datasource", "uid": "tierproof-api"}

#: the colour of each canonical name on the state and mode timelines
COLOURS: dict[Role, dict[str, str]] = {
    Role.STATE: {"NotAvailable": "#808080", "OutOfService": "red", "NotExecuting": "yellow",
                 "Executing": "green"},
    Role.MODE: {"None": "#808080", "Maintenance": "orange", "Setup": "blue", "Processing": "green"},
}


def series_name(asset_path: str) -> str:
    """The display name of an asset's series on the timelines: ``<line>/<asset>``."""
    parts = asset_path.split("/")
    return f"{parts[2]}/{parts[3]}"


def _canonical(role: Role) -> dict[int, str]:
    names = canonical_names(role)
    return {int(m.value): names[i] for i, m in enumerate(CANONICAL[role])}


def value_mapping(role: Role, enum: dict[int, str] | None) -> list[dict[str, Any]]:
    """Grafana value mappings of one tag: raw code -> canonical name and its colour."""
    names = enum if enum is not None else _canonical(role)
    colours = COLOURS[role]
    options = {str(raw): {"text": name, "color": colours[name], "index": i}
               for i, (raw, name) in enumerate(sorted(names.items()))}
    return [{"type": "value", "options": options}]


def _overrides(settings: Settings, role: Role) -> list[dict[str, Any]]:
    """One override per configured machine with a tag of ``role``: its own value mapping."""
    by_name: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for tag in tag_records(settings):
        if tag.role != role.value:
            continue
        asset = tag.path.rsplit("/", 1)[0]
        name, mapping = series_name(asset), value_mapping(role, tag.enum)
        seen = by_name.get(name)
        if seen is not None and seen[1] != mapping:
            raise ConfigError(
                f"grafana: assets {seen[0]} and {asset} are both shown as {name!r} but map their "
                f"{role.value} codes differently; give one of them another name")
        by_name[name] = (asset, mapping)
    return [{"matcher": {"id": "byName", "options": name},
             "properties": [{"id": "mappings", "value": mapping}]}
            for name, (_, mapping) in sorted(by_name.items())]


def _timeline(panel_id: int, title: str, description: str, role: Role, settings: Settings,
              measurement: str, y: int, h: int) -> dict[str, Any]:
    return {
        "id": panel_id, "type": "state-timeline", "title": title, "description": description,
        "datasource": INFLUX,
        "gridPos": {"h": h, "w": 24, "x": 0, "y": y},
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        "targets": [{
            "refId": "A", "datasource": INFLUX, "rawQuery": True, "resultFormat": "time_series",
            "query": (f"SELECT last(\"value\") FROM \"{measurement}\" WHERE \"role\" = "
                      f"'{role.value}' AND \"asset\" =~ /^$asset$/ AND $timeFilter GROUP BY "
                      "time($__interval), \"line\", \"asset\" fill(previous)"),
            "alias": "$tag_line/$tag_asset",
        }],
        "fieldConfig": {
            "defaults": {"mappings": value_mapping(role, None), "color": {"mode": "thresholds"}},
            "overrides": _overrides(settings, role),
        },
    }


def calendar_text(settings: Settings) -> str:
    """The plant's shift calendar in one line, e.g. ``early 06:00-14:00 mon-sun, ...
    (Asia/Shanghai)``: what the dashboard says the KPIs' planned busy time is."""
    cal = settings.calendar
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    def when(d: list[str]) -> str:
        idx = sorted(days.index(x) for x in d)
        if idx == list(range(idx[0], idx[-1] + 1)) and len(idx) > 2:
            return "every day" if len(idx) == 7 else f"{days[idx[0]]}-{days[idx[-1]]}"
        return ",".join(days[i] for i in idx)

    shifts = ", ".join(f"{s.name} {s.start:%H:%M}-{s.end:%H:%M} {when(list(s.days))}"
                       for s in cal.shifts)
    return f"{shifts} ({cal.timezone})"


def _influx(query: str, fmt: str, alias: str) -> list[dict[str, Any]]:
    return [{"refId": "A", "datasource": INFLUX, "rawQuery": True, "resultFormat": fmt,
             "query": query, "alias": alias}]


def dashboard(settings: Settings) -> dict[str, Any]:
    """The plant dashboard of ``settings`` (see the module)."""
    m = getattr(settings.store, "measurement", "tierproof")
    bars = {"unit": "short", "custom": {"drawStyle": "bars", "fillOpacity": 60}}
    legend = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"]}}
    return {
        "uid": "tierproof-plant",
        "title": "tierproof plant",
        "description": ("OEE, machine state and counters per asset: signals from InfluxDB "
                        "(InfluxQL), KPIs from the tierproof API. State and mode are shown by "
                        "their canonical names (OPC 40001-1), mapped per machine from its "
                        "native codes. Planned busy time (the KPIs' calendar): "
                        f"{calendar_text(settings)}. Generated by `tierproof grafana`."),
        "tags": ["tierproof", "oee", "isa-95"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [{
            "name": "asset", "label": "Asset", "type": "query", "datasource": INFLUX,
            "query": f"SHOW TAG VALUES FROM \"{m}\" WITH KEY = \"asset\"",
            "definition": f"SHOW TAG VALUES FROM \"{m}\" WITH KEY = \"asset\"",
            "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        }]},
        "annotations": {"list": []},
        "panels": [
            {
                "id": 1, "type": "table", "title": "OEE per asset (tierproof KPIs, ISO 22400)",
                "description": ("Computed by the gateway from the stored signals over the "
                                "dashboard's time range (GET /api/v1/kpis); undefined where state "
                                "or quantities are not measured."),
                "datasource": API,
                "gridPos": {"h": 9, "w": 24, "x": 0, "y": 0},
                "options": {"showHeader": True},
                "targets": [{
                    "refId": "A", "datasource": API, "type": "json", "source": "url",
                    "format": "table", "parser": "backend", "url": "/api/v1/kpis",
                    "url_options": {"method": "GET", "params": [
                        {"key": "from", "value": "${__from:date:iso}"},
                        {"key": "to", "value": "${__to:date:iso}"}]},
                    "root_selector": (
                        "$each(assets, function($v, $k) {{\"asset\": $k, \"oee\": $v.oee, "
                        "\"availability\": $v.availability, \"effectiveness\": "
                        "$v.effectiveness, \"quality_ratio\": $v.quality_ratio}})"),
                    "columns": [],
                }],
                "fieldConfig": {
                    "defaults": {
                        "unit": "percentunit", "decimals": 1, "min": 0, "max": 1,
                        "custom": {"cellOptions": {"type": "color-background"}},
                        "thresholds": {"mode": "absolute", "steps": [
                            {"color": "red", "value": None}, {"color": "yellow", "value": 0.6},
                            {"color": "green", "value": 0.85}]},
                    },
                    "overrides": [{"matcher": {"id": "byName", "options": "asset"}, "properties": [
                        {"id": "unit", "value": "string"},
                        {"id": "custom.cellOptions", "value": {"type": "auto"}}]}],
                },
            },
            _timeline(2, "Machine state (OPC 40001-1)",
                      "Each machine's stored state code, named by its own configured enum.",
                      Role.STATE, settings, m, 9, 9),
            _timeline(3, "Operation mode",
                      "Each machine's stored mode code, named by its own configured enum.",
                      Role.MODE, settings, m, 18, 7),
            {
                "id": 4, "type": "timeseries", "title": "Good and reject parts per hour",
                "description": ("Hourly increase of the good_count and reject_count counters (an "
                                "hour with a counter reset shows only the count after the reset)."),
                "datasource": INFLUX, "gridPos": {"h": 8, "w": 12, "x": 0, "y": 25},
                "options": legend,
                "targets": _influx(
                    f"SELECT non_negative_difference(last(\"value\")) FROM \"{m}\" WHERE \"role\" "
                    "=~ /^(good|reject)_count$/ AND \"asset\" =~ /^$asset$/ AND $timeFilter GROUP "
                    "BY time(1h), \"asset\", \"role\" fill(none)", "time_series",
                    "$tag_asset $tag_role"),
                "fieldConfig": {"defaults": bars, "overrides": []},
            },
            {
                "id": 5, "type": "timeseries", "title": "Energy per hour (kWh)",
                "datasource": INFLUX, "gridPos": {"h": 8, "w": 12, "x": 12, "y": 25},
                "options": legend,
                "targets": _influx(
                    f"SELECT non_negative_difference(last(\"value\")) FROM \"{m}\" WHERE \"role\" "
                    "= 'energy_kwh' AND \"asset\" =~ /^$asset$/ AND $timeFilter GROUP BY "
                    "time(1h), \"asset\" fill(none)", "time_series", "$tag_asset"),
                "fieldConfig": {"defaults": {**bars, "unit": "kwatth"}, "overrides": []},
            },
            {
                "id": 6, "type": "table", "title": "Counters now",
                "datasource": INFLUX, "gridPos": {"h": 8, "w": 24, "x": 0, "y": 33},
                "transformations": [{"id": "groupingToMatrix", "options": {
                    "columnField": "role", "rowField": "asset", "valueField": "last"}}],
                "targets": _influx(
                    f"SELECT last(\"value\") FROM \"{m}\" WHERE \"role\" =~ /_count$/ AND "
                    "\"asset\" =~ /^$asset$/ AND $timeFilter GROUP BY \"asset\", \"role\"",
                    "table", "$tag_asset"),
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
            },
        ],
    }


def dashboard_json(settings: Settings) -> str:
    """:func:`dashboard` as the file Grafana provisions (two-space indent, final newline)."""
    return json.dumps(dashboard(settings), indent=2, ensure_ascii=False) + "\n"
