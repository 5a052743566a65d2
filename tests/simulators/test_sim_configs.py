"""The shipped demo plant and the Modbus example: they load, and they show what they promise."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from config import ModbusDevice, Role, load_settings, shipped_config
from config.signals import COUNTER_ROLES, ENUM_ROLES
from config.times import DailyRange


def test_demo_plant() -> None:
    s = load_settings(shipped_config("demo.yaml"))
    lines = Counter(a.line for a in s.assets)
    assert lines == {"demo/machining/line1": 3, "demo/machining/line2": 3, "demo/assembly/line3": 2,
                     "demo/assembly/line4": 3}
    assert {a.control for a in s.assets if a.line.endswith("line1")} == {"cnc"}
    assert {a.control for a in s.assets if a.line.endswith("line2")} == {"plc"}
    assert all(a.ideal_cycle_time_s for a in s.assets)
    assert any(a.key_equipment for a in s.assets) and not all(a.key_equipment for a in s.assets)
    assert s.calendar.timezone == "Asia/Shanghai"
    # round the clock: the shifts cover every hour of every day (alive whenever it is opened)
    assert [(r.start.hour, r.end.hour) for r in s.calendar.shifts] == [(6, 14), (14, 22), (22, 6)]
    assert all(len(r.days) == 7 for r in s.calendar.shifts) and s.calendar.holidays == []
    assert any(isinstance(r, DailyRange) and r.start.hour == 12 for r in s.calendar.planned_stops)
    devices = [d for d in s.devices if isinstance(d, ModbusDevice)]
    assert [(d.host, d.port) for d in devices] == [("127.0.0.1", 15020), ("127.0.0.1", 15021)]
    for d in devices:
        assert {t.unit_id for t in d.tags} == {1, 2, 3}
        for asset in {t.asset for t in d.tags}:  # every KPI signal of every machine
            roles = {t.role for t in d.tags if t.asset == asset}
            assert set(ENUM_ROLES) | set(COUNTER_ROLES) <= roles
    # line 3 is collected over OPC UA, every KPI signal of both machines
    (opcua,) = [d for d in s.devices if d.protocol == "opcua"]
    assert {t.asset for t in opcua.tags} == {a.path for a in s.assets if a.line.endswith("line3")}
    for asset in {t.asset for t in opcua.tags}:
        roles = {t.role for t in opcua.tags if t.asset == asset}
        assert set(ENUM_ROLES) | set(COUNTER_ROLES) <= roles
    # line 4 over MQTT, one machine per payload style, every KPI signal of each
    (mqtt,) = [d for d in s.devices if d.protocol == "mqtt"]
    assert mqtt.broker is None  # the demo's embedded broker
    assert {t.asset for t in mqtt.tags} == {a.path for a in s.assets if a.line.endswith("line4")}
    kinds = {t.asset.rsplit("/", 1)[1]: {mqtt.tag_kind(x) for x in mqtt.tags if x.asset == t.asset}
             for t in mqtt.tags}
    assert kinds == {"packer-01": {"plain"}, "labeler-01": {"json"}, "palletizer-01": {"sparkplug"}}
    for asset in {t.asset for t in mqtt.tags}:
        roles = {t.role for t in mqtt.tags if t.asset == asset}
        assert set(ENUM_ROLES) | set(COUNTER_ROLES) <= roles
    assert s.store.path == "data/demo.db"
    now = datetime(2026, 11, 20, tzinfo=UTC)
    assert s.kpi.baseline is not None
    b0, b1 = s.kpi.baseline.resolve(now)
    c0, c1 = s.kpi.current.resolve(now)
    assert b1 == c0 and b1 - b0 == c1 - c0 and c1 == now
    # two weeks each: a one-week window of this Monday-to-Saturday plant holds 6 working days
    assert c1 - c0 == timedelta(days=14)
    assert s.simulation is not None
    assert (s.simulation.history_days, s.simulation.improvement_at) == (28, "now-14d")


def test_modbus_example_shows_every_option() -> None:
    s = load_settings(shipped_config("examples/modbus.yaml"))
    tags = [t for d in s.devices if isinstance(d, ModbusDevice) for t in d.tags]
    assert {t.type for t in tags} == {"bool", "bit", "int16", "uint16", "int32", "uint32",
                                      "int64", "uint64", "float32", "float64", "string"}
    assert {t.byte_order for t in tags} == {"ABCD", "DCBA", "BADC", "CDAB"}
    assert {t.table for t in tags} == {"holding", "input", "coil", "discrete"}
    assert any(t.scale != 1 for t in tags) and any(t.offset != 0 or "offset" in
                                                   t.model_fields_set for t in tags)
    assert len({(t.unit_id) for t in tags}) >= 2
    assert any(t.group != "default" for t in tags)
    assert any(d.poll_groups for d in s.devices if isinstance(d, ModbusDevice))
    # several raw codes may map to one canonical name
    state = next(t for t in tags if t.role is Role.STATE)
    assert state.enum is not None
    assert max(Counter(state.enum.values()).values()) > 1
