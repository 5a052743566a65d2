"""Which KPIs an asset's configured signals cannot yield: one row per cause, the shipped demo
without a warning, and ``tierproof check-config`` printing them with exit code 0."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import load_settings, settings_from_dict, shipped_config
from config.kpi_inputs import ENERGY_KPIS, GQ_KPIS, PQ_KPIS, PRU_KPIS, TIME_KPIS, kpi_warnings

ASSET = "s/a/l/m"
ENUMS = {
    "state": {0: "NotExecuting", 1: "Executing"},
    "mode": {0: "Setup", 1: "Processing"},
    "channel_mode": {0: "Automatic", 1: "Manual"},
}
EVERY = ("state", "mode", "channel_mode", "total_count", "good_count", "energy_kwh")


def plant(roles: tuple[str, ...] = EVERY, enabled: bool = True, **asset: Any) -> dict[str, Any]:
    """One asset with one Modbus tag per role (and PRU 10 s unless overridden)."""
    tags = [{"name": r, "asset": ASSET, "role": r, "address": i,
             **({"enum": ENUMS[r]} if r in ENUMS else {})} for i, r in enumerate(roles)]
    return {
        "assets": [{"path": ASSET, "ideal_cycle_time_s": 10, **asset}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": enabled,
                     "tags": tags}] if tags else [],
    }


def without(*roles: str) -> tuple[str, ...]:
    return tuple(r for r in EVERY if r not in roles)


@pytest.mark.parametrize(
    ("case", "config", "expect"),
    [
        ("every role", plant(), []),
        ("no tag at all", plant(()), [(("any KPI",), "not networked: no tag of the asset")]),
        ("only on a disabled device", plant(enabled=False),
         [(("any KPI",), "not networked: its tags are all on disabled devices")]),
        ("no state", plant(without("state")), [(TIME_KPIS, "no state tag: its time elements")]),
        ("no state and no mode", plant(without("state", "mode")),
         [(TIME_KPIS, "no state tag, no mode tag and no default_mode")]),
        ("no mode", plant(without("mode")),
         [(TIME_KPIS, "no mode tag and no default_mode: Executing time is in an unknown mode")]),
        ("no mode, default_mode", plant(without("mode"), default_mode="Processing"), []),
        ("no mode, default_mode Setup", plant(without("mode"), default_mode="Setup"),
         [(("availability", "effectiveness", "oee", "nee", "throughput_per_h"),
           "default_mode Setup: every Executing second counts as setup (ASUT), never as "
           "production time (APT)")]),
        ("mode tag and default_mode", plant(default_mode="Processing"),
         [((), "default_mode Processing is not used: the asset has a mode tag, which wins")]),
        ("no produced quantity", plant(without("total_count")),
         [(PQ_KPIS, "its produced quantity is not measured")]),
        ("no part counter", plant(without("total_count", "good_count")),
         [(tuple(dict.fromkeys(PQ_KPIS + GQ_KPIS)), "no part counter: neither its produced")]),
        # good + reject stand in for the total
        ("good and reject", plant((*without("total_count"), "reject_count")), []),
        ("total only", plant(without("good_count")), [(GQ_KPIS, "its good quantity is not measured")]),
        ("total and reject", plant((*without("good_count"), "reject_count")), []),
        ("no PRU", plant(ideal_cycle_time_s=None), [(PRU_KPIS, "no ideal_cycle_time_s (PRU)")]),
        ("cnc without channel mode", plant(without("channel_mode"), control="cnc"),
         [(("automation_rate",), "no channel_mode tag on a control: cnc asset")]),
        ("plc without channel mode", plant(without("channel_mode")),
         [(("automation_rate",), "no channel_mode tag on a control: plc asset")]),
        ("manual without channel mode", plant(without("channel_mode"), control="manual"), []),
        ("none without channel mode", plant(without("channel_mode"), control="none"), []),
        ("no energy meter", plant(without("energy_kwh")),
         [(ENERGY_KPIS, "no energy_kwh tag")]),
        # an energy meter only (a compressor): no time elements, no output, no PRU
        ("energy meter only", plant(("energy_kwh",), ideal_cycle_time_s=None),
         [(TIME_KPIS, "no state tag, no mode tag"), (tuple(dict.fromkeys(PQ_KPIS + GQ_KPIS)),
                                                      "no part counter"),
          (PRU_KPIS, "no ideal_cycle_time_s")]),
    ],
)
def test_warnings(case: str, config: dict[str, Any], expect: list[tuple[tuple[str, ...], str]]) -> None:
    got = kpi_warnings(settings_from_dict(config))
    assert [(w.kpis, w.asset, w.field) for w in got] == [(k, ASSET, "assets[0]") for k, _ in expect], case
    for w, (_, why) in zip(got, expect, strict=True):
        assert why in w.reason, (case, w.reason)
        assert str(w).startswith(f"assets[0] {ASSET}: "), str(w)


def test_a_role_on_a_disabled_device_is_named() -> None:
    cfg = plant(without("energy_kwh"))
    cfg["devices"].append({"protocol": "modbus", "name": "meter", "host": "127.0.0.1", "enabled": False,
                           "tags": [{"name": "kwh", "asset": ASSET, "role": "energy_kwh", "address": 0}]})
    [w] = kpi_warnings(settings_from_dict(cfg))
    assert w.kpis == ENERGY_KPIS and w.reason == "its energy_kwh tag is on a disabled device"


def test_the_shipped_demo_has_no_warning() -> None:
    # every demo machine has state, mode, channel mode, all counters, a meter and a PRU
    assert kpi_warnings(load_settings(shipped_config("demo.yaml"))) == []


def test_the_modbus_example_warns_about_its_energy_only_assets() -> None:
    got = kpi_warnings(load_settings(shipped_config("examples/modbus.yaml")))
    assets = {w.asset for w in got}
    # the capper has no channel mode nor meter; the four meters have nothing but energy
    assert assets == {f"acme/bottling/line3/{m}" for m in
                      ("capper", "compressor", "palletizer", "wrapper", "labeler")}
    assert "acme/bottling/line3/filler" not in assets


def test_check_config_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(yaml.safe_dump(plant(without("mode", "energy_kwh"))))
    r = subprocess.run([sys.executable, "-m", "api.cli", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{f}: OK (1 assets")
    assert lines[1].startswith(f"{f}: fingerprint ")
    assert lines[2] == f"{f}: 2 warning(s): KPIs the configured signals cannot yield"
    assert lines[3].startswith(f"  {f}: warning: assets[0] {ASSET}: no availability, ")
    assert "no mode tag and no default_mode" in lines[3]
    assert lines[4] == (f"  {f}: warning: assets[0] {ASSET}: no energy_per_unit_kwh, "
                        "energy_per_standard_hour_kwh: no energy_kwh tag")
    # the demo: OK and its fingerprint, no warning
    r = subprocess.run([sys.executable, "-m", "api.cli", "check-config", str(shipped_config("demo.yaml"))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "OK" in r.stdout
    assert "fingerprint" in r.stdout.splitlines()[1] and "warning" not in r.stdout


def test_run_and_demo_log_the_warnings_at_start(caplog: pytest.LogCaptureFixture) -> None:
    from api.cli import _log_kpi_warnings

    with caplog.at_level(logging.WARNING, logger="tierproof.cli"):
        _log_kpi_warnings(settings_from_dict(plant(without("energy_kwh"))))
    assert [r.getMessage() for r in caplog.records] == [
        f"assets[0] {ASSET}: no energy_per_unit_kwh, energy_per_standard_hour_kwh: no energy_kwh tag"]
