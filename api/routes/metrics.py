"""``GET /metrics``: the gateway's counters in the Prometheus text format (``api.metrics``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..metrics import CONTENT_TYPE, exposition

router = APIRouter(tags=["metrics"])

_EXAMPLE = """\
# HELP tierproof_device_points_received_total Samples the device's collector delivered
# TYPE tierproof_device_points_received_total counter
tierproof_device_points_received_total{device="plc1",protocol="modbus"} 5120.0
# HELP tierproof_device_state 1 for the device's current state, 0 for the others
# TYPE tierproof_device_state gauge
tierproof_device_state{device="plc1",protocol="modbus",state="connected"} 1.0
tierproof_device_state{device="plc1",protocol="modbus",state="backoff"} 0.0
# HELP tierproof_device_drops_total Messages (or Sparkplug metrics) dropped, by reason
# TYPE tierproof_device_drops_total counter
tierproof_device_drops_total{device="mq",protocol="mqtt",reason="payload_too_large"} 2.0
"""


@router.get(
    "/metrics",
    summary="Gateway metrics in the Prometheus text format",
    description=(
        "Points received and stored per device and protocol, device states, reconnects, gaps, "
        "drops by reason, store writes, the spool (InfluxDB store), KPI computations, roll-up "
        "lag, API request durations by route template and status class, requests in flight, "
        "process CPU and memory. Every name starts with `tierproof_`; labels are per device, "
        "never per tag. Read from the counters the gateway keeps anyway, when scraped. The "
        "list: docs/api.md, \"Metrics\"."
    ),
    response_class=Response,
    responses={200: {
        "description": "The Prometheus text exposition format, version 0.0.4",
        "content": {CONTENT_TYPE: {"schema": {"type": "string"}, "example": _EXAMPLE}},
    }},
)
def get_metrics(request: Request) -> Response:
    return Response(exposition(request.app.state.metrics), media_type=CONTENT_TYPE)
