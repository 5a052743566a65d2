"""MQTT configuration: every problem names its field path and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from collector import MqttCollector
from config.errors import ConfigError
from config.loader import settings_from_dict, shipped_config
from config.mqtt import MqttDevice

ASSET = "plant/area/L1/M1"


def base() -> dict[str, Any]:
    return {
        "assets": [{"path": ASSET}, {"path": "plant/area/L2/M1"}],
        "devices": [{
            "name": "mq", "protocol": "mqtt", "broker": "mqtt://127.0.0.1:1883",
            "subscriptions": [
                {"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"},
                {"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}"},
            ],
            "tags": [
                {"asset": ASSET, "name": "speed"},
                {"asset": ASSET, "name": "good", "field": "counters.good", "type": "int"},
            ],
        }],
    }


def test_the_base_config_is_valid() -> None:
    s = settings_from_dict(base())
    dev = s.devices[0]
    assert isinstance(dev, MqttDevice)
    assert dev.session_id == "tierproof-mq" and dev.host_port == ("127.0.0.1", 1883, False)
    assert [dev.tag_kind(t) for t in dev.tags] == ["plain", "json"]


def test_the_shipped_example_has_all_three_styles() -> None:
    from config.loader import load_settings

    s = load_settings(shipped_config("examples/mqtt.yaml"))
    formats = {sub.format for d in s.devices if isinstance(d, MqttDevice) for sub in d.subscriptions}
    assert formats == {"plain", "json", "sparkplug"}


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    cur: Any = data
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    if value is DELETE:
        del cur[last]
    elif last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value


DELETE = object()
D = "devices.0"

CASES: list[tuple[str, Any, str, str]] = [
    (f"{D}.broker", "tcp://x:1", "devices[0].broker", "is not a broker URL"),
    (f"{D}.qos", 2, "devices[0].qos", "Input should be 0 or 1"),
    (f"{D}.subscriptions", [], "devices[0].subscriptions", "at least 1 item"),
    (f"{D}.subscriptions.0.topic", "tp/a#", "devices[0].subscriptions[0].topic",
     "'#' must be a whole level and the last one"),
    (f"{D}.subscriptions.0.topic", "tp/#/x", "devices[0].subscriptions[0].topic", "'#' must be"),
    (f"{D}.subscriptions.0.topic", "tp/a+/b", "devices[0].subscriptions[0].topic",
     "'+' must be a whole level"),
    (f"{D}.subscriptions.0.template", "tp/{machine}/{signal}", "devices[0].subscriptions[0].template",
     "unknown placeholder {machine}"),
    (f"{D}.subscriptions.0.template", "tp/{line}/{line}/{signal}", "devices[0].subscriptions[0].template",
     "appears twice"),
    (f"{D}.subscriptions.0.template", "tp/x{line}/{asset}/{signal}", "devices[0].subscriptions[0].template",
     "must be a literal, one {placeholder}, + or #"),
    (f"{D}.subscriptions.0.template", "zz/{line}/{asset}/{signal}", "devices[0].subscriptions[0].template",
     "level 1 is 'zz' where the topic filter has 'tp'"),
    (f"{D}.subscriptions.0.template", "tp/{line}/{asset}", "devices[0].subscriptions[0].template",
     "fewer levels than the topic filter"),
    (f"{D}.subscriptions.0.template", "tp/{line}/{asset}/+", "devices[0].subscriptions[0].template",
     "the template needs {signal}"),
    (f"{D}.subscriptions.0.template", "tp/{line}/{asset}/{signal}/x", "devices[0].subscriptions[0].template",
     "more levels than the topic filter"),
    (f"{D}.subscriptions.0.timestamp_field", "ts", "devices[0].subscriptions[0]",
     "timestamp_field is for json"),
    (f"{D}.subscriptions.1.topic", DELETE, "devices[0].subscriptions[1]", "a json subscription needs topic"),
    (f"{D}.subscriptions.1.timestamp_format", "rfc", "devices[0].subscriptions[1].timestamp_format",
     "Input should be"),
    (f"{D}.subscriptions.1.group_id", "g", "devices[0].subscriptions[1]", "group_id is for sparkplug"),
    (f"{D}.username", "u", "devices[0]", "username and password go together"),
    (f"{D}.tls", {"ca_file": "ca.pem"}, "devices[0]", "tls needs an mqtts:// broker URL"),
    (f"{D}.tls", {"cert_file": "c.pem"}, "devices[0].tls", "cert_file and key_file go together"),
    (f"{D}.tags.0.metric", "x", "devices[0].tags[0].format",
     "a sparkplug tag, but devices[0] has no sparkplug"),
    (f"{D}.tags.1.metric", "x", "devices[0].tags[1]", "a json field or a sparkplug metric, not both"),
    (f"{D}.tags.1.field", "counters..good", "devices[0].tags[1].field", "must be a dotted path"),
    (f"{D}.tags.0.type", "double", "devices[0].tags[0].type", "Input should be"),
    (f"{D}.tags.0.asset", "plant/area/L9/M1", "devices[0].tags[0].asset", "no asset 'plant/area/L9/M1'"),
]


@pytest.mark.parametrize(("path", "value", "where", "why"), CASES,
                         ids=[c[0] + "=" + str(c[1])[:20] for c in CASES])
def test_bad_field_is_named(path: str, value: Any, where: str, why: str) -> None:
    data = copy.deepcopy(base())
    set_path(data, path, value)
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, "mqtt.yaml")
    problems = err.value.problems
    assert any(loc == f"mqtt.yaml: {where}" and why in reason for loc, reason in problems), problems


def test_tags_a_template_cannot_tell_apart_are_refused() -> None:
    data = base()
    data["devices"][0]["subscriptions"][0]["template"] = "tp/+/{asset}/{signal}"  # no {line}
    data["devices"][0]["tags"].append({"asset": "plant/area/L2/M1", "name": "speed"})
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, "mqtt.yaml")
    ((loc, reason),) = err.value.problems
    assert loc == "mqtt.yaml: devices[0].tags[2]"
    assert "same value as devices[0].tags[0] under subscriptions[0]" in reason and "{line}" in reason


def test_the_collector_names_missing_files_and_the_demo_broker() -> None:
    data = base()
    dev = settings_from_dict(data).devices[0]
    assert isinstance(dev, MqttDevice)
    no_broker = dev.model_copy(update={"broker": None})
    with pytest.raises(ConfigError) as err:
        MqttCollector(no_broker, {t.path: i for i, t in enumerate(dev.tags)})
    assert ("devices[mq].broker", "no broker URL (only `tierproof demo` provides an embedded broker)") in \
        err.value.problems
    tls = MqttDevice.model_validate({**dev.model_dump(), "broker": "mqtts://h",
                                     "tls": {"ca_file": "/nonexistent/ca.pem"}, "password": None})
    with pytest.raises(ConfigError) as err:
        MqttCollector(tls, {t.path: i for i, t in enumerate(dev.tags)})
    assert err.value.problems[0][0] == "devices[mq].tls.ca_file"
    with pytest.raises(ConfigError) as err:
        MqttCollector(dev, {})
    assert "has no tag id" in err.value.problems[0][1]
