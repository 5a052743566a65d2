"""MQTT collector: plain values, JSON documents and Sparkplug B (:mod:`.sparkplug`) from a
broker -- the driver, paho's transport on the event loop and the payload decoding (see
``README.md``)."""

from __future__ import annotations

from .decode import (
    NS_PER,
    JsonFields,
    PayloadError,
    TagCodec,
    match_levels,
    parse_json,
    parse_timestamp,
    walk,
)
from .driver import DEDUP_MEMORY, MqttCollector, MqttStats

__all__ = [
    "DEDUP_MEMORY",
    "NS_PER",
    "JsonFields",
    "MqttCollector",
    "MqttStats",
    "PayloadError",
    "TagCodec",
    "match_levels",
    "parse_json",
    "parse_timestamp",
    "walk",
]
