"""OPC UA device and tag settings: every bad field is named with its path and reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config import ConfigError, settings_from_dict
from config.opcua import OpcUaDevice, parse_node_id

GOOD: dict[str, Any] = {
    "assets": [{"path": "s/a/l/m1"}],
    "devices": [
        {
            "protocol": "opcua", "name": "cnc1", "endpoint": "opc.tcp://10.0.0.5:4840/cnc",
            "tags": [
                {"name": "speed", "asset": "s/a/l/m1", "node_id": "ns=2;i=5"},
                {"name": "temp", "asset": "s/a/l/m1", "node_id": "nsu=urn:acme:cnc;s=Axis/X;Temp"},
            ],
        }
    ],
}


def with_(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    node: Any = data
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return data


def test_good_config_and_defaults() -> None:
    s = settings_from_dict(GOOD)
    d = s.devices[0]
    assert isinstance(d, OpcUaDevice)
    assert (d.mode, d.security_policy, d.security_mode, d.deadband.type) == (
        "subscribe", "None", "None", "none"
    )
    # unset: sampling 0.5 s, publishing half of it: a change of a sampled value waits at most
    # 0.5 s for its sample and 0.25 s for its publish, within a second at 1 Hz
    assert (d.publishing_interval_ms, d.sampling_ms, d.publishing_ms) == (None, 500.0, 250.0)
    assert s.all_tags()[1][1].path == "s/a/l/m1/temp"


@pytest.mark.parametrize(("publishing", "sampling", "expected"), [
    (None, -1, (500.0, 250.0)),
    (None, 250, (250.0, 125.0)),  # half the sampling interval
    (None, 0, (0.0, 100.0)),  # the server's fastest sampling: the lower bound, 100 ms
    (None, 60_000, (60_000.0, 1000.0)),  # a slow tag: at most 1 s
    (2000, -1, (2000.0, 2000.0)),  # a configured publishing interval: sampling follows it
    (2000, 250, (250.0, 2000.0)),  # both configured: as configured
])
def test_derived_publishing_interval(publishing: float | None, sampling: float,
                                     expected: tuple[float, float]) -> None:
    data = with_("devices.0.sampling_interval_ms", sampling)
    if publishing is not None:
        data["devices"][0]["publishing_interval_ms"] = publishing
    d = settings_from_dict(data).devices[0]
    assert isinstance(d, OpcUaDevice)
    assert (d.sampling_ms, d.publishing_ms) == expected


def test_password_is_secret() -> None:
    data = with_("devices.0.username", "op")
    data["devices"][0]["password"] = "hunter2"
    d = settings_from_dict(data).devices[0]
    assert isinstance(d, OpcUaDevice) and d.password is not None
    assert "hunter2" not in repr(d) and d.password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    ("node_id", "parts"),
    [
        ("ns=2;i=5", (2, "i", "5")),
        ("ns=3;s=Line 1.Speed", (3, "s", "Line 1.Speed")),
        ("ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a", (2, "g", "09087e75-8e5e-499b-954f-f2a9603db28a")),
        ("ns=2;b=AQJ0cA==", (2, "b", "AQJ0cA==")),
        ("nsu=urn:acme:cnc;s=a;b", ("urn:acme:cnc", "s", "a;b")),
        ("i=2258", (0, "i", "2258")),
    ],
)
def test_node_id_forms(node_id: str, parts: tuple[object, str, str]) -> None:
    assert parse_node_id(node_id) == parts


@pytest.mark.parametrize(
    ("path", "value", "where", "why"),
    [
        ("devices.0.tags.0.node_id", "2;5", "devices[0].tags[0].node_id", "is not an OPC UA node id"),
        ("devices.0.tags.0.node_id", "ns=2;i=x", "devices[0].tags[0].node_id", "numeric identifier"),
        ("devices.0.tags.0.node_id", "ns=2;g=nope", "devices[0].tags[0].node_id", "is not a GUID"),
        ("devices.0.tags.0.node_id", "ns=2;b=***", "devices[0].tags[0].node_id", "is not base64"),
        ("devices.0.tags.0.node_id", "ns=2;s=", "devices[0].tags[0].node_id", "must not be empty"),
        ("devices.0.tags.0.node_id", "ns=70000;i=1", "devices[0].tags[0].node_id", "above 65535"),
        ("devices.0.endpoint", "http://x:4840", "devices[0].endpoint", "opc.tcp://"),
        ("devices.0.mode", "push", "devices[0].mode", "'subscribe' or 'poll'"),
        ("devices.0.security_policy", "Basic128Rsa15", "devices[0].security_policy", "Basic256Sha256"),
        ("devices.0.security_mode", "Sign", "devices[0]", "security_mode must be None exactly"),
        ("devices.0.security_policy", "Basic256Sha256", "devices[0]", "security_mode must be None"),
        ("devices.0.username", "op", "devices[0]", "username and password go together"),
        ("devices.0.deadband", {"type": "percent", "value": 150}, "devices[0].deadband", "0..100"),
        ("devices.0.max_items_per_subscription", 0, "devices[0].max_items_per_subscription",
         "greater than or equal to 1"),
        ("devices.0.tags.0.address", 3, "devices[0].tags[0].address", "unknown field"),
    ],
)
def test_bad_field_is_named(path: str, value: object, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as ei:
        settings_from_dict(with_(path, value), "plant.yaml")
    problems = ei.value.problems
    assert any(loc == f"plant.yaml: {where}" and why in reason for loc, reason in problems), problems


def test_secure_policy_needs_certificate_and_key() -> None:
    data = with_("devices.0.security_policy", "Basic256Sha256")
    data["devices"][0]["security_mode"] = "SignAndEncrypt"
    with pytest.raises(ConfigError) as ei:
        settings_from_dict(data, "plant.yaml")
    assert ei.value.problems == [
        ("plant.yaml: devices[0]", "security_policy Basic256Sha256 needs certificate and private_key")
    ]
    data["devices"][0].update(certificate="pki/own.der", private_key="pki/own.pem")
    assert settings_from_dict(data).devices[0].name == "cnc1"
