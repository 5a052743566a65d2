"""The plant over MQTT: a publisher in three styles (``TOPICS.md``) and the demo's embedded
broker."""

from .broker import embedded_broker
from .publisher import JSON_LAYOUT, MQTT_SIGNALS, MqttPublisher, MqttStyle, plain_number, serve_mqtt

__all__ = [
    "JSON_LAYOUT",
    "MQTT_SIGNALS",
    "MqttPublisher",
    "MqttStyle",
    "embedded_broker",
    "plain_number",
    "serve_mqtt",
]
