"""A bigger simulated plant made of a configuration's machines, for scale tests and benchmarks.

Copy ``r`` of ``site/area/lineN/asset`` is ``site/area/lineN-rR/asset`` (its own line), its PRU
scaled by 1 + 0.07 r (so the copies make different products), its devices renamed
``<name>-rR``; the copies are cut at ``machines``. The simulation keeps ``days`` of history,
improving ``improved_days_ago`` days before its end.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings

__all__ = ["replicate"]


def _moved(path: str, r: int) -> str:
    line, asset = path.rsplit("/", 1)
    return f"{line}-r{r}/{asset}"


def replicate(settings: Settings, machines: int, days: int, improved_days_ago: int) -> dict[str, Any]:
    """The configuration's data (``model_dump(mode="json")``) with ``machines`` machines; the
    caller may change it further and validates it with ``Settings.model_validate``."""
    data = settings.model_dump(mode="json")
    kinds = len(data["assets"])
    copies = -(-machines // kinds)  # ceil
    keep = set([_moved(a["path"], r) for r in range(copies) for a in data["assets"]][:machines])
    assets, devices = [], []
    for r in range(copies):
        for a in data["assets"]:
            if _moved(a["path"], r) in keep:
                pru = a["ideal_cycle_time_s"]
                assets.append({**a, "path": _moved(a["path"], r),
                               "ideal_cycle_time_s": None if pru is None else pru * (1 + 0.07 * r)})
        for d in data["devices"]:
            tags = [{**t, "asset": _moved(t["asset"], r)} for t in d["tags"]
                    if _moved(t["asset"], r) in keep]
            if tags:
                devices.append({**d, "name": f"{d['name']}-r{r}", "tags": tags})
    data.update(assets=assets, devices=devices)
    data["simulation"].update(history_days=days, improvement_at=f"now-{improved_days_ago}d")
    return data
